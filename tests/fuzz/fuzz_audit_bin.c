/* fuzz_audit_bin.c — the compact record form is read from the audit
 * database, which an attacker with the file may have rewritten
 * (cpmgatectl audit verify/show/export). Invariants: decoding never
 * overruns; a record that decodes has exactly one encoding (it encodes
 * back to the same bytes) and its canon fits CG_AUDIT_CANON_MAX; walking
 * block entries never overruns and ends. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/cg_util.h"
#include "store/audit_bin.h"
#include "store/audit_canon.h"

static cg_audit_bin_rec d;
static uint8_t again[CG_AUDIT_BIN_MAX];
static char canon[CG_AUDIT_CANON_MAX];

static void one(const uint8_t *rec, size_t len)
{
    if (cg_audit_bin_decode(rec, len, &d) != 0)
        return;
    int n = cg_audit_bin_encode(again, sizeof again, d.seq, d.usec, &d.rec);
    if (n < 0 || (size_t)n != len || memcmp(again, rec, len) != 0)
        abort();
    char t[CG_TIME_LEN];
    cg_time_rfc3339(d.usec, t);
    if (cg_audit_canon(canon, sizeof canon, d.seq, t, &d.rec) < 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    one(data, size);
    cg_audit_block_cur c = { data, data + size };
    const uint8_t *rec, *h;
    size_t len;
    int rc;
    while ((rc = cg_audit_block_next(&c, &rec, &len, &h)) == 1) {
        if (rec < data || rec + len + CG_AUDIT_HASH_LEN > data + size)
            abort();
        one(rec, len);
    }
    return 0;
}
