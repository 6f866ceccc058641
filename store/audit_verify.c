/* audit_verify.c — proves an audit database intact, or names the first
 * record that was changed, removed, inserted or reordered and the first
 * checkpoint that was forged (SPEC section 5). Reads one snapshot of the
 * file (a read transaction), so it can run beside the writing gateway.
 *
 * What a verdict can and cannot say: every record up to the last signed
 * checkpoint is pinned by that signature. Records after it are only
 * chained: a tail cut after the last checkpoint is indistinguishable from a
 * crash before the next one, and the output says so. A sealed file must end
 * with its final checkpoint. */
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/evp.h>
#include <sqlite3.h>

#include "store/audit_canon.h"
#include "store/audit_file.h"
#include "store/audit_rows.h"
#include "common/cg_buf.h"
#include "common/cg_error.h"
#include "common/cg_util.h"

typedef struct ckpt {
    uint64_t seq;
    uint8_t hash[CG_AUDIT_HASH_LEN];
    bool hash_ok;
    uint8_t sig[256];
    size_t siglen;
    char fpr[65];
    bool has_node;                       /* NULL node: a v1 checkpoint */
    char node[CG_AUDIT_NODE_MAX + 2];    /* one more: a longer one is caught */
} ckpt;

typedef struct vkey {
    char fpr[65];
    EVP_PKEY *key;
} vkey;

typedef struct vctx {
    sqlite3 *db;
    EVP_PKEY *key;      /* trusted, from --key */
    char key_fpr[65];
    vkey *keys;         /* from the file, when no --key */
    size_t nkeys;
    ckpt *ck;
    size_t nck, ci;
    cg_audit_verify_result *res;
    cg_audit_parsed *parsed;
    char *canon2;
    bool unchecked_key;
    /* the block being walked: its first record's seq and time, and the
     * time of the record before */
    uint64_t blk_seq;
    char blk_time[CG_TIME_LEN], prev_time[CG_TIME_LEN];
} vctx;

static void broken(vctx *v, uint64_t seq, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void broken(vctx *v, uint64_t seq, const char *fmt, ...)
{
    if (!v->res->intact)
        return; /* only the first break counts */
    v->res->intact = false;
    v->res->broken_seq = seq;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->res->what, sizeof v->res->what, fmt, ap);
    va_end(ap);
}

static void note(vctx *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(vctx *v, const char *fmt, ...)
{
    char *n = v->res->notes;
    size_t len = strlen(n);
    if (len + 4 >= sizeof v->res->notes)
        return;
    if (len)
        len += (size_t)snprintf(n + len, sizeof v->res->notes - len, "; ");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(n + len, sizeof v->res->notes - len, fmt, ap);
    va_end(ap);
}

static int load_checkpoints(vctx *v)
{
    /* files of schema version 1 (before node ids) have no node column */
    int ver = 0;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(v->db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW)
            ver = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
    }
    if (sqlite3_prepare_v2(v->db, ver >= 2
                           ? "SELECT seq, hash, signature, key_fpr, node FROM checkpoints ORDER BY seq"
                           : "SELECT seq, hash, signature, key_fpr, NULL FROM checkpoints ORDER BY seq",
                           -1, &st, NULL) != SQLITE_OK)
        return CG_E_DB;
    size_t cap = 0; /* bytes behind v->ck */
    while (sqlite3_step(st) == SQLITE_ROW) {
        if (!cg_buf_grow((void **)&v->ck, &cap, (v->nck + 1) * sizeof *v->ck,
                         64 * sizeof *v->ck, SIZE_MAX)) {
            sqlite3_finalize(st);
            return CG_E_NOMEM;
        }
        ckpt *c = &v->ck[v->nck++];
        memset(c, 0, sizeof *c);
        c->seq = (uint64_t)sqlite3_column_int64(st, 0);
        c->hash_ok = sqlite3_column_bytes(st, 1) == CG_AUDIT_HASH_LEN;
        if (c->hash_ok)
            memcpy(c->hash, sqlite3_column_blob(st, 1), CG_AUDIT_HASH_LEN);
        int sl = sqlite3_column_bytes(st, 2);
        if (sl > 0 && (size_t)sl <= sizeof c->sig) {
            memcpy(c->sig, sqlite3_column_blob(st, 2), (size_t)sl);
            c->siglen = (size_t)sl;
        }
        const char *f = (const char *)sqlite3_column_text(st, 3);
        cg_strlcpy(c->fpr, f ? f : "", sizeof c->fpr);
        const char *nd = (const char *)sqlite3_column_text(st, 4);
        c->has_node = nd != NULL;
        cg_strlcpy(c->node, nd ? nd : "", sizeof c->node);
    }
    sqlite3_finalize(st);
    return 0;
}

static void load_keys(vctx *v)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(v->db, "SELECT fpr, pem FROM keys", -1, &st, NULL) != SQLITE_OK)
        return;
    size_t cap = 0; /* bytes behind v->keys */
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *pem = (const char *)sqlite3_column_text(st, 1);
        EVP_PKEY *k = NULL;
        if (!pem || cg_audit_key_from_pem(pem, &k) < 0)
            continue;
        if (!cg_buf_grow((void **)&v->keys, &cap, (v->nkeys + 1) * sizeof *v->keys,
                         4 * sizeof *v->keys, SIZE_MAX)) {
            EVP_PKEY_free(k);
            break;
        }
        vkey *n = v->keys;
        /* The fingerprint is recomputed: the column is not trusted. */
        if (cg_audit_key_fingerprint(k, n[v->nkeys].fpr) < 0) {
            EVP_PKEY_free(k);
            continue;
        }
        n[v->nkeys++].key = k;
    }
    sqlite3_finalize(st);
}

/* One checkpoint against the chain hash of its record, and its node
 * against the node that wrote the record (rec_node, NULL: none). */
static void check_ckpt(vctx *v, const ckpt *c, const uint8_t chain[CG_AUDIT_HASH_LEN],
                       const char *rec_node)
{
    if (!c->hash_ok || memcmp(c->hash, chain, CG_AUDIT_HASH_LEN) != 0) {
        broken(v, c->seq, "checkpoint at seq %llu does not match the chain "
               "(the checkpoint was forged, or a record up to it was changed and rehashed)",
               (unsigned long long)c->seq);
        return;
    }
    if (c->has_node && (!cg_audit_node_ok(c->node) ||
                        (rec_node && strcmp(rec_node, c->node) != 0))) {
        broken(v, c->seq, "checkpoint at seq %llu names node \"%.64s\", not the node "
               "of its record", (unsigned long long)c->seq, c->node);
        return;
    }
    char msg[CG_AUDIT_CKPT_MSG_MAX];
    size_t mlen = cg_audit_checkpoint_msg(c->seq, chain, c->has_node ? c->node : NULL, msg);
    EVP_PKEY *k = NULL;
    if (v->key) {
        if (strcmp(c->fpr, v->key_fpr) != 0) {
            broken(v, c->seq, "checkpoint at seq %llu is not signed by the given key "
                   "(it names key %.16s...)", (unsigned long long)c->seq, c->fpr);
            return;
        }
        k = v->key;
    } else {
        for (size_t i = 0; i < v->nkeys; i++)
            if (strcmp(v->keys[i].fpr, c->fpr) == 0)
                k = v->keys[i].key;
        if (!k) {
            v->unchecked_key = true;
            return;
        }
    }
    if (!cg_audit_sig_ok(k, msg, mlen, c->sig, c->siglen))
        broken(v, c->seq, "checkpoint at seq %llu: the signature does not verify%s "
               "(forged checkpoint)", (unsigned long long)c->seq,
               v->key ? " with the given key" : "");
}

static bool str_eq(const char *got, const char *want)
{
    if (!got || !want)
        return got == want;
    return strcmp(got, want) == 0;
}

/* A record read from a block, once it is proved part of the chain: the
 * records of a block are in time order (while it runs, the writer's
 * times never go back, and a block never outlives a commit), and at its
 * last one the block's columns must name its first and last record. That
 * is what lets show skip a block by first_time and last_time, and export
 * --from-seq by last_seq, without hiding a record.
 * (first_seq is held at the block's first record, in walk.) */
static bool block_ok(vctx *v, const cg_arow *row, uint64_t seq, const char *time)
{
    const cg_ablock *b = row->block;
    if (row->block_first) {
        v->blk_seq = seq;
        cg_strlcpy(v->blk_time, time, sizeof v->blk_time);
    } else if (strcmp(time, v->prev_time) < 0) {
        broken(v, seq, "block %lld changed: record %llu is older than the record before it "
               "(a block's records are in time order)", (long long)b->last_seq,
               (unsigned long long)seq);
        return false;
    }
    cg_strlcpy(v->prev_time, time, sizeof v->prev_time);
    if (!row->block_last)
        return true;
    if (b->last_seq != (int64_t)seq)
        broken(v, v->blk_seq, "block %lld changed: its last_seq column is not the seq of its "
               "last record (%llu)", (long long)b->last_seq, (unsigned long long)seq);
    else if (strcmp(b->first_time, v->blk_time) != 0)
        broken(v, v->blk_seq, "block %lld changed: its first_time column (\"%s\") is not the "
               "time of its first record (%s)", (long long)b->last_seq, b->first_time,
               v->blk_time);
    else if (strcmp(b->last_time, time) != 0)
        broken(v, v->blk_seq, "block %lld changed: its last_time column (\"%s\") is not the "
               "time of its last record (%s)", (long long)b->last_seq, b->last_time, time);
    return v->res->intact;
}

static void walk(vctx *v, uint64_t first, const uint8_t genesis[CG_AUDIT_HASH_LEN])
{
    cg_audit_verify_result *res = v->res;
    cg_arows *it;
    if (cg_arows_open(v->db, 1, NULL, NULL, &it) < 0) {
        broken(v, first, "the records table cannot be read");
        return;
    }
    uint8_t prev[CG_AUDIT_HASH_LEN], prev2[CG_AUDIT_HASH_LEN];
    memcpy(prev, genesis, sizeof prev);
    memcpy(prev2, genesis, sizeof prev2);
    uint64_t expect = first;
    cg_arow row;
    int step = 1;
    while (res->intact && (step = cg_arows_next(it, &row)) == 1) {
        uint64_t seq = row.seq;
        const char *canon = row.canon;
        size_t clen = row.canon_len;
        res->records++;
        bool parsed = canon && cg_audit_canon_parse(canon, clen, v->parsed) == 0;
        /* the record the chain expects, numbered otherwise by its block */
        if (parsed && row.block_first && v->parsed->seq == expect && seq != expect) {
            broken(v, expect, "block %lld changed: its first_seq column (%lld) is not the "
                   "seq of its first record (%llu)", (long long)row.block->last_seq,
                   (long long)row.block->first_seq, (unsigned long long)expect);
            break;
        }
        if (seq < expect) {
            broken(v, seq, "record %llu precedes the file's first seq %llu (inserted)",
                   (unsigned long long)seq, (unsigned long long)first);
            break;
        }
        if (!parsed) {
            broken(v, seq, "record %llu changed: its content is not a valid record",
                   (unsigned long long)seq);
            break;
        }
        cg_audit_parsed *p = v->parsed;
        if (p->seq != seq) {
            uint64_t nxt = cg_arows_peek_seq(it);
            if (p->seq > seq && nxt == seq)
                broken(v, seq, "records %llu and %llu reordered (this row holds record %llu)",
                       (unsigned long long)seq, (unsigned long long)p->seq,
                       (unsigned long long)p->seq);
            else if (p->seq > seq)
                broken(v, seq, "record %llu removed (this row holds record %llu; the "
                       "rows after it were renumbered)", (unsigned long long)seq,
                       (unsigned long long)p->seq);
            else {
                /* Does this row continue the chain from two rows back? Then
                 * the row before it is the inserted one. */
                uint8_t h2[CG_AUDIT_HASH_LEN];
                cg_audit_chain_hash(prev2, canon, clen, h2);
                if (seq > first && row.hash && memcmp(row.hash, h2, CG_AUDIT_HASH_LEN) == 0)
                    broken(v, seq - 1, "record %llu inserted (the next row continues the "
                           "chain from record %llu)", (unsigned long long)(seq - 1),
                           (unsigned long long)(seq - 2));
                else
                    broken(v, seq, "record inserted at or before seq %llu (this row holds "
                           "record %llu)", (unsigned long long)seq, (unsigned long long)p->seq);
            }
            break;
        }
        if (seq != expect) {
            if (seq - expect == 1)
                broken(v, expect, "record %llu removed (seq goes from %llu to %llu)",
                       (unsigned long long)expect, (unsigned long long)(expect - 1),
                       (unsigned long long)seq);
            else
                broken(v, expect, "records %llu-%llu removed (seq goes from %llu to %llu)",
                       (unsigned long long)expect, (unsigned long long)(seq - 1),
                       (unsigned long long)(expect - 1), (unsigned long long)seq);
            break;
        }
        /* Checkpoints at seqs that no record holds any more. */
        while (v->ci < v->nck && v->ck[v->ci].seq < seq) {
            broken(v, v->ck[v->ci].seq, "checkpoint at seq %llu names a record that is "
                   "missing (removed)", (unsigned long long)v->ck[v->ci].seq);
            v->ci++;
        }
        int n = cg_audit_canon(v->canon2, CG_AUDIT_CANON_MAX, p->seq, p->time, &p->rec);
        if (n < 0 || (size_t)n != clen || memcmp(v->canon2, canon, clen) != 0) {
            broken(v, seq, "record %llu changed: its content is not in canonical form",
                   (unsigned long long)seq);
            break;
        }
        if (!row.block &&
            (!str_eq(row.time, p->time) || !str_eq(row.txid, p->rec.txid) ||
             !str_eq(row.principal, p->rec.principal) ||
             !str_eq(row.decision, p->rec.decision))) {
            broken(v, seq, "record %llu changed: a search column (time, txid, principal, "
                   "decision) differs from its hashed content", (unsigned long long)seq);
            break;
        }
        uint8_t h[CG_AUDIT_HASH_LEN];
        cg_audit_chain_hash(prev, canon, clen, h);
        if (!row.hash || memcmp(row.hash, h, CG_AUDIT_HASH_LEN) != 0) {
            broken(v, seq, "record %llu changed: its hash does not follow from its content "
                   "and the previous record's hash", (unsigned long long)seq);
            break;
        }
        if (row.block && !block_ok(v, &row, seq, p->time))
            break;
        while (v->ci < v->nck && v->ck[v->ci].seq == seq) {
            check_ckpt(v, &v->ck[v->ci], h, p->rec.node);
            res->last_checkpoint_seq = seq;
            v->ci++;
        }
        memcpy(prev2, prev, sizeof prev2);
        memcpy(prev, h, sizeof prev);
        res->last_seq = seq;
        cg_strlcpy(res->node, p->rec.node ? p->rec.node : "", sizeof res->node);
        expect = seq + 1;
    }
    if (res->intact && step < 0)
        broken(v, expect, "the records cannot be read from record %llu on",
               (unsigned long long)expect);
    cg_arows_close(it);
    if (res->intact && v->ci < v->nck)
        broken(v, res->last_seq + 1, "tail truncated: checkpoint at seq %llu covers records "
               "beyond the last record (seq %llu)", (unsigned long long)v->ck[v->ci].seq,
               (unsigned long long)res->last_seq);
}

/* A block without data gives no record to walk (and hides none), but it
 * is no block the writer stores: the file was changed. */
static void check_empty_blocks(vctx *v)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(v->db, "SELECT last_seq FROM blocks WHERE "
                           "coalesce(length(data), 0) = 0 ORDER BY last_seq LIMIT 1", -1, &st,
                           NULL) != SQLITE_OK)
        return; /* a file of schema 2 or before: no blocks */
    if (sqlite3_step(st) == SQLITE_ROW) {
        sqlite3_int64 last = sqlite3_column_int64(st, 0);
        broken(v, last > 0 ? (uint64_t)last : v->res->first_seq, "block %lld changed: it "
               "holds no records (inserted, or its data removed)", (long long)last);
    }
    sqlite3_finalize(st);
}

/* The sealed predecessor named in meta must end where this file begins. */
static void check_link(vctx *v, const char *path, const char *prev_file, uint64_t first,
                       const uint8_t genesis[CG_AUDIT_HASH_LEN])
{
    char dir[4096], pp[4400];
    cg_strlcpy(dir, path, sizeof dir);
    snprintf(pp, sizeof pp, "%s/%s", dirname(dir), prev_file);
    struct stat sb;
    if (strchr(prev_file, '/') || stat(pp, &sb) < 0) {
        note(v, "continues sealed file %s, not found beside it: link not checked", prev_file);
        return;
    }
    sqlite3 *db = NULL;
    bool ok = false;
    uint64_t last = 0;
    if (sqlite3_open_v2(pp, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK) {
        uint8_t h[CG_AUDIT_HASH_LEN];
        if (cg_afile_last(db, &last, h) == 1)
            ok = last + 1 == first && memcmp(h, genesis, CG_AUDIT_HASH_LEN) == 0;
    }
    sqlite3_close(db);
    if (ok)
        note(v, "continues sealed file %s (last seq %llu): link verified", prev_file,
             (unsigned long long)last);
    else
        broken(v, first, "record %llu does not chain to the sealed file %s (its last record "
               "is not seq %llu with this file's prev_hash)", (unsigned long long)first,
               prev_file, (unsigned long long)(first - 1));
}

int cg_audit_verify_db(const char *path, EVP_PKEY *key, cg_audit_verify_result *res,
                       const char **error_r)
{
    memset(res, 0, sizeof *res);
    res->intact = true;
    struct stat sb;
    if (stat(path, &sb) < 0) {
        *error_r = "no such audit database";
        return CG_E_NOTFOUND;
    }
    vctx v = { .key = key, .res = res };
    if (key && cg_audit_key_fingerprint(key, v.key_fpr) < 0) {
        *error_r = "cannot fingerprint the key";
        return CG_E_CRYPTO;
    }
    if (sqlite3_open_v2(path, &v.db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        *error_r = "cannot open the audit database";
        sqlite3_close(v.db);
        return CG_E_DB;
    }
    sqlite3_busy_timeout(v.db, 5000);
    int rc = 0;
    char m[128], prev_file[256] = "";
    uint64_t first = 0;
    uint8_t genesis[CG_AUDIT_HASH_LEN];
    bool sealed = false;
    if (sqlite3_exec(v.db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK ||
        cg_afile_meta_get(v.db, "format", m, sizeof m) < 0 ||
        strcmp(m, "cpmgate-audit-v1") != 0) {
        *error_r = "not a cpmgate audit database";
        rc = CG_E_DB;
        goto out;
    }
    if (cg_afile_meta_get(v.db, "first_seq", m, sizeof m) < 0 ||
        cg_parse_u64(m, 1, INT64_MAX, &first) < 0 ||
        cg_afile_meta_get(v.db, "prev_hash", m, sizeof m) < 0 ||
        cg_hex_decode(m, genesis, sizeof genesis) != CG_AUDIT_HASH_LEN) {
        broken(&v, first ? first : 1, "the file's meta (first_seq, prev_hash) was changed");
        goto out;
    }
    sealed = cg_afile_meta_get(v.db, "sealed", m, sizeof m) == 0 && strcmp(m, "1") == 0;
    if (cg_afile_meta_get(v.db, "prev_file", prev_file, sizeof prev_file) < 0)
        prev_file[0] = '\0'; /* none: the first file of its chain */
    res->first_seq = first;
    res->last_seq = first - 1;
    if ((rc = load_checkpoints(&v)) < 0) {
        *error_r = "cannot read the checkpoints";
        goto out;
    }
    res->checkpoints = v.nck;
    if (!key)
        load_keys(&v);
    v.parsed = malloc(sizeof *v.parsed);
    v.canon2 = malloc(CG_AUDIT_CANON_MAX);
    if (!v.parsed || !v.canon2) {
        rc = CG_E_NOMEM;
        *error_r = "out of memory";
        goto out;
    }
    if (prev_file[0])
        check_link(&v, path, prev_file, first, genesis);
    walk(&v, first, genesis);
    if (res->intact)
        check_empty_blocks(&v);
    if (res->intact && sealed && res->last_checkpoint_seq != res->last_seq)
        broken(&v, res->last_seq + 1, "tail truncated: the file is sealed but its last record "
               "(seq %llu) is not covered by its final checkpoint",
               (unsigned long long)res->last_seq);
    if (res->intact) {
        if (v.nck == 0 && res->records > 0)
            note(&v, "no checkpoint: nothing is signed, a rewritten chain cannot be told apart");
        else if (res->last_checkpoint_seq < res->last_seq && res->records > 0)
            note(&v, "records %llu-%llu follow the last checkpoint (seq %llu) and are not "
                 "signed yet: a tail cut after seq %llu could not be detected",
                 (unsigned long long)(res->last_checkpoint_seq ? res->last_checkpoint_seq + 1
                                                               : first),
                 (unsigned long long)res->last_seq,
                 (unsigned long long)res->last_checkpoint_seq,
                 (unsigned long long)res->last_checkpoint_seq);
        if (!key && v.nck > 0)
            note(&v, "signatures checked against the keys stored in the file only: "
                 "give --key to prove who signed");
        if (v.unchecked_key)
            note(&v, "some checkpoints name a key the file does not hold: not checked");
        if (sealed)
            note(&v, "sealed file");
    }
out:
    sqlite3_exec(v.db, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close(v.db);
    for (size_t i = 0; i < v.nkeys; i++)
        EVP_PKEY_free(v.keys[i].key);
    free(v.keys);
    free(v.ck);
    free(v.parsed);
    free(v.canon2);
    return rc;
}
