/* store/policy_cache.h — a node's verified copy of the last policy it
 * loaded (policy_cache = FILE), so a gateway started while the policy
 * store is unreachable serves its last good policy instead of none.
 *
 * The policy is recorded as it is read (cg_pcache_record, the store's
 * visitor calls in order) and replayed into any visitor, the snapshot
 * builder's included (cg_pcache_replay), so the copy works the same for
 * every store backend. The file: "cpmgate-policy-cache-v1\n", the SHA-256
 * of the body, the body's length (8 bytes, little endian), the body. It is
 * written aside, fsynced and renamed into place (mode 0600: it holds
 * credentials), and read back only when its length and digest match. */
#ifndef CG_POLICY_CACHE_H
#define CG_POLICY_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "store/policy_store.h"

typedef struct cg_pcache cg_pcache;

/* Reads the whole policy of s (one cg_pstore_load) into a new record. */
int cg_pcache_record(cg_pstore *s, cg_pcache **out, const char **error_r)
    __attribute__((warn_unused_result));
/* Calls v's callbacks as the store did; a loader for the snapshot
 * builder (src is the cg_pcache). CG_E_PARSE on a malformed record. */
int cg_pcache_replay(void *src, const cg_pstore_visitor *v, void *ctx, const char **error_r)
    __attribute__((warn_unused_result));
/* Writes c to path atomically (path.tmp, fsync, rename, fsync of the
 * directory). */
int cg_pcache_write(const cg_pcache *c, const char *path, const char **error_r)
    __attribute__((warn_unused_result));
/* Reads path, checking its header, length and digest; *written_r (may be
 * NULL): the file's modification time (Unix seconds). */
int cg_pcache_read(const char *path, cg_pcache **out, int64_t *written_r,
                   const char **error_r) __attribute__((warn_unused_result));
void cg_pcache_free(cg_pcache *c);

#endif
