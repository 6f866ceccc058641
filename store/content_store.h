/* content_store.h — content_db (SPEC section 6): the SHA-256 and size of
 * every upload that passed through the gateway, with uploader and
 * transaction id, and whether a manifest has validated it. Kept apart
 * from the policy database, whose commits reload the policy.
 *
 * Threads: one cg_content_store per thread (SQLite connections are not
 * shared); statements are prepared once at open. A write is one small
 * autocommit transaction in WAL mode with synchronous=NORMAL (no fsync
 * per commit, so roughly tens of microseconds; a power cut may lose the
 * last records, which only makes a later decoupled manifest fail, closed).
 * Under a busy writer a call can wait up to the busy timeout (5 s), so the
 * HTTP gateway's request gate (proxy/http/content.c) makes its calls on libuv's
 * thread pool, never on a worker loop. Opening migrates only a schema that
 * is behind, so a connection opens while another holds the write lock. */
#ifndef CG_CONTENT_STORE_H
#define CG_CONTENT_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CG_CONTENT_MAX_PATH 4096

typedef struct cg_content_store cg_content_store;

/* Opens (creating and migrating when missing, unless readonly). */
int cg_content_open(const char *path, bool readonly, cg_content_store **out,
                    const char **error_r) __attribute__((warn_unused_result));
void cg_content_close(cg_content_store *cs);

typedef struct cg_content_rec {
    char path[CG_CONTENT_MAX_PATH + 1];
    uint64_t size;
    uint8_t sha256[32];
    char uploader[256];
    char txid[64];
    char time[32];          /* RFC 3339 UTC of the upload */
    bool validated;
    char key_id[129];       /* the key that validated it; "" when none */
} cg_content_rec;

/* Records an upload of path (replacing any earlier record: the content
 * changed). validated_key_id: the key of a manifest that came with it
 * (self-contained upload), or NULL (not validated). */
int cg_content_record(cg_content_store *cs, const char *path, uint64_t size,
                      const uint8_t sha256[32], const char *uploader,
                      const char *txid, const char *validated_key_id,
                      const char **error_r) __attribute__((warn_unused_result));

/* 0 and *out, or CG_E_NOTFOUND. */
int cg_content_lookup(cg_content_store *cs, const char *path,
                      cg_content_rec *out, const char **error_r)
    __attribute__((warn_unused_result));

/* Decoupled validation: marks path validated by key_id when its recorded
 * size and hash are exactly these. CG_E_NOTFOUND (nothing recorded),
 * CG_E_AUTH (recorded content differs: error_r says size or hash). */
int cg_content_mark_validated(cg_content_store *cs, const char *path,
                              uint64_t size, const uint8_t sha256[32],
                              const char *key_id, const char **error_r)
    __attribute__((warn_unused_result));

/* A PUT, DELETE, MOVE or COPY onto path: its validated state is cleared.
 * With subtree, every record below path + "/" too (a collection). */
int cg_content_clear(cg_content_store *cs, const char *path, bool subtree,
                     const char **error_r) __attribute__((warn_unused_result));
/* The content is gone (DELETE, source of MOVE): records removed. */
int cg_content_forget(cg_content_store *cs, const char *path, bool subtree,
                      const char **error_r) __attribute__((warn_unused_result));

#endif
