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

#include "proxy/core/server_names.h"

/* Two host names are the same: case-insensitive, IP addresses compared
 * as addresses ("::1" and "0:0::1"). */
bool cg_http_same_host(const char *a, size_t al, const char *b, size_t bl);

/* name is served under list (a checked server_names value; "*" serves
 * every name). *as (may be NULL): the list's own spelling of the name
 * when an item names it exactly, else name itself. */
bool cg_http_name_served(const char *list, const char *name, size_t nlen, const char **as,
                         size_t *aslen);

/* The first plain name of a server_names list (no wildcard), advancing
 * *list past it; false when there is none. */
bool cg_http_first_name(const char **list, const char **name, size_t *nlen);

/* name as a Host value, lower case ("::1" -> "[::1]") into out (cap
 * bytes, NUL ended). Returns the length, 0 when it does not fit. */
size_t cg_http_host_format(const char *name, size_t nlen, char *out, size_t cap);

#endif
