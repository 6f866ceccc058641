/* common/cg_addrtab.h — counters per client address, shared by every
 * worker: the per-address connection limit, the failed-login limit and the
 * audit log's refusal limiter (which keeps a held-back record per address
 * in the entry's extra bytes). The key is the
 * address prefix one client controls: an IPv4 address (v4-mapped IPv6
 * counts as IPv4), or an IPv6 /64, so a client cannot multiply its
 * allowance with the addresses of its own subnet. Every key has its own
 * entry: two addresses never share a counter, and a collision in the hash
 * never resets one. The table is bounded; a new address that finds it full
 * is refused (CG_E_LIMIT), never given someone else's slot. */
#ifndef CG_ADDRTAB_H
#define CG_ADDRTAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

typedef struct cg_addrtab cg_addrtab;

typedef struct cg_addrkey {
    uint8_t b[9]; /* family (4 or 6), then 4 or 8 address bytes */
} cg_addrkey;

/* The key of a socket address; CG_E_INVAL for other families. */
int cg_addrkey_of(const struct sockaddr *sa, cg_addrkey *k);

/* A table of at most max_entries live keys. NULL when out of memory. */
cg_addrtab *cg_addrtab_new(size_t max_entries);
/* The same, each entry with `extra` bytes of the caller's (zeroed when its
 * key is made, aligned for any type). */
cg_addrtab *cg_addrtab_new_extra(size_t max_entries, size_t extra);
void cg_addrtab_free(cg_addrtab *t);

/* A counter that is held while something is open (connections): take
 * refuses with CG_E_LIMIT once the key holds max (0: no limit), put gives
 * one back and forgets the key at zero. */
int cg_addrtab_take(cg_addrtab *t, const cg_addrkey *k, unsigned max);
void cg_addrtab_put(cg_addrtab *t, const cg_addrkey *k);

/* A counter per time window (failed logins per minute): the count of the
 * key in window `now`, after adding `add`. A key whose window has passed
 * starts again at zero; keys of past windows are reclaimed as the table
 * meets them. CG_E_LIMIT when a new key finds the table full. */
int cg_addrtab_count(cg_addrtab *t, const cg_addrkey *k, uint64_t now, unsigned add,
                     unsigned *count);

/* An entry as a visitor sees it, under the table's lock. */
typedef struct cg_addrtab_ent {
    uint64_t window;  /* the caller's time; `now` when the key was made */
    unsigned count;   /* 0 when the key was made */
    void *extra;      /* the caller's bytes (NULL in a table without) */
} cg_addrtab_ent;

/* Sees (and may change) one entry; made: the key was made for this call.
 * Returns false to forget the entry. Runs under the table's lock: short,
 * and never calls the table. */
typedef bool (*cg_addrtab_fn)(cg_addrtab_ent *e, bool made, void *arg);

/* Calls fn once with the entry of k, made (window now) when absent. No
 * window rule: the caller keeps its own times in window. 0, or CG_E_LIMIT
 * when a new key finds the table full (fn is not called then). */
int cg_addrtab_visit(cg_addrtab *t, const cg_addrkey *k, uint64_t now, cg_addrtab_fn fn,
                     void *arg) __attribute__((warn_unused_result));
/* Calls fn on every entry (made false), in no order. */
void cg_addrtab_each(cg_addrtab *t, cg_addrtab_fn fn, void *arg);

/* Live keys (for tests). */
size_t cg_addrtab_size(cg_addrtab *t);

#endif
