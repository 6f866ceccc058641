/* common/cg_addrtab.c — counters per client address prefix (cg_addrtab.h):
 * chained buckets under one lock, one entry per key, each with the
 * caller's extra bytes when the table has them. */
#include "common/cg_addrtab.h"

#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/cg_error.h"

#define BUCKETS 4096

typedef struct entry {
    struct entry *next;
    cg_addrkey key;
    cg_addrtab_ent pub; /* window, count, extra: what a visitor sees */
    max_align_t extra[]; /* the caller's bytes (cg_addrtab_new_extra) */
} entry;

struct cg_addrtab {
    pthread_mutex_t mu;
    size_t max, n;
    size_t extra;        /* bytes of the caller's per entry */
    entry *b[BUCKETS];
};

int cg_addrkey_of(const struct sockaddr *sa, cg_addrkey *k)
{
    memset(k, 0, sizeof *k);
    if (sa->sa_family == AF_INET) {
        k->b[0] = 4;
        memcpy(k->b + 1, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
        return 0;
    }
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a)) {
            k->b[0] = 4;
            memcpy(k->b + 1, a->s6_addr + 12, 4);
        } else {
            k->b[0] = 6;
            memcpy(k->b + 1, a->s6_addr, 8); /* the /64 */
        }
        return 0;
    }
    return CG_E_INVAL;
}

static uint32_t bucket_of(const cg_addrkey *k)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < sizeof k->b; i++)
        h = (h ^ k->b[i]) * 16777619u;
    return h % BUCKETS;
}

cg_addrtab *cg_addrtab_new_extra(size_t max_entries, size_t extra)
{
    cg_addrtab *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    pthread_mutex_init(&t->mu, NULL);
    t->max = max_entries;
    t->extra = extra;
    return t;
}

cg_addrtab *cg_addrtab_new(size_t max_entries)
{
    return cg_addrtab_new_extra(max_entries, 0);
}

void cg_addrtab_free(cg_addrtab *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < BUCKETS; i++) {
        for (entry *e = t->b[i], *next; e; e = next) {
            next = e->next;
            free(e);
        }
    }
    pthread_mutex_destroy(&t->mu);
    free(t);
}

/* Under mu: drops every entry of a past window (rare: only when a new key
 * finds the table full). */
static void sweep(cg_addrtab *t, uint64_t now)
{
    for (size_t i = 0; i < BUCKETS; i++) {
        for (entry **pp = &t->b[i]; *pp;) {
            entry *e = *pp;
            if (e->pub.window != now) {
                *pp = e->next;
                free(e);
                t->n--;
            } else {
                pp = &e->next;
            }
        }
    }
}

/* Under mu: the entry of k, made when absent (NULL: table full or no
 * memory; *made says which, when asked). In a windowed table, entries of
 * past windows met on the way are reclaimed. */
static entry *find(cg_addrtab *t, const cg_addrkey *k, bool windowed, uint64_t now, bool *made)
{
    if (made)
        *made = false;
    entry **pp = &t->b[bucket_of(k)];
    while (*pp) {
        entry *e = *pp;
        if (memcmp(&e->key, k, sizeof *k) == 0)
            return e;
        if (windowed && e->pub.window != now) {
            *pp = e->next;
            free(e);
            t->n--;
            continue;
        }
        pp = &e->next;
    }
    if (t->n >= t->max && windowed)
        sweep(t, now);
    if (t->n >= t->max)
        return NULL;
    entry *e = calloc(1, sizeof *e + t->extra);
    if (!e)
        return NULL;
    e->key = *k;
    e->pub.window = now;
    e->pub.extra = t->extra ? e->extra : NULL;
    *pp = e;
    t->n++;
    if (made)
        *made = true;
    return e;
}

static void forget(cg_addrtab *t, const cg_addrkey *k)
{
    for (entry **pp = &t->b[bucket_of(k)]; *pp; pp = &(*pp)->next) {
        if (memcmp(&(*pp)->key, k, sizeof *k) == 0) {
            entry *e = *pp;
            *pp = e->next;
            free(e);
            t->n--;
            return;
        }
    }
}

int cg_addrtab_take(cg_addrtab *t, const cg_addrkey *k, unsigned max)
{
    int rc = 0;
    pthread_mutex_lock(&t->mu);
    entry *e = find(t, k, false, 0, NULL);
    if (!e)
        rc = CG_E_LIMIT;
    else if (max && e->pub.count >= max)
        rc = CG_E_LIMIT;
    else
        e->pub.count++;
    if (e && e->pub.count == 0) /* made just now and refused: not kept */
        forget(t, k);
    pthread_mutex_unlock(&t->mu);
    return rc;
}

void cg_addrtab_put(cg_addrtab *t, const cg_addrkey *k)
{
    pthread_mutex_lock(&t->mu);
    for (entry *e = t->b[bucket_of(k)]; e; e = e->next) {
        if (memcmp(&e->key, k, sizeof *k) == 0) {
            if (e->pub.count > 0 && --e->pub.count == 0)
                forget(t, k);
            break;
        }
    }
    pthread_mutex_unlock(&t->mu);
}

int cg_addrtab_count(cg_addrtab *t, const cg_addrkey *k, uint64_t now, unsigned add,
                     unsigned *count)
{
    int rc = 0;
    pthread_mutex_lock(&t->mu);
    entry *e = find(t, k, true, now, NULL);
    if (!e) {
        rc = CG_E_LIMIT;
    } else {
        if (e->pub.window != now) {
            e->pub.window = now;
            e->pub.count = 0;
        }
        e->pub.count += add;
        *count = e->pub.count;
    }
    pthread_mutex_unlock(&t->mu);
    return rc;
}

int cg_addrtab_visit(cg_addrtab *t, const cg_addrkey *k, uint64_t now, cg_addrtab_fn fn,
                     void *arg)
{
    bool made;
    pthread_mutex_lock(&t->mu);
    entry *e = find(t, k, false, now, &made);
    if (e && !fn(&e->pub, made, arg))
        forget(t, k);
    pthread_mutex_unlock(&t->mu);
    return e ? 0 : CG_E_LIMIT;
}

void cg_addrtab_each(cg_addrtab *t, cg_addrtab_fn fn, void *arg)
{
    pthread_mutex_lock(&t->mu);
    for (size_t i = 0; i < BUCKETS; i++) {
        for (entry **pp = &t->b[i]; *pp;) {
            entry *e = *pp;
            if (fn(&e->pub, false, arg)) {
                pp = &e->next;
            } else {
                *pp = e->next;
                free(e);
                t->n--;
            }
        }
    }
    pthread_mutex_unlock(&t->mu);
}

size_t cg_addrtab_size(cg_addrtab *t)
{
    pthread_mutex_lock(&t->mu);
    size_t n = t->n;
    pthread_mutex_unlock(&t->mu);
    return n;
}
