/* ctl_audit_follow.c — `cpmgatectl audit export --follow`: the audit chain
 * as JSON lines while it grows, for a log shipper (Filebeat, Vector, a
 * Splunk forwarder) that should not read SQLite. Each line is the
 * canon the chain hashed plus "hash" and "prev_hash", so the receiver can recompute
 * hash = SHA-256(prev_hash || canon) and see that no line is missing or
 * out of order.
 *
 * No connection is held between looks: the gateway's rotation (SIGUSR1)
 * switches the sealed file out of WAL mode, which an open reader would
 * block. Every 200 ms the database and its -wal file are stat()ed; a change
 * (or 5 s without one) opens the files, prints what is new and closes
 * them. Records older than the live file's first_seq are read from the
 * sealed files it continues (meta prev_file, beside it), so a rotation
 * while following, or --from-seq of a rotated record, leaves no gap. */
#include <errno.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <sqlite3.h>

#include "policy/ctl/ctl.h"
#include "store/audit_canon.h"
#include "store/audit_file.h"
#include "store/audit_rows.h"
#include "common/cg_error.h"
#include "common/cg_util.h"

#define LOOK_MS 200          /* between stat() looks */
#define RESCAN_LOOKS 25      /* a read every 5 s even when nothing changed */
#define HEX_LEN (2 * CG_AUDIT_HASH_LEN + 1)

static volatile sig_atomic_t stopping;

static void on_stop(int sig) { stopping = sig; }

typedef struct follow {
    const char *path;          /* the live audit database */
    uint64_t next;             /* the next seq to print */
    char prev[HEX_LEN];        /* hash of next - 1; "" until known */
} follow;

typedef struct afile_info {
    sqlite3 *db;
    uint64_t first_seq;
    char prev_hash[HEX_LEN];
    char prev_file[256];       /* "" for the first file of the chain */
} afile_info;

static int open_info(const char *path, afile_info *fi, const char **error_r)
{
    memset(fi, 0, sizeof *fi);
    char v[128];
    if (sqlite3_open_v2(path, &fi->db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        *error_r = cg_say("%s: cannot open: %s", path, fi->db ? sqlite3_errmsg(fi->db) : "");
        goto fail;
    }
    sqlite3_busy_timeout(fi->db, 5000);
    if (cg_afile_meta_get(fi->db, "first_seq", v, sizeof v) < 0 ||
        cg_parse_u64(v, 1, INT64_MAX, &fi->first_seq) < 0 ||
        cg_afile_meta_get(fi->db, "prev_hash", fi->prev_hash, sizeof fi->prev_hash) < 0) {
        *error_r = cg_say("%s: not a cpmgate audit database", path);
        goto fail;
    }
    if (cg_afile_meta_get(fi->db, "prev_file", fi->prev_file, sizeof fi->prev_file) < 0)
        fi->prev_file[0] = '\0';
    return 0;
fail:
    sqlite3_close(fi->db);
    fi->db = NULL;
    return CG_E_DB;
}

/* Opens the file of the chain that holds seq: the live one, or the sealed
 * file it continues, and so on back. */
static int find_file(const char *live, uint64_t seq, afile_info *fi, const char **error_r)
{
    char cur[4200], dir[4200];
    if (!cg_strlcpy(cur, live, sizeof cur) || !cg_strlcpy(dir, live, sizeof dir)) {
        *error_r = "audit database path too long";
        return CG_E_INVAL;
    }
    const char *d = dirname(dir);
    for (;;) {
        int rc = open_info(cur, fi, error_r);
        if (rc < 0)
            return rc;
        if (fi->first_seq <= seq)
            return 0;
        sqlite3_close(fi->db);
        fi->db = NULL;
        if (!fi->prev_file[0] || strchr(fi->prev_file, '/')) {
            *error_r = cg_say("seq %llu is older than the oldest audit file (%s starts at %llu)",
                              (unsigned long long)seq, cur,
                              (unsigned long long)fi->first_seq);
            return CG_E_NOTFOUND;
        }
        snprintf(cur, sizeof cur, "%s/%s", d, fi->prev_file);
    }
}

/* Prints fi's records from f->next on. *more: the file ended and a later
 * file of the chain may continue it (records printed, or a sealed file). */
static int print_from(follow *f, afile_info *fi, bool *more, const char **error_r)
{
    *more = false;
    if (!f->prev[0] && f->next == fi->first_seq)
        cg_strlcpy(f->prev, fi->prev_hash, sizeof f->prev);
    cg_arows *it;
    if (cg_arows_open(fi->db, f->next > 1 ? f->next - 1 : 1, NULL, NULL, &it) < 0) {
        *error_r = cg_say("cannot read: %s", sqlite3_errmsg(fi->db));
        return CG_E_DB;
    }
    cg_arow row;
    int step, rc = 0;
    while ((step = cg_arows_next(it, &row)) == 1) {
        char hex[HEX_LEN] = "";
        if (row.hash)
            cg_hex_encode(row.hash, CG_AUDIT_HASH_LEN, hex);
        if (row.seq + 1 == f->next) { /* the record before: its hash is prev */
            cg_strlcpy(f->prev, hex, sizeof f->prev);
            continue;
        }
        if (row.seq != f->next || !row.canon || row.canon_len < 2) {
            *error_r = cg_say("record %llu missing or unreadable (at %llu): run audit verify",
                              (unsigned long long)f->next, (unsigned long long)row.seq);
            rc = CG_E_DB;
            break;
        }
        fwrite(row.canon, 1, row.canon_len - 1, stdout);
        printf(",\"hash\":\"%s\",\"prev_hash\":\"%s\"}\n", hex, f->prev);
        cg_strlcpy(f->prev, hex, sizeof f->prev);
        f->next = row.seq + 1;
        *more = true;
    }
    cg_arows_close(it);
    if (rc == 0 && step < 0) {
        *error_r = cg_say("cannot read: %s", sqlite3_errmsg(fi->db));
        rc = CG_E_DB;
    }
    return rc;
}

/* Prints everything from f->next to the end of the live file. */
static int drain(follow *f, const char **error_r)
{
    for (;;) {
        afile_info fi;
        int rc = find_file(f->path, f->next, &fi, error_r);
        if (rc < 0)
            return rc;
        bool more = false;
        rc = print_from(f, &fi, &more, error_r);
        sqlite3_close(fi.db);
        if (fflush(stdout) != 0) {
            *error_r = cg_say("cannot write the output: %s", strerror(errno));
            return CG_E_IO;
        }
        /* Printed something: a later (rotated-to) file may hold the rest;
         * find_file of the new next says, and ends at the live file. */
        if (rc < 0 || !more)
            return rc;
    }
}

typedef struct look {
    struct stat db, wal;
    bool db_ok, wal_ok;
} look;

static bool same_stat(const struct stat *a, const struct stat *b)
{
    return a->st_ino == b->st_ino && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

static bool changed(const char *path, look *l)
{
    char wal[4200];
    snprintf(wal, sizeof wal, "%s-wal", path);
    look n;
    n.db_ok = stat(path, &n.db) == 0;
    n.wal_ok = stat(wal, &n.wal) == 0;
    bool c = n.db_ok != l->db_ok || n.wal_ok != l->wal_ok ||
             (n.db_ok && !same_stat(&n.db, &l->db)) || (n.wal_ok && !same_stat(&n.wal, &l->wal));
    *l = n;
    return c;
}

/* The live file's last seq, to start after it. */
static int last_seq(const char *path, uint64_t *out, const char **error_r)
{
    afile_info fi;
    int rc = open_info(path, &fi, error_r);
    if (rc < 0)
        return rc;
    *out = fi.first_seq - 1;
    uint8_t hash[CG_AUDIT_HASH_LEN];
    int found = cg_afile_last(fi.db, out, hash);
    if (found < 0) {
        *error_r = cg_say("%s: cannot read: %s", path, sqlite3_errmsg(fi.db));
        rc = CG_E_DB;
    }
    sqlite3_close(fi.db);
    return rc;
}

int ctl_audit_follow(const char *db, const char *from_seq)
{
    follow f = { .path = db };
    const char *err = NULL;
    if (from_seq) {
        if (cg_parse_u64(from_seq, 1, INT64_MAX, &f.next) < 0)
            return ctl_fail("--from-seq: '%s' is not a positive number", from_seq);
    } else {
        uint64_t last;
        if (last_seq(db, &last, &err) < 0)
            return ctl_fail("%s", err);
        f.next = last + 1;
    }
    struct sigaction sa = { .sa_handler = on_stop };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    look l = { 0 };
    changed(db, &l);
    if (drain(&f, &err) < 0)
        return ctl_fail("%s", err);
    unsigned idle = 0, failed = 0;
    while (!stopping) {
        struct timespec ts = { 0, LOOK_MS * 1000000L };
        nanosleep(&ts, NULL); /* a signal ends it early */
        if (stopping)
            break;
        if (!changed(db, &l) && ++idle < RESCAN_LOOKS)
            continue;
        idle = 0;
        /* A rotation renames the live file away for a moment and holds a
         * lock while it seals: try again at the next look, for a while. */
        if (drain(&f, &err) < 0 && ++failed > RESCAN_LOOKS)
            return ctl_fail("%s", err);
        else if (!err)
            failed = 0;
        err = NULL;
    }
    return CTL_OK;
}
