/* store/audit_refused.c — the refusal limiter: refused connections and
 * failed handshakes give at most one audit record per client address per
 * second; the ones in between are counted into the next record. The
 * addresses live in a cg_addrtab (an IPv4 address or an IPv6 /64 per key,
 * never a shared or overwritten entry), each entry holding back the latest
 * refusal it has not recorded yet. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "common/cg_addrtab.h"
#include "common/cg_error.h"
#include "common/cg_util.h"
#include "store/audit_impl.h"

#define REF_BUDGET 1000 /* new-address records per second, then one summary */
/* An entry lives about two seconds past its last refusal (the writer's
 * flush forgets it), and at most REF_BUDGET are made a second. */
#define REF_ENTRIES (4 * REF_BUDGET)

/* What an entry holds back (its window is the second of its last record). */
typedef struct held {
    uint32_t pending; /* refusals since the last record */
    slot last;        /* the latest of them */
} held;

static _Atomic(cg_addrtab *) table;
/* Records of new addresses in budget_sec: changed only under the table's
 * lock (in on_refusal); budget_sec is read by the flush without it. */
static _Atomic int64_t budget_sec;
static uint32_t budget_used;
static _Atomic uint32_t overflow; /* refusals beyond the budget, not yet recorded */

/* The key of r->client ("192.0.2.1:443", "[2001:db8::1]:443"): its address
 * without the port. All-zero (one key for all of them) without one. */
static void client_key(const char *client, cg_addrkey *k)
{
    memset(k, 0, sizeof *k);
    if (!client)
        return;
    const char *start = client, *end;
    if (client[0] == '[') {
        start = client + 1;
        end = strchr(start, ']');
    } else {
        const char *c = strchr(client, ':');
        end = c && !strchr(c + 1, ':') ? c : NULL;
    }
    size_t n = end ? (size_t)(end - start) : strlen(start);
    char addr[INET6_ADDRSTRLEN];
    if (n >= sizeof addr)
        return;
    memcpy(addr, start, n);
    addr[n] = '\0';
    struct sockaddr_in sin = { .sin_family = AF_INET };
    struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6 };
    if (inet_pton(AF_INET, addr, &sin.sin_addr) == 1)
        (void)cg_addrkey_of((const struct sockaddr *)&sin, k);
    else if (inet_pton(AF_INET6, addr, &sin6.sin6_addr) == 1)
        (void)cg_addrkey_of((const struct sockaddr *)&sin6, k);
}

static int submit_counted(const cg_audit_rec *r, uint32_t count)
{
    if (count <= 1)
        return cg_audit__submit(r, 0);
    cg_audit_rec c = *r;
    char reason[640];
    snprintf(reason, sizeof reason, "%s (x%u)", r->reason ? r->reason : "refused", count);
    c.reason = reason;
    return cg_audit__submit(&c, 0);
}

/* A refusal held back (counted, not recorded now): what the caller is
 * told is whether the log would take records. */
static int held_back(void)
{
    return atomic_load(&cg_aq.available) || !cg_aq.cfg.fail_closed ? 0 : CG_E_AUDIT;
}

typedef struct refusal {
    const cg_audit_rec *r;
    int64_t sec, usec;
    uint32_t record;  /* out: 0 held back, else record r standing for this many */
} refusal;

static bool on_refusal(cg_addrtab_ent *e, bool made, void *arg)
{
    refusal *f = arg;
    held *h = e->extra;
    if (!made) {
        if ((int64_t)e->window == f->sec) {
            h->pending++;
            cg_audit__slot_fill(&h->last, f->r, f->usec, 0);
            return true;
        }
        f->record = h->pending + 1;
        h->pending = 0;
        e->window = (uint64_t)f->sec;
        return true;
    }
    if (atomic_load(&budget_sec) != f->sec) {
        atomic_store(&budget_sec, f->sec);
        budget_used = 0;
    }
    if (budget_used >= REF_BUDGET) {
        /* Many addresses at once (an IPv6 sweep): one summary a second. */
        atomic_fetch_add(&overflow, 1);
        return false;
    }
    budget_used++;
    f->record = 1;
    return true;
}

int cg_audit_refused(const cg_audit_rec *r)
{
    cg_addrtab *t = atomic_load(&table);
    if (!t)
        return cg_audit__submit(r, 0); /* the writer never ran: refused there */
    cg_addrkey k;
    client_key(r->client, &k);
    int64_t usec = cg_time_now_usec();
    refusal f = { .r = r, .sec = usec / 1000000, .usec = usec };
    if (cg_addrtab_visit(t, &k, (uint64_t)f.sec, on_refusal, &f) < 0)
        atomic_fetch_add(&overflow, 1); /* table full: counted in the summary */
    return f.record ? submit_counted(r, f.record) : held_back();
}

/* Under the table's lock: records what an entry held back in a past
 * second; forgets an entry with nothing held whose second has passed. */
static bool on_flush(cg_addrtab_ent *e, bool made, void *arg)
{
    int64_t sec = *(const int64_t *)arg;
    held *h = e->extra;
    if ((int64_t)e->window >= sec)
        return true;
    if (!h->pending)
        return false;
    cg_audit_rec r;
    cg_audit__slot_rec(&h->last, &r);
    (void)submit_counted(&r, h->pending); /* a refusal already answered */
    h->pending = 0;
    e->window = (uint64_t)sec;
    return true;
}

void cg_audit__refused_flush(bool all)
{
    cg_addrtab *t = atomic_load(&table);
    if (!t)
        return;
    int64_t sec = cg_time_now_usec() / 1000000 + (all ? 1 : 0);
    cg_addrtab_each(t, on_flush, &sec);
    uint32_t over = atomic_load(&budget_sec) < sec ? atomic_exchange(&overflow, 0) : 0;
    if (over) {
        cg_audit_rec r;
        cg_audit_rec_init(&r);
        r.service = "gateway";
        r.operation = "refused";
        r.result = "refused";
        r.reason = "connections refused beyond the per-second record budget";
        (void)submit_counted(&r, over + 1);
    }
}

static bool forget_all(cg_addrtab_ent *e, bool made, void *arg) { return false; }

int cg_audit__refused_reset(void)
{
    cg_addrtab *t = atomic_load(&table);
    if (!t) {
        t = cg_addrtab_new_extra(REF_ENTRIES, sizeof(held));
        if (!t)
            return CG_E_NOMEM;
        atomic_store(&table, t);
    } else {
        cg_addrtab_each(t, forget_all, NULL);
    }
    atomic_store(&overflow, 0);
    return 0;
}
