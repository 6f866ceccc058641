/* policy/snapshot.c — the published policy snapshot: references, process-
 * wide publication (readers take a reference without a lock on the fast
 * path), reload when the store changed, and the lookups by name, id,
 * mailbox, key and peer over the sorted indexes. Building is in
 * snapshot_build.c. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/cg_error.h"
#include "common/cg_log.h"
#include "policy/snapshot_impl.h"
#include "store/policy_store.h"

/* ---- sorted indexes: the orders (snapshot_impl.h) ----------------------------- */

void *cg_snap_find(const void *key, const void *base, size_t n, size_t size,
                   int (*cmp)(const void *, const void *))
{
    return n ? bsearch(key, base, n, size, cmp) : NULL;
}
int cg_snap_cmp_cert(const void *a, const void *b)
{
    return memcmp(((const cg_snap_cert *)a)->fpr, ((const cg_snap_cert *)b)->fpr, 32);
}

/* Certificate names compare exactly, but for the host of a dns: name
 * (RFC 4343: DNS names are case-insensitive). */
int cg_snap_name_cmp(const char *a, const char *b)
{
    if (strncmp(a, "dns:", 4) == 0 && strncmp(b, "dns:", 4) == 0)
        return strcasecmp(a + 4, b + 4);
    return strcmp(a, b);
}

int cg_snap_cmp_name(const void *a, const void *b)
{
    return cg_snap_name_cmp(((const cg_snap_name *)a)->name, ((const cg_snap_name *)b)->name);
}

int cg_snap_cmp_psk(const void *a, const void *b)
{
    const cg_snap_psk *x = a, *y = b;
    size_t n = x->idlen < y->idlen ? x->idlen : y->idlen;
    int c = memcmp(x->identity, y->identity, n);
    return c ? c : (x->idlen > y->idlen) - (x->idlen < y->idlen);
}

/* longest prefix first, so the first match is the most specific; within
 * one prefix length, by family and network address (for binary search) */
int cg_snap_cmp_addr(const void *a, const void *b)
{
    const cg_cidr *x = &((const cg_snap_addr *)a)->cidr, *y = &((const cg_snap_addr *)b)->cidr;
    if (x->prefix != y->prefix)
        return x->prefix > y->prefix ? -1 : 1;
    if (x->family != y->family)
        return x->family < y->family ? -1 : 1;
    return memcmp(x->addr, y->addr, sizeof x->addr);
}

int cg_snap_cmp_digest(const void *a, const void *b)
{
    const cg_snap_digest *x = a, *y = b;
    if (x->pidx != y->pidx)
        return x->pidx < y->pidx ? -1 : 1;
    return strcmp(x->realm, y->realm);
}

int cg_snap_cmp_pubkey(const void *a, const void *b)
{
    return strcmp(((const cg_pubkey *)a)->key_id, ((const cg_pubkey *)b)->key_id);
}

int cg_snap_cmp_peer(const void *a, const void *b)
{
    return strcasecmp(((const cg_peer *)a)->domain, ((const cg_peer *)b)->domain);
}

static int cmp_pid(const void *a, const void *b)
{
    int64_t x = ((const cg_principal *)a)->id, y = ((const cg_principal *)b)->id;
    return (x > y) - (x < y);
}

bool cg_snap_pidx_of(const cg_snapshot *s, int64_t id, uint32_t *out)
{
    cg_principal key = { .id = id };
    const cg_principal *p = cg_snap_find(&key, s->principals, s->nprincipals, sizeof key, cmp_pid);
    if (p)
        *out = (uint32_t)(p - s->principals);
    return p != NULL;
}

/* ---- references and publication ------------------------------------------------- */

cg_snapshot *cg_snapshot_ref(cg_snapshot *s)
{
    if (s)
        atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    return s;
}

void cg_snapshot_release(cg_snapshot *s)
{
    if (s && atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1)
        cg_snap_free(s);
}

/* The current snapshot is guarded by pub_lock; pub_gen counts publications.
 * Each thread caches a reference to the snapshot it saw last together with
 * pub_gen at that time: while pub_gen is unchanged, acquire only increments
 * the cached snapshot's refcount (no lock). The cached reference is the
 * thread's own, so a concurrent publish can never free what a reader holds;
 * it is dropped when the thread sees a newer generation or exits. */
static pthread_mutex_t pub_lock = PTHREAD_MUTEX_INITIALIZER;
static cg_snapshot *current;
static atomic_uint_fast64_t pub_gen;

static _Thread_local cg_snapshot *tl_snap;
static _Thread_local uint64_t tl_gen;
static pthread_key_t tl_key;
static pthread_once_t tl_once = PTHREAD_ONCE_INIT;

static void tl_exit(void *p)
{
    cg_snapshot_release(p);
}

static void tl_init(void)
{
    pthread_key_create(&tl_key, tl_exit);
}

void cg_snapshot_publish(cg_snapshot *s)
{
    pthread_mutex_lock(&pub_lock);
    cg_snapshot *old = current;
    current = s;
    atomic_fetch_add_explicit(&pub_gen, 1, memory_order_release);
    pthread_mutex_unlock(&pub_lock);
    cg_snapshot_release(old);
}

cg_snapshot *cg_snapshot_acquire(void)
{
    uint64_t g = atomic_load_explicit(&pub_gen, memory_order_acquire);
    if (tl_gen == g && g != 0)
        return cg_snapshot_ref(tl_snap);
    pthread_once(&tl_once, tl_init);
    pthread_mutex_lock(&pub_lock);
    cg_snapshot *s = cg_snapshot_ref(current); /* the cache's reference */
    g = atomic_load_explicit(&pub_gen, memory_order_relaxed);
    pthread_mutex_unlock(&pub_lock);
    cg_snapshot *old = tl_snap;
    tl_snap = s;
    tl_gen = g;
    pthread_setspecific(tl_key, s);
    cg_snapshot_release(old);
    return cg_snapshot_ref(s);
}

uint64_t cg_snapshot_generation(const cg_snapshot *s)
{
    return s ? s->generation : 0;
}

int cg_snapshot_reload_if_changed(struct cg_pstore *ro_store, bool *published,
                                  const char **error_r)
{
    return cg_snapshot_reload_if_changed_cb(ro_store, NULL, NULL, published, error_r);
}

int cg_snapshot_reload_if_changed_cb(struct cg_pstore *ro_store,
                                     void (*building)(void *arg, bool on), void *arg,
                                     bool *published, const char **error_r)
{
    static _Thread_local bool retry; /* a build that failed on a busy database */
    const char *dummy;
    if (!error_r)
        error_r = &dummy;
    *published = false;
    bool changed;
    int ch = cg_pstore_poll_changed(ro_store, &changed, NULL);
    if (ch < 0) {
        *error_r = "cannot poll the policy database for changes";
        return ch;
    }
    if (!changed && !retry)
        return 0;
    cg_snapshot *s = NULL;
    if (building)
        building(arg, true);
    int rc = cg_snapshot_build(ro_store, &s, error_r);
    if (building)
        building(arg, false);
    retry = rc == CG_E_BUSY || rc == CG_E_DB;
    if (rc < 0)
        return rc;
    cg_snapshot_publish(s);
    *published = true;
    return 0;
}

/* ---- lookups ---------------------------------------------------------------------- */

size_t cg_snapshot_nprincipals(const cg_snapshot *s)
{
    return s->nprincipals;
}

const cg_principal *cg_snapshot_principal(const cg_snapshot *s, uint32_t idx)
{
    return idx < s->nprincipals ? &s->principals[idx] : NULL;
}

static const cg_principal *by_index(const cg_snapshot *s, const uint32_t *index,
                                    bool mailbox, const char *key)
{
    if (!s || !key)
        return NULL;
    size_t lo = 0, hi = s->nprincipals;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const cg_principal *p = &s->principals[index[mid]];
        int c = strcmp(key, mailbox ? p->mailbox : p->name);
        if (c == 0 && mailbox) {
            /* the store keeps logins unique; should a hand-edited database
             * hold one twice, it identifies no one rather than either */
            if ((mid > 0 && strcmp(key, s->principals[index[mid - 1]].mailbox) == 0) ||
                (mid + 1 < s->nprincipals &&
                 strcmp(key, s->principals[index[mid + 1]].mailbox) == 0))
                return NULL;
        }
        if (c == 0)
            return p;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

const cg_principal *cg_snapshot_principal_by_name(const cg_snapshot *s, const char *name)
{
    return s ? by_index(s, s->by_name, false, name) : NULL;
}

const cg_principal *cg_snapshot_principal_by_id(const cg_snapshot *s, int64_t id)
{
    uint32_t idx;
    return s && id > 0 && cg_snap_pidx_of(s, id, &idx) ? &s->principals[idx] : NULL;
}

const cg_principal *cg_snapshot_principal_by_mailbox(const cg_snapshot *s, const char *login)
{
    return s ? by_index(s, s->by_mailbox, true, login) : NULL;
}

size_t cg_snapshot_ngroups(const cg_snapshot *s)
{
    return s->ngroups;
}

const char *cg_snapshot_group_name(const cg_snapshot *s, uint32_t gidx)
{
    return gidx < s->ngroups ? s->group_names[gidx] : NULL;
}

const struct cg_acl *cg_snapshot_acl(const cg_snapshot *s)
{
    return s ? s->acl : NULL;
}

const cg_pubkey *cg_snapshot_pubkey(const cg_snapshot *s, const char *key_id)
{
    if (!s || !key_id)
        return NULL;
    cg_pubkey key = { .key_id = key_id };
    return cg_snap_find(&key, s->pubkeys, s->npubkeys, sizeof key, cg_snap_cmp_pubkey);
}

size_t cg_snapshot_nrequire_signed(const cg_snapshot *s)
{
    return s ? s->nrequire_signed : 0;
}

const char *cg_snapshot_require_signed(const cg_snapshot *s, size_t i)
{
    return s && i < s->nrequire_signed ? s->require_signed[i] : NULL;
}

const cg_peer *cg_snapshot_peer(const cg_snapshot *s, const char *domain)
{
    if (!s || !domain)
        return NULL;
    cg_peer key = { .domain = domain };
    return cg_snap_find(&key, s->peers, s->npeers, sizeof key, cg_snap_cmp_peer);
}
