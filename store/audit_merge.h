/* store/audit_merge.h — the order in which `cpmgatectl audit export
 * --merge` interleaves the records of several audit databases (one per
 * node): by time, then by node id, then by seq, so the output is the same
 * on every run and one request's trail reads in order across nodes. Pure:
 * the reading is the caller's. */
#ifndef CG_AUDIT_MERGE_H
#define CG_AUDIT_MERGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The head of one source: its next record's sort key. */
typedef struct cg_audit_mkey {
    bool live;        /* false: the source is exhausted */
    const char *time; /* the canon's time (RFC 3339, UTC, microseconds) */
    const char *node; /* NULL: a record without a node (sorts first) */
    uint64_t seq;
} cg_audit_mkey;

/* <0, 0, >0 as a comes before, ties with, or comes after b (both live). */
int cg_audit_merge_cmp(const cg_audit_mkey *a, const cg_audit_mkey *b);

/* The index of the live head that comes first (the lowest index among
 * equal ones), or -1 when every source is exhausted. */
int cg_audit_merge_pick(const cg_audit_mkey *heads, size_t n);

#endif
