/* tests/support/session_driver.c — the in-memory connection of the
 * whole-session fuzzers and the glue unit tests (session_driver.h). It implements the proxy/core/conn.h API with the
 * semantics proxy/core/conn.c gives it (callbacks never nest a close: a close
 * asked for inside a callback runs when the callback returns; no callback
 * after on_close; on_upstream_connected never from inside
 * cg_conn_upstream_connect), without sockets, TLS or a loop: the script
 * decides what the client and the backend do and when deadlines pass. */
#include "tests/support/session_driver.h"
#include "tests/support/session_policy.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>
#include <sys/stat.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "policy/acl.h"
#include "store/audit.h"
#include "common/cg_error.h"
#include "common/cg_log.h"
#include "proxy/http/content.h"
#include "store/content_store.h"
#include "policy/digest.h"
#include "store/policy_keys.h"
#include "store/policy_rules.h"
#include "store/policy_store.h"
#include "policy/snapshot.h"

/* Audit records go to a real writer thread and database; a long run
 * starts a fresh database now and then so the scratch file stays small. */
#define AUDIT_ROTATE_RUNS 20000
/* Bytes still queued toward a side are "queued" until SD_DRAIN (a model
 * of a slow peer for cg_conn_*_queued). */

enum cstate { C_OPEN, C_HANDSHAKE, C_CLOSING, C_DEAD };
enum ustate { U_NONE, U_CONNECTING, U_CONNECTED };

struct cg_conn {
    cg_conn_info info;
    const sd_variant *var;
    const cg_proto_ops *proto;
    void *session;
    enum cstate state;
    int depth;
    bool close_pending, abort_pending, opened;
    bool read_client;        /* the protocol's wish */
    /* the backend half */
    enum ustate up;
    bool up_pending;         /* fire on_upstream_connected(up_pending_status) */
    int up_pending_status;
    bool pool_idle;          /* a reusable connection was released */
    unsigned up_conn;        /* number of the backend connection in use */
    unsigned pool_conn;      /* number of the pooled one */
    unsigned nconns;
    bool expecting;
    bool timer_armed;
    /* STARTTLS finished and the client has sent nothing since: whatever
     * the gateway sends the backend now was acted on from plaintext sent
     * before the handshake (CVE-2011-0411) */
    bool tls_fresh;
    size_t cli_queued, up_queued;
    /* client bytes the gateway has not read yet (reading paused) */
    uint8_t *held;
    size_t held_len, held_cap;
};

static const sd_checker *g_chk;
static cg_config *g_cfg_template;
static char g_dir[256];
static char g_audit_db[300];
static unsigned long g_runs;
static bool g_trace; /* CG_FUZZ_TRACE=1: what the gateway writes, on stderr */

static void trace(const char *who, const void *buf, size_t len)
{
    if (g_trace)
        fprintf(stderr, "%s %.*s%s", who, (int)len, (const char *)buf,
                len && ((const char *)buf)[len - 1] == '\n' ? "" : "\n");
}

/* ---- proxy/core/conn.h ------------------------------------------------------------ */

const cg_conn_info *cg_conn_info_of(const cg_conn *c) { return &c->info; }

/* The thread-pool work a gateway hands off (content_db) completes on this
 * loop; run_loop runs it to the end between script operations, so a
 * session stays deterministic. */
static uv_loop_t g_loop;
uv_loop_t *cg_conn_loop(cg_conn *c) { return &g_loop; }

/* The connection carries the principal's id, as proxy/core/conn.c resolves it. */
static void set_principal(cg_conn *c, const char *name, unsigned method)
{
    cg_snapshot *s = cg_snapshot_acquire();
    const cg_principal *p = s ? cg_snapshot_principal_by_name(s, name) : NULL;
    c->info.principal_id = p ? p->id : 0;
    if (cg_conn_info_set(&c->info.principal, name) < 0)
        abort();
    c->info.auth_method = method;
    if (s)
        cg_snapshot_release(s);
}
void *cg_conn_session(cg_conn *c) { return c->session; }

static void teardown(cg_conn *c)
{
    if (c->state == C_DEAD)
        return;
    c->state = C_DEAD;
    c->up = U_NONE;
    c->up_pending = false;
    c->pool_idle = false;
    if (c->opened && c->proto->on_close) {
        c->depth++;
        c->proto->on_close(c);
        c->depth--;
    }
}

static void enter(cg_conn *c) { c->depth++; }

static void leave(cg_conn *c)
{
    if (--c->depth > 0)
        return;
    if (c->abort_pending || c->close_pending) {
        c->abort_pending = c->close_pending = false;
        /* proxy/core/conn.c flushes what is queued to the client, then tears down;
         * nothing the protocol does can happen in between */
        teardown(c);
    }
}

int cg_conn_write_client(cg_conn *c, const void *buf, size_t len)
{
    if (c->state == C_DEAD)
        __builtin_trap(); /* no protocol code runs after on_close */
    trace("gw>client", buf, len);
    if (g_chk->to_client && len)
        g_chk->to_client(buf, len);
    c->cli_queued += len;
    return 0;
}

int cg_conn_write_upstream(cg_conn *c, const void *buf, size_t len)
{
    if (c->state == C_DEAD)
        __builtin_trap();
    if (c->state != C_OPEN || c->up == U_NONE)
        return CG_E_IO;
    if (c->tls_fresh)
        __builtin_trap(); /* plaintext from before STARTTLS was acted on */
    trace("gw>backend", buf, len);
    if (g_chk->to_backend && len)
        g_chk->to_backend(c->up_conn, buf, len);
    c->up_queued += len;
    return 0;
}

size_t cg_conn_client_queued(const cg_conn *c) { return c->cli_queued; }
size_t cg_conn_upstream_queued(const cg_conn *c) { return c->up == U_NONE ? 0 : c->up_queued; }
bool cg_conn_upstream_attached(const cg_conn *c) { return c->up != U_NONE; }

static void new_backend_conn(cg_conn *c)
{
    c->up_conn = ++c->nconns;
    c->up_queued = 0;
    if (g_chk->backend_conn)
        g_chk->backend_conn(c->up_conn);
}

int cg_conn_upstream_connect(cg_conn *c)
{
    return cg_conn_upstream_connect_to(c, c->info.listener->upstream);
}

const char *cg_conn_upstream_why(const cg_conn *c)
{
    (void)c;
    return "";
}

/* One scripted backend whatever the upstream: the script decides what it
 * says. */
int cg_conn_upstream_connect_to(cg_conn *c, const cg_upstream_cfg *u)
{
    if (c->state == C_DEAD)
        __builtin_trap();
    if (c->state != C_OPEN || !u)
        return CG_E_INVAL;
    if (c->up != U_NONE) {
        if (c->up == U_CONNECTED) {
            c->up_pending = true;
            c->up_pending_status = 0;
        }
        return 0;
    }
    if (c->pool_idle) {
        /* the worker's pool: the same backend connection again */
        c->pool_idle = false;
        c->up = U_CONNECTED;
        c->up_conn = c->pool_conn;
        c->up_pending = true;
        c->up_pending_status = 0;
        return 0;
    }
    c->up = U_CONNECTING;
    new_backend_conn(c);
    return 0;
}

void cg_conn_upstream_release(cg_conn *c, bool reusable)
{
    if (c->up == U_NONE)
        return;
    if (c->up == U_CONNECTED && reusable) {
        c->pool_idle = true;
        c->pool_conn = c->up_conn;
    }
    c->up = U_NONE;
    c->expecting = false;
    c->up_pending = false;
}

void cg_conn_upstream_shutdown(cg_conn *c) { (void)c; }

void cg_conn_upstream_expect(cg_conn *c, bool expecting)
{
    c->expecting = expecting;
}

int cg_conn_start_tls(cg_conn *c)
{
    if (c->state != C_OPEN || c->info.tls || c->info.listener->tls == CG_TLS_NONE)
        return CG_E_INVAL;
    c->state = C_HANDSHAKE;
    /* the TLS layer takes the client bytes from now on */
    c->held_len = 0;
    return 0;
}

void cg_conn_read_client(cg_conn *c, bool on) { c->read_client = on; }
void cg_conn_read_upstream(cg_conn *c, bool on) { (void)c, (void)on; }

void cg_conn_set_timer(cg_conn *c, uint64_t ms) { c->timer_armed = ms != 0; }
void cg_conn_touch(cg_conn *c) { (void)c; }
bool cg_conn_draining(const cg_conn *c) { (void)c; return false; }

void cg_conn_close(cg_conn *c, const char *reason)
{
    (void)reason;
    if (c->state >= C_CLOSING)
        return;
    c->state = C_CLOSING;
    if (c->depth)
        c->close_pending = true;
    else
        teardown(c);
}

void cg_conn_abort(cg_conn *c, const char *reason)
{
    (void)reason;
    if (c->state == C_DEAD)
        return;
    c->state = C_CLOSING;
    if (c->depth)
        c->abort_pending = true;
    else
        teardown(c);
}

/* ---- the core's side of the callbacks ------------------------------------- */

static void fire_connected(cg_conn *c, int status)
{
    enter(c);
    if (c->state == C_OPEN && c->proto->on_upstream_connected)
        c->proto->on_upstream_connected(c, status);
    leave(c);
}

static void deliver_client(cg_conn *c, const uint8_t *buf, size_t len)
{
    c->tls_fresh = false;
    if (g_chk->from_client)
        g_chk->from_client(buf, len);
    enter(c);
    if (c->proto->on_client_data)
        c->proto->on_client_data(c, buf, len);
    leave(c);
}

/* What the loop does between script operations: pending connect reports,
 * held client bytes once reading resumes. */
static void run_loop(cg_conn *c)
{
    for (int rounds = 0; rounds < 64 && c->state == C_OPEN; rounds++) {
        if (uv_loop_alive(&g_loop)) {
            uv_run(&g_loop, UV_RUN_DEFAULT);
            continue;
        }
        if (c->up_pending) {
            c->up_pending = false;
            fire_connected(c, c->up_pending_status);
            continue;
        }
        if (c->read_client && c->held_len) {
            /* the kernel hands over what it buffered, in one read */
            size_t n = c->held_len;
            uint8_t *b = malloc(n);
            if (!b)
                abort();
            memcpy(b, c->held, n);
            c->held_len = 0;
            deliver_client(c, b, n);
            free(b);
            continue;
        }
        break;
    }
}

static void refuse(cg_conn *c, int err, const char *reason)
{
    enter(c);
    if (c->proto->on_refuse)
        c->proto->on_refuse(c, err, reason);
    cg_conn_close(c, reason);
    leave(c);
}

static void op_client(cg_conn *c, const uint8_t *d, size_t n)
{
    if (c->state != C_OPEN || n == 0)
        return;
    if (!c->read_client || c->held_len) {
        if (c->held_len + n > c->held_cap) {
            size_t cap = (c->held_len + n) * 2;
            uint8_t *b = realloc(c->held, cap);
            if (!b)
                abort();
            c->held = b;
            c->held_cap = cap;
        }
        memcpy(c->held + c->held_len, d, n);
        c->held_len += n;
        return;
    }
    deliver_client(c, d, n);
}

static void op_backend(cg_conn *c, const uint8_t *d, size_t n)
{
    if (c->state != C_OPEN || c->up == U_NONE || n == 0)
        return;
    if (c->up == U_CONNECTING) {
        c->up = U_CONNECTED;
        fire_connected(c, 0);
        if (c->state != C_OPEN || c->up != U_CONNECTED)
            return;
    }
    enter(c);
    c->expecting = false;
    if (c->proto->on_upstream_data)
        c->proto->on_upstream_data(c, d, n);
    leave(c);
}

static void run_op(cg_conn *c, unsigned op, uint8_t arg, const uint8_t *d, size_t n)
{
    switch (op) {
    case SD_CLIENT:
        op_client(c, d, n);
        break;
    case SD_BACKEND:
        op_backend(c, d, n);
        break;
    case SD_CONNECT_OK:
        if (c->state == C_OPEN && c->up == U_CONNECTING) {
            c->up = U_CONNECTED;
            fire_connected(c, 0);
        }
        break;
    case SD_CONNECT_FAIL:
        if (c->state == C_OPEN && c->up == U_CONNECTING) {
            c->up = U_NONE;
            static const int st[] = { CG_E_UNAVAIL, CG_E_TIMEOUT, CG_E_TLS };
            fire_connected(c, st[arg % 3]);
        }
        break;
    case SD_BACKEND_EOF:
        if (c->state == C_OPEN && c->up == U_CONNECTED) {
            c->up = U_NONE;
            c->expecting = false;
            enter(c);
            if (c->proto->on_upstream_eof)
                c->proto->on_upstream_eof(c, arg & 1 ? CG_E_UNAVAIL : 0);
            leave(c);
        } else if (c->pool_idle) {
            c->pool_idle = false; /* the pooled connection went away */
        }
        break;
    case SD_TIMER:
        if (c->state == C_OPEN && c->timer_armed) {
            c->timer_armed = false;
            enter(c);
            if (c->proto->on_timer)
                c->proto->on_timer(c);
            leave(c);
        }
        break;
    case SD_RESP_TIMEOUT:
        if (c->state == C_OPEN && c->expecting && c->up != U_NONE) {
            c->expecting = false;
            enter(c);
            if (c->proto->on_upstream_eof)
                c->proto->on_upstream_eof(c, CG_E_TIMEOUT);
            leave(c);
        }
        break;
    case SD_IDLE:
        if (c->state == C_OPEN)
            refuse(c, CG_E_TIMEOUT, "idle timeout");
        break;
    case SD_DRAIN:
        if (c->state == C_OPEN) {
            c->cli_queued = c->up_queued = 0;
            enter(c);
            if (c->proto->on_drain)
                c->proto->on_drain(c);
            leave(c);
        }
        break;
    case SD_CLIENT_EOF:
        if (c->state == C_OPEN && !c->held_len) {
            enter(c);
            if (c->proto->on_client_eof)
                c->proto->on_client_eof(c);
            else
                cg_conn_close(c, "client closed");
            leave(c);
        } else if (c->state == C_HANDSHAKE) {
            cg_conn_abort(c, "closed during handshake");
        }
        break;
    case SD_TLS_READY:
        if (c->state == C_HANDSHAKE) {
            c->state = C_OPEN;
            c->info.tls = true;
            c->tls_fresh = true;
            c->info.tls_version = "TLSv1.3";
            c->info.tls_cipher = "TLS_AES_128_GCM_SHA256";
            if ((arg & 1) && c->var->starttls_principal) {
                set_principal(c, c->var->starttls_principal, CG_AUTH_CERT);
            }
            enter(c);
            if (c->proto->on_tls_ready)
                c->proto->on_tls_ready(c);
            leave(c);
        }
        break;
    case SD_SHUTDOWN:
        if (c->state == C_OPEN) {
            c->info.shutting_down = true;
            refuse(c, CG_E_UNAVAIL, "shutting down");
        }
        break;
    }
}

/* ---- one script ----------------------------------------------------------- */

void sd_run(const cg_proto_ops *proto, const sd_variant *variants, size_t nvariants,
            const sd_checker *chk, const uint8_t *data, size_t size)
{
    if (size < 1)
        return;
    if (++g_runs % AUDIT_ROTATE_RUNS == 0) {
        const char *why = NULL;
        cg_audit_stop();
        unlink(g_audit_db);
        cg_audit_config ac = { .db_path = g_audit_db };
        if (cg_audit_start(&ac, &why) < 0) {
            fprintf(stderr, "audit restart: %s\n", why ? why : "?");
            abort();
        }
    }
    g_chk = chk;
    const sd_variant *v = &variants[data[0] % nvariants];
    data++, size--;

    cg_conn *c = calloc(1, sizeof *c);
    if (!c)
        abort();
    /* exactly the size the protocol asked for: ASan sees any overrun */
    c->session = calloc(1, proto->session_size ? proto->session_size : 1);
    if (!c->session)
        abort();
    static uint64_t next_id = 1;
    c->info.id = next_id++;
    snprintf(c->info.session_id, sizeof c->info.session_id, "%016llx",
             (unsigned long long)(0x5e55000000000000ull + c->info.id));
    cg_conn_info_clear(&c->info);
    c->info.config = g_cfg_template;
    c->info.listener = v->listener;
    struct sockaddr_in *sin = (struct sockaddr_in *)&c->info.peer;
    sin->sin_family = AF_INET;
    sin->sin_port = htons(40000);
    inet_pton(AF_INET, "192.0.2.7", &sin->sin_addr);
    snprintf(c->info.client, sizeof c->info.client, "192.0.2.7:40000");
    snprintf(c->info.client_addr, sizeof c->info.client_addr, "192.0.2.7");
    c->info.tls = v->tls;
    if (v->tls) {
        c->info.tls_version = "TLSv1.3";
        c->info.tls_cipher = "TLS_AES_128_GCM_SHA256";
    }
    if (v->principal)
        set_principal(c, v->principal, v->auth_method);
    c->var = v;
    c->proto = proto;
    c->read_client = true;
    c->state = C_OPEN;
    if (chk->begin)
        chk->begin();

    enter(c);
    c->opened = true;
    if (proto->on_open)
        proto->on_open(c);
    leave(c);
    run_loop(c);

    size_t i = 0;
    while (i < size && c->state != C_DEAD) {
        uint8_t opb = data[i++];
        unsigned op = opb % SD_NOPS;
        uint8_t arg = (uint8_t)(opb / SD_NOPS);
        const uint8_t *d = NULL;
        size_t n = 0;
        if (op == SD_CLIENT || op == SD_BACKEND) {
            size_t l = 0;
            if (i < size)
                l = data[i++];
            if (i < size)
                l |= (size_t)data[i++] << 8;
            if (l > size - i)
                l = size - i;
            d = data + i;
            n = l;
            i += l;
        }
        run_op(c, op, arg, d, n);
        run_loop(c);
        if (chk->after)
            chk->after((enum sd_op)op, c->session);
    }
    if (c->state != C_DEAD) {
        /* the end of the script: the client goes away */
        cg_conn_abort(c, "end of script");
    }
    /* work handed off before the close completes (and frees what it held) */
    while (uv_loop_alive(&g_loop))
        uv_run(&g_loop, UV_RUN_DEFAULT);
    if (chk->end)
        chk->end();
    free(c->held);
    cg_conn_info_clear(&c->info);
    free(c->session);
    free(c);
}

/* ---- the world the session runs in ---------------------------------------- */

#define SCRATCH_PREFIX "cg-fuzz-session-"

static void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    char p[600];
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') {
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
    closedir(d);
    rmdir(dir);
}

/* The scratch directory goes when the fuzzer exits normally. */
static void cleanup(void)
{
    cg_audit_stop();
    remove_dir(g_dir);
}

/* A crash leaves its scratch directory (named by pid) behind: the next
 * run removes those whose process is gone. */
static void remove_stale(const char *base)
{
    DIR *d = opendir(base);
    if (!d)
        return;
    struct dirent *e;
    char p[600];
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, SCRATCH_PREFIX, strlen(SCRATCH_PREFIX)) != 0)
            continue;
        long pid = strtol(e->d_name + strlen(SCRATCH_PREFIX), NULL, 10);
        if (pid > 0 && (kill((pid_t)pid, 0) == 0 || errno != ESRCH))
            continue;
        snprintf(p, sizeof p, "%s/%s", base, e->d_name);
        remove_dir(p);
    }
    closedir(d);
}

void sd_init(void)
{
    g_trace = getenv("CG_FUZZ_TRACE") != NULL;
    const char *lvl = getenv("CG_FUZZ_LOG");
    cg_log_set_level(lvl && !strcmp(lvl, "debug") ? CG_LOG_DEBUG : CG_LOG_ERROR);
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    remove_stale(base);
    snprintf(g_dir, sizeof g_dir, "%s/" SCRATCH_PREFIX "%ld", base, (long)getpid());
    remove_dir(g_dir);
    if (mkdir(g_dir, 0700) < 0)
        abort();
    char policy[300], content[300];
    snprintf(policy, sizeof policy, "%s/policy.db", g_dir);
    snprintf(content, sizeof content, "%s/content.db", g_dir);
    snprintf(g_audit_db, sizeof g_audit_db, "%s/audit.db", g_dir);
    sd_make_policy(policy);

    const char *why = NULL;
    cg_audit_config ac = { .db_path = g_audit_db };
    sd_must(cg_audit_start(&ac, &why), "audit", why);
    cg_content_store *cs = NULL;
    sd_must(cg_content_open(content, false, &cs, &why), "content_db", why);
    cg_content_close(cs);
    cg_content_hooks_install(content);
    atexit(cleanup);
    if (uv_loop_init(&g_loop) != 0)
        abort();
    g_cfg_template = calloc(1, sizeof *g_cfg_template);
    if (!g_cfg_template)
        abort();
    g_cfg_template->policy_db = strdup(policy);
    g_cfg_template->audit_db = strdup(g_audit_db);
    g_cfg_template->content_db = strdup(content);
    g_cfg_template->workers = 1;
}

/* ---- scripts written by unit tests ---------------------------------------- */

void sd_script_init(sd_script *s, uint8_t variant)
{
    s->len = 0;
    s->over = false;
    s->b[s->len++] = variant;
}

void sd_script_op(sd_script *s, enum sd_op op)
{
    if (s->len + 1 > sizeof s->b) {
        s->over = true;
        return;
    }
    s->b[s->len++] = (uint8_t)op;
}

void sd_script_data(sd_script *s, enum sd_op op, const void *d, size_t n)
{
    if (n > UINT16_MAX || s->len + 3 + n > sizeof s->b) {
        s->over = true;
        return;
    }
    s->b[s->len++] = (uint8_t)op;
    s->b[s->len++] = (uint8_t)(n & 0xff);
    s->b[s->len++] = (uint8_t)(n >> 8);
    memcpy(s->b + s->len, d, n);
    s->len += n;
}

void sd_script_text(sd_script *s, enum sd_op op, const char *text)
{
    sd_script_data(s, op, text, strlen(text));
}

sd_capture sd_captured;

static void cap_begin(void)
{
    cg_buf_free(&sd_captured.client);
    cg_buf_free(&sd_captured.backend);
    cg_buf_init(&sd_captured.client, 16u << 20);
    cg_buf_init(&sd_captured.backend, 16u << 20);
    sd_captured.backend_conns = 0;
}

static void cap_backend_conn(unsigned conn)
{
    (void)conn;
    sd_captured.backend_conns++;
}

static void cap_to_backend(unsigned conn, const uint8_t *buf, size_t len)
{
    (void)conn;
    cg_buf_add(&sd_captured.backend, buf, len);
}

static void cap_to_client(const uint8_t *buf, size_t len)
{
    cg_buf_add(&sd_captured.client, buf, len);
}

const sd_checker sd_capture_checker = {
    .begin = cap_begin,
    .backend_conn = cap_backend_conn,
    .to_backend = cap_to_backend,
    .to_client = cap_to_client,
};

void sd_script_run(const cg_proto_ops *proto, const sd_variant *variants, size_t nvariants,
                   const sd_script *s)
{
    sd_run(proto, variants, nvariants, &sd_capture_checker, s->b, s->len);
    /* an empty capture still reads as a string */
    cg_buf_add(&sd_captured.client, "", 0);
    cg_buf_add(&sd_captured.backend, "", 0);
}
