/* fuzz_audit_canon.c — the audit canon parser reads what an attacker may
 * have written into the audit database (cpmgatectl audit verify/show), and
 * the encoder takes strings from the wire. Invariants: parsing never
 * overruns; whatever parses re-encodes within bounds, and a canon that
 * re-encodes to itself parses to the same fields again; any bytes put in a
 * string field encode to valid canon that parses back. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "store/audit.h"
#include "store/audit_canon.h"

static cg_audit_parsed p1, p2;
static char out[CG_AUDIT_CANON_MAX], again[CG_AUDIT_CANON_MAX];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (cg_audit_canon_parse((const char *)data, size, &p1) == 0) {
        int n = cg_audit_canon(out, sizeof out, p1.seq, p1.time, &p1.rec);
        if (n >= 0 && (size_t)n == size && memcmp(out, data, size) == 0) {
            if (cg_audit_canon_parse(out, (size_t)n, &p2) != 0)
                abort();
            int m = cg_audit_canon(again, sizeof again, p2.seq, p2.time, &p2.rec);
            if (m != n || memcmp(again, out, (size_t)n) != 0)
                abort();
        }
    }
    /* the input as string fields, within the writer's slot caps */
    char res[1024], why[512];
    size_t k = size < sizeof res - 1 ? size : sizeof res - 1;
    memcpy(res, data, k);
    res[k] = '\0';
    k = size < sizeof why - 1 ? size : sizeof why - 1;
    memcpy(why, data, k);
    why[k] = '\0';
    cg_audit_rec r;
    cg_audit_rec_init(&r);
    r.resource = res;
    r.reason = why;
    int n = cg_audit_canon(out, sizeof out, 1, "2026-12-02T10:00:00.000000Z", &r);
    if (n < 0 || cg_audit_canon_parse(out, (size_t)n, &p1) != 0)
        abort();
    int m = cg_audit_canon(again, sizeof again, p1.seq, p1.time, &p1.rec);
    if (m != n || memcmp(again, out, (size_t)n) != 0)
        abort(); /* encoding is idempotent once sanitized */
    return 0;
}
