/* proxy/core/certwatch.c — follows the files the configuration in force
 * names (listener and upstream certificates, keys, CAs and CRLs, the SAML
 * IdP certificate): a change seen by inotify on their directories (which
 * sees the rename an ACME client does) or by a stat every second (for file
 * systems without inotify) builds the runtime again from the same
 * configuration and publishes it for new connections. A file that does
 * not load leaves the runtime in force and makes the gateway "degraded"
 * until the files load again. Runs on the main loop. */
#include "proxy/core/certwatch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/cg_error.h"
#include "common/cg_log.h"
#include "proxy/core/counters.h"
#include "proxy/core/worker.h"

#define POLL_MS 1000
#define SETTLE_MS 200 /* after an event: the key often follows the certificate */
#define FILES_MAX 64

typedef struct watched_file {
    char *path;
    struct stat st;
    bool present;
} watched_file;

typedef struct dir_watch {
    uv_fs_event_t ev;
    struct dir_watch *next;
} dir_watch;

static struct {
    uv_loop_t *loop;
    uv_timer_t poll, settle;
    bool running;
    watched_file files[FILES_MAX];
    size_t nfiles;
    dir_watch *dirs;
    char problem[512]; /* "" while the newest files are in force */
} g;

static bool same_state(const watched_file *f, const struct stat *st, bool present)
{
    if (present != f->present)
        return false;
    return !present ||
           (st->st_dev == f->st.st_dev && st->st_ino == f->st.st_ino &&
            st->st_size == f->st.st_size && st->st_mtim.tv_sec == f->st.st_mtim.tv_sec &&
            st->st_mtim.tv_nsec == f->st.st_mtim.tv_nsec &&
            st->st_ctim.tv_sec == f->st.st_ctim.tv_sec &&
            st->st_ctim.tv_nsec == f->st.st_ctim.tv_nsec);
}

/* Records every file's state; true when one changed since the last time. */
static bool files_changed(void)
{
    bool changed = false;
    for (size_t i = 0; i < g.nfiles; i++) {
        struct stat st;
        bool present = stat(g.files[i].path, &st) == 0;
        if (!present)
            memset(&st, 0, sizeof st);
        if (!same_state(&g.files[i], &st, present))
            changed = true;
        g.files[i].st = st;
        g.files[i].present = present;
    }
    return changed;
}

static void reload(void)
{
    if (cg_workers_shutting_down())
        return;
    cg_runtime *cur = cg_runtime_acquire(), *rt = NULL;
    if (!cur)
        return;
    const char *why = NULL;
    int r = cg_runtime_renew(cur, &rt, &why);
    cg_runtime_release(cur);
    if (r < 0) {
        snprintf(g.problem, sizeof g.problem, "%s", why ? why : cg_strerror(r));
        cg_metric_inc(CG_M_TLS_RELOAD_FAILURES);
        cg_error("tls: a changed file does not load, keeping the one in force: %s", g.problem);
        return;
    }
    cg_runtime_publish(rt);
    cg_workers_reload();
    cg_metric_inc(CG_M_TLS_RELOADS);
    g.problem[0] = '\0';
    cg_info("tls: certificates, keys, CAs and CRLs reloaded: new connections use them");
}

static void check(void)
{
    if (files_changed())
        reload();
}

static void poll_cb(uv_timer_t *t)
{
    (void)t;
    check();
}

static void settle_cb(uv_timer_t *t)
{
    (void)t;
    check();
}

static void event_cb(uv_fs_event_t *ev, const char *name, int events, int status)
{
    (void)ev;
    (void)name;
    (void)events;
    (void)status;
    /* not pushed back by later events: a busy directory (a log beside the
     * certificates) must not keep the check from running */
    if (!uv_is_active((uv_handle_t *)&g.settle))
        uv_timer_start(&g.settle, settle_cb, SETTLE_MS, 0);
}

static void dir_closed(uv_handle_t *h) { free(h->data); }

static void dirs_close(void)
{
    while (g.dirs) {
        dir_watch *d = g.dirs;
        g.dirs = d->next;
        d->ev.data = d;
        uv_close((uv_handle_t *)&d->ev, dir_closed);
    }
}

/* A watch on path's directory, unless an earlier file's already covers it. */
static void dir_add(size_t i)
{
    char dir[4096];
    const char *path = g.files[i].path, *slash = strrchr(path, '/');
    int n = slash ? snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path)
                  : snprintf(dir, sizeof dir, ".");
    if (n < 0 || (size_t)n >= sizeof dir)
        return;
    if (n == 0)
        snprintf(dir, sizeof dir, "/");
    for (size_t j = 0; j < i; j++) {
        const char *o = g.files[j].path, *os = strrchr(o, '/');
        if (os && (size_t)(os - o) == (size_t)n && memcmp(o, dir, (size_t)n) == 0)
            return;
    }
    dir_watch *d = calloc(1, sizeof *d);
    if (!d)
        return;
    uv_fs_event_init(g.loop, &d->ev);
    int r = uv_fs_event_start(&d->ev, event_cb, dir, 0);
    d->next = g.dirs;
    g.dirs = d;
    if (r < 0) /* the stat every second still follows it */
        cg_debug("tls: cannot watch %s (%s); polling it", dir, uv_strerror(r));
}

static void files_clear(void)
{
    for (size_t i = 0; i < g.nfiles; i++)
        free(g.files[i].path);
    g.nfiles = 0;
}

static void file_add(const char *path)
{
    if (!path || g.nfiles >= FILES_MAX)
        return;
    for (size_t i = 0; i < g.nfiles; i++)
        if (strcmp(g.files[i].path, path) == 0)
            return;
    char *p = strdup(path);
    if (p)
        g.files[g.nfiles++] = (watched_file){ .path = p };
}

void cg_certwatch_files(const cg_config *cfg, void (*fn)(const char *path))
{
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        const cg_listener_cfg *l = &cfg->listeners[i];
        if (l->tls == CG_TLS_NONE)
            continue;
        fn(l->certificate);
        fn(l->private_key);
        fn(l->client_ca);
        fn(l->crl);
    }
    for (size_t i = 0; i < cfg->nupstreams; i++) {
        const cg_upstream_cfg *u = &cfg->upstreams[i];
        if (!u->tls)
            continue;
        fn(u->ca);
        fn(u->certificate);
        fn(u->private_key);
    }
    if (cfg->saml.present)
        fn(cfg->saml.idp_certificate);
}

void cg_certwatch_follow(void)
{
    if (!g.running)
        return;
    cg_runtime *rt = cg_runtime_acquire();
    if (!rt)
        return;
    dirs_close();
    files_clear();
    cg_certwatch_files(rt->cfg, file_add);
    cg_runtime_release(rt);
    (void)files_changed(); /* the state the runtime in force was built from */
    for (size_t i = 0; i < g.nfiles; i++)
        dir_add(i);
    g.problem[0] = '\0';
}

int cg_certwatch_start(uv_loop_t *loop)
{
    g.loop = loop;
    uv_timer_init(loop, &g.poll);
    uv_timer_init(loop, &g.settle);
    g.running = true;
    cg_certwatch_follow();
    return uv_timer_start(&g.poll, poll_cb, POLL_MS, POLL_MS);
}

void cg_certwatch_stop(void)
{
    if (!g.running)
        return;
    g.running = false;
    dirs_close();
    files_clear();
    uv_close((uv_handle_t *)&g.poll, NULL);
    uv_close((uv_handle_t *)&g.settle, NULL);
}

const char *cg_certwatch_problem(void)
{
    return g.problem[0] ? g.problem : NULL;
}
