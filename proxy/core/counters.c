/* proxy/core/counters.c — the process-wide counters of counters.h. */
#include "proxy/core/counters.h"

#include <pthread.h>
#include <string.h>

#include "common/cg_util.h"

atomic_uint_fast64_t cg_metrics[CG_M_COUNT];

const char *const cg_ops_services[CG_OPS_SERVICES] = { "imap", "http", "tls", "other" };
const char *const cg_ops_decisions[CG_OPS_DECISIONS] = { "allow", "deny", "error" };
static atomic_uint_fast64_t g_ops[CG_OPS_SERVICES][CG_OPS_DECISIONS];

void cg_metrics_operation(const char *service, const char *decision)
{
    size_t s = CG_OPS_SERVICES - 1, d = CG_OPS_DECISIONS - 1;
    for (size_t i = 0; i < CG_OPS_DECISIONS - 1; i++)
        if (decision && strcmp(decision, cg_ops_decisions[i]) == 0)
            d = i;
    for (size_t i = 0; i < CG_OPS_SERVICES - 1; i++)
        if (service && strcmp(service, cg_ops_services[i]) == 0)
            s = i;
    atomic_fetch_add_explicit(&g_ops[s][d], 1, memory_order_relaxed);
}

uint64_t cg_metric_get(enum cg_metric m)
{
    return atomic_load_explicit(&cg_metrics[m], memory_order_relaxed);
}

uint64_t cg_metrics_ops(size_t service, size_t decision)
{
    return atomic_load_explicit(&g_ops[service][decision], memory_order_relaxed);
}

/* ---- per peer ------------------------------------------------------------- */

typedef struct peer_slot {
    atomic_bool ready;    /* domain written and final */
    char domain[254];
    atomic_uint_fast64_t sessions, refused;
} peer_slot;

static peer_slot g_peers[CG_PEER_SLOTS];
static pthread_mutex_t g_peers_lock = PTHREAD_MUTEX_INITIALIZER;

static peer_slot *peer_find(const char *domain)
{
    for (size_t i = 0; i < CG_PEER_SLOTS - 1; i++) {
        peer_slot *p = &g_peers[i];
        if (!atomic_load_explicit(&p->ready, memory_order_acquire))
            return NULL; /* slots fill in order: the rest are free */
        if (strcmp(p->domain, domain) == 0)
            return p;
    }
    return NULL;
}

void cg_metrics_peer(const char *domain, bool refused)
{
    if (!domain || strlen(domain) >= sizeof g_peers[0].domain)
        return;
    peer_slot *p = peer_find(domain);
    if (!p) {
        pthread_mutex_lock(&g_peers_lock);
        p = peer_find(domain);
        for (size_t i = 0; !p && i < CG_PEER_SLOTS; i++) {
            if (i == CG_PEER_SLOTS - 1) {
                p = &g_peers[i]; /* "other" */
            } else if (!atomic_load_explicit(&g_peers[i].ready, memory_order_relaxed)) {
                p = &g_peers[i];
                strcpy(p->domain, domain);
                atomic_store_explicit(&p->ready, true, memory_order_release);
            }
        }
        pthread_mutex_unlock(&g_peers_lock);
    }
    atomic_fetch_add_explicit(refused ? &p->refused : &p->sessions, 1, memory_order_relaxed);
}

bool cg_metrics_peer_get(size_t i, const char **domain, uint64_t *sessions, uint64_t *refused)
{
    if (i >= CG_PEER_SLOTS)
        return false;
    peer_slot *p = &g_peers[i];
    *sessions = atomic_load_explicit(&p->sessions, memory_order_relaxed);
    *refused = atomic_load_explicit(&p->refused, memory_order_relaxed);
    if (i == CG_PEER_SLOTS - 1) {
        *domain = "other";
        return *sessions || *refused;
    }
    if (!atomic_load_explicit(&p->ready, memory_order_acquire))
        return false;
    *domain = p->domain;
    return true;
}

uint64_t cg_policy_age_seconds(void)
{
    uint64_t at = cg_metric_get(CG_M_POLICY_CONFIRMED_MS);
    uint64_t now = (uint64_t)(cg_time_now_usec() / 1000);
    return at && now > at ? (now - at) / 1000 : 0;
}
