/* ctl_peer.c — `cpmgatectl peer list` (SPEC section 7): each peer's
 * domain, server principal and auth mode from the policy database and,
 * with --metrics URL, the sessions and refusals the gateway counted for
 * it, read from the admin listener's /metrics (plain HTTP on a loopback or
 * management address; nothing else is fetched). */
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "common/cg_error.h"
#include "common/cg_util.h"
#include "policy/ctl/ctl.h"
#include "store/policy_keys.h"

#define METRICS_MAX (4u << 20) /* the whole /metrics text at most */

/* "http://HOST:PORT/PATH" or "HOST:PORT" (path /metrics) into its parts;
 * HOST may be [v6]. False when it is neither. */
static bool parse_url(const char *url, char *host, size_t hcap, char *port, size_t pcap,
                      const char **path)
{
    const char *p = strncmp(url, "http://", 7) == 0 ? url + 7 : url;
    if (strstr(url, "://") && p == url)
        return false; /* https or another scheme */
    const char *slash = strchr(p, '/');
    *path = slash ? slash : "/metrics";
    size_t hl = slash ? (size_t)(slash - p) : strlen(p);
    const char *colon = NULL;
    for (size_t i = 0; i < hl; i++)
        if (p[i] == ':')
            colon = p + i;
    if (!colon || colon == p || (size_t)(colon - p) + 1 >= hl)
        return false;
    const char *h = p;
    size_t n = (size_t)(colon - p);
    if (n >= 2 && h[0] == '[' && h[n - 1] == ']') {
        h++;
        n -= 2;
    }
    size_t pl = hl - (size_t)(colon - p) - 1;
    if (n == 0 || n >= hcap || pl >= pcap)
        return false;
    memcpy(host, h, n);
    host[n] = '\0';
    memcpy(port, colon + 1, pl);
    port[pl] = '\0';
    return true;
}

/* GET url; 0 with the body (malloc'd, NUL-terminated) or a negative code
 * with a sentence. */
static int fetch(const char *url, char **body, const char **error_r)
{
    char host[256], port[16];
    const char *path;
    *body = NULL;
    if (!parse_url(url, host, sizeof host, port, sizeof port, &path)) {
        *error_r = "--metrics takes http://HOST:PORT[/PATH] or HOST:PORT";
        return CG_E_INVAL;
    }
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai = NULL;
    if (getaddrinfo(host, port, &hints, &ai) != 0 || !ai) {
        *error_r = cg_say("cannot resolve %s", host);
        return CG_E_IO;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct timeval tv = { .tv_sec = 5 };
    if (fd >= 0) {
        (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    }
    if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        *error_r = cg_say("cannot connect to %s:%s: %s", host, port, strerror(errno));
        freeaddrinfo(ai);
        if (fd >= 0)
            close(fd);
        return CG_E_IO;
    }
    freeaddrinfo(ai);
    char req[512];
    int rl = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n", path, host);
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    bool ok = rl > 0 && (size_t)rl < sizeof req && buf && write(fd, req, (size_t)rl) == rl;
    while (ok) {
        if (len + 1 >= cap) {
            char *nb = cap < METRICS_MAX ? realloc(buf, cap * 2) : NULL;
            if (!nb) {
                ok = false;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t n = read(fd, buf + len, cap - len - 1);
        if (n == 0)
            break;
        if (n < 0)
            ok = errno == EINTR;
        else
            len += (size_t)n;
    }
    close(fd);
    if (!ok) {
        free(buf);
        *error_r = cg_say("no answer from %s:%s", host, port);
        return CG_E_IO;
    }
    buf[len] = '\0';
    char *sep = strstr(buf, "\r\n\r\n");
    if (strncmp(buf, "HTTP/1.", 7) != 0 || !sep || strncmp(buf + 8, " 200", 4) != 0) {
        free(buf);
        *error_r = cg_say("%s did not answer 200", url);
        return CG_E_IO;
    }
    memmove(buf, sep + 4, len - (size_t)(sep + 4 - buf) + 1);
    *body = buf;
    return 0;
}

/* The value of family{peer="domain"} in the metrics text, or 0. */
static uint64_t metric_of(const char *text, const char *family, const char *domain)
{
    char key[400];
    snprintf(key, sizeof key, "%s{peer=\"%s\"} ", family, domain);
    size_t kl = strlen(key);
    for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
        if (strncmp(l, key, kl) == 0)
            return strtoull(l + kl, NULL, 10);
    return 0;
}

typedef struct peer_rows {
    ctl_list l;
    const char *metrics; /* the /metrics text, or NULL */
} peer_rows;

/* One peer: domain, principal, auth (and created) as before; with the
 * gateway's metrics also its sessions and refusals, on the text line
 * after auth. */
static int print_peer(void *c, const cg_pkeys_peer *p)
{
    peer_rows *r = c;
    if (!r->metrics) {
        static const char *const keys[] = { "domain", "principal", "auth", "created" };
        const char *vals[] = { p->domain, p->principal, p->auth, p->created };
        ctl_list_strings(&r->l, 4, keys, vals, 3);
        return 0;
    }
    static const char *const keys[] = { "domain", "principal", "auth", "sessions", "refusals",
                                        "created" };
    char sessions[24], refusals[24];
    snprintf(sessions, sizeof sessions, "%" PRIu64,
             metric_of(r->metrics, "cpmgate_peer_sessions_total", p->domain));
    snprintf(refusals, sizeof refusals, "%" PRIu64,
             metric_of(r->metrics, "cpmgate_peer_refusals_total", p->domain));
    const char *vals[] = { p->domain, p->principal, p->auth, sessions, refusals, p->created };
    ctl_list_strings(&r->l, 6, keys, vals, 5);
    return 0;
}

/* peer list [--metrics URL] [--json] */
int ctl_peer_list(ctl_ctx *ctx, const ctl_args *a)
{
    peer_rows r = { .metrics = NULL };
    const char *url = ctl_opt(a, "--metrics");
    char *text = NULL;
    if (url) {
        const char *err = NULL;
        if (fetch(url, &text, &err) < 0)
            return ctl_fail("peer list: metrics: %s", err);
        r.metrics = text;
    }
    if (ctl_list_begin(&r.l, ctx) != CTL_OK) {
        free(text);
        return CTL_ERROR;
    }
    int rc = cg_pkeys_peer_list(ctx->store, print_peer, &r, &r.l.err);
    free(text);
    return ctl_list_end(&r.l, rc, "peer list");
}
