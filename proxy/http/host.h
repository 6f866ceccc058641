/* proxy/http/host.h — which names an HTTP listener answers for, and the Host its
 * backend gets (SPEC section 4). A request for a name the listener does
 * not serve, or for another name than the TLS SNI it came with, is
 * answered 421 (RFC 9110 7.4, 15.5.20) before the backend sees it, so no
 * client can pick the backend's virtual host. Pure but for the one
 * certificate read at configuration load. */
#ifndef CG_HTTP_HOST_H
#define CG_HTTP_HOST_H

#include <stdbool.h>
#include <stddef.h>

/* Longest host name (RFC 1035: 253; an IPv6 literal is shorter). */
#define CG_HTTP_HOST_MAX 255

/* The DNS and IP subjectAltNames of the PEM certificate at path, as a
 * malloc'd list "localhost, 127.0.0.1, ::1": the default server_names.
 * NULL with *error_r (one sentence) when the file cannot be read or
 * names no host. */
char *cg_http_cert_names(const char *path, const char **error_r);

/* A server_names value: "*", or a comma-separated list of host names
 * ("*.example.com" matches one more label) and IP addresses. 0, or
 * CG_E_INVAL with *error_r. */
int cg_http_names_check(const char *list, const char **error_r);

/* The host of a Host value or an authority: "Name:8443" -> "Name",
 * "[::1]:8443" -> "::1", a trailing dot dropped. false when empty or
 * malformed. */
bool cg_http_host_name(const char *v, size_t len, const char **name, size_t *nlen);

/* Two host names are the same: case-insensitive, IP addresses compared
 * as addresses ("::1" and "0:0::1"). */
bool cg_http_same_host(const char *a, size_t al, const char *b, size_t bl);

/* name is served under list (a checked server_names value; "*" serves
 * every name). *as (may be NULL): the list's own spelling of the name
 * when an item names it exactly, else name itself. */
bool cg_http_name_served(const char *list, const char *name, size_t nlen, const char **as,
                         size_t *aslen);

/* s (NUL-terminated) is an IPv4 or IPv6 address. */
bool cg_http_is_ip(const char *s);

/* The first plain name of a server_names list (no wildcard), advancing
 * *list past it; false when there is none. */
bool cg_http_first_name(const char **list, const char **name, size_t *nlen);

/* name as a Host value, lower case ("::1" -> "[::1]") into out (cap
 * bytes, NUL ended). Returns the length, 0 when it does not fit. */
size_t cg_http_host_format(const char *name, size_t nlen, char *out, size_t cap);

#endif
