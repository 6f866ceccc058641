/* main.c — the cpmgate daemon: loads the configuration, starts the audit
 * writer, the first policy snapshot and the worker threads, then runs the
 * main loop for signals (HUP reload, TERM/INT drain, USR1 audit rotation),
 * the certificate files it follows and the admin listener. The policy
 * watcher (policy_watch.c) has a thread of its own: a large snapshot build
 * must not stall /healthz. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <libxml/parser.h>
#include <uv.h>

#include "proxy/admin/admin.h"
#include "store/audit.h"
#include "common/cg_error.h"
#include "common/cg_log.h"
#include "proxy/core/certwatch.h"
#include "proxy/core/config.h"
#include "proxy/http/content.h"
#include "proxy/http/http.h"
#include "proxy/imap/imap.h"
#include "store/content_store.h"
#include "proxy/core/counters.h"
#include "proxy/core/policy_watch.h"
#include "store/policy_store.h"
#include "proxy/core/tls.h"
#include "proxy/core/worker.h"

#define DRAIN_POLL_MS 100
#define EXIT_GRACE_MS 3000

static struct {
    const char *path;
    uv_loop_t *loop;
    uv_signal_t sighup, sigterm, sigint, sigusr1;
    uv_timer_t drain_timer;
    uint64_t drain_start;
    bool draining, forced;
    unsigned drain_timeout;
    char *pid_file;
} g;

static void usage(FILE *f)
{
    fprintf(f, "usage: cpmgate -c FILE [-t]\n"
               "  -c FILE  configuration file (SPEC section 10)\n"
               "  -t       check the configuration and exit (0, or 1 with file:line: message)\n"
               "  -h       this help\n");
}

/* ---- certificate files ---------------------------------------------------------- */

/* The files a configuration names are followed (proxy/core/certwatch.h):
 * a renewed certificate, key, CA or CRL is in force for new connections
 * without a signal. */
static void certs_follow_start(void)
{
    if (cg_certwatch_start(g.loop) < 0)
        cg_error("tls: cannot follow certificate files; a renewal needs SIGHUP");
}

/* SIGHUP published a configuration that may name other files. */
static void certs_follow_config(void)
{
    cg_certwatch_follow();
}

/* ---- configuration reload ------------------------------------------------------ */

static bool str_differs(const char *a, const char *b)
{
    return (a == NULL) != (b == NULL) || (a && strcmp(a, b) != 0);
}

/* Process-level settings are fixed at start: say so instead of pretending. */
static void warn_restart_only(const cg_config *n)
{
    cg_runtime *cur = cg_runtime_acquire();
    if (!cur)
        return;
    const cg_config *o = cur->cfg;
    if (n->workers != o->workers || str_differs(n->policy_db, o->policy_db) ||
        str_differs(n->policy_db_password, o->policy_db_password) ||
        str_differs(n->audit_db, o->audit_db) || str_differs(n->audit_key, o->audit_key) ||
        n->audit_fail_closed != o->audit_fail_closed ||
        str_differs(n->admin_listen, o->admin_listen) || n->admin_timeout != o->admin_timeout ||
        n->admin_max_connections != o->admin_max_connections || str_differs(n->user, o->user) ||
        str_differs(n->group, o->group) || str_differs(n->pid_file, o->pid_file) ||
        str_differs(n->node_id, o->node_id))
        cg_warn("reload: workers, policy_db, audit_*, admin_*, user, group, pid_file "
                "and node_id take effect only after a restart");
    cg_runtime_release(cur);
}

/* log_level and log_format: at start and again on each reload, so a
 * SIGHUP can turn debug lines on and off without a restart. */
static void apply_log_settings(const cg_config *cfg)
{
    cg_log_set_level((enum cg_log_level)cfg->log_level);
    cg_log_set_format((enum cg_log_format)cfg->log_format);
}

static void reload_config(void)
{
    char err[512];
    cg_config *cfg = NULL;
    const char *why = NULL;
    cg_runtime *rt = NULL;
    if (cg_config_load(g.path, &cfg, err, sizeof err) < 0) {
        cg_error("reload failed, keeping the old configuration: %s", err);
        cg_metric_inc(CG_M_CONFIG_RELOAD_FAILURES);
        return;
    }
    if (cg_runtime_new(cfg, &rt, &why) < 0) {
        cg_error("reload failed, keeping the old configuration: %s", why ? why : "TLS setup");
        cg_config_free(cfg);
        cg_metric_inc(CG_M_CONFIG_RELOAD_FAILURES);
        return;
    }
    g.drain_timeout = cfg->drain_timeout;
    apply_log_settings(cfg);
    warn_restart_only(cfg);
    cg_runtime_publish(rt);
    cg_workers_reload();
    certs_follow_config();
    cg_metric_inc(CG_M_CONFIG_RELOADS);
    cg_info("configuration reloaded: new connections use it");
}

/* ---- shutdown ------------------------------------------------------------------- */

static void finish(void)
{
    uv_timer_stop(&g.drain_timer);
    uv_stop(g.loop);
}

static void drain_tick(uv_timer_t *t)
{
    (void)t;
    uint64_t elapsed = uv_now(g.loop) - g.drain_start;
    uint64_t active = cg_workers_active();
    if (active == 0) {
        finish();
        return;
    }
    if (!g.forced && elapsed >= (uint64_t)g.drain_timeout * 1000) {
        cg_info("drain timeout: closing %llu connection(s)", (unsigned long long)active);
        g.forced = true;
        cg_workers_force_close();
    } else if (g.forced && elapsed >= (uint64_t)g.drain_timeout * 1000 + EXIT_GRACE_MS) {
        finish();
    }
}

static void on_signal(uv_signal_t *s, int signum)
{
    (void)s;
    if (signum == SIGHUP) {
        if (!g.draining)
            reload_config();
    } else if (signum == SIGUSR1) {
        cg_info("audit: rotation requested");
        cg_audit_request_rotate();
    } else if (!g.draining) {
        g.draining = true;
        cg_info("%s: stop accepting, draining", signum == SIGTERM ? "SIGTERM" : "SIGINT");
        cg_workers_stop_accepting();
        g.drain_start = uv_now(g.loop);
        uv_timer_start(&g.drain_timer, drain_tick, 0, DRAIN_POLL_MS);
    }
}

/* ---- process setup ----------------------------------------------------------------- */

static int drop_privileges(const cg_config *cfg)
{
    if (geteuid() != 0 || !cfg->user)
        return 0;
    struct passwd *pw = getpwnam(cfg->user);
    if (!pw) {
        cg_error("user %s: no such user", cfg->user);
        return CG_E_DENIED;
    }
    gid_t gid = pw->pw_gid;
    if (cfg->group) {
        struct group *gr = getgrnam(cfg->group);
        if (!gr) {
            cg_error("group %s: no such group", cfg->group);
            return CG_E_DENIED;
        }
        gid = gr->gr_gid;
    }
    if (setgroups(0, NULL) < 0 || setgid(gid) < 0 || setuid(pw->pw_uid) < 0) {
        cg_error("cannot drop privileges to %s: %s", cfg->user, strerror(errno));
        return CG_E_DENIED;
    }
    return 0;
}

static int write_pid_file(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return CG_E_IO;
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
    ssize_t w = write(fd, buf, (size_t)n);
    close(fd);
    return w == n ? 0 : CG_E_IO;
}

/* systemd readiness without libsystemd: one datagram to $NOTIFY_SOCKET. */
static void notify_ready(void)
{
    const char *p = getenv("NOTIFY_SOCKET");
    if (!p || (p[0] != '/' && p[0] != '@'))
        return;
    struct sockaddr_un sun;
    memset(&sun, 0, sizeof sun);
    sun.sun_family = AF_UNIX;
    size_t len = strlen(p);
    if (len >= sizeof sun.sun_path)
        return;
    memcpy(sun.sun_path, p, len);
    if (p[0] == '@')
        sun.sun_path[0] = '\0';
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    static const char msg[] = "READY=1";
    sendto(fd, msg, sizeof msg - 1, 0, (struct sockaddr *)&sun,
           (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len));
    close(fd);
}

static void log_ready(const cg_config *cfg)
{
    char line[1024];
    size_t off = 0;
    line[0] = '\0';
    for (size_t i = 0; i < cfg->nlisteners && off < sizeof line; i++) {
        int n = snprintf(line + off, sizeof line - off, " %s=%s", cfg->listeners[i].name,
                         cfg->listeners[i].listen);
        if (n > 0)
            off += (size_t)n;
    }
    cg_info("cpmgate ready: workers=%u listeners:%s", cfg->workers, line);
}

/* A start that failed after the audit writer started: stop it (its final
 * checkpoint), give everything back so the sanitizers see no leak. */
static int start_failed(cg_runtime *rt)
{
    cg_runtime_release(rt);
    cg_audit_stop();
    cg_policy_close();
    return 1;
}

/* content_db is created (and its schema migrated) here, before privileges
 * are dropped and before a worker needs it: a gateway that cannot record
 * uploads does not start (SPEC section 6). */
static int open_content_db(const cg_config *cfg, const char **why)
{
    cg_content_store *cs = NULL;
    int r = cg_content_open(cfg->content_db, false, &cs, why);
    if (r < 0)
        return r;
    cg_content_close(cs);
    /* the workers open it again after privileges are dropped */
    struct passwd *pw = geteuid() == 0 && cfg->user ? getpwnam(cfg->user) : NULL;
    if (pw && chown(cfg->content_db, pw->pw_uid, (gid_t)-1) < 0) {
        *why = strerror(errno);
        return CG_E_IO;
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *path = NULL;
    bool check = false;
    int opt;
    while ((opt = getopt(argc, argv, "c:th")) != -1) {
        switch (opt) {
        case 'c': path = optarg; break;
        case 't': check = true; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 1;
        }
    }
    if (!path || optind != argc) {
        usage(stderr);
        return 1;
    }
    g.path = path;

    char err[512];
    cg_config *cfg = NULL;
    if (cg_config_load(path, &cfg, err, sizeof err) < 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    apply_log_settings(cfg);
    (void)cg_log_detect_journal(); /* priority prefixes under systemd */
    const char *why = NULL;
    if (cg_tls_global_init(&why) < 0) {
        fprintf(stderr, "%s: %s\n", path, why);
        cg_config_free(cfg);
        return 1;
    }
    cg_runtime *rt = NULL;
    if (cg_runtime_new(cfg, &rt, &why) < 0) {
        /* certificates and keys are part of what -t checks; a start says
         * it in the log's own form (a JSON line with log_format = json) */
        if (check)
            fprintf(stderr, "%s:0: %s\n", path, why ? why : "TLS setup failed");
        else
            cg_error("%s:0: %s", path, why ? why : "TLS setup failed");
        cg_config_free(cfg);
        return 1;
    }
    if (check) {
        printf("%s: configuration ok\n", path);
        cg_runtime_release(rt);
        return 0;
    }

    signal(SIGPIPE, SIG_IGN);
    xmlInitParser();
    g.loop = uv_default_loop();
    g.drain_timeout = cfg->drain_timeout;

    cg_audit_config ac = {
        .db_path = cfg->audit_db,
        .key_path = cfg->audit_key,
        .fail_closed = cfg->audit_fail_closed,
        .checkpoint_records = cfg->audit_checkpoint_records,
        .checkpoint_seconds = cfg->audit_checkpoint_seconds,
        .node_id = cfg->node_id,
    };
    if (cg_audit_start(&ac, &why) < 0) {
        cg_error("audit log %s: %s", cfg->audit_db, why ? why : "cannot start");
        cg_runtime_release(rt);
        return 1;
    }
    if (cg_policy_start(cfg, &why) < 0) {
        /* no policy, no gateway: refusing everything would look like an
         * outage, allowing anything would fail open */
        char label[512], named[600];
        cg_pstore_redact(cfg->policy_db, label, sizeof label);
        snprintf(named, sizeof named, "policy database %s", label);
        if (why && strstr(why, named)) /* the store's sentence says it */
            cg_error("%s", why);
        else
            cg_error("%s: %s", named, why ? why : "cannot read");
        return start_failed(rt);
    }
    if (open_content_db(cfg, &why) < 0) {
        cg_error("content_db %s: %s", cfg->content_db, why ? why : "cannot open");
        return start_failed(rt);
    }
    cg_content_hooks_install(cfg->content_db);
    cg_proto_register(CG_PROTO_IMAP, &cg_imap_proto);
    cg_proto_register(CG_PROTO_HTTP, &cg_http_proto);
    if (cg_workers_create(rt, cfg->workers, &why) < 0) {
        cg_error("%s", why ? why : "cannot create workers");
        return start_failed(rt);
    }
    if (cfg->admin_listen && cg_admin_start(g.loop, cfg, &why) < 0) {
        cg_error("admin_listen %s: %s", cfg->admin_listen, why ? why : "cannot listen");
        return start_failed(rt);
    }
    if (drop_privileges(cfg) < 0)
        return start_failed(rt);
    if (cfg->pid_file) {
        if (write_pid_file(cfg->pid_file) < 0)
            cg_warn("pid_file %s: %s", cfg->pid_file, strerror(errno));
        else
            g.pid_file = strdup(cfg->pid_file);
    }
    log_ready(cfg);
    cg_runtime_release(rt); /* the published reference stays */
    if (cg_workers_start() < 0) {
        cg_error("cannot start worker threads");
        return start_failed(NULL);
    }

    uv_signal_init(g.loop, &g.sighup);
    uv_signal_init(g.loop, &g.sigterm);
    uv_signal_init(g.loop, &g.sigint);
    uv_signal_init(g.loop, &g.sigusr1);
    uv_signal_start(&g.sighup, on_signal, SIGHUP);
    uv_signal_start(&g.sigterm, on_signal, SIGTERM);
    uv_signal_start(&g.sigint, on_signal, SIGINT);
    uv_signal_start(&g.sigusr1, on_signal, SIGUSR1);
    uv_timer_init(g.loop, &g.drain_timer);
    if (cg_policy_thread_start(g.loop) < 0)
        cg_error("policy: cannot start the watcher thread; changes need a restart");
    certs_follow_start();
    notify_ready();

    uv_run(g.loop, UV_RUN_DEFAULT);

    cg_certwatch_stop();
    cg_admin_stop();
    cg_policy_thread_stop();
    cg_workers_join();
    cg_audit_stop();
    cg_policy_close();
    if (g.pid_file) {
        unlink(g.pid_file);
        free(g.pid_file);
    }
    cg_info("cpmgate stopped");
    return 0;
}
