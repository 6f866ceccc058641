/* tests/unit/proxy/core/test_config.c — proxy/core/config.c: the SPEC example loads with its defaults,
 * and every kind of mistake is refused with the file:line that holds it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "proxy/core/config.h"

static char dir[256];

/* A new file named name in the test directory, open for writing. */
static FILE *create(const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    return f;
}

static void put(const char *name, const char *text)
{
    FILE *f = create(name);
    fputs(text, f);
    fclose(f);
}

/* A self-signed certificate naming DNS:localhost and IP:127.0.0.1: the
 * default server_names of an HTTP listener come from it. */
static void put_cert(const char *name)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    assert_non_null(k);
    assert_non_null(x);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                               (const unsigned char *)"test", -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(x));
    X509_set_pubkey(x, k);
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name,
                                              "DNS:localhost,IP:127.0.0.1");
    assert_non_null(ext);
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    assert_true(X509_sign(x, k, EVP_sha256()) > 0);
    FILE *f = create(name);
    PEM_write_X509(f, x);
    fclose(f);
    X509_free(x);
    EVP_PKEY_free(k);
}

static int setup(void **state)
{
    snprintf(dir, sizeof dir, "/tmp/cg-test-config-XXXXXX");
    assert_non_null(mkdtemp(dir));
    const char *files[] = { "server.pem", "server.key", "clients-ca.pem", "clients.crl",
                            "audit.key", "idp.pem" };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        put(files[i], "x\n");
    put("dovecot-master.pw", "s3cret\n");
    put_cert("server.pem");
    return 0;
}

static int teardown(void **state)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

#define GATEWAY "[gateway]\nworkers = 2\naudit_key = audit.key\n"
#define UP_DOVECOT                                                            \
    "[upstream dovecot]\naddress = 127.0.0.1:20143\nmaster_user = gw\n"       \
    "master_password_file = dovecot-master.pw\n"
#define IMAPS                                                                 \
    "[listener imaps]\nprotocol = imap\nlisten = 127.0.0.1:10993\n"           \
    "certificate = server.pem\nprivate_key = server.key\n"                    \
    "client_ca = clients-ca.pem\nauth = cert, psk, login\nupstream = dovecot\n"

static const char spec_example[] =
    "[gateway]\n"
    "workers = auto                 ; event-loop threads\n"
    "policy_db = policy.db\n"
    "audit_db = audit.db\n"
    "audit_key = audit.key          ; PEM private key\n"
    "audit_fail = closed\n"
    "admin_listen = 127.0.0.1:9464  ; /metrics\n"
    "\n"
    "[listener imaps]\n"
    "protocol = imap\n"
    "listen = 127.0.0.1:10993\n"
    "tls = implicit                 ; implicit | starttls | none\n"
    "certificate = server.pem\n"
    "private_key = server.key\n"
    "client_ca = clients-ca.pem\n"
    "crl = clients.crl              ; optional\n"
    "auth = cert, psk, login\n"
    "upstream = dovecot\n"
    "\n"
    "[listener imap]\n"
    "protocol = imap\n"
    "listen = 127.0.0.1:10143\n"
    "tls = starttls\n"
    "certificate = server.pem\n"
    "private_key = server.key\n"
    "auth = login\n"
    "upstream = dovecot\n"
    "\n"
    "[listener content]\n"
    "protocol = http\n"
    "listen = 127.0.0.1:10443\n"
    "tls = implicit\n"
    "certificate = server.pem\n"
    "private_key = server.key\n"
    "client_ca = clients-ca.pem\n"
    "auth = cert, psk, digest, saml\n"
    "digest_realm = content@example.com\n"
    "upstream = nginx\n"
    "\n"
    "[listener content-plain]\n"
    "protocol = http\n"
    "listen = 127.0.0.1:10080\n"
    "tls = none\n"
    "insecure = redirect            ; reject (426) | redirect (308 to https)\n"
    "redirect_to = https://localhost:10443\n"
    "\n"
    "[upstream dovecot]\n"
    "address = 127.0.0.1:20143\n"
    "imap_login = master            ; master | passthrough\n"
    "master_user = gw\n"
    "master_password_file = dovecot-master.pw\n"
    "\n"
    "[upstream nginx]\n"
    "address = 127.0.0.1:20080\n"
    "; tls = yes, ca = ..., server_name = ...\n"
    "\n"
    "[saml]\n"
    "idp_certificate = idp.pem\n"
    "issuer = https://idp.example.com/\n"
    "audience = https://gw.example.com/\n"
    "clock_skew = 60\n";

static cg_config *load_text(const char *text, char *err, size_t errlen, int *rc)
{
    put("c.conf", text);
    char path[512];
    snprintf(path, sizeof path, "%s/c.conf", dir);
    cg_config *cfg = NULL;
    *rc = cg_config_load(path, &cfg, err, errlen);
    return cfg;
}

static void test_spec_example_loads(void **state)
{
    char err[600] = "";
    int rc;
    cg_config *cfg = load_text(spec_example, err, sizeof err, &rc);
    assert_int_equal(rc, 0);
    assert_non_null(cfg);
    assert_true(cfg->workers >= 1);
    assert_true(cfg->audit_fail_closed);
    assert_int_equal(cfg->nlisteners, 4);
    assert_int_equal(cfg->nupstreams, 2);
    const cg_listener_cfg *l = cg_config_listener(cfg, "imaps");
    assert_non_null(l);
    assert_int_equal(l->protocol, CG_PROTO_IMAP);
    assert_int_equal(l->auth, CG_AUTH_CERT | CG_AUTH_PSK | CG_AUTH_LOGIN);
    assert_int_equal(l->idle_timeout, 1860);
    assert_int_equal(l->client_timeout, 60);
    assert_int_equal(l->max_line, 65536); /* imap: Dovecot's limit */
    assert_int_equal(l->max_literal, 67108864);
    assert_int_equal(l->max_conn_per_addr, 64);
    assert_true(l->tls12 && l->tls13);
    assert_string_equal(l->upstream->name, "dovecot");
    assert_string_equal(l->upstream->master_password, "s3cret");
    /* relative paths are relative to the file's directory */
    char want[512];
    snprintf(want, sizeof want, "%s/server.pem", dir);
    assert_string_equal(l->certificate, want);
    const cg_listener_cfg *c = cg_config_listener(cfg, "content");
    assert_int_equal(c->idle_timeout, 75);
    assert_int_equal(c->max_line, 8192); /* http: the request line */
    assert_string_equal(c->upstream->principal_header, "X-Authenticated-Principal");
    assert_int_equal(c->upstream->connect_timeout, 5);
    assert_int_equal(c->upstream->response_timeout, 60);
    assert_int_equal(c->upstream->pool_size, 32);
    /* an HTTP listener serves its certificate's names unless told */
    assert_string_equal(c->server_names, "localhost, 127.0.0.1");
    assert_null(c->upstream->host);
    const cg_listener_cfg *pl = cg_config_listener(cfg, "content-plain");
    assert_int_equal(pl->insecure, CG_INSECURE_REDIRECT);
    assert_true(cfg->saml.present);
    assert_int_equal(cfg->saml.clock_skew, 60);
    snprintf(want, sizeof want, "%s/content.db", dir);
    assert_string_equal(cfg->content_db, want);
    assert_int_equal(cfg->drain_timeout, 10);
    cg_config_free(cfg);
}

static void test_long_value_is_not_cut(void **state)
{
    /* Debian's inih cuts values at 200 bytes; ours must carry them whole.
     * Long values travel beside inih's text, one line at a time: a later
     * line's own value is never taken for the long value before it. */
    static char text[8192];
    char realm[600], ciphers[300];
    memset(realm, 'r', sizeof realm - 1);
    realm[sizeof realm - 1] = '\0';
    memset(ciphers, 'c', sizeof ciphers - 1);
    ciphers[sizeof ciphers - 1] = '\0';
    snprintf(text, sizeof text,
             GATEWAY "[listener c]\nprotocol = http\nlisten = 127.0.0.1:1\n"
                     "certificate = server.pem\nprivate_key = server.key\n"
                     "auth = digest\ndigest_realm = %s ; comment\nciphers = %s\n"
                     "ciphersuites = TLS_AES_128_GCM_SHA256\nupstream = n\n"
                     "[upstream n]\naddress = 127.0.0.1:2\n",
             realm, ciphers);
    char err[600] = "";
    int rc;
    cg_config *cfg = load_text(text, err, sizeof err, &rc);
    assert_int_equal(rc, 0);
    assert_string_equal(cfg->listeners[0].digest_realm, realm);
    assert_string_equal(cfg->listeners[0].ciphers, ciphers);
    assert_string_equal(cfg->listeners[0].ciphersuites, "TLS_AES_128_GCM_SHA256");
    cg_config_free(cfg);
}

/* A routed environment (SPEC section 7): upstreams over TLS with the
 * gateway's own certificate, a route, an IMAP listener routed there. */
#define LOCAL_DOMAIN "local_domain = a.example\n"
#define UP_REMOTE(name, port)                                                 \
    "[upstream " name "]\naddress = 127.0.0.2:" port "\ntls = yes\nca = server.pem\n" \
    "server_name = localhost\ncertificate = server.pem\nprivate_key = server.key\n"
#define ROUTE_B "[route b.example]\nimap = b-imap\nhttp = b-http\n"
#define ROUTED_IMAPS                                                          \
    "[listener imaps-b]\nprotocol = imap\nlisten = 127.0.0.1:10994\n"         \
    "certificate = server.pem\nprivate_key = server.key\n"                    \
    "client_ca = clients-ca.pem\nauth = cert\nroute = b.example\n"

static void test_route_resolves(void **state)
{
    char err[600] = "";
    int rc;
    cg_config *cfg = load_text(GATEWAY LOCAL_DOMAIN ROUTED_IMAPS UP_REMOTE("b-imap", "993")
                                   UP_REMOTE("b-http", "443") ROUTE_B "max_connections = 3\n",
                               err, sizeof err, &rc);
    assert_int_equal(rc, 0);
    assert_string_equal(cfg->local_domain, "a.example");
    assert_int_equal(cfg->nroutes, 1);
    const cg_route_cfg *r = &cfg->routes[0];
    assert_string_equal(r->domain, "b.example");
    assert_ptr_equal(r->imap, &cfg->upstreams[0]);
    assert_ptr_equal(r->http, &cfg->upstreams[1]);
    assert_ptr_equal(cfg->upstreams[0].route, r);
    assert_string_equal(r->http_prefix, "/remote/b.example/");
    assert_int_equal(r->max_connections, 3);
    const cg_listener_cfg *l = cg_config_listener(cfg, "imaps-b");
    assert_ptr_equal(l->route, r);
    assert_ptr_equal(l->upstream, r->imap);
    /* the prefix with and without its last slash, nothing beside it */
    assert_ptr_equal(cg_config_route_of_path(cfg, "/remote/b.example/shared/a"), r);
    assert_ptr_equal(cg_config_route_of_path(cfg, "/remote/b.example"), r);
    assert_null(cg_config_route_of_path(cfg, "/remote/b.examplex/a"));
    assert_null(cg_config_route_of_path(cfg, "/d/remote/b.example/"));
    cg_config_free(cfg);
}

struct bad_case {
    const char *text;
    const char *expect; /* ":LINE: ...substring" */
};

static const struct bad_case bad[] = {
    { GATEWAY "worker = 2\n", ":4: unknown key 'worker'" },
    { GATEWAY "[listner x]\n", ":4: unknown section [listner x]" },
    { GATEWAY "workers = 3\n", ":4: duplicate key 'workers' (first at line 2)" },
    { GATEWAY "policy_db = a\n  b\n", ":5: indented line" },
    { GATEWAY "workers2\n", ":4: expected 'key = value'" },
    { "[gateway]\nworkers = lots\naudit_key = audit.key\n", ":2: workers: expected 'auto'" },
    { "[gateway]\naudit_fail = maybe\naudit_key = audit.key\n", ":2: audit_fail: expected one of: closed, open" },
    { "[gateway]\naudit_key = missing.key\n", ":2: audit_key: cannot read missing.key" },
    { "[gateway]\nworkers = 2\n" IMAPS UP_DOVECOT, ":1: [gateway]: audit_key is required" },
    { GATEWAY IMAPS UP_DOVECOT "[listener imaps]\n", ":16: duplicate section [listener imaps] (first at line 4)" },
    { GATEWAY IMAPS, ":11: upstream: no [upstream dovecot] section" },
    { GATEWAY "[listener a]\nprotocol = smtp\n", ":5: protocol: expected one of: imap, http" },
    { GATEWAY "[listener a]\nprotocol = imap\nlisten = 127.0.0.1:99999\n", ":6: listen: port must be" },
    { GATEWAY "[listener a]\nprotocol = imap\nlisten = 127.0.0.1:1\nauth = cert, telepathy\n",
      ":7: auth: unknown method 'telepathy'" },
    { GATEWAY "[listener a]\nprotocol = imap\nlisten = 127.0.0.1:1\ncertificate = server.pem\n"
              "private_key = server.key\nauth = digest\nupstream = u\n[upstream u]\naddress = 127.0.0.1:2\n",
      ":9: auth: digest not available for imap listeners" },
    { GATEWAY "[listener a]\nprotocol = imap\nlisten = 127.0.0.1:1\ncertificate = server.pem\n"
              "private_key = server.key\nauth = cert\nupstream = u\n[upstream u]\naddress = 127.0.0.1:2\n"
              "imap_login = passthrough\n",
      ":9: auth = cert needs client_ca" },
    { GATEWAY "[listener a]\nprotocol = http\nlisten = 127.0.0.1:1\ntls = starttls\n", ":7: tls = starttls is for imap" },
    { GATEWAY "[listener a]\nprotocol = imap\nlisten = 127.0.0.1:1\nauth = login\nupstream = u\n",
      ":4: [listener a]: tls = implicit needs certificate and private_key" },
    { GATEWAY "[listener a]\nprotocol = http\nlisten = 127.0.0.1:1\ntls = none\ninsecure = redirect\n",
      ":8: insecure = redirect needs redirect_to" },
    { GATEWAY IMAPS "[upstream dovecot]\naddress = 127.0.0.1:20143\n",
      ":11: upstream dovecot: imap_login = master needs master_user" },
    { GATEWAY IMAPS UP_DOVECOT "tls = yes\n", ":16: tls = yes needs ca or pin_sha256" },
    { GATEWAY IMAPS UP_DOVECOT "pin_sha256 = abcd\n", ":16: pin_sha256: expected 64 hex digits" },
    { GATEWAY IMAPS UP_DOVECOT "principal_header = X Bad\n", ":16: principal_header: expected a header name" },
    { GATEWAY IMAPS UP_DOVECOT "host = a b\n", ":16: host: expected a host name" },
    { GATEWAY IMAPS "server_names = localhost\n" UP_DOVECOT, ":12: server_names is for http listeners" },
    { GATEWAY "[listener a]\nprotocol = http\nlisten = 127.0.0.1:1\ncertificate = server.pem\n"
              "private_key = server.key\nauth = digest\ndigest_realm = r\nupstream = u\n"
              "server_names = localhost, *\n[upstream u]\naddress = 127.0.0.1:2\n",
      ":12: server_names: '*' (every name) stands alone" },
    { GATEWAY "[listener a]\nprotocol = http\nlisten = 127.0.0.1:1\ncertificate = clients.crl\n"
              "private_key = server.key\nauth = digest\ndigest_realm = r\nupstream = u\n"
              "[upstream u]\naddress = 127.0.0.1:2\n",
      ":7: server_names: the certificate is not PEM (set server_names)" },
    { GATEWAY IMAPS UP_DOVECOT "[listener b]\nprotocol = imap\nlisten = 127.0.0.1:10993\n"
                               "certificate = server.pem\nprivate_key = server.key\nauth = login\nupstream = dovecot\n",
      ":18: listen: 127.0.0.1:10993 is also [listener imaps]'s address" },
    { "key = 1\n", ":1: key 'key' outside any section" },
    /* bytes a configuration cannot hold; 0x01 and digits once read as a
     * reference to a long value and crashed the loader */
    { "[gateway]\npolicy_db = \x01" "99\n", ":2: control byte 0x01 in line" },
    { "[gateway]\npolicy_db = \x01" "0\n", ":2: control byte 0x01 in line" },
    { GATEWAY "user = a\rb\n", ":4: control byte 0x0d in line" },
    { GATEWAY "user = a\x7f\n", ":4: control byte 0x7f in line" },
    { GATEWAY "; comment \x1b[0m\n", ":4: control byte 0x1b in line" },
    { GATEWAY "user = caf\xe9\n", ":4: invalid UTF-8 in line" },
    { GATEWAY "user = \xc0\xaf\n", ":4: invalid UTF-8 in line" },
    { GATEWAY "[saml]\nissuer = x\n", ":4: [saml]: idp_certificate, issuer and audience are required" },
    { GATEWAY, ":0: no [listener NAME] section" },
    /* routes (SPEC section 7) */
    { GATEWAY IMAPS UP_DOVECOT UP_REMOTE("b-imap", "993") "[route b.example]\nimap = b-imap\n",
      ":23: [route b.example]: local_domain is required in [gateway]" },
    { GATEWAY LOCAL_DOMAIN IMAPS UP_DOVECOT "[route b.example]\nimap = nowhere\n",
      ":18: imap: no [upstream nowhere] section" },
    { GATEWAY LOCAL_DOMAIN IMAPS UP_DOVECOT "[route b.example]\nimap = dovecot\n",
      ":18: imap: upstream dovecot must have tls = yes" },
    { GATEWAY LOCAL_DOMAIN IMAPS UP_DOVECOT
      "[upstream r]\naddress = 127.0.0.2:993\ntls = yes\npin_sha256 = "
      "0000000000000000000000000000000000000000000000000000000000000000\n"
      "[route b.example]\nimap = r\n",
      ":22: imap: upstream r needs certificate and private_key" },
    { GATEWAY LOCAL_DOMAIN IMAPS UP_DOVECOT "[route b.example]\n", ":17: [route b.example]: imap or http is required" },
    { GATEWAY LOCAL_DOMAIN IMAPS UP_DOVECOT UP_REMOTE("b-http", "443")
      "[route b.example]\nhttp = b-http\nhttp_prefix = /remote/../b/\n",
      ":26: http_prefix: expected /path/" },
    { GATEWAY LOCAL_DOMAIN IMAPS UP_DOVECOT UP_REMOTE("b-http", "443") UP_REMOTE("c-http", "444")
      "[route b.example]\nhttp = b-http\n[route c.example]\nhttp = c-http\nhttp_prefix = /remote/\n",
      ":35: http_prefix: /remote/ overlaps [route b.example]'s /remote/b.example/" },
    { GATEWAY LOCAL_DOMAIN IMAPS UP_DOVECOT "[route bad/name]\n", ":17: invalid route domain 'bad/name'" },
    { GATEWAY "local_domain = A..example\n" IMAPS UP_DOVECOT UP_REMOTE("b-imap", "993")
      "[route b.example]\nimap = b-imap\n",
      ":4: local_domain: expected a DNS name in lower case" },
    { GATEWAY LOCAL_DOMAIN IMAPS UP_DOVECOT UP_REMOTE("b-imap", "993")
      "[route B.example]\nimap = b-imap\n",
      ":24: [route B.example]: expected a DNS name in lower case" },
    { GATEWAY LOCAL_DOMAIN ROUTED_IMAPS UP_REMOTE("b-imap", "993") "[route b.example]\nhttp = b-imap\n",
      ":12: route: [route b.example] has no imap upstream" },
    { GATEWAY LOCAL_DOMAIN ROUTED_IMAPS "upstream = dovecot\n" UP_DOVECOT UP_REMOTE("b-imap", "993") "[route b.example]\nimap = b-imap\n",
      ":12: route and upstream exclude each other" },
    { GATEWAY LOCAL_DOMAIN ROUTED_IMAPS "upstream = b-imap\n" UP_REMOTE("b-imap", "993") ROUTE_B,
      ":22: imap: upstream b-imap is also [listener imaps-b]'s backend" },
    { GATEWAY LOCAL_DOMAIN ROUTED_IMAPS UP_REMOTE("b-imap", "993") UP_REMOTE("b-http", "443")
      "[route c.example]\nimap = b-imap\n",
      ":12: route: no [route b.example] section" },
    { GATEWAY LOCAL_DOMAIN "[listener imaps-b]\nprotocol = imap\nlisten = 127.0.0.1:10994\n"
      "certificate = server.pem\nprivate_key = server.key\nauth = login\nroute = b.example\n"
      UP_REMOTE("b-imap", "993") UP_REMOTE("b-http", "443") ROUTE_B,
      ":10: auth: a routed listener identifies its clients itself" },
    { "[listener a]\nprotocol = imap\n", ":0: no [gateway] section" },
};

static void test_bad_files_name_their_line(void **state)
{
    int failures = 0;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char err[600] = "";
        int rc;
        cg_config *cfg = load_text(bad[i].text, err, sizeof err, &rc);
        if (rc == 0 || !strstr(err, bad[i].expect)) {
            print_error("case %zu: rc=%d err='%s', expected '%s'\n", i, rc, err, bad[i].expect);
            failures++;
        }
        assert_null(cfg);
        /* the message starts with the file's path */
        assert_non_null(strstr(err, "c.conf:"));
    }
    assert_int_equal(failures, 0);
}

static void test_line_over_4096_is_refused(void **state)
{
    static char text[8192];
    int n = snprintf(text, sizeof text, "[gateway]\nuser = ");
    memset(text + n, 'u', 4200);
    strcpy(text + n + 4200, "\n");
    char err[600] = "";
    int rc;
    cg_config *cfg = load_text(text, err, sizeof err, &rc);
    assert_true(rc < 0);
    assert_null(cfg);
    assert_non_null(strstr(err, ":2: line longer than 4096 bytes"));
}

static void test_nul_byte_is_refused_not_cut(void **state)
{
    /* fgets-style reading would end the line at the NUL and load "a" */
    static const char text[] = "[gateway]\nworkers = 2\npolicy_db = a\0b\naudit_key = audit.key\n";
    char path[512];
    snprintf(path, sizeof path, "%s/nul.conf", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, sizeof text - 1, f), sizeof text - 1);
    fclose(f);
    cg_config *cfg = NULL;
    char err[600] = "";
    assert_true(cg_config_load(path, &cfg, err, sizeof err) < 0);
    assert_null(cfg);
    assert_non_null(strstr(err, "nul.conf:3: NUL byte in line"));
}

static void test_utf8_and_crlf_are_accepted(void **state)
{
    static const char text[] =
        "\xEF\xBB\xBF[gateway]\r\nworkers = 2\r\naudit_key = audit.key\r\n"
        "; caf\xc3\xa9 \xe2\x80\x94 a comment in UTF-8\r\n"
        "[listener c]\nprotocol = http\nlisten = 127.0.0.1:1\ncertificate = server.pem\n"
        "private_key = server.key\nauth = digest\ndigest_realm = caf\xc3\xa9\nupstream = n\n"
        "[upstream n]\naddress = 127.0.0.1:2\n";
    char err[600] = "";
    int rc;
    cg_config *cfg = load_text(text, err, sizeof err, &rc);
    if (rc != 0)
        print_error("%s\n", err);
    assert_int_equal(rc, 0);
    assert_string_equal(cfg->listeners[0].digest_realm, "caf\xc3\xa9");
    cg_config_free(cfg);
}

static void test_missing_file(void **state)
{
    cg_config *cfg = NULL;
    char err[600];
    assert_true(cg_config_load("/nonexistent/x.conf", &cfg, err, sizeof err) < 0);
    assert_non_null(strstr(err, "/nonexistent/x.conf:0: cannot open"));
}

/* The key table drives the parser; the man page and the sample
 * configuration must name every key it holds, so they cannot drift. */
static char *slurp(const char *rel)
{
    const char *root = getenv("CG_SOURCE_ROOT");
    if (!root)
        root = ".";
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    static char buf[1 << 17];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void test_man_page_names_every_key(void **state)
{
    char *text = slurp("doc/cpmgate.conf.5.scd");
    assert_non_null(text);
    const char *sect, *name;
    int missing = 0;
    for (size_t i = 0; cg_config_key(i, &sect, &name); i++) {
        char want[80];
        snprintf(want, sizeof want, "*%s*", name);
        if (!strstr(text, want)) {
            print_error("cpmgate.conf.5 does not describe [%s] %s\n", sect, name);
            missing++;
        }
    }
    assert_int_equal(missing, 0);
}

static void test_sample_config_names_every_key(void **state)
{
    char *text = slurp("deploy/cpmgate.conf");
    if (!text)
        skip(); /* the sample lands with deploy/demo */
    const char *sect, *name;
    int missing = 0;
    for (size_t i = 0; cg_config_key(i, &sect, &name); i++) {
        char want[80];
        snprintf(want, sizeof want, "%s =", name);
        if (!strstr(text, want)) {
            print_error("deploy/cpmgate.conf does not name [%s] %s\n", sect, name);
            missing++;
        }
    }
    assert_int_equal(missing, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spec_example_loads),
        cmocka_unit_test(test_long_value_is_not_cut),
        cmocka_unit_test(test_bad_files_name_their_line),
        cmocka_unit_test(test_route_resolves),
        cmocka_unit_test(test_line_over_4096_is_refused),
        cmocka_unit_test(test_nul_byte_is_refused_not_cut),
        cmocka_unit_test(test_utf8_and_crlf_are_accepted),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_man_page_names_every_key),
        cmocka_unit_test(test_sample_config_names_every_key),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
