/* tests/support/session_policy.c — the policy every scripted session runs
 * under: principals, groups, a Digest credential and the IMAP and HTTP
 * rules that the session fuzzers' checkers model. */
#include "tests/support/session_policy.h"

#include <stdio.h>
#include <stdlib.h>

#include "policy/acl.h"
#include "policy/digest.h"
#include "policy/snapshot.h"
#include "store/policy_keys.h"
#include "store/policy_rules.h"
#include "store/policy_store.h"

void sd_must(int rc, const char *what, const char *why)
{
    if (rc < 0) {
        fprintf(stderr, "session fuzzer setup: %s: %s\n", what, why ? why : "failed");
        abort();
    }
}

static void rule(cg_pstore *ps, bool deny, const char *subject, const char *service,
                 const char *pattern, const char *rights)
{
    unsigned r = 0;
    const char *why = NULL;
    sd_must(cg_rights_parse(rights, &r, &why), rights, why);
    sd_must(cg_pstore_rule_add(ps, deny, subject, service, pattern, r, NULL, NULL, &why), pattern,
         why);
}

void sd_make_policy(const char *path)
{
    cg_pstore *ps = NULL;
    const char *why = NULL;
    sd_must(cg_pstore_open(path, CG_PSTORE_CREATE, &ps, &why), path, why);
    sd_must(cg_pstore_principal_add(ps, "alice", "user", NULL, &why), "alice", why);
    sd_must(cg_pstore_principal_add(ps, "bob", "user", "bob@example.org", &why), "bob", why);
    sd_must(cg_pstore_principal_add(ps, "carol", "user", NULL, &why), "carol", why);
    sd_must(cg_pstore_principal_set_enabled(ps, "carol", false, &why), "carol", why);
    sd_must(cg_pstore_group_add(ps, "staff", &why), "staff", why);
    sd_must(cg_pstore_group_member(ps, "staff", "alice", true, &why), "staff", why);
    sd_must(cg_pstore_group_member(ps, "staff", "bob", true, &why), "staff", why);
    char md5[65], sha[65];
    sd_must(cg_digest_ha1(CG_DIGEST_MD5, "alice", "cpm", "alicepw", md5), "ha1", NULL);
    sd_must(cg_digest_ha1(CG_DIGEST_SHA256, "alice", "cpm", "alicepw", sha), "ha1", NULL);
    sd_must(cg_pstore_cred_add(ps, "alice", "digest", "cpm", NULL, 0, md5, sha, NULL, &why),
         "digest", why);

    /* IMAP */
    rule(ps, false, "alice", "imap", "*", "all");
    rule(ps, true, "alice", "imap", "Secret", "all");
    rule(ps, true, "alice", "imap", "Secret/*", "all");
    rule(ps, true, "alice", "imap", "Archive", "write,create,delete");
    rule(ps, true, "alice", "imap", "Archive/*", "write,create,delete");
    rule(ps, false, "bob", "imap", "*", "list,read");
    rule(ps, false, "bob", "imap", "INBOX", "all");
    rule(ps, false, "bob", "imap", "INBOX/*", "all");
    rule(ps, true, "@staff", "imap", "Private", "all");
    rule(ps, true, "@staff", "imap", "Private/*", "all");
    /* HTTP */
    rule(ps, false, "alice", "http", "/content/alice/*", "all");
    rule(ps, true, "alice", "http", "/content/alice/private", "all");
    rule(ps, true, "alice", "http", "/content/alice/private/*", "all");
    rule(ps, false, "bob", "http", "/content/bob/*", "all");
    rule(ps, false, "bob", "http", "/content/alice/shared/*", "list,read");
    rule(ps, false, "*", "http", "/content/pub/*", "list,read");
    rule(ps, true, "*", "http", "/content/secret", "all");
    rule(ps, true, "*", "http", "/content/secret/*", "all");
    rule(ps, false, "@staff", "http", "/content/team/*", "all");
    rule(ps, true, "bob", "http", "/content/team/ro/*", "write,create,delete");
    sd_must(cg_pkeys_require_signed_add(ps, "/content/alice/signed/*", &why), "signed", why);
    cg_pstore_close(ps);

    sd_must(cg_pstore_open(path, CG_PSTORE_READONLY, &ps, &why), path, why);
    cg_snapshot *snap = NULL;
    sd_must(cg_snapshot_build(ps, &snap, &why), "snapshot", why);
    cg_snapshot_publish(snap);
    cg_pstore_close(ps);
}
