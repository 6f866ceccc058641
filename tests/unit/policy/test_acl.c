/* tests/unit/policy/test_acl.c — policy/acl.c: pattern matching (table), deny over allow
 * across principal, group and everyone rules, ${user}, INBOX, subtree
 * checks, rights/service parsing, and a randomised comparison of the
 * compiled engine with a naive reference evaluator written from the SPEC's
 * words (recursive, expanding ${user} into a string first). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <cmocka.h>

#include "policy/acl.h"
#include "common/cg_error.h"

#define CG_ARRAY_LEN_T(a) (sizeof(a) / sizeof((a)[0]))

/* ---- a tiny world: principals and groups built by hand ------------ */

static uint32_t g_alice[] = { 0 };        /* alice in staff */
static uint32_t g_bob[] = { 0, 1 };       /* bob in staff, ops */
static cg_principal people[] = {
    { .id = 1, .idx = 0, .name = "alice", .mailbox = "alice", .enabled = true, .groups = g_alice, .ngroups = 1 },
    { .id = 2, .idx = 1, .name = "bob", .mailbox = "bob.m", .enabled = true, .groups = g_bob, .ngroups = 2 },
    { .id = 3, .idx = 2, .name = "c*r%l", .mailbox = "c*r%l", .enabled = true, .groups = NULL, .ngroups = 0 },
    { .id = 4, .idx = 3, .name = "dave", .mailbox = "dave", .enabled = false, .groups = NULL, .ngroups = 0 },
};
static const char *const groups[] = { "staff", "ops" };

typedef struct spec_rule {
    int64_t id;
    bool deny;
    const char *subject;
    int service;
    const char *pattern;
    unsigned rights;
} spec_rule;

static cg_acl *build(const spec_rule *r, size_t n)
{
    cg_acl_builder *b = cg_acl_builder_new();
    assert_non_null(b);
    for (size_t i = 0; i < n; i++) {
        const char *err = NULL;
        int rc = cg_acl_builder_add(b, r[i].id, r[i].deny, r[i].subject, r[i].service,
                                    r[i].pattern, r[i].rights, &err);
        if (rc < 0)
            fail_msg("rule %lld '%s': %s", (long long)r[i].id, r[i].pattern, err);
    }
    const char *err = NULL;
    cg_acl *acl = cg_acl_build(b, people, CG_ARRAY_LEN_T(people), groups, 2, &err);
    assert_non_null(acl);
    return acl;
}

/* ---- pattern matching table ---------------------------------------- */

struct match_case {
    const char *pattern;
    const char *name;
    char delim;
    int service;
    bool want;
};

static const struct match_case matches[] = {
    /* literal */
    { "INBOX", "INBOX", '/', CG_SVC_IMAP, true },
    { "Work", "Work", '/', CG_SVC_IMAP, true },
    { "Work", "work", '/', CG_SVC_IMAP, false },          /* case-sensitive */
    { "Work", "Work/x", '/', CG_SVC_IMAP, false },
    /* INBOX in any case */
    { "inbox", "INBOX", '/', CG_SVC_IMAP, true },
    { "InBoX/*", "INBOX/a", '/', CG_SVC_IMAP, true },
    { "INBOX/*", "inbox/a", '/', CG_SVC_IMAP, true },     /* name not yet normalised */
    { "INBOX", "Inbox", '/', CG_SVC_IMAP, true },
    { "Inboxes", "INBOXES", '/', CG_SVC_IMAP, false },    /* not INBOX */
    { "INBOX.x", "inbox.x", '.', CG_SVC_IMAP, true },
    /* '*' at start, middle, end */
    { "*", "a", '/', CG_SVC_IMAP, true },
    { "*", "a/b/c", '/', CG_SVC_IMAP, true },
    { "*/x", "a/b/x", '/', CG_SVC_IMAP, true },
    { "a*c", "abbbc", '/', CG_SVC_IMAP, true },
    { "a*c", "a/b/c", '/', CG_SVC_IMAP, true },
    { "a*c", "abcd", '/', CG_SVC_IMAP, false },
    { "Work/*", "Work/", '/', CG_SVC_IMAP, true },
    { "Work/*", "Work", '/', CG_SVC_IMAP, false },
    /* '%' stops at the delimiter */
    { "%", "a", '/', CG_SVC_IMAP, true },
    { "%", "a/b", '/', CG_SVC_IMAP, false },
    { "Work/%", "Work/a", '/', CG_SVC_IMAP, true },
    { "Work/%", "Work/a/b", '/', CG_SVC_IMAP, false },
    { "%/b", "a/b", '/', CG_SVC_IMAP, true },
    { "%/b", "a/x/b", '/', CG_SVC_IMAP, false },
    { "a%c", "a.b.c", '/', CG_SVC_IMAP, true },           /* '.' is not this delimiter */
    { "a%c", "a.b.c", '.', CG_SVC_IMAP, false },          /* but is this one */
    /* adjacent wildcards */
    { "**", "x/y", '/', CG_SVC_IMAP, true },
    { "%%", "xy", '/', CG_SVC_IMAP, true },
    { "%%", "x/y", '/', CG_SVC_IMAP, false },
    { "%*", "x/y", '/', CG_SVC_IMAP, true },
    { "*%", "x/y", '/', CG_SVC_IMAP, true },
    { "a%*%b", "a/b", '/', CG_SVC_IMAP, true },
    /* empty names */
    { "*", "", '/', CG_SVC_IMAP, true },
    { "%", "", '/', CG_SVC_IMAP, true },
    { "a", "", '/', CG_SVC_IMAP, false },
    /* HTTP paths, '/' delimiter */
    { "/content/*", "/content/a/b", '/', CG_SVC_HTTP, true },
    { "/content/*", "/content", '/', CG_SVC_HTTP, false },
    { "/content/%", "/content/a", '/', CG_SVC_HTTP, true },
    { "/content/%", "/content/a/b", '/', CG_SVC_HTTP, false },
    { "/content/a b/*", "/content/a b/x", '/', CG_SVC_HTTP, true },
    { "/INBOX", "/inbox", '/', CG_SVC_HTTP, false },      /* INBOX is IMAP's only */
    /* UTF-8 names (bytes, case-sensitive) */
    { "Entw\xc3\xbcrfe/*", "Entw\xc3\xbcrfe/x", '/', CG_SVC_IMAP, true },
    { "Entw\xc3\xbcrfe", "Entw\xc3\x9crfe", '/', CG_SVC_IMAP, false },
    { "%\xe6\x97\xa5", "\xe6\x97\xa5\xe6\x97\xa5", '/', CG_SVC_IMAP, true },
    /* backtracking that a greedy matcher gets wrong */
    { "*a%b", "xa/ab", '/', CG_SVC_IMAP, true },
    { "%a*b", "xa/ab", '/', CG_SVC_IMAP, true },
    { "*/%/%", "a/b/c/d", '/', CG_SVC_IMAP, true },
    { "%/%/%", "a/b/c/d", '/', CG_SVC_IMAP, false },
};

static void test_pattern_table(void **state)
{
    int bad = 0;
    for (size_t i = 0; i < CG_ARRAY_LEN_T(matches); i++) {
        const struct match_case *c = &matches[i];
        spec_rule r = { 1, false, "alice", 0, c->pattern, CG_RIGHT_READ };
        cg_acl *acl = build(&r, 1);
        cg_decision d = cg_acl_decide(acl, &people[0], c->service, CG_RIGHT_READ, c->name,
                                      strlen(c->name), c->delim);
        if (d.allow != c->want) {
            print_error("case %zu: '%s' ~ '%s' (delim %c) gave %d\n", i, c->pattern, c->name,
                        c->delim, d.allow);
            bad++;
        }
        cg_acl_free(acl);
    }
    assert_int_equal(bad, 0);
}

/* ---- ${user} ------------------------------------------------------- */

static void test_user_variable(void **state)
{
    spec_rule rules[] = {
        { 1, false, "*", CG_SVC_HTTP, "/home/${user}/*", CG_RIGHT_ALL },
        { 2, false, "*", CG_SVC_IMAP, "Shared/${user}", CG_RIGHT_ALL },
    };
    cg_acl *acl = build(rules, 2);
    struct {
        int who, service;
        const char *res;
        bool want;
    } t[] = {
        { 0, CG_SVC_HTTP, "/home/alice/x", true },
        { 0, CG_SVC_HTTP, "/home/bob/x", false },
        { 1, CG_SVC_HTTP, "/home/bob/x", true },       /* http: the principal's name */
        { 1, CG_SVC_IMAP, "Shared/bob", false },       /* imap: its mailbox login */
        { 1, CG_SVC_IMAP, "Shared/bob.m", true },
        /* a name holding wildcard characters expands literally */
        { 2, CG_SVC_HTTP, "/home/c*r%l/x", true },
        { 2, CG_SVC_HTTP, "/home/cxr%l/x", false },
        { 2, CG_SVC_HTTP, "/home/c*ryl/x", false },
        { 2, CG_SVC_IMAP, "Shared/c*r%l", true },
        { 2, CG_SVC_IMAP, "Shared/cAArBl", false },
    };
    for (size_t i = 0; i < CG_ARRAY_LEN_T(t); i++) {
        cg_decision d = cg_acl_decide(acl, &people[t[i].who], t[i].service, CG_RIGHT_READ,
                                      t[i].res, strlen(t[i].res), '/');
        if (d.allow != t[i].want)
            fail_msg("case %zu: %s %s gave %d", i, people[t[i].who].name, t[i].res, d.allow);
    }
    cg_acl_free(acl);
}

/* ---- deny wins across principal, group and everyone ----------------- */

static void test_deny_wins(void **state)
{
    spec_rule rules[] = {
        { 10, false, "bob", CG_SVC_HTTP, "/d/*", CG_RIGHT_ALL },
        { 11, true, "@ops", CG_SVC_HTTP, "/d/secret/*", CG_RIGHT_READ },
        { 12, false, "@staff", 0, "/d/secret/*", CG_RIGHT_READ | CG_RIGHT_WRITE },
        { 13, true, "*", CG_SVC_HTTP, "/d/x/*", CG_RIGHT_WRITE },
        { 14, false, "alice", CG_SVC_HTTP, "/d/x/*", CG_RIGHT_ALL },
        { 15, false, "*", CG_SVC_IMAP, "*", CG_RIGHT_LIST },
        { 16, false, "dave", CG_SVC_HTTP, "*", CG_RIGHT_ALL },
    };
    cg_acl *acl = build(rules, CG_ARRAY_LEN_T(rules));
    struct {
        int who, service;
        unsigned right;
        const char *res;
        bool allow;
        int64_t rule;
    } t[] = {
        { 1, CG_SVC_HTTP, CG_RIGHT_READ, "/d/a", true, 10 },
        { 1, CG_SVC_HTTP, CG_RIGHT_READ, "/d/secret/a", false, 11 },  /* group deny beats own allow */
        { 0, CG_SVC_HTTP, CG_RIGHT_READ, "/d/secret/a", true, 12 },   /* alice is not in ops */
        { 1, CG_SVC_HTTP, CG_RIGHT_WRITE, "/d/secret/a", true, 10 },  /* the deny is for read only */
        { 0, CG_SVC_HTTP, CG_RIGHT_WRITE, "/d/x/a", false, 13 },      /* everyone's deny beats own allow */
        { 0, CG_SVC_HTTP, CG_RIGHT_READ, "/d/x/a", true, 14 },
        { 0, CG_SVC_IMAP, CG_RIGHT_LIST, "Any/thing", true, 15 },
        { 0, CG_SVC_IMAP, CG_RIGHT_READ, "Any/thing", false, 0 },     /* no match is deny */
        { 0, CG_SVC_HTTP, CG_RIGHT_LIST, "Any", false, 0 },           /* the imap rule is not http's */
        { 3, CG_SVC_HTTP, CG_RIGHT_READ, "/x", false, 0 },            /* disabled principal */
    };
    for (size_t i = 0; i < CG_ARRAY_LEN_T(t); i++) {
        cg_decision d = cg_acl_decide(acl, &people[t[i].who], t[i].service, t[i].right, t[i].res,
                                      strlen(t[i].res), '/');
        if (d.allow != t[i].allow || d.rule_id != t[i].rule)
            fail_msg("case %zu: got %d rule %lld, want %d rule %lld", i, d.allow,
                     (long long)d.rule_id, t[i].allow, (long long)t[i].rule);
    }
    const cg_acl_rule_info *ri = cg_acl_rule(acl, 11);
    assert_non_null(ri);
    assert_true(ri->deny);
    assert_string_equal(ri->subject, "@ops");
    assert_string_equal(ri->pattern, "/d/secret/*");
    assert_null(cg_acl_rule(acl, 99));
    cg_acl_free(acl);
}

/* ---- subtree operations ---------------------------------------------- */

static void test_subtree(void **state)
{
    spec_rule rules[] = {
        { 1, false, "*", CG_SVC_HTTP, "/a/*", CG_RIGHT_ALL },
        { 2, true, "*", CG_SVC_HTTP, "/a/secret/*", CG_RIGHT_ALL },
        { 3, false, "*", CG_SVC_HTTP, "/b/*", CG_RIGHT_ALL },
        { 4, false, "*", CG_SVC_HTTP, "/c/*", CG_RIGHT_READ },
        { 5, false, "bob", CG_SVC_HTTP, "/c/pub/*", CG_RIGHT_ALL },   /* narrower, bob only */
    };
    cg_acl *acl = build(rules, CG_ARRAY_LEN_T(rules));
    int64_t id;
    assert_false(cg_acl_subtree_clear(acl, &people[0], CG_SVC_HTTP, CG_RIGHT_DELETE, "/a", 2, '/', &id));
    assert_int_equal(id, 2);
    assert_true(cg_acl_subtree_clear(acl, &people[0], CG_SVC_HTTP, CG_RIGHT_DELETE, "/a/public", 9, '/', &id));
    assert_true(cg_acl_subtree_clear(acl, &people[0], CG_SVC_HTTP, CG_RIGHT_DELETE, "/b/", 3, '/', &id));
    /* alice: rule 5 is not hers, /c is uniform for her */
    assert_true(cg_acl_subtree_clear(acl, &people[0], CG_SVC_HTTP, CG_RIGHT_WRITE, "/c", 2, '/', &id));
    /* bob: rule 5 judges part of /c differently */
    assert_false(cg_acl_subtree_clear(acl, &people[1], CG_SVC_HTTP, CG_RIGHT_WRITE, "/c", 2, '/', &id));
    assert_int_equal(id, 5);
    cg_acl_free(acl);
}

/* ---- parsing helpers ------------------------------------------------- */

static void test_parsing(void **state)
{
    unsigned r;
    const char *err;
    assert_int_equal(cg_rights_parse("list,read", &r, &err), 0);
    assert_int_equal(r, CG_RIGHT_LIST | CG_RIGHT_READ);
    assert_int_equal(cg_rights_parse("all", &r, &err), 0);
    assert_int_equal(r, CG_RIGHT_ALL);
    assert_true(cg_rights_parse("read,", &r, &err) < 0);
    assert_true(cg_rights_parse("reed", &r, &err) < 0);
    assert_true(cg_rights_parse("", &r, &err) < 0);
    char out[48];
    cg_rights_format(CG_RIGHT_WRITE | CG_RIGHT_DELETE, out);
    assert_string_equal(out, "write,delete");
    int s;
    assert_int_equal(cg_service_parse("*", &s), 0);
    assert_int_equal(s, 0);
    assert_true(cg_service_parse("smtp", &s) < 0);
    assert_int_equal(cg_acl_pattern_check("/home/${user}/*", &err), 0);
    assert_true(cg_acl_pattern_check("/home/${user/*", &err) < 0);
    assert_true(cg_acl_pattern_check("/home/${name}", &err) < 0);
    assert_true(cg_acl_pattern_check("", &err) < 0);
    assert_true(cg_acl_pattern_check("a\nb", &err) < 0);
    assert_int_equal(cg_acl_pattern_check("price$5", &err), 0); /* a lone '$' is literal */
}

/* ---- randomised comparison with a naive reference ------------------- */

/* The reference: expand ${user} into the text, then match recursively,
 * straight from the words of SPEC section 4. Exponential, fine for tests. */
static bool ref_match(const char *p, const char *s, char delim)
{
    if (*p == '\0')
        return *s == '\0';
    if (*p == '*') {
        for (const char *t = s;; t++) {
            if (ref_match(p + 1, t, delim))
                return true;
            if (*t == '\0')
                return false;
        }
    }
    if (*p == '%') {
        for (const char *t = s;; t++) {
            if (ref_match(p + 1, t, delim))
                return true;
            if (*t == '\0' || *t == delim)
                return false;
        }
    }
    return *s == *p && ref_match(p + 1, s + 1, delim);
}

/* pattern with ${user} -> pattern text where the user's bytes are literal;
 * wildcard bytes in the user name are marked with 0x01/0x02 and matched
 * as themselves by ref_literal. */
static void ref_expand(const char *pat, const char *user, char *out, size_t cap)
{
    size_t n = 0;
    for (const char *p = pat; *p && n + 1 < cap;) {
        if (strncmp(p, "${user}", 7) == 0) {
            for (const char *u = user; *u && n + 1 < cap; u++)
                out[n++] = *u == '*' ? '\x01' : *u == '%' ? '\x02' : *u;
            p += 7;
        } else {
            out[n++] = *p++;
        }
    }
    out[n] = '\0';
}

static void unmark(char *s)
{
    for (; *s; s++)
        if (*s == '\x01')
            *s = '*';
        else if (*s == '\x02')
            *s = '%';
}

/* ref_match with marked literal wildcards: rewrite the name the same way. */
static bool ref_match_marked(const char *pat, const char *name, char delim)
{
    char n2[256];
    size_t i = 0;
    for (; name[i] && i < sizeof n2 - 1; i++)
        n2[i] = name[i] == '*' ? '\x01' : name[i] == '%' ? '\x02' : name[i];
    n2[i] = '\0';
    /* a literal '*' or '%' in the name can only be matched by a marked
     * byte or by a wildcard: wildcards match any byte, marked bytes only
     * themselves */
    return ref_match(pat, n2, delim);
}

static uint64_t rng = 0x9e3779b97f4a7c15u;
static unsigned rnd(unsigned n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (unsigned)(rng % n);
}

static void random_text(char *out, size_t maxlen, bool pattern)
{
    static const char alphabet[] = "ab/.*%x";
    size_t len = rnd((unsigned)maxlen + 1);
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (pattern && rnd(8) == 0) {
            memcpy(out + n, "${user}", 7);
            n += 7;
            continue;
        }
        char c = alphabet[rnd(pattern ? 7 : 5 + (rnd(4) == 0 ? 2 : 0))];
        out[n++] = c;
    }
    out[n] = '\0';
}

static void test_random_against_reference(void **state)
{
    const int rounds = 2000, per = 60; /* 120,000 decisions */
    long checked = 0, mismatches = 0;
    for (int round = 0; round < rounds; round++) {
        spec_rule rules[6];
        char pats[6][64];
        size_t nr = 1 + rnd(6);
        for (size_t i = 0; i < nr; i++) {
            do
                random_text(pats[i], 7, true);
            while (!pats[i][0]);
            static const char *subjects[] = { "alice", "bob", "@staff", "@ops", "*", "c*r%l" };
            rules[i] = (spec_rule){ (int64_t)(i + 1), rnd(3) == 0, subjects[rnd(6)],
                                    (int)rnd(3), pats[i], 1u + rnd(31) };
        }
        cg_acl *acl = build(rules, nr);
        for (int k = 0; k < per; k++) {
            const cg_principal *p = &people[rnd(3)];
            int service = 1 + (int)rnd(2);
            unsigned right = 1u << rnd(5);
            char delim = rnd(2) ? '/' : '.';
            char name[32];
            random_text(name, 8, false);
            /* reference decision */
            int64_t deny = 0, allow = 0;
            for (size_t i = 0; i < nr; i++) {
                const spec_rule *r = &rules[i];
                bool applies = strcmp(r->subject, "*") == 0 || strcmp(r->subject, p->name) == 0;
                for (uint32_t g = 0; g < p->ngroups; g++)
                    if (r->subject[0] == '@' && strcmp(r->subject + 1, groups[p->groups[g]]) == 0)
                        applies = true;
                if (!applies || (r->service && r->service != service) || !(r->rights & right))
                    continue;
                char exp[512];
                ref_expand(r->pattern,
                           service == CG_SVC_IMAP ? p->mailbox : p->name, exp, sizeof exp);
                /* INBOX: any case of a leading INBOX means INBOX, on both
                 * sides, for IMAP */
                char nm[32];
                strcpy(nm, name);
                if (service == CG_SVC_IMAP) {
                    if (strncasecmp(exp, "INBOX", 5) == 0 &&
                        (exp[5] == '\0' || !((exp[5] >= 'a' && exp[5] <= 'z') ||
                                             (exp[5] >= 'A' && exp[5] <= 'Z') ||
                                             (exp[5] >= '0' && exp[5] <= '9'))))
                        memcpy(exp, "INBOX", 5);
                    if (strncasecmp(nm, "INBOX", 5) == 0 && (nm[5] == '\0' || nm[5] == delim))
                        memcpy(nm, "INBOX", 5);
                }
                if (ref_match_marked(exp, nm, delim)) {
                    if (r->deny && (!deny || r->id < deny))
                        deny = r->id;
                    if (!r->deny && (!allow || r->id < allow))
                        allow = r->id;
                }
                unmark(exp);
            }
            bool want = !deny && allow;
            int64_t want_id = deny ? deny : allow;
            cg_decision d = cg_acl_decide(acl, p, service, right, name, strlen(name), delim);
            checked++;
            if (d.allow != want || d.rule_id != want_id) {
                if (mismatches++ < 10)
                    print_error("mismatch: %s svc %d right %u name '%s' delim %c: got %d/%lld want %d/%lld\n",
                                p->name, service, right, name, delim, d.allow, (long long)d.rule_id,
                                want, (long long)want_id);
            }
        }
        cg_acl_free(acl);
    }
    print_message("compared %ld decisions with the reference\n", checked);
    assert_true(checked >= 100000);
    assert_int_equal(mismatches, 0);
}

/* A pattern built to make a backtracking matcher take exponential time is
 * decided quickly (the NFA is linear in the name). */
static void test_pathological_pattern(void **state)
{
    spec_rule r = { 1, false, "alice", 0, "*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b", CG_RIGHT_READ };
    cg_acl *acl = build(&r, 1);
    char name[8192];
    memset(name, 'a', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    for (int i = 0; i < 50; i++) {
        cg_decision d = cg_acl_decide(acl, &people[0], CG_SVC_HTTP, CG_RIGHT_READ, name,
                                      strlen(name), '/');
        assert_false(d.allow);
    }
    cg_acl_free(acl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pattern_table),
        cmocka_unit_test(test_user_variable),
        cmocka_unit_test(test_deny_wins),
        cmocka_unit_test(test_subtree),
        cmocka_unit_test(test_parsing),
        cmocka_unit_test(test_random_against_reference),
        cmocka_unit_test(test_pathological_pattern),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
