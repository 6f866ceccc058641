/* audit_import.c — copies the policy database's policy_log rows (written
 * by cpmgatectl in the same transaction as each change) into the audit
 * chain, so policy changes are as provable as traffic (SPEC section 5). */
#include <stdio.h>

#include "store/audit.h"
#include "common/cg_error.h"
#include "store/policy_store.h"

typedef struct import_ctx {
    int rc;
    unsigned copied;
} import_ctx;

static int one_row(void *vctx, int64_t seq, const char *time, const char *actor,
                   const char *operation, const char *detail)
{
    import_ctx *c = vctx;
    char txid[40], reason[96];
    snprintf(txid, sizeof txid, "policy.%lld", (long long)seq);
    snprintf(reason, sizeof reason, "policy_log seq %lld at %s", (long long)seq,
             time ? time : "?");
    cg_audit_rec r;
    cg_audit_rec_init(&r);
    r.txid = txid;
    r.principal = actor;
    r.service = "policy";
    r.operation = operation;
    r.resource = detail;
    r.result = "OK";
    r.reason = reason;
    int rc = cg_audit__submit_policy(&r, seq);
    if (rc < 0 || cg_audit__policy_seq() < seq) {
        /* Not queued: stop here; the next call resumes at this row. */
        c->rc = CG_E_AUDIT;
        return CG_E_AUDIT;
    }
    c->copied++;
    return 0;
}

int cg_audit_import_policy_log(struct cg_pstore *ps, const char **error_r)
{
    import_ctx c = { 0, 0 };
    const char *err = NULL;
    int rc = cg_pstore_log_since(ps, cg_audit__policy_seq(), one_row, &c, &err);
    if (c.rc < 0) {
        *error_r = "the audit log cannot take policy records now; will retry";
        return c.rc;
    }
    if (rc < 0) {
        *error_r = err ? err : "cannot read policy_log";
        return rc;
    }
    return 0;
}
