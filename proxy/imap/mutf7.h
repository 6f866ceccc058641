/* proxy/imap/mutf7.h — IMAP modified UTF-7 (RFC 3501 section 5.1.3) <-> UTF-8,
 * strict in both directions: a name has exactly one encoding, so the ACL
 * judges the same name the backend will open. */
#ifndef CG_IMAP_MUTF7_H
#define CG_IMAP_MUTF7_H

#include <stdbool.h>
#include <stddef.h>

/* Decodes mUTF-7 in[0..len) to UTF-8 in out (NUL-terminated). Refuses
 * (CG_E_PARSE): raw 8-bit or control bytes, printable ASCII inside a
 * shift ("&AGE-" for "a"), bad base64, non-zero pad bits, an unterminated
 * shift, two adjacent shifts, lone surrogates, U+0000. CG_E_LIMIT when
 * out is too small. Returns the output length or a negative code. */
int cg_mutf7_decode(const char *in, size_t len, char *out, size_t cap);

/* Encodes UTF-8 (valid, no NUL) to canonical mUTF-7. Returns the output
 * length, CG_E_PARSE for invalid UTF-8, CG_E_LIMIT for a small out. */
int cg_mutf7_encode(const char *in, size_t len, char *out, size_t cap);


#endif
