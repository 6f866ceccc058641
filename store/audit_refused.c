/* store/audit_refused.c — the refusal limiter: refused connections and
 * failed handshakes give at most one audit record per client address per
 * second; the ones in between are counted into the next record. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cg_error.h"
#include "common/cg_util.h"
#include "store/audit_impl.h"

/* ---- refused connections: at most one record per address per second ---- */

#define REF_TABLE 256
#define REF_BUDGET 1000 /* distinct-address records per second, then one summary */

typedef struct ref_entry {
    bool used;
    char addr[64];
    int64_t sec;
    uint32_t pending;       /* suppressed since the last record */
    slot last;              /* the latest suppressed one */
} ref_entry;

static struct {
    pthread_mutex_t mu;
    ref_entry tab[REF_TABLE];
    int64_t budget_sec;
    uint32_t budget_used;
    uint32_t overflow;      /* refusals beyond the budget, not yet recorded */
} R = { .mu = PTHREAD_MUTEX_INITIALIZER };

/* "192.0.2.1:443" -> "192.0.2.1", "[2001:db8::1]:443" -> "2001:db8::1". */
static void client_addr(const char *client, char out[64])
{
    if (!client) {
        cg_strlcpy(out, "", 64);
        return;
    }
    if (client[0] == '[') {
        const char *e = strchr(client, ']');
        size_t n = e ? (size_t)(e - client - 1) : strlen(client + 1);
        if (n > 63)
            n = 63;
        memcpy(out, client + 1, n);
        out[n] = '\0';
        return;
    }
    const char *c = strchr(client, ':');
    bool v4 = c && !strchr(c + 1, ':');
    size_t n = v4 ? (size_t)(c - client) : strlen(client);
    if (n > 63)
        n = 63;
    memcpy(out, client, n);
    out[n] = '\0';
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

static int submit_slot_counted(const slot *s, uint32_t count)
{
    cg_audit_rec r;
    cg_audit__slot_rec(s, &r);
    return submit_counted(&r, count);
}

int cg_audit_refused(const cg_audit_rec *r)
{
    char addr[64];
    client_addr(r->client, addr);
    int64_t sec = cg_time_now_usec() / 1000000;
    uint32_t h = 2166136261u;
    for (const char *p = addr; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    slot *flush = NULL;
    uint32_t flush_count = 0;
    pthread_mutex_lock(&R.mu);
    ref_entry *e = &R.tab[h % REF_TABLE];
    if (e->used && strcmp(e->addr, addr) == 0) {
        if (e->sec == sec) {
            e->pending++;
            cg_audit__slot_fill(&e->last, r, cg_time_now_usec(), 0);
            pthread_mutex_unlock(&R.mu);
            return atomic_load(&cg_aq.available) || !cg_aq.cfg.fail_closed ? 0 : CG_E_AUDIT;
        }
        uint32_t count = e->pending + 1;
        e->pending = 0;
        e->sec = sec;
        pthread_mutex_unlock(&R.mu);
        return submit_counted(r, count);
    }
    if (R.budget_sec != sec) {
        R.budget_sec = sec;
        R.budget_used = 0;
    }
    if (R.budget_used >= REF_BUDGET) {
        /* Many addresses at once (an IPv6 sweep): one summary a second. */
        R.overflow++;
        pthread_mutex_unlock(&R.mu);
        return atomic_load(&cg_aq.available) || !cg_aq.cfg.fail_closed ? 0 : CG_E_AUDIT;
    }
    R.budget_used++;
    if (e->used && e->pending) {
        flush = malloc(sizeof *flush);
        if (flush) {
            *flush = e->last;
            flush_count = e->pending;
        }
    }
    e->used = true;
    cg_strlcpy(e->addr, addr, sizeof e->addr);
    e->sec = sec;
    e->pending = 0;
    pthread_mutex_unlock(&R.mu);
    if (flush) {
        submit_slot_counted(flush, flush_count);
        free(flush);
    }
    return cg_audit__submit(r, 0);
}

/* Writer, about once a second and at stop (all): records what the
 * table still holds back. */
void cg_audit__refused_flush(slot *tmp, bool all)
{
    int64_t sec = cg_time_now_usec() / 1000000 + (all ? 1 : 0);
    for (size_t i = 0; i < REF_TABLE; i++) {
        pthread_mutex_lock(&R.mu);
        ref_entry *e = &R.tab[i];
        uint32_t n = 0;
        if (e->used && e->pending && e->sec < sec) {
            *tmp = e->last;
            n = e->pending;
            e->pending = 0;
            e->sec = sec;
        }
        pthread_mutex_unlock(&R.mu);
        if (n)
            submit_slot_counted(tmp, n);
    }
    pthread_mutex_lock(&R.mu);
    uint32_t over = R.budget_sec < sec ? R.overflow : 0;
    if (over)
        R.overflow = 0;
    pthread_mutex_unlock(&R.mu);
    if (over) {
        cg_audit_rec r;
        cg_audit_rec_init(&r);
        r.service = "gateway";
        r.operation = "refused";
        r.result = "refused";
        r.reason = "connections refused beyond the per-second record budget";
        submit_counted(&r, over + 1);
    }
}

int cg_audit__refused_reset(void)
{
    pthread_mutex_lock(&R.mu);
    memset(R.tab, 0, sizeof R.tab);
    R.overflow = 0;
    pthread_mutex_unlock(&R.mu);
    return 0;
}
