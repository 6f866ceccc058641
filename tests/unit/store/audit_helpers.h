/* tests/unit/store/audit_helpers.h — what the audit test programs share:
 * a scratch folder (made by audit_setup, removed by audit_teardown), keys,
 * sample records, the real writer started and filled, the verifier, SQL
 * on a file. Failures end the test (cmocka). */
#ifndef TESTS_AUDIT_HELPERS_H
#define TESTS_AUDIT_HELPERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "store/audit.h"
#include "store/audit_file.h"
#include "tests/unit/store/audit_read.h"

extern char tmpdir[256];

void sleep_ms(long ms);
/* tmpdir/name */
void path_in(char *out, size_t cap, const char *name);
/* A fresh Ed25519 (or P-256) key file; returns the key too. */
EVP_PKEY *make_key(const char *name, bool ec);
/* Record number k of a varied sequence; txid is its storage. */
void sample(cg_audit_rec *r, unsigned k, char *txid, size_t cap);
/* Starts the writer (fails the test if it cannot). */
void start(const char *db, const char *key, unsigned ckpt_records, bool closed, size_t cap,
           unsigned full_ms);
/* Submits samples from..from+n-1, retrying while the queue refuses. */
void submit_n(unsigned from, unsigned n);
/* Waits (up to 10 s) until n records are committed. */
void wait_committed(uint64_t n);
cg_audit_verify_result verify(const char *db, EVP_PKEY *key);
void sql(const char *db, const char *stmt);
/* The first column of the first row of query, as an int. */
int sql_int(const char *db, const char *query);
void copy_file(const char *from, const char *to);
/* The file db opened (made when missing) straight through cg_afile, with
 * node (NULL: none); afile_close closes and frees it. */
cg_afile *afile_open(const char *db, const char *node);
void afile_close(cg_afile *f);
/* n samples written straight through cg_afile in form (CG_AFILE_ROWS or
 * _BLOCKS), one transaction and one signed checkpoint every 'every'
 * records (the last one final): blocks of 'every' records. */
void write_file(const char *db, EVP_PKEY *key, unsigned n, unsigned every, int form);
/* Changes the stored entry of record seq inside its block: drops it (the
 * block ends one seq earlier, and last_time is its new last record's),
 * zeroes its stored hash, or replaces the bytes find by repl (of the same
 * length) in the record. */
enum block_how { BLOCK_DROP, BLOCK_ZERO_HASH, BLOCK_PATCH };
void block_edit(const char *db, uint64_t seq, enum block_how how, const char *find,
                const char *repl);


int audit_setup(void **state);
int audit_teardown(void **state);

#endif
