/* db_copy.h — whole-database copies for backup and restore: a consistent
 * online copy of a live SQLite database (the backup API, read from one
 * snapshot so the writer is never blocked), a file's SHA-256, and putting
 * a copy in place of a database atomically (write aside, fsync, rename). */
#ifndef CG_DB_COPY_H
#define CG_DB_COPY_H

#include <stddef.h>
#include <stdint.h>

/* Copies the database at src into the new file dst (mode 0600; it must
 * not exist), a page batch at a time inside one read transaction of src:
 * in WAL mode the gateway's writer goes on committing meanwhile and the
 * copy is the state at the start. The copy is left in rollback-journal
 * mode (one self-contained file), checked with PRAGMA quick_check and
 * fsynced. */
int cg_db_copy_online(const char *src, const char *dst, const char **error_r)
    __attribute__((warn_unused_result));

/* PRAGMA quick_check of the file (opened read-only): 0 when "ok". */
int cg_db_copy_check(const char *path, const char **error_r)
    __attribute__((warn_unused_result));

/* SHA-256 and size of a whole file. */
int cg_file_sha256(const char *path, uint8_t out[32], uint64_t *size_r, const char **error_r)
    __attribute__((warn_unused_result));

/* Puts a copy of the file src at dst: written to "<dst>.restoring" (mode
 * 0600, dst's owner), fsynced; the old dst and its -wal moved aside to
 * "<dst>.pre-restore" (replacing an older one; its -shm removed: a stale
 * WAL beside the new file would be replayed into it); the copy renamed to
 * dst, and the directory fsynced. Nothing must have dst open. */
int cg_file_install(const char *src, const char *dst, const char **error_r)
    __attribute__((warn_unused_result));

#endif
