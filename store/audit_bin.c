/* store/audit_bin.c — the compact record form and its blocks (see
 * audit_bin.h): encoding on the writer's path (no allocation), strict
 * decoding for the readers. */
#include "store/audit_bin.h"

#include <stddef.h>
#include <string.h>

#include "common/cg_error.h"
#include "common/cg_util.h"

#define REC_STR(f) offsetof(cg_audit_rec, f)
/* The string fields in their stored order (that of the canon). */
static const size_t str_off[] = {
    REC_STR(txid), REC_STR(request_id), REC_STR(listener), REC_STR(client),
    REC_STR(principal), REC_STR(method), REC_STR(tls_version), REC_STR(tls_cipher),
    REC_STR(service), REC_STR(operation), REC_STR(resource), REC_STR(decision),
    REC_STR(result), REC_STR(content_sha256), REC_STR(key_id), REC_STR(validation),
    REC_STR(reason), REC_STR(node), REC_STR(originator), REC_STR(origin_txid),
};
#define NSTR (sizeof str_off / sizeof str_off[0])

static const char **str_at(cg_audit_rec *r, size_t i)
{
    return (const char **)((char *)r + str_off[i]);
}

static const char *str_of(const cg_audit_rec *r, size_t i)
{
    return *(const char *const *)((const char *)r + str_off[i]);
}

/* ---- varints --------------------------------------------------------------- */

static size_t put_var(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

static uint64_t zigzag(int64_t v)
{
    return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

static int64_t unzigzag(uint64_t v)
{
    return (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
}

/* Reads a varint of at most 10 bytes; the shortest form only, so a record
 * has one encoding. */
static int get_var(const uint8_t **p, const uint8_t *end, uint64_t *out)
{
    uint64_t v = 0;
    for (unsigned shift = 0, i = 0; i < 10; i++, shift += 7) {
        if (*p >= end)
            return CG_E_PARSE;
        uint8_t b = *(*p)++;
        if (i == 9 && b > 1)
            return CG_E_PARSE;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            if (b == 0 && i > 0)
                return CG_E_PARSE; /* an overlong form */
            *out = v;
            return 0;
        }
    }
    return CG_E_PARSE;
}

/* ---- records --------------------------------------------------------------- */

int cg_audit_bin_encode(uint8_t *out, size_t cap, uint64_t seq, int64_t usec,
                        const cg_audit_rec *r)
{
    /* six numbers, then each string's length and bytes: checked as we go
     * against what is left, with room for the longest varint */
    if (cap < 6 * 10)
        return CG_E_LIMIT;
    size_t n = 0;
    n += put_var(out + n, seq);
    n += put_var(out + n, (uint64_t)usec);
    n += put_var(out + n, r->conn_id);
    n += put_var(out + n, zigzag(r->rule_id));
    n += put_var(out + n, zigzag(r->bytes_in));
    n += put_var(out + n, zigzag(r->bytes_out));
    for (size_t i = 0; i < NSTR; i++) {
        const char *s = str_of(r, i);
        size_t len = s ? strlen(s) : 0;
        if (cap - n < 10 || cap - n - 10 < len)
            return CG_E_LIMIT;
        n += put_var(out + n, s ? (uint64_t)len + 1 : 0);
        memcpy(out + n, s ? s : "", len);
        n += len;
    }
    return (int)n;
}

int cg_audit_bin_decode(const uint8_t *in, size_t len, cg_audit_bin_rec *out)
{
    const uint8_t *p = in, *end = in + len;
    uint64_t seq, usec, conn, rule, bin, bout;
    if (get_var(&p, end, &seq) < 0 || get_var(&p, end, &usec) < 0 ||
        get_var(&p, end, &conn) < 0 || get_var(&p, end, &rule) < 0 ||
        get_var(&p, end, &bin) < 0 || get_var(&p, end, &bout) < 0 ||
        usec > (uint64_t)CG_TIME_USEC_MAX)
        return CG_E_PARSE;
    cg_audit_rec_init(&out->rec);
    out->seq = seq;
    out->usec = (int64_t)usec;
    out->rec.conn_id = conn;
    out->rec.rule_id = unzigzag(rule);
    out->rec.bytes_in = unzigzag(bin);
    out->rec.bytes_out = unzigzag(bout);
    size_t used = 0;
    for (size_t i = 0; i < NSTR; i++) {
        uint64_t l;
        if (get_var(&p, end, &l) < 0)
            return CG_E_PARSE;
        if (l == 0)
            continue;
        l--;
        if (l > (uint64_t)(end - p) || l >= sizeof out->buf - used || memchr(p, 0, l))
            return CG_E_PARSE;
        memcpy(out->buf + used, p, l);
        out->buf[used + l] = '\0';
        *str_at(&out->rec, i) = out->buf + used;
        used += l + 1;
        p += l;
    }
    return p == end ? 0 : CG_E_PARSE;
}

uint64_t cg_audit_bin_seq(const uint8_t *rec, size_t len)
{
    uint64_t seq;
    return get_var(&rec, rec + len, &seq) == 0 ? seq : 0;
}

/* ---- blocks ---------------------------------------------------------------- */

int cg_audit_block_put(uint8_t *out, size_t cap, const uint8_t *rec, size_t len,
                       const uint8_t hash[CG_AUDIT_HASH_LEN])
{
    if (cap < 10 || cap - 10 < len || cap - 10 - len < CG_AUDIT_HASH_LEN)
        return CG_E_LIMIT;
    size_t n = put_var(out, len);
    memcpy(out + n, rec, len);
    memcpy(out + n + len, hash, CG_AUDIT_HASH_LEN);
    return (int)(n + len + CG_AUDIT_HASH_LEN);
}

int cg_audit_block_next(cg_audit_block_cur *c, const uint8_t **rec, size_t *len,
                        const uint8_t **hash)
{
    if (c->p >= c->end)
        return 0;
    uint64_t l;
    if (get_var(&c->p, c->end, &l) < 0 || l > (uint64_t)(c->end - c->p) ||
        (uint64_t)(c->end - c->p) - l < CG_AUDIT_HASH_LEN) {
        c->p = c->end;
        return CG_E_PARSE;
    }
    *rec = c->p;
    *len = (size_t)l;
    *hash = c->p + l;
    c->p += l + CG_AUDIT_HASH_LEN;
    return 1;
}
