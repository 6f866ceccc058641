/* imap_load.c — an IMAP load client for the benchmarks: N concurrent
 * sessions over TLS, each logging in and repeating SELECT + FETCH of the
 * first M messages + an IDLE round trip; prints messages/s and latency
 * percentiles of one cycle. With -i it instead opens N sessions, leaves
 * each in IDLE, prints "idle N" and holds them for -H seconds, so that the
 * caller can measure the server's memory per idle session.
 *
 *   imap_load -p PORT [-h HOST] -u USER -w PASS [-s SESSIONS] [-n CYCLES]
 *             [-m MESSAGES] [-i] [-H HOLD_SECONDS] [-P]
 * -P: plaintext (no TLS). Users may be "alice%d": %d becomes the session
 * number modulo 10, so sessions spread over alice0..alice9. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct sess {
    int fd;
    SSL *ssl;
    char buf[1 << 16];
    size_t len, off;
    unsigned tag;
} sess;

static const char *host = "127.0.0.1", *user = "alice", *pass = "alicepw";
static int port, sessions = 10, cycles = 100, messages = 50, idle_mode, hold = 10, plaintext;
static SSL_CTX *ctx;
static double *lat;
static size_t nlat;
static pthread_mutex_t lat_mu = PTHREAD_MUTEX_INITIALIZER;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
    fprintf(stderr, "imap_load: %s: %s\n", what, errno ? strerror(errno) : "failed");
    ERR_print_errors_fp(stderr);
    exit(1);
}

static int s_write(sess *s, const char *p, size_t n)
{
    while (n) {
        int w = s->ssl ? SSL_write(s->ssl, p, (int)n) : (int)write(s->fd, p, n);
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int s_fill(sess *s)
{
    if (s->off) {
        memmove(s->buf, s->buf + s->off, s->len - s->off);
        s->len -= s->off;
        s->off = 0;
    }
    if (s->len == sizeof s->buf)
        return -1;
    int r = s->ssl ? SSL_read(s->ssl, s->buf + s->len, (int)(sizeof s->buf - s->len))
                   : (int)read(s->fd, s->buf + s->len, sizeof s->buf - s->len);
    if (r <= 0)
        return -1;
    s->len += (size_t)r;
    return 0;
}

/* Next line (CRLF stripped) into out; literals {n} are skipped whole so
 * that message bodies never look like responses. */
static int s_line(sess *s, char *out, size_t cap)
{
    for (;;) {
        char *start = s->buf + s->off;
        char *nl = memchr(start, '\n', s->len - s->off);
        if (nl) {
            size_t n = (size_t)(nl - start);
            size_t keep = n < cap - 1 ? n : cap - 1;
            memcpy(out, start, keep);
            out[keep] = '\0';
            if (keep && out[keep - 1] == '\r')
                out[keep - 1] = '\0';
            s->off += n + 1;
            /* a literal announced at the end of the line: skip its bytes */
            size_t l = strlen(out);
            if (l > 2 && out[l - 1] == '}') {
                char *brace = strrchr(out, '{');
                if (brace) {
                    unsigned long lit = strtoul(brace + 1, NULL, 10);
                    while (lit) {
                        size_t have = s->len - s->off;
                        if (!have) {
                            if (s_fill(s) < 0)
                                return -1;
                            continue;
                        }
                        size_t take = have < lit ? have : lit;
                        s->off += take;
                        lit -= take;
                    }
                }
            }
            return 0;
        }
        if (s_fill(s) < 0)
            return -1;
    }
}

/* Sends "TAG cmd" and reads to the tagged answer; 0 when OK. */
static int s_cmd(sess *s, const char *cmd)
{
    char line[4096], tag[16];
    snprintf(tag, sizeof tag, "a%u", ++s->tag);
    snprintf(line, sizeof line, "%s %s\r\n", tag, cmd);
    if (s_write(s, line, strlen(line)) < 0)
        return -1;
    size_t tl = strlen(tag);
    for (;;) {
        if (s_line(s, line, sizeof line) < 0)
            return -1;
        if (strncmp(line, tag, tl) == 0 && line[tl] == ' ')
            return strncmp(line + tl + 1, "OK", 2) == 0 ? 0 : -1;
    }
}

static int s_idle_start(sess *s)
{
    char line[1024], cmd[32];
    snprintf(cmd, sizeof cmd, "a%u IDLE\r\n", ++s->tag);
    if (s_write(s, cmd, strlen(cmd)) < 0)
        return -1;
    do {
        if (s_line(s, line, sizeof line) < 0)
            return -1;
    } while (line[0] != '+');
    return 0;
}

static int s_idle_done(sess *s)
{
    char line[1024], tag[16];
    snprintf(tag, sizeof tag, "a%u ", s->tag);
    if (s_write(s, "DONE\r\n", 6) < 0)
        return -1;
    for (;;) {
        if (s_line(s, line, sizeof line) < 0)
            return -1;
        if (strncmp(line, tag, strlen(tag)) == 0)
            return strncmp(line + strlen(tag), "OK", 2) == 0 ? 0 : -1;
    }
}

static int s_open(sess *s, int n)
{
    memset(s, 0, sizeof *s);
    s->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    inet_pton(AF_INET, host, &sa.sin_addr);
    if (s->fd < 0 || connect(s->fd, (struct sockaddr *)&sa, sizeof sa) < 0)
        return -1;
    int one = 1;
    setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (!plaintext) {
        s->ssl = SSL_new(ctx);
        SSL_set_fd(s->ssl, s->fd);
        if (SSL_connect(s->ssl) != 1)
            return -1;
    }
    char line[4096];
    if (s_line(s, line, sizeof line) < 0 || strncmp(line, "* OK", 4) != 0)
        return -1;
    char u[128], cmd[512];
    const char *pct = strstr(user, "%d");
    if (pct)
        snprintf(u, sizeof u, "%.*s%d%s", (int)(pct - user), user, n % 10, pct + 2);
    else
        snprintf(u, sizeof u, "%s", user);
    snprintf(cmd, sizeof cmd, "LOGIN \"%s\" \"%s\"", u, pass);
    return s_cmd(s, cmd);
}

static void s_close(sess *s)
{
    if (s->ssl) {
        SSL_shutdown(s->ssl);
        SSL_free(s->ssl);
    }
    close(s->fd);
}

static void *run_session(void *arg)
{
    int n = (int)(intptr_t)arg;
    sess *s = malloc(sizeof *s);
    if (!s || s_open(s, n) < 0)
        die("login");
    char fetch[64];
    snprintf(fetch, sizeof fetch, "FETCH 1:%d (FLAGS BODY.PEEK[])", messages);
    double *mine = calloc((size_t)cycles, sizeof *mine);
    for (int i = 0; i < cycles; i++) {
        double t0 = now();
        if (s_cmd(s, "SELECT INBOX") < 0 || s_cmd(s, fetch) < 0 || s_idle_start(s) < 0 ||
            s_idle_done(s) < 0)
            die("cycle");
        mine[i] = now() - t0;
    }
    s_cmd(s, "LOGOUT");
    s_close(s);
    pthread_mutex_lock(&lat_mu);
    memcpy(lat + nlat, mine, (size_t)cycles * sizeof *mine);
    nlat += (size_t)cycles;
    pthread_mutex_unlock(&lat_mu);
    free(mine);
    free(s);
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    int c;
    while ((c = getopt(argc, argv, "h:p:u:w:s:n:m:iH:P")) != -1) {
        switch (c) {
        case 'h': host = optarg; break;
        case 'p': port = atoi(optarg); break;
        case 'u': user = optarg; break;
        case 'w': pass = optarg; break;
        case 's': sessions = atoi(optarg); break;
        case 'n': cycles = atoi(optarg); break;
        case 'm': messages = atoi(optarg); break;
        case 'i': idle_mode = 1; break;
        case 'H': hold = atoi(optarg); break;
        case 'P': plaintext = 1; break;
        default:
            fprintf(stderr, "usage: imap_load -p PORT [-h HOST] -u USER -w PASS [-s N] [-n CYCLES] "
                            "[-m MESSAGES] [-i] [-H SECONDS] [-P]\n");
            return 2;
        }
    }
    if (port <= 0 || sessions <= 0 || cycles <= 0)
        return 2;
    ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    if (idle_mode) {
        sess *all = calloc((size_t)sessions, sizeof *all);
        for (int i = 0; i < sessions; i++) {
            const char *step = s_open(&all[i], i) < 0                   ? "connect/login"
                               : s_cmd(&all[i], "SELECT INBOX") < 0 ? "SELECT"
                               : s_idle_start(&all[i]) < 0          ? "IDLE"
                                                                    : NULL;
            if (step) {
                char what[96];
                snprintf(what, sizeof what, "idle session %d of %d: %s", i + 1, sessions, step);
                die(what);
            }
            /* the read buffer is the client's, not the server's: keep it
             * small in memory by not touching it again */
        }
        printf("idle %d\n", sessions);
        fflush(stdout);
        sleep((unsigned)hold);
        for (int i = 0; i < sessions; i++)
            s_close(&all[i]);
        free(all);
        return 0;
    }
    lat = calloc((size_t)sessions * (size_t)cycles, sizeof *lat);
    pthread_t *th = calloc((size_t)sessions, sizeof *th);
    double t0 = now();
    for (int i = 0; i < sessions; i++)
        pthread_create(&th[i], NULL, run_session, (void *)(intptr_t)i);
    for (int i = 0; i < sessions; i++)
        pthread_join(th[i], NULL);
    double dt = now() - t0;
    qsort(lat, nlat, sizeof *lat, cmp_double);
    printf("sessions %d cycles %d messages %d seconds %.3f msgs_per_s %.1f p50_ms %.3f p99_ms %.3f\n",
           sessions, cycles, messages, dt, (double)sessions * cycles * messages / dt,
           lat[nlat / 2] * 1e3, lat[(size_t)((double)nlat * 0.99)] * 1e3);
    free(lat);
    free(th);
    SSL_CTX_free(ctx);
    return 0;
}
