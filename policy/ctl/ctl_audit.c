/* ctl_audit.c — `cpmgatectl audit`: keygen, verify, show, export, rotate
 * (SPEC sections 5 and 9). The audit database is read here (verify, show,
 * export) and only written by `rotate` when no gateway holds it; export
 * --follow is ctl_audit_follow.c. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sqlite3.h>

#include "policy/ctl/ctl.h"
#include "store/audit_canon.h"
#include "store/audit_file.h"
#include "store/audit_rows.h"
#include "common/cg_error.h"
#include "common/cg_util.h"

/* ---- keygen ----------------------------------------------------------------- */

int ctl_audit_keygen(ctl_ctx *ctx, const ctl_args *a)
{
    const char *out = ctl_opt(a, "--out");
    if (!out)
        return ctl_usage(a);
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    if (!k)
        return ctl_fail("cannot generate an Ed25519 key");
    /* O_EXCL: an existing key is never overwritten (old checkpoints were
     * signed with it); 0600 from the start, not chmod after. */
    int fd = open(out, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        EVP_PKEY_free(k);
        return ctl_fail("%s: %s", out, errno == EEXIST ? "exists already (not overwritten)"
                                                      : strerror(errno));
    }
    FILE *f = fdopen(fd, "w");
    bool ok = f && PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL) == 1;
    if (f)
        ok = fclose(f) == 0 && ok;
    else
        close(fd);
    char *pub = ok ? cg_audit_key_public_pem(k) : NULL;
    EVP_PKEY_free(k);
    if (!ok || !pub) {
        unlink(out);
        free(pub);
        return ctl_fail("%s: cannot write the key", out);
    }
    fputs(pub, stdout);
    free(pub);
    return CTL_OK;
}

/* ---- verify ----------------------------------------------------------------- */

static json_object *verify_json(const char *db, const cg_audit_verify_result *res)
{
    json_object *o = ctl_jobj();
    if (db)
        ctl_jset(o, "audit_db", ctl_jstr(db));
    ctl_jset(o, "intact", ctl_jbool(res->intact));
    ctl_jset(o, "records", ctl_juint(res->records));
    ctl_jset(o, "checkpoints", ctl_juint(res->checkpoints));
    ctl_jset(o, "first_seq", ctl_juint(res->first_seq));
    ctl_jset(o, "last_seq", ctl_juint(res->last_seq));
    ctl_jset(o, "last_checkpoint_seq", ctl_juint(res->last_checkpoint_seq));
    ctl_jset(o, "node", ctl_jstr(res->node[0] ? res->node : NULL));
    ctl_jset(o, "broken_seq", res->intact ? NULL : ctl_juint(res->broken_seq));
    ctl_jset(o, "what", ctl_jstr(res->intact ? NULL : res->what));
    ctl_jset(o, "notes", ctl_jstr(res->notes[0] ? res->notes : NULL));
    return o;
}

/* The verdict's line; with several databases each line starts with its
 * file. */
static void verify_line(const char *db, const cg_audit_verify_result *res)
{
    if (db)
        printf("%s: ", db);
    if (res->intact) {
        printf("audit chain intact: %llu records, %llu checkpoints, last seq %llu",
               (unsigned long long)res->records, (unsigned long long)res->checkpoints,
               (unsigned long long)res->last_seq);
        if (res->node[0])
            printf(", node %s", res->node);
        putchar('\n');
        if (res->notes[0])
            printf("%snote: %s\n", db ? "  " : "", res->notes);
    } else {
        printf("audit chain broken at seq %llu: %s\n", (unsigned long long)res->broken_seq,
               res->what);
    }
}

/* Each --audit-db proves its own chain (a node's log); the exit status
 * is 1 when any of them is broken or unreadable. */
int ctl_audit_verify(ctl_ctx *ctx, const ctl_args *a)
{
    const char *dbs[CTL_MAX_DBS];
    size_t n = ctl_opt_all(a, "--audit-db", dbs, CTL_MAX_DBS);
    const char *keyf = ctl_opt(a, "--key");
    if (n == 0)
        return ctl_usage(a);
    if (n > CTL_MAX_DBS)
        return ctl_fail("at most %d --audit-db at once", CTL_MAX_DBS);
    EVP_PKEY *key = NULL;
    const char *err = NULL;
    if (keyf && cg_audit_key_load_public(keyf, &key, &err) < 0)
        return ctl_fail("%s: %s", keyf, err);
    bool many = n > 1;
    json_object *arr = ctx->json && many ? ctl_jarr() : NULL;
    int rc = CTL_OK;
    for (size_t i = 0; i < n; i++) {
        cg_audit_verify_result res;
        if (cg_audit_verify_db(dbs[i], key, &res, &err) < 0) {
            rc = ctl_fail("%s: %s", dbs[i], err);
            continue;
        }
        if (arr)
            ctl_jset(arr, NULL, verify_json(dbs[i], &res));
        else if (ctx->json && ctl_json_print(verify_json(NULL, &res)) != CTL_OK)
            rc = CTL_ERROR;
        else if (!ctx->json)
            verify_line(many ? dbs[i] : NULL, &res);
        if (!res.intact)
            rc = ctl_fail("%s: audit chain broken at seq %llu", dbs[i],
                          (unsigned long long)res.broken_seq);
    }
    EVP_PKEY_free(key);
    if (arr && ctl_json_print(arr) != CTL_OK)
        rc = CTL_ERROR;
    return rc;
}

/* ---- show / export ---------------------------------------------------------- */

static int two(const char *s) { return (s[0] - '0') * 10 + (s[1] - '0'); }

static bool digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)s[i]))
            return false;
    return true;
}

/* RFC 3339 ("2026-12-02T10:00:00Z", fraction and +hh:mm allowed, space for
 * T) or a date alone, into the stored form (UTC, microseconds), so that a
 * text comparison is a time comparison. A date alone as --until means the
 * end of that day. */
static bool norm_time(const char *s, bool until, char out[CG_TIME_LEN])
{
    size_t n = strlen(s);
    if (n < 10 || !digits(s, 4) || s[4] != '-' || !digits(s + 5, 2) || s[7] != '-' ||
        !digits(s + 8, 2))
        return false;
    struct tm tm = { 0 };
    tm.tm_year = two(s) * 100 + two(s + 2) - 1900;
    tm.tm_mon = two(s + 5) - 1;
    tm.tm_mday = two(s + 8);
    long usec = 0, off = 0;
    const char *p = s + 10;
    bool date_only = *p == '\0';
    if (!date_only) {
        if ((*p != 'T' && *p != 't' && *p != ' ') || strlen(p) < 9 || !digits(p + 1, 2) ||
            p[3] != ':' || !digits(p + 4, 2) || p[6] != ':' || !digits(p + 7, 2))
            return false;
        tm.tm_hour = two(p + 1);
        tm.tm_min = two(p + 4);
        tm.tm_sec = two(p + 7);
        p += 9;
        if (*p == '.') {
            p++;
            int k = 0;
            while (isdigit((unsigned char)*p)) {
                if (k < 6) {
                    usec = usec * 10 + (*p - '0');
                    k++;
                }
                p++;
            }
            if (k == 0)
                return false;
            while (k++ < 6)
                usec *= 10;
        }
        if (*p == 'Z' || *p == 'z') {
            p++;
        } else if ((*p == '+' || *p == '-') && strlen(p) == 6 && digits(p + 1, 2) &&
                   p[3] == ':' && digits(p + 4, 2)) {
            off = (two(p + 1) * 60 + two(p + 4)) * 60L * (*p == '+' ? 1 : -1);
            p += 6;
        }
        if (*p)
            return false;
    }
    if (tm.tm_mon > 11 || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 ||
        tm.tm_min > 59 || tm.tm_sec > 60)
        return false;
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return false;
    int64_t us = ((int64_t)t - off) * 1000000 + usec;
    if (until && date_only)
        us += 86400LL * 1000000 - 1;
    cg_time_rfc3339(us, out);
    return true;
}

static void print_field(const char *name, const char *v, bool *first)
{
    if (!v)
        return;
    printf("%s%s=", *first ? "" : " ", name);
    *first = false;
    /* Quote values with spaces or controls, so a line stays one record. */
    bool plain = *v != '\0';
    for (const char *p = v; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == '"' || *p == '\\')
            plain = false;
    if (plain)
        fputs(v, stdout);
    else
        ctl_json_write(stdout, ctl_jstr(v));
}

static void print_num(const char *name, int64_t v, bool *first)
{
    if (v < 0)
        return;
    printf("%s%s=%lld", *first ? "" : " ", name, (long long)v);
    *first = false;
}

static void show_line(const cg_audit_parsed *p)
{
    const cg_audit_rec *r = &p->rec;
    printf("%llu %s", (unsigned long long)p->seq, p->time);
    bool first = false;
    print_field("txid", r->txid, &first);
    print_field("request_id", r->request_id, &first);
    print_num("conn", r->conn_id ? (int64_t)r->conn_id : -1, &first);
    print_field("listener", r->listener, &first);
    print_field("client", r->client, &first);
    print_field("principal", r->principal, &first);
    print_field("method", r->method, &first);
    print_field("tls", r->tls_version, &first);
    print_field("cipher", r->tls_cipher, &first);
    print_field("service", r->service, &first);
    print_field("op", r->operation, &first);
    print_field("resource", r->resource, &first);
    print_field("decision", r->decision, &first);
    print_num("rule", r->rule_id, &first);
    print_field("result", r->result, &first);
    print_num("in", r->bytes_in, &first);
    print_num("out", r->bytes_out, &first);
    print_field("sha256", r->content_sha256, &first);
    print_field("key_id", r->key_id, &first);
    print_field("validation", r->validation, &first);
    print_field("reason", r->reason, &first);
    print_field("node", r->node, &first);
    print_field("originator", r->originator, &first);
    print_field("origin_txid", r->origin_txid, &first);
    putchar('\n');
}

enum out_mode { OUT_TEXT, OUT_JSON, OUT_JSONL };

/* Whether the parsed record passes the filter (the seq range is the
 * reader's). */
static bool passes(const ctl_audit_filter *f, const cg_audit_parsed *p)
{
    const cg_audit_rec *r = &p->rec;
    if (f->txid && !(r->txid && strcmp(r->txid, f->txid) == 0) &&
        !(f->origin && r->origin_txid && strcmp(r->origin_txid, f->txid) == 0))
        return false;
    if (f->principal && !(r->principal && strcmp(r->principal, f->principal) == 0))
        return false;
    if (f->decision && !(r->decision && strcmp(r->decision, f->decision) == 0))
        return false;
    if (f->since && strcmp(p->time, f->since) < 0)
        return false;
    return !f->until || strcmp(p->time, f->until) <= 0;
}

static bool filtering(const ctl_audit_filter *f)
{
    return f->txid || f->principal || f->decision || f->since || f->until;
}

int ctl_audit_src_open(ctl_audit_src *s, const char *db, const ctl_audit_filter *f)
{
    memset(s, 0, sizeof *s);
    s->f = f;
    if (access(db, F_OK) < 0)
        return ctl_fail("%s: no such audit database", db);
    if (sqlite3_open_v2(db, &s->db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        sqlite3_close(s->db);
        s->db = NULL;
        return ctl_fail("%s: cannot open the audit database", db);
    }
    sqlite3_busy_timeout(s->db, 5000);
    s->p = malloc(sizeof *s->p);
    if (!s->p) {
        ctl_audit_src_close(s);
        return ctl_fail("out of memory");
    }
    if (cg_arows_open(s->db, f->from ? f->from : 1, f->since, f->until, &s->it) < 0) {
        int rc = ctl_fail("%s: not a cpmgate audit database (%s)", db, sqlite3_errmsg(s->db));
        ctl_audit_src_close(s);
        return rc;
    }
    return CTL_OK;
}

int ctl_audit_src_next(ctl_audit_src *s, const char *db)
{
    cg_arow row;
    int rc;
    while ((rc = cg_arows_next(s->it, &row)) == 1) {
        s->seq = row.seq;
        s->canon = row.canon && row.canon_len >= 2 ? row.canon : NULL;
        s->canon_len = row.canon_len;
        s->hash = row.hash;
        bool filter = filtering(s->f);
        s->parsed = (filter || s->want_fields) && s->canon &&
                    cg_audit_canon_parse(s->canon, s->canon_len, s->p) == 0;
        if (!filter || (s->parsed && passes(s->f, s->p)))
            return 1;
    }
    return rc == 0 ? 0 : ctl_fail("%s: read error", db);
}

void ctl_audit_src_close(ctl_audit_src *s)
{
    cg_arows_close(s->it);
    sqlite3_close(s->db);
    free(s->p);
    memset(s, 0, sizeof *s);
}

void ctl_audit_jsonl(const ctl_audit_src *s, const char *db)
{
    /* canon plus its hash: drop the key "hash" (and "audit_db") to get the
     * hashed text. The canon goes out as the chain hashed it, never
     * re-encoded through the JSON writer: a SIEM checks the chain from
     * exactly these bytes. */
    char hex[2 * CG_AUDIT_HASH_LEN + 1] = "";
    if (s->hash)
        cg_hex_encode(s->hash, CG_AUDIT_HASH_LEN, hex);
    fwrite(s->canon, 1, s->canon_len - 1, stdout);
    printf(",\"hash\":\"%s\"", hex);
    if (db) {
        fputs(",\"audit_db\":", stdout);
        ctl_json_write(stdout, ctl_jstr(db));
    }
    fputs("}\n", stdout);
}

/* show and export: one reader, three outputs; export --merge interleaves
 * several databases (ctl_audit_merge.c) */
int ctl_audit_show(ctl_ctx *ctx, const ctl_args *a)
{
    bool export = strcmp(a->sub, "export") == 0;
    const char *dbs[CTL_MAX_DBS];
    size_t ndb = ctl_opt_all(a, "--audit-db", dbs, CTL_MAX_DBS);
    const char *db = ctl_opt(a, "--audit-db");
    const char *since = ctl_opt(a, "--since");
    const char *until = ctl_opt(a, "--until");
    const char *limit = ctl_opt(a, "--limit");
    const char *format = ctl_opt(a, "--format");
    const char *from_seq = export ? ctl_opt(a, "--from-seq") : NULL;
    bool follow = export && ctl_flag(a, "--follow");
    bool merge = export && ctl_flag(a, "--merge");
    ctl_audit_filter f = { .txid = ctl_opt(a, "--txid"), .principal = ctl_opt(a, "--principal"),
                      .decision = ctl_opt(a, "--decision"), .origin = merge };
    if (!db)
        return ctl_usage(a);
    if (export && (!format || strcmp(format, "jsonl") != 0)) {
        if (format)
            fprintf(stderr, "cpmgatectl: unknown export format '%s' (jsonl)\n", format);
        return ctl_usage(a);
    }
    if (ndb > 1 && !merge)
        return ctl_fail("several --audit-db: export them with --merge");
    if (ndb > CTL_MAX_DBS)
        return ctl_fail("at most %d --audit-db at once", CTL_MAX_DBS);
    char since_n[CG_TIME_LEN], until_n[CG_TIME_LEN];
    if (since && !norm_time(since, false, since_n))
        return ctl_fail("--since: '%s' is not an RFC 3339 time or a date", since);
    if (until && !norm_time(until, true, until_n))
        return ctl_fail("--until: '%s' is not an RFC 3339 time or a date", until);
    f.since = since ? since_n : NULL;
    f.until = until ? until_n : NULL;
    if (f.decision && strcmp(f.decision, "allow") != 0 && strcmp(f.decision, "deny") != 0 &&
        strcmp(f.decision, "error") != 0)
        return ctl_fail("--decision: '%s' is not allow, deny or error", f.decision);
    if (limit && cg_parse_u64(limit, 1, INT64_MAX, &f.limit) < 0)
        return ctl_fail("--limit: '%s' is not a positive number", limit);
    if (from_seq && cg_parse_u64(from_seq, 1, INT64_MAX, &f.from) < 0)
        return ctl_fail("--from-seq: '%s' is not a positive number", from_seq);
    if (follow) {
        /* the receiver checks the chain line by line: no holes in it */
        if (f.txid || f.principal || since || until || f.decision || limit || merge)
            return ctl_fail("--follow streams the whole chain of one database: of the "
                            "options only --from-seq applies");
        if (access(db, F_OK) < 0)
            return ctl_fail("%s: no such audit database", db);
        return ctl_audit_follow(db, from_seq);
    }
    if (merge) {
        if (from_seq)
            return ctl_fail("--from-seq counts in one database: not with --merge");
        ctl_audit_src srcs[CTL_MAX_DBS];
        memset(srcs, 0, sizeof srcs);
        int rc = CTL_OK;
        for (size_t i = 0; i < ndb && rc == CTL_OK; i++) {
            rc = ctl_audit_src_open(&srcs[i], dbs[i], &f);
            srcs[i].want_fields = true; /* merged by time and node */
        }
        if (rc == CTL_OK)
            rc = ctl_audit_merge(dbs, srcs, ndb, f.limit);
        for (size_t i = 0; i < ndb; i++)
            ctl_audit_src_close(&srcs[i]);
        return rc;
    }
    ctl_audit_src src;
    int rc = ctl_audit_src_open(&src, db, &f);
    if (rc != CTL_OK)
        return rc;
    enum out_mode mode = export ? OUT_JSONL : ctx->json ? OUT_JSON : OUT_TEXT;
    src.want_fields = mode == OUT_TEXT; /* JSON goes out as the canon is */
    unsigned long long n = 0;
    int step = 0;
    if (mode == OUT_JSON)
        fputs("[", stdout);
    while ((!f.limit || n < f.limit) && (step = ctl_audit_src_next(&src, db)) == 1) {
        if (!src.canon)
            continue;
        if (mode == OUT_JSONL) {
            ctl_audit_jsonl(&src, NULL);
        } else if (mode == OUT_JSON) {
            /* records as the chain hashed them (they are JSON), streamed: a
             * log can be large */
            printf("%s\n", n ? "," : "");
            fwrite(src.canon, 1, src.canon_len, stdout);
        } else if (src.parsed) {
            show_line(src.p);
        } else {
            printf("(unreadable record: run audit verify)\n");
        }
        n++;
    }
    if (mode == OUT_JSON)
        fputs(n ? "\n]\n" : "]\n", stdout);
    ctl_audit_src_close(&src);
    return step < 0 ? CTL_ERROR : CTL_OK;
}

/* ---- rotate ----------------------------------------------------------------- */

int ctl_audit_rotate(ctl_ctx *ctx, const ctl_args *a)
{
    const char *db = ctl_opt(a, "--audit-db");
    const char *keyf = ctl_opt(a, "--audit-key");
    if (!db)
        return ctl_usage(a);
    if (access(db, F_OK) < 0)
        return ctl_fail("%s: no such audit database", db);
    const char *err = NULL;
    int fd = -1;
    long pid = 0;
    int rc = cg_afile_lock(db, &fd, &pid, &err);
    if (rc == CG_E_BUSY)
        return ctl_fail("%s is held by the running gateway (pid %ld), which alone writes "
                        "it: ask it to rotate with kill -USR1 %ld", db, pid, pid);
    if (rc < 0)
        return ctl_fail("%s: %s", db, err);
    EVP_PKEY *key = NULL;
    if (keyf && cg_audit_key_load_private(keyf, &key, &err) < 0) {
        cg_afile_unlock(fd);
        return ctl_fail("%s: %s", keyf, err);
    }
    char sealed[4200];
    rc = cg_afile_rotate(db, key, NULL, sealed, sizeof sealed, &err);
    EVP_PKEY_free(key);
    cg_afile_unlock(fd);
    if (rc < 0)
        return ctl_fail("%s: %s", db, err ? err : "rotation failed");
    printf("sealed %s; %s continues the chain\n", sealed, db);
    return CTL_OK;
}
