/* cg_base64.h — strict Base64 (RFC 4648 section 4) and base64url (section
 * 5) on top of OpenSSL's encoder: decoding refuses whitespace, stray
 * characters, misplaced padding and non-zero pad bits, so one value has
 * exactly one accepted encoding. No allocation. */
#ifndef CG_BASE64_H
#define CG_BASE64_H

#include <stddef.h>
#include <stdint.h>

/* Bytes needed to encode len bytes, including the NUL. */
#define CG_B64_ENCLEN(len) ((((len) + 2) / 3) * 4 + 1)
/* Upper bound of the bytes a decode of len characters writes. */
#define CG_B64_DECLEN(len) ((((len) + 3) / 4) * 3)

/* Padded standard Base64 into out (cap >= CG_B64_ENCLEN(len)); returns the
 * length written (without NUL), or 0 when cap is too small. */
size_t cg_b64_encode(const uint8_t *in, size_t len, char *out, size_t cap);
/* Unpadded base64url. */
size_t cg_b64url_encode(const uint8_t *in, size_t len, char *out, size_t cap);

/* Strict decoders: return the number of bytes written, or CG_E_PARSE
 * (malformed) / CG_E_LIMIT (out too small). Standard: length a multiple of
 * 4, '=' only as the last one or two characters. url: no padding at all. */
int cg_b64_decode(const char *in, size_t len, uint8_t *out, size_t cap);
int cg_b64url_decode(const char *in, size_t len, uint8_t *out, size_t cap);

#endif
