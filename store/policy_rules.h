/* policy_rules.h — ACL rule edits in the policy store (for cpmgatectl).
 * Patterns are validated by the caller (policy/acl.h), which knows their
 * syntax; the store checks that the subject exists. */
#ifndef CG_POLICY_RULES_H
#define CG_POLICY_RULES_H

#include <stdbool.h>
#include <stdint.h>

#include "store/policy_store.h"

typedef struct cg_pstore_rule {
    int64_t id;
    bool deny;
    const char *subject, *service, *pattern, *comment, *created;
    unsigned rights;
} cg_pstore_rule;

/* subject: an existing principal, "@group" of an existing group, "*",
 * or a remote user "user@DOMAIN" / "*@DOMAIN" (SPEC 7; stored with the
 * domain lowercased; the name of a local principal stays that principal);
 * service: imap | http | *. One transaction with its policy_log row. */
int cg_pstore_rule_add(cg_pstore *s, bool deny, const char *subject, const char *service,
                       const char *pattern, unsigned rights, const char *comment,
                       int64_t *id_out, const char **error_r)
    __attribute__((warn_unused_result));
int cg_pstore_rule_remove(cg_pstore *s, int64_t id, const char **error_r)
    __attribute__((warn_unused_result));
typedef int (*cg_pstore_rule_cb)(void *ctx, const cg_pstore_rule *r);
/* Filters may be NULL. In id order. */
int cg_pstore_rule_list(cg_pstore *s, const char *subject, const char *service,
                        cg_pstore_rule_cb cb, void *ctx, const char **error_r)
    __attribute__((warn_unused_result));

#endif
