/* common/cg_remote.h — the names of remote environments (SPEC section 7):
 * a peer's DNS domain and a remote user "user@DOMAIN", checked and put in
 * their one spelling (the domain lowercased) wherever they are read: the
 * policy store, the ACL, IMAP's authzid, HTTP's CPM-Originator. Pure. */
#ifndef CG_REMOTE_H
#define CG_REMOTE_H

#include <stdbool.h>
#include <stddef.h>

/* A user's address is at most this long (RFC 5321 4.5.3.1: 64 + 1 + 255). */
#define CG_REMOTE_LOCAL_MAX 64
#define CG_REMOTE_DOMAIN_MAX 253
#define CG_REMOTE_USER_MAX (CG_REMOTE_LOCAL_MAX + 1 + CG_REMOTE_DOMAIN_MAX)

/* A DNS name of RFC 1123 labels (no trailing dot): true with its
 * lowercase spelling in out (cap > len), else false. */
bool cg_remote_domain(const char *in, size_t len, char *out, size_t cap)
    __attribute__((warn_unused_result));

/* "user@DOMAIN": a local part of 1..64 printable characters without
 * spaces, '@', '*', '%', '"', '\\', '/' or parentheses, and a domain as
 * above. With wildcard, the local part may also be "*" (an ACL subject
 * for every user of the domain). True with the normal spelling in out
 * (cap > CG_REMOTE_USER_MAX is enough) and *at the index of its '@'. */
bool cg_remote_user(const char *in, size_t len, bool wildcard, char *out, size_t cap,
                    size_t *at) __attribute__((warn_unused_result));

/* Another gateway's transaction id (IMAP ID "cpm-transaction-id", HTTP
 * CPM-Transaction-Id): 1..63 of [A-Za-z0-9._:-], so that it goes into a
 * log line or an audit record as it is. */
#define CG_REMOTE_TXID_MAX 64
bool cg_remote_txid(const char *v, size_t len) __attribute__((warn_unused_result));

#endif
