/* tests/unit/policy/test_xml_safe.c — policy/xml_safe.c: a DOCTYPE is refused in the parser
 * whatever the encoding (UTF-8, UTF-16 LE/BE with and without BOM), as is
 * any entity other than the predefined five, nesting past the bound and a
 * document past the size bound; ordinary documents parse. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <libxml/parser.h>

#include "common/cg_error.h"
#include "policy/xml_safe.h"

static const cg_xml_limits LIM = { .what = "document", .max_bytes = 4096, .max_depth = 8 };

/* UTF-16 of an ASCII string, with a BOM when bom is set. */
static size_t utf16(const char *s, int big_endian, int bom, char *out, size_t cap)
{
    size_t o = 0;
    if (bom) {
        assert_true(o + 2 <= cap);
        out[o++] = big_endian ? '\xfe' : '\xff';
        out[o++] = big_endian ? '\xff' : '\xfe';
    }
    for (; *s; s++) {
        assert_true(o + 2 <= cap);
        out[o++] = big_endian ? 0 : *s;
        out[o++] = big_endian ? *s : 0;
    }
    return o;
}

static int parse(const void *buf, size_t len, const cg_xml_limits *lim, const char **err)
{
    xmlDocPtr doc = (xmlDocPtr)1;
    int rc = cg_xml_parse_untrusted(buf, len, lim, &doc, err);
    if (rc == 0) {
        assert_non_null(doc);
        xmlFreeDoc(doc);
    } else {
        assert_null(doc);
    }
    return rc;
}

static void test_table(void **state)
{
    (void)state;
    static const struct {
        const char *xml;
        int rc;
        const char *why;
    } cases[] = {
        { "<a><b x=\"1\">t</b></a>", 0, NULL },
        { "<?xml version=\"1.0\" encoding=\"UTF-8\"?><a xmlns=\"urn:x\"/>", 0, NULL },
        { "<a x=\"&lt;&amp;&quot;\">&gt;&apos;&#65;&#x42;<![CDATA[<c>]]></a>", 0, NULL },
        { "<!DOCTYPE a><a/>", CG_E_PARSE, "DOCTYPE" },
        { "<!DOCTYPE a SYSTEM \"http://127.0.0.1:1/x.dtd\"><a/>", CG_E_PARSE, "DOCTYPE" },
        { "<!DOCTYPE a [<!ENTITY e \"x\">]><a>&e;</a>", CG_E_PARSE, "DOCTYPE" },
        { "<!DOCTYPE a [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><a>&x;</a>", CG_E_PARSE,
          "DOCTYPE" },
        /* a reference to an entity no one declared, in text and in an attribute */
        { "<a>&e;</a>", CG_E_PARSE, "entities" },
        { "<a x=\"&e;\"/>", CG_E_PARSE, "entities" },
        { "<a><b><c><d><e><f><g><h/></g></f></e></d></c></b></a>", 0, NULL },
        { "<a><b><c><d><e><f><g><h><i/></h></g></f></e></d></c></b></a>", CG_E_LIMIT,
          "deeper than 8" },
        { "<a>", CG_E_PARSE, "well-formed" },
        { "", CG_E_PARSE, "well-formed" },
        { "<a/><b/>", CG_E_PARSE, "well-formed" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *err = NULL;
        int rc = parse(cases[i].xml, strlen(cases[i].xml), &LIM, &err);
        if (rc != cases[i].rc)
            fail_msg("case %zu (%s): rc %d, expected %d (%s)", i, cases[i].xml, rc,
                     cases[i].rc, err ? err : "");
        if (cases[i].why && !strstr(err, cases[i].why))
            fail_msg("case %zu: \"%s\" does not say \"%s\"", i, err, cases[i].why);
        if (cases[i].why && strncmp(err, "document ", 9) != 0)
            fail_msg("case %zu: \"%s\" does not name the document", i, err);
    }
}

/* A byte search for "<!DOCTYPE" does not see it in UTF-16; the parser does. */
static void test_utf16_doctype_is_refused(void **state)
{
    (void)state;
    const char *evil = "<?xml version=\"1.0\" encoding=\"UTF-16\"?>"
                       "<!DOCTYPE a [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><a>&x;</a>";
    const char *fine = "<?xml version=\"1.0\" encoding=\"UTF-16\"?><a><b>t</b></a>";
    for (int be = 0; be <= 1; be++) {
        for (int bom = 0; bom <= 1; bom++) {
            char buf[512];
            const char *err = NULL;
            size_t n = utf16(evil, be, bom, buf, sizeof buf);
            assert_null(memmem(buf, n, "<!DOCTYPE", 9));
            assert_int_equal(parse(buf, n, &LIM, &err), CG_E_PARSE);
            assert_non_null(strstr(err, "DOCTYPE"));
            n = utf16(fine, be, bom, buf, sizeof buf);
            assert_int_equal(parse(buf, n, &LIM, &err), 0);
        }
    }
}

static void test_size_bound(void **state)
{
    (void)state;
    size_t n = LIM.max_bytes + 1;
    char *buf = malloc(n);
    assert_non_null(buf);
    memset(buf, ' ', n);
    memcpy(buf, "<a>", 3);
    memcpy(buf + n - 4, "</a>", 4);
    const char *err = NULL;
    assert_int_equal(parse(buf, n, &LIM, &err), CG_E_LIMIT);
    assert_non_null(strstr(err, "too large"));
    memcpy(buf + n - 5, "</a>", 4);
    assert_int_equal(parse(buf, n - 1, &LIM, &err), 0); /* exactly at the bound */
    free(buf);
}

/* Far past libxml2's own limit too: refused at our bound, no deep stack. */
static void test_deep_nesting_is_refused(void **state)
{
    (void)state;
    const cg_xml_limits big = { .what = "document", .max_bytes = 1 << 20, .max_depth = 32 };
    size_t depth = 100000, n = 0;
    char *buf = malloc(depth * 7 + 1);
    assert_non_null(buf);
    for (size_t i = 0; i < depth; i++, n += 3)
        memcpy(buf + n, "<a>", 3);
    for (size_t i = 0; i < depth; i++, n += 4)
        memcpy(buf + n, "</a>", 4);
    const char *err = NULL;
    assert_int_equal(parse(buf, n, &big, &err), CG_E_LIMIT);
    assert_non_null(strstr(err, "deeper than 32"));
    free(buf);
}

int main(void)
{
    xmlInitParser();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_utf16_doctype_is_refused),
        cmocka_unit_test(test_size_bound),
        cmocka_unit_test(test_deep_nesting_is_refused),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    xmlCleanupParser();
    return rc;
}
