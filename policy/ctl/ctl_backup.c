/* ctl_backup.c — `cpmgatectl backup DIR` and `cpmgatectl restore DIR`: a
 * consistent copy of the policy, audit and content databases taken while
 * the gateway runs, its audit chain verified, described by DIR/MANIFEST.json
 * (each file's size and SHA-256, the audit copy's last seq and chain head,
 * the time, the program version); and putting such a copy back on a
 * stopped gateway, after checking the hashes and the chain again.
 *
 * Which databases: the policy database of -d / $CPMGATE_DB, else of the
 * configuration (--config); the audit and content databases of --audit-db
 * and --content-db, else of the configuration. Restore puts each copy back
 * where those options say, else where the manifest says it came from. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ini.h>
#include <openssl/evp.h>
#include <sqlite3.h>

#include "policy/ctl/ctl.h"
#include "store/audit_canon.h"
#include "store/audit_file.h"
#include "store/db_copy.h"
#include "common/cg_error.h"
#include "common/cg_util.h"

#ifndef CG_VERSION
#define CG_VERSION "unknown"
#endif

#define MANIFEST "MANIFEST.json"
#define MANIFEST_FORMAT "cpmgate-backup-v1"
#define MANIFEST_MAX (64 * 1024)
#define HEX_LEN (2 * CG_AUDIT_HASH_LEN + 1)

enum { DB_POLICY, DB_AUDIT, DB_CONTENT, NDB };
static const char *const db_name[NDB] = { "policy", "audit", "content" };
static const char *const db_file[NDB] = { "policy.db", "audit.db", "content.db" };

/* The databases a command line names: path[i] NULL when none; named[i]
 * when an option (not the configuration) named it. */
typedef struct dbset {
    const char *path[NDB];
    bool named[NDB];
    char conf[NDB][PATH_MAX];  /* from --config */
    const char *conf_dir;
    bool conf_bad;
} dbset;

/* --config: policy_db, audit_db and content_db of [gateway], defaults and
 * relative paths as the gateway takes them (proxy/core/config.c's key
 * table: policy.db, audit.db, content.db beside the file). Read with inih
 * here, not with the gateway's loader: that one checks every certificate
 * and key, which a backup user need not be able to read. */
static int conf_key(void *user, const char *section, const char *name, const char *value)
{
    dbset *s = user;
    if (strcmp(section, "gateway") != 0)
        return 1;
    for (int i = 0; i < NDB; i++) {
        char key[16];
        snprintf(key, sizeof key, "%s_db", db_name[i]);
        if (strcmp(name, key) != 0)
            continue;
        /* inih cuts values near 200 bytes: a path that long is refused */
        if (!*value || strlen(value) >= 190)
            s->conf_bad = true;
        else if (value[0] == '/' || cg_pstore_url(value))
            cg_strlcpy(s->conf[i], value, sizeof s->conf[i]);
        else
            snprintf(s->conf[i], sizeof s->conf[i], "%s/%s", s->conf_dir, value);
    }
    return 1;
}

static int read_conf(dbset *s, const char *conf)
{
    char dir[PATH_MAX];
    if (!cg_strlcpy(dir, conf, sizeof dir))
        return ctl_fail("%s: path too long", conf);
    s->conf_dir = dirname(dir);
    for (int i = 0; i < NDB; i++)
        snprintf(s->conf[i], sizeof s->conf[i], "%s/%s", s->conf_dir, db_file[i]);
    int line = ini_parse(conf, conf_key, s);
    if (line < 0)
        return ctl_fail("%s: cannot read the configuration", conf);
    if (line > 0)
        return ctl_fail("%s:%d: not a configuration line (cpmgate -t says more)", conf, line);
    if (s->conf_bad)
        return ctl_fail("%s: a database path is empty or too long to read here: name the "
                        "databases with -d, --audit-db and --content-db", conf);
    for (int i = 0; i < NDB; i++)
        s->path[i] = s->conf[i];
    return CTL_OK;
}

static int resolve(ctl_ctx *ctx, const ctl_args *a, dbset *s)
{
    memset(s, 0, sizeof *s);
    const char *conf = ctl_opt(a, "--config");
    if (conf && read_conf(s, conf) != CTL_OK)
        return CTL_ERROR;
    const char *opt[NDB] = { ctx->db_path, ctl_opt(a, "--audit-db"), ctl_opt(a, "--content-db") };
    for (int i = 0; i < NDB; i++)
        if (opt[i]) {
            s->path[i] = opt[i];
            s->named[i] = true;
        }
    if (cg_pstore_url(s->path[DB_POLICY])) {
        char label[512];
        cg_pstore_redact(s->path[DB_POLICY], label, sizeof label);
        return ctl_fail("%s is a PostgreSQL database: backup and restore copy SQLite files; "
                        "back it up with pg_dump, or copy the policy into a file with "
                        "cpmgatectl copy", label);
    }
    return CTL_OK;
}

static int load_key(const ctl_args *a, EVP_PKEY **key)
{
    const char *keyf = ctl_opt(a, "--key");
    const char *err = NULL;
    *key = NULL;
    if (keyf && cg_audit_key_load_public(keyf, key, &err) < 0)
        return ctl_fail("%s: %s", keyf, err);
    return CTL_OK;
}

/* The verdict on an audit copy, and its chain head (the last record's
 * hash, or the file's genesis when it has none). */
static int verify_audit(const char *path, EVP_PKEY *key, cg_audit_verify_result *res,
                        char head[HEX_LEN])
{
    const char *err = NULL;
    if (cg_audit_verify_db(path, key, res, &err) < 0)
        return ctl_fail("%s: %s", path, err);
    if (!res->intact)
        return ctl_fail("%s: audit chain broken at seq %llu: %s", path,
                        (unsigned long long)res->broken_seq, res->what);
    sqlite3 *h = NULL;
    int rc = CTL_ERROR;
    if (sqlite3_open_v2(path, &h, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK) {
        uint64_t seq;
        uint8_t hash[CG_AUDIT_HASH_LEN];
        int found = cg_afile_last(h, &seq, hash);
        if (found == 1) {
            cg_hex_encode(hash, CG_AUDIT_HASH_LEN, head);
            rc = CTL_OK;
        } else if (found == 0 && cg_afile_meta_get(h, "prev_hash", head, HEX_LEN) == 0) {
            rc = CTL_OK;
        }
    }
    sqlite3_close(h);
    return rc == CTL_OK ? rc : ctl_fail("%s: cannot read the chain head", path);
}

/* ---- backup ---------------------------------------------------------------- */

static int make_dir(const char *dir)
{
    if (mkdir(dir, 0700) == 0)
        return CTL_OK;
    if (errno != EEXIST)
        return ctl_fail("cannot create %s: %s", dir, strerror(errno));
    DIR *d = opendir(dir);
    if (!d)
        return ctl_fail("%s: %s", dir, strerror(errno));
    struct dirent *e;
    bool empty = true;
    while (empty && (e = readdir(d)))
        empty = strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0;
    closedir(d);
    return empty ? CTL_OK : ctl_fail("%s is not empty: back up into a new directory", dir);
}

/* json text into dir/MANIFEST.json: aside, fsync, rename. */
static int write_manifest(const char *dir, json_object *m)
{
    char tmp[PATH_MAX + 32], final[PATH_MAX + 32];
    snprintf(tmp, sizeof tmp, "%s/%s.tmp", dir, MANIFEST);
    snprintf(final, sizeof final, "%s/%s", dir, MANIFEST);
    const char *text = json_object_to_json_string_ext(m, JSON_C_TO_STRING_PRETTY |
                                                          JSON_C_TO_STRING_NOSLASHESCAPE);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (!text || fd < 0) {
        if (fd >= 0)
            close(fd);
        return ctl_fail("cannot write %s", tmp);
    }
    size_t n = strlen(text);
    bool ok = write(fd, text, n) == (ssize_t)n && write(fd, "\n", 1) == 1 && fsync(fd) == 0;
    ok = close(fd) == 0 && ok;
    if (!ok || rename(tmp, final) < 0) {
        unlink(tmp);
        return ctl_fail("cannot write %s", final);
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return CTL_OK;
}

static json_object *audit_json(const cg_audit_verify_result *r, const char *head)
{
    json_object *o = ctl_jobj();
    ctl_jset(o, "first_seq", ctl_juint(r->first_seq));
    ctl_jset(o, "last_seq", ctl_juint(r->last_seq));
    ctl_jset(o, "records", ctl_juint(r->records));
    ctl_jset(o, "checkpoints", ctl_juint(r->checkpoints));
    ctl_jset(o, "last_checkpoint_seq", ctl_juint(r->last_checkpoint_seq));
    ctl_jset(o, "chain_head", ctl_jstr(head));
    return o;
}

/* Copies one database into dir, hashes the copy and adds it to files. */
static int copy_one(const dbset *s, int i, const char *dir, EVP_PKEY *key, json_object *files,
                    json_object *m)
{
    const char *src = s->path[i];
    if (access(src, F_OK) < 0) {
        if (s->named[i])
            return ctl_fail("%s: no such %s database", src, db_name[i]);
        fprintf(stderr, "cpmgatectl: %s: no %s database yet, not copied\n", src, db_name[i]);
        return CTL_OK;
    }
    char dst[PATH_MAX + 32], src_abs[PATH_MAX], hex[HEX_LEN];
    snprintf(dst, sizeof dst, "%s/%s", dir, db_file[i]);
    const char *err = NULL;
    if (!realpath(src, src_abs))
        return ctl_fail("%s: %s", src, strerror(errno));
    if (cg_db_copy_online(src, dst, &err) < 0)
        return ctl_fail("%s", err);
    if (i == DB_AUDIT) {
        cg_audit_verify_result res;
        char head[HEX_LEN];
        if (verify_audit(dst, key, &res, head) != CTL_OK)
            return CTL_ERROR;
        ctl_jset(m, "audit", audit_json(&res, head));
    }
    uint8_t sum[32];
    uint64_t size;
    if (cg_file_sha256(dst, sum, &size, &err) < 0)
        return ctl_fail("%s", err);
    cg_hex_encode(sum, sizeof sum, hex);
    json_object *f = ctl_jobj();
    ctl_jset(f, "name", ctl_jstr(db_name[i]));
    ctl_jset(f, "file", ctl_jstr(db_file[i]));
    ctl_jset(f, "source", ctl_jstr(src_abs));
    ctl_jset(f, "size", ctl_juint(size));
    ctl_jset(f, "sha256", ctl_jstr(hex));
    ctl_jset(files, NULL, f);
    return CTL_OK;
}

int ctl_backup(ctl_ctx *ctx, const ctl_args *a)
{
    const char *dir = a->pos[0];
    dbset s;
    if (resolve(ctx, a, &s) != CTL_OK)
        return CTL_ERROR;
    if (!s.path[DB_POLICY] && !s.path[DB_AUDIT] && !s.path[DB_CONTENT]) {
        fputs("cpmgatectl: name the databases: -d POLICY_DB, --audit-db, --content-db "
              "or --config\n", stderr);
        return ctl_usage(a);
    }
    EVP_PKEY *key = NULL;
    if (load_key(a, &key) != CTL_OK || make_dir(dir) != CTL_OK)
        return CTL_ERROR;
    char t[CG_TIME_LEN];
    cg_time_rfc3339(cg_time_now_usec(), t);
    json_object *m = ctl_jobj(), *files = ctl_jarr();
    ctl_jset(m, "format", ctl_jstr(MANIFEST_FORMAT));
    ctl_jset(m, "version", ctl_jstr(CG_VERSION));
    ctl_jset(m, "time", ctl_jstr(t));
    ctl_jset(m, "files", files);
    int rc = CTL_OK;
    /* The audit database first: its position in the policy log is then at
     * most the policy copy's last row, so after a restore the gateway
     * copies the rows in between into the chain, and none is skipped. */
    static const int order[NDB] = { DB_AUDIT, DB_POLICY, DB_CONTENT };
    for (int k = 0; k < NDB && rc == CTL_OK; k++)
        if (s.path[order[k]])
            rc = copy_one(&s, order[k], dir, key, files, m);
    if (rc == CTL_OK && json_object_array_length(files) == 0)
        rc = ctl_fail("none of the databases exists: nothing backed up");
    if (rc == CTL_OK)
        rc = write_manifest(dir, m);
    if (rc == CTL_OK && ctx->json) {
        rc = ctl_json_print(json_object_get(m));
    } else if (rc == CTL_OK) {
        for (size_t k = 0; k < json_object_array_length(files); k++) {
            json_object *f = json_object_array_get_idx(files, k), *v;
            json_object_object_get_ex(f, "file", &v);
            printf("%s/%s", dir, json_object_get_string(v));
            json_object_object_get_ex(f, "source", &v);
            printf(" <- %s", json_object_get_string(v));
            json_object_object_get_ex(f, "size", &v);
            printf(" (%lld bytes)\n", (long long)json_object_get_int64(v));
        }
        json_object *au, *v;
        if (json_object_object_get_ex(m, "audit", &au) &&
            json_object_object_get_ex(au, "last_seq", &v))
            printf("audit chain intact up to seq %lld\n", (long long)json_object_get_int64(v));
    }
    json_object_put(m);
    EVP_PKEY_free(key);
    return rc;
}

/* ---- restore --------------------------------------------------------------- */

static const char *jstr(json_object *o, const char *k)
{
    json_object *v;
    return json_object_object_get_ex(o, k, &v) && json_object_is_type(v, json_type_string)
               ? json_object_get_string(v) : NULL;
}

static bool juint(json_object *o, const char *k, uint64_t *out)
{
    json_object *v;
    if (!json_object_object_get_ex(o, k, &v) || !json_object_is_type(v, json_type_int) ||
        json_object_get_int64(v) < 0)
        return false;
    *out = (uint64_t)json_object_get_int64(v);
    return true;
}

/* One file of the manifest, checked against its copy in dir. */
typedef struct entry {
    bool present;
    char copy[PATH_MAX + 32];
    const char *source;
} entry;

static int check_entry(const char *dir, json_object *f, entry ents[NDB])
{
    const char *name = jstr(f, "name"), *file = jstr(f, "file"), *sha = jstr(f, "sha256");
    uint64_t size, got_size;
    int i = 0;
    while (i < NDB && !(name && strcmp(name, db_name[i]) == 0))
        i++;
    if (i == NDB || !file || strcmp(file, db_file[i]) != 0 || !sha || !juint(f, "size", &size) ||
        ents[i].present)
        return ctl_fail("%s/%s: an entry of the manifest is not understood", dir, MANIFEST);
    entry *e = &ents[i];
    snprintf(e->copy, sizeof e->copy, "%s/%s", dir, file);
    e->source = jstr(f, "source");
    e->present = true;
    uint8_t sum[32];
    char hex[HEX_LEN];
    const char *err = NULL;
    if (cg_file_sha256(e->copy, sum, &got_size, &err) < 0)
        return ctl_fail("%s", err);
    cg_hex_encode(sum, sizeof sum, hex);
    if (got_size != size || strcmp(hex, sha) != 0)
        return ctl_fail("%s: %s differs from the manifest: the backup is damaged, nothing "
                        "restored", e->copy, got_size != size ? "size" : "SHA-256");
    if (cg_db_copy_check(e->copy, &err) < 0)
        return ctl_fail("%s", err);
    return CTL_OK;
}

/* The audit copy's chain must verify and end where the manifest says. */
static int check_audit(const entry *e, json_object *m, EVP_PKEY *key)
{
    json_object *au;
    uint64_t last;
    const char *head_m = NULL;
    if (json_object_object_get_ex(m, "audit", &au))
        head_m = jstr(au, "chain_head");
    if (!head_m || !juint(au, "last_seq", &last))
        return ctl_fail("%s: the manifest has no audit chain head", MANIFEST);
    cg_audit_verify_result res;
    char head[HEX_LEN];
    if (verify_audit(e->copy, key, &res, head) != CTL_OK)
        return CTL_ERROR;
    if (res.last_seq != last || strcmp(head, head_m) != 0)
        return ctl_fail("%s: the chain ends at seq %llu, not where the manifest says (%llu)",
                        e->copy, (unsigned long long)res.last_seq, (unsigned long long)last);
    return CTL_OK;
}

static int restore_checked(const dbset *s, const entry ents[NDB])
{
    const char *target[NDB];
    for (int i = 0; i < NDB; i++)
        target[i] = s->path[i] ? s->path[i] : ents[i].source;
    if (!target[DB_AUDIT])
        return ctl_fail("name the audit database (--audit-db or --config): restore checks "
                        "that no gateway holds it");
    for (int i = 0; i < NDB; i++)
        if (ents[i].present && !target[i])
            return ctl_fail("where does the %s database go? Name it (%s or --config)",
                            db_name[i], i == DB_POLICY ? "-d" : i == DB_AUDIT ? "--audit-db"
                                                                              : "--content-db");
    int fd = -1;
    long pid = 0;
    const char *err = NULL;
    int rc = cg_afile_lock(target[DB_AUDIT], &fd, &pid, &err);
    if (rc == CG_E_BUSY)
        return ctl_fail("%s is held by the running gateway (pid %ld): stop it before "
                        "restoring", target[DB_AUDIT], pid);
    if (rc < 0)
        return ctl_fail("%s: %s", target[DB_AUDIT], err);
    /* the gateway cannot start while the lock is held here */
    rc = CTL_OK;
    static const int order[NDB] = { DB_POLICY, DB_CONTENT, DB_AUDIT };
    for (int k = 0; k < NDB && rc == CTL_OK; k++) {
        int i = order[k];
        if (!ents[i].present)
            continue;
        if (cg_file_install(ents[i].copy, target[i], &err) < 0)
            rc = ctl_fail("%s", err);
        else
            printf("%s -> %s\n", ents[i].copy, target[i]);
    }
    cg_afile_unlock(fd);
    return rc;
}

int ctl_restore(ctl_ctx *ctx, const ctl_args *a)
{
    const char *dir = a->pos[0];
    char mpath[PATH_MAX + 32];
    snprintf(mpath, sizeof mpath, "%s/%s", dir, MANIFEST);
    size_t len;
    const char *why = NULL;
    char *text = ctl_slurp(mpath, MANIFEST_MAX, &len, &why);
    if (!text)
        return ctl_fail("%s: %s", mpath, why);
    json_object *m = json_tokener_parse(text);
    free(text);
    json_object *files;
    const char *fmt = m ? jstr(m, "format") : NULL;
    if (!fmt || strcmp(fmt, MANIFEST_FORMAT) != 0 ||
        !json_object_object_get_ex(m, "files", &files) ||
        !json_object_is_type(files, json_type_array)) {
        json_object_put(m);
        return ctl_fail("%s: not a cpmgate backup manifest", mpath);
    }
    dbset s;
    EVP_PKEY *key = NULL;
    if (resolve(ctx, a, &s) != CTL_OK) {
        json_object_put(m);
        return CTL_ERROR;
    }
    entry ents[NDB];
    memset(ents, 0, sizeof ents);
    int rc = load_key(a, &key);
    for (size_t k = 0; rc == CTL_OK && k < json_object_array_length(files); k++)
        rc = check_entry(dir, json_object_array_get_idx(files, k), ents);
    if (rc == CTL_OK && ents[DB_AUDIT].present)
        rc = check_audit(&ents[DB_AUDIT], m, key);
    if (rc == CTL_OK)
        rc = restore_checked(&s, ents);
    json_object_put(m);
    EVP_PKEY_free(key);
    return rc;
}
