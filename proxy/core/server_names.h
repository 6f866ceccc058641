/* proxy/core/server_names.h — the server_names value of an HTTP listener
 * (SPEC section 10): its syntax and its default, for the configuration;
 * the HTTP gateway matches requests against it (proxy/http/host.h). */
#ifndef CG_SERVER_NAMES_H
#define CG_SERVER_NAMES_H

#include <stdbool.h>
#include <stddef.h>

/* Longest host name (RFC 1035: 253; an IPv6 literal is shorter). */
#define CG_HOST_MAX 255

/* The DNS and IP subjectAltNames of the PEM certificate at path, as a
 * malloc'd list "localhost, 127.0.0.1, ::1": the default server_names.
 * NULL with *error_r (one sentence) when the file cannot be read or
 * names no host. */
char *cg_server_names_of_cert(const char *path, const char **error_r);

/* A server_names value: "*", or a comma-separated list of host names
 * ("*.example.com" matches one more label) and IP addresses. 0, or
 * CG_E_INVAL with *error_r. */
int cg_server_names_check(const char *list, const char **error_r)
    __attribute__((warn_unused_result));

/* s (NUL-terminated) is an IPv4 or IPv6 address. */
bool cg_host_is_ip(const char *s);

/* The next comma-separated, space-trimmed item of *p (advanced past it),
 * or false at the end. */
bool cg_server_names_next(const char **p, const char **item, size_t *il);

/* The host of a Host value or an authority: "Name:8443" -> "Name",
 * "[::1]:8443" -> "::1", a trailing dot dropped. false when empty or
 * malformed. */
bool cg_host_name(const char *v, size_t len, const char **name, size_t *nlen);

#endif
