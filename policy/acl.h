/* acl.h — white/black-list decisions (SPEC section 4): compiled rules,
 * deny wins, no match is deny, every decision names its rule.
 * cg_acl_decide is pure: no I/O, no allocation, no locks. */
#ifndef CG_ACL_H
#define CG_ACL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "policy/snapshot.h"

enum cg_right {
    CG_RIGHT_LIST = 1,
    CG_RIGHT_READ = 2,
    CG_RIGHT_WRITE = 4,
    CG_RIGHT_CREATE = 8,
    CG_RIGHT_DELETE = 16,
    CG_RIGHT_ALL = 31,
};

enum cg_service { CG_SVC_IMAP = 1, CG_SVC_HTTP = 2 };

typedef struct cg_acl cg_acl;

typedef struct cg_decision {
    bool allow;
    int64_t rule_id; /* deciding rule, 0 when no rule matched */
} cg_decision;

/* "list,read" / "all" <-> bitmask; returns 0 or CG_E_INVAL. */
int cg_rights_parse(const char *text, unsigned *out, const char **error_r)
    __attribute__((warn_unused_result));
void cg_rights_format(unsigned rights, char out[48]);
const char *cg_right_name(unsigned right); /* one right */
int cg_service_parse(const char *text, int *out)
    __attribute__((warn_unused_result)); /* imap|http|* (0 = *) */

/* Validates a pattern as it would be compiled (unbalanced "${", unknown
 * variable): 0 or CG_E_INVAL with a sentence. */
int cg_acl_pattern_check(const char *pattern, const char **error_r)
    __attribute__((warn_unused_result));

/* Building, done by the snapshot builder. Subjects are resolved against
 * the principals and groups of the snapshot being built; a subject that
 * names no local principal but reads "user@DOMAIN" or "*@DOMAIN" is a
 * remote user or domain (SPEC 7). */
typedef struct cg_acl_builder cg_acl_builder;
cg_acl_builder *cg_acl_builder_new(void);
int cg_acl_builder_add(cg_acl_builder *b, int64_t id, bool deny,
                       const char *subject, int service, const char *pattern,
                       unsigned rights, const char **error_r)
    __attribute__((warn_unused_result));
/* principals[i].idx == i; group names by index. Consumes the builder. */
cg_acl *cg_acl_build(cg_acl_builder *b, const cg_principal *principals,
                     size_t nprincipals, const char *const *groups,
                     size_t ngroups, const char **error_r);
void cg_acl_free(cg_acl *acl);

/* The decision. resource is the decoded, normalised name (IMAP mailbox
 * with INBOX normalised, or HTTP path); delim the hierarchy delimiter
 * ('/' for HTTP, the backend's for IMAP). */
cg_decision cg_acl_decide(const cg_acl *acl, const cg_principal *p,
                          int service, unsigned right, const char *resource,
                          size_t len, char delim);

/* Subtree operations (SPEC section 4): true when no deny rule and no
 * narrower rule that applies to p could match a name below prefix. */
bool cg_acl_subtree_clear(const cg_acl *acl, const cg_principal *p,
                          int service, unsigned right, const char *prefix,
                          size_t len, char delim, int64_t *rule_id);

/* The same for a server principal p acting for a remote user (SPEC 7):
 * originator is "user@domain" in its normal spelling (common/cg_remote.h),
 * NULL for p itself. The rules that apply: those of p, of p's groups,
 * of "user@domain" and of "*@domain"; of everyone ("*") only the denies.
 * Deny wins over allow whichever subject either names; ${user} expands
 * to the originator. */
cg_decision cg_acl_decide_as(const cg_acl *acl, const cg_principal *p,
                             const char *originator, int service, unsigned right,
                             const char *resource, size_t len, char delim);
bool cg_acl_subtree_clear_as(const cg_acl *acl, const cg_principal *p,
                             const char *originator, int service, unsigned right,
                             const char *prefix, size_t len, char delim,
                             int64_t *rule_id);

/* One pattern against one name, outside any rule set (signed-only paths):
 * 0 with *matched telling whether it matches, or CG_E_INVAL for a pattern
 * that does not compile (*matched false). user: the ${user} expansion
 * (NULL: ${user} never matches). No heap. */
int cg_acl_glob(const char *pattern, const char *user, const char *name, size_t len, char delim,
                bool *matched) __attribute__((warn_unused_result));

/* For explanations: the rule's text, or NULL when id is unknown. */
typedef struct cg_acl_rule_info {
    int64_t id;
    bool deny;
    const char *subject;
    int service;
    const char *pattern;
    unsigned rights;
} cg_acl_rule_info;
const cg_acl_rule_info *cg_acl_rule(const cg_acl *acl, int64_t id);

#endif
