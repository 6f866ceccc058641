/* proxy/http/content.c — content validation on the HTTP gateway (SPEC section 6,
 * CMI 6.4), through the gate and body-filter hooks of http.h:
 *  - every PUT is hashed as it streams and, once the backend stored it,
 *    recorded in content_db (path, size, SHA-256, uploader, txid);
 *  - a PUT with Content-Manifest is checked before any byte is forwarded
 *    (manifest, item for the path, signature by the uploader's own key,
 *    declared size), and its end is held until the streamed size and hash
 *    match; on mismatch the backend never commits and the client gets 422;
 *  - a POST of application/vnd.cpmgate.manifest+xml is answered here
 *    (decoupled upload): 200 when it matches what was recorded, else 422;
 *  - GET/HEAD under a signed-only pattern is served only when validated;
 *  - DELETE and MOVE forget, COPY and MOVE targets lose validated state,
 *    and every other method not known to leave content as it is clears
 *    it; a write whose state cannot be cleared is refused with 503.
 * The gate's content_db calls and the decoupled manifest's run on libuv's
 * thread pool while the request waits (http.h CG_HTTP_GATE_WAIT). The
 * record of a stored upload (on_response) is still written on the loop:
 * the client may ask for the path as soon as it has the answer, so the
 * record must be in before control returns to the loop. */
#include "proxy/http/content.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "policy/acl.h"
#include "common/cg_error.h"
#include "common/cg_log.h"
#include "common/cg_util.h"
#include "store/content_store.h"
#include "proxy/http/http.h"
#include "policy/manifest.h"

#define MANIFEST_TYPE "application/vnd.cpmgate.manifest+xml"

static char *g_db_path;
static pthread_key_t g_store_key;
static pthread_once_t g_key_once = PTHREAD_ONCE_INIT;

static void close_store(void *p)
{
    cg_content_close(p);
}

static void make_key(void)
{
    pthread_key_create(&g_store_key, close_store);
}

/* One content_db connection per worker thread, opened on first use and
 * closed when the thread ends. */
static cg_content_store *store(void)
{
    cg_content_store *cs = pthread_getspecific(g_store_key);
    if (cs || !g_db_path)
        return cs;
    const char *err = NULL;
    if (cg_content_open(g_db_path, false, &cs, &err) < 0) {
        cg_error("content_db %s: %s", g_db_path, err ? err : "cannot open");
        return NULL;
    }
    pthread_setspecific(g_store_key, cs);
    return cs;
}

/* A filter's refusal: status and sentence on its verdict. */
static cg_http_gate_verdict refuse_body(cg_http_body_verdict *v, int status, const char *detail)
{
    v->status = status;
    v->detail = detail;
    return CG_HTTP_GATE_REFUSE;
}

/* A gate's refusal: status and sentence on its answer. */
static cg_http_gate_verdict refuse_gate(cg_http_gate_answer *a, int status, const char *detail)
{
    a->status = status;
    a->detail = detail;
    return CG_HTTP_GATE_REFUSE;
}

/* ---- the upload filter (every PUT) ------------------------------------ */

typedef struct upload {
    EVP_MD_CTX *md;
    uint64_t size;
    bool have_item;
    uint64_t want_size;
    uint8_t want_sha[32];
    uint8_t sha[32];
    bool hashed;
    char key_id[129];
    char path[CG_CONTENT_MAX_PATH + 1];
    char uploader[256];
    char txid[64];
    char detail[300];
} upload;

static cg_http_gate_verdict up_data(void *fctx, const uint8_t *buf, size_t len,
                                    cg_http_body_verdict *v)
{
    upload *u = fctx;
    u->size += len;
    if (u->have_item && u->size > u->want_size) {
        snprintf(u->detail, sizeof u->detail,
                 "body longer than the manifest's size %llu", (unsigned long long)u->want_size);
        v->validation = "size-mismatch";
        return refuse_body(v, 422, u->detail);
    }
    if (EVP_DigestUpdate(u->md, buf, len) != 1)
        return refuse_body(v, 500, "hashing failed");
    return CG_HTTP_GATE_PASS;
}

static cg_http_gate_verdict up_end(void *fctx, cg_http_body_verdict *v)
{
    upload *u = fctx;
    unsigned int n = 0;
    if (EVP_DigestFinal_ex(u->md, u->sha, &n) != 1 || n != 32)
        return refuse_body(v, 500, "hashing failed");
    u->hashed = true;
    cg_hex_encode(u->sha, 32, v->content_sha256);
    if (!u->have_item)
        return CG_HTTP_GATE_PASS;
    v->key_id = u->key_id;
    if (u->size != u->want_size) {
        snprintf(u->detail, sizeof u->detail, "size %llu differs from the manifest's %llu",
                 (unsigned long long)u->size, (unsigned long long)u->want_size);
        v->validation = "size-mismatch";
        return refuse_body(v, 422, u->detail);
    }
    if (!cg_ct_equal(u->sha, u->want_sha, 32)) {
        v->validation = "hash-mismatch";
        return refuse_body(v, 422, "SHA-256 of the body differs from the manifest's");
    }
    v->validation = "valid";
    return CG_HTTP_GATE_PASS;
}

static void up_response(void *fctx, int status)
{
    upload *u = fctx;
    if (status < 200 || status > 299 || !u->hashed)
        return;
    cg_content_store *cs = store();
    const char *err = NULL;
    if (!cs || cg_content_record(cs, u->path, u->size, u->sha, u->uploader, u->txid,
                                 u->have_item ? u->key_id : NULL, &err) < 0)
        cg_error("content_db: cannot record %s (txid %s): %s", u->path, u->txid,
                 err ? err : "unavailable");
}

static void up_free(void *fctx)
{
    upload *u = fctx;
    EVP_MD_CTX_free(u->md);
    free(u);
}

static const cg_http_body_filter upload_filter = {
    .on_data = up_data, .on_end = up_end, .on_response = up_response, .free = up_free,
};

/* ---- the decoupled manifest (POST answered here) ------------------------ */

typedef struct decoupled {
    char buf[CG_MANIFEST_MAX_BYTES];
    size_t len;
    bool too_long;
    cg_snapshot *snap;         /* a reference: who points into it */
    const cg_principal *who;
    char path[CG_CONTENT_MAX_PATH + 1];
    char key_id[129];
    char sha_hex[65];
    char detail[400];
    cg_http_gate_job *job;     /* made by on_end, until the gateway takes it */
} decoupled;

static cg_http_gate_verdict dc_data(void *fctx, const uint8_t *buf, size_t len,
                                    cg_http_body_verdict *v)
{
    decoupled *d = fctx;
    if (len > sizeof d->buf - d->len) {
        v->validation = "invalid";
        return refuse_body(v, 413, "manifest larger than 64 KiB");
    }
    memcpy(d->buf + d->len, buf, len);
    d->len += len;
    return CG_HTTP_GATE_PASS;
}

/* The decoupled manifest refused: 422, "what: why". */
static cg_http_gate_verdict refuse(decoupled *d, cg_http_body_verdict *v, const char *what,
                                   const char *why)
{
    snprintf(d->detail, sizeof d->detail, "%s%s%s", what, why ? ": " : "", why ? why : "");
    v->validation = "invalid";
    return refuse_body(v, 422, d->detail);
}

static cg_http_gate_verdict validate_later(decoupled *d, const cg_manifest_item *it,
                                           cg_http_body_verdict *v);

static cg_http_gate_verdict dc_end(void *fctx, cg_http_body_verdict *v)
{
    decoupled *d = fctx;
    cg_manifest *m = NULL;
    const char *err = NULL;
    if (cg_manifest_parse(d->buf, d->len, &m, &err) < 0)
        return refuse(d, v, "manifest refused", err);
    const cg_manifest_item *it = cg_manifest_find_item(m, d->path);
    cg_http_gate_verdict g;
    if (!it) {
        g = refuse(d, v, "the manifest has no item for this path", NULL);
        goto out;
    }
    cg_strlcpy(d->key_id, it->key_id, sizeof d->key_id);
    v->key_id = d->key_id;
    cg_strlcpy(d->sha_hex, it->sha256_hex, sizeof d->sha_hex);
    memcpy(v->content_sha256, d->sha_hex, sizeof d->sha_hex);
    if (cg_manifest_check_item(it, d->snap, d->who, &err) < 0) {
        g = refuse(d, v, "signature refused", err);
        goto out;
    }
    g = validate_later(d, it, v); /* content_db: off the loop */
out:
    cg_manifest_free(m);
    return g;
}

static cg_http_gate_job *dc_job(void *fctx)
{
    decoupled *d = fctx;
    cg_http_gate_job *j = d->job;
    d->job = NULL;
    return j;
}

static void dc_free(void *fctx)
{
    decoupled *d = fctx;
    if (d->job)
        d->job->free(d->job);
    cg_snapshot_release(d->snap);
    free(d);
}

static const cg_http_body_filter decoupled_filter = {
    .on_data = dc_data, .on_end = dc_end, .job = dc_job, .free = dc_free,
};

/* ---- the gate ------------------------------------------------------------ */

static const char *header(const cg_http_request_view *req, const char *name, size_t *len)
{
    return req->header ? req->header(req->hctx, name, len) : NULL;
}

static bool signed_only(const cg_snapshot *snap, const char *path, const char *user)
{
    size_t n = cg_snapshot_nrequire_signed(snap), len = strlen(path);
    for (size_t i = 0; i < n; i++) {
        bool match; /* a pattern that does not compile matches nothing */
        if (cg_acl_glob(cg_snapshot_require_signed(snap, i), user, path, len, '/', &match) == 0 &&
            match)
            return true;
    }
    return false;
}

static bool is_collection(const char *path)
{
    size_t n = strlen(path);
    return n > 0 && path[n - 1] == '/';
}

/* The path as content_db keys it: a collection without its trailing '/'. */
static void key_of(const char *path, char *out, size_t cap)
{
    cg_strlcpy(out, path, cap);
    size_t n = strlen(out);
    if (n > 1 && out[n - 1] == '/')
        out[n - 1] = '\0';
}

/* A PUT: its upload context in *out, after its Content-Manifest (if
 * any) checked out. */
static cg_http_gate_verdict put_gate(const cg_http_request_view *req, upload **out,
                                     cg_http_gate_answer *a, const cg_principal *who)
{
    static _Thread_local char why[400];
    upload *u = calloc(1, sizeof *u);
    if (!u || !(u->md = EVP_MD_CTX_new()) || EVP_DigestInit_ex(u->md, EVP_sha256(), NULL) != 1) {
        if (u)
            EVP_MD_CTX_free(u->md);
        free(u);
        return refuse_gate(a, 503, "out of memory");
    }
    key_of(req->path, u->path, sizeof u->path);
    cg_strlcpy(u->uploader, req->principal, sizeof u->uploader);
    cg_strlcpy(u->txid, req->txid ? req->txid : "", sizeof u->txid);
    size_t hl = 0;
    const char *b64 = header(req, "content-manifest", &hl);
    if (b64) {
        cg_manifest *m = NULL;
        const char *err = NULL;
        int status = 0;
        /* the signature is checked before a byte goes to the backend */
        if (cg_manifest_parse_b64(b64, hl, &m, &err) < 0) {
            snprintf(why, sizeof why, "manifest refused: %s", err ? err : "invalid");
            status = 422;
        } else {
            const cg_manifest_item *it = cg_manifest_find_item(m, u->path);
            if (!it) {
                snprintf(why, sizeof why, "the manifest has no item for %.300s", u->path);
                status = 422;
            } else if (cg_manifest_check_item(it, req->snap, who, &err) < 0) {
                snprintf(why, sizeof why, "signature refused: %s", err ? err : "invalid");
                status = 422;
            } else if (req->content_length != UINT64_MAX && req->content_length != it->size) {
                snprintf(why, sizeof why, "Content-Length %llu differs from the manifest's size %llu",
                         (unsigned long long)req->content_length, (unsigned long long)it->size);
                status = 422;
            } else {
                u->have_item = true;
                u->want_size = it->size;
                memcpy(u->want_sha, it->sha256, 32);
                cg_strlcpy(u->key_id, it->key_id, sizeof u->key_id);
            }
        }
        cg_manifest_free(m);
        if (status) {
            up_free(u);
            return refuse_gate(a, status, why);
        }
    }
    *out = u;
    return CG_HTTP_GATE_PASS;
}

/* Methods known to leave every resource's content as it is: RFC 9110's
 * safe methods, WebDAV's PROPFIND, PROPPATCH (dead properties only) and
 * UNLOCK (RFC 4918), REPORT (RFC 3253) and SEARCH (RFC 5323). Any other
 * method, known or not, is taken to change content. */
static bool leaves_content(const char *m)
{
    static const char *const same[] = { "GET", "HEAD", "OPTIONS", "TRACE", "PROPFIND",
                                        "PROPPATCH", "UNLOCK", "REPORT", "SEARCH" };
    for (size_t i = 0; i < CG_ARRAY_LEN(same); i++)
        if (strcmp(m, same[i]) == 0)
            return true;
    return false;
}

/* ---- content_db work off the worker loop ---------------------------------- */

/* SQLite waits up to its busy timeout (5 s) for a lock another process or
 * thread holds; on the worker's loop that would stall every connection of
 * the worker. So the gate's content_db work is a job run on libuv's
 * thread pool (http.h: CG_HTTP_GATE_WAIT) while the request waits, and
 * finish answers on the loop. The job holds copies, never the view. */
enum { JOB_LOOKUP, JOB_CHANGE, JOB_VALIDATE };

typedef struct content_job {
    cg_http_gate_job base;     /* first: the job is passed as this */
    int kind;
    char method[24];
    char key[CG_CONTENT_MAX_PATH + 1];
    char dest[CG_CONTENT_MAX_PATH + 1];   /* COPY/MOVE target key, "" when none */
    bool collection;
    upload *u;                 /* PUT: its upload context, to the body filter */
    /* JOB_VALIDATE: the manifest item, and where its answer goes (only
     * finish uses these, and it runs only while the request lives) */
    uint64_t size;
    uint8_t sha256[32];
    char key_id[129];
    decoupled *d;
    cg_http_body_verdict *v;
    /* the outcome (work) */
    int rc;
    bool validated;
    const char *what;          /* the key a failure concerns */
    char err[200];
    char detail[400];
} content_job;

/* The content_db side of a method that may change content: DELETE and
 * MOVE remove the records (MOVE's and a collection's whole subtree), COPY
 * and MOVE remove the target's, everything else (PUT, POST, PATCH, MKCOL,
 * LOCK, extensions) clears the validated state of the path, and of what
 * lies below it when the path is a collection. */
static int change_state(cg_content_store *cs, content_job *j, const char **err)
{
    bool move = strcmp(j->method, "MOVE") == 0, copy = strcmp(j->method, "COPY") == 0;
    int rc = 0;
    if ((move || copy) && j->dest[0]) {
        j->what = j->dest;
        rc = cg_content_forget(cs, j->dest, true, err);
    }
    if (rc < 0)
        return rc;
    j->what = j->key;
    if (move || strcmp(j->method, "DELETE") == 0)
        return cg_content_forget(cs, j->key, move || j->collection, err);
    if (!copy)
        return cg_content_clear(cs, j->key, j->collection, err);
    return 0;
}

static void job_work(cg_http_gate_job *base)
{
    content_job *j = (content_job *)base;
    cg_content_store *cs = store();
    const char *err = NULL;
    j->what = j->key;
    if (!cs) {
        j->rc = CG_E_UNAVAIL;
        err = "content store unavailable";
    } else if (j->kind == JOB_LOOKUP) {
        cg_content_rec rec;
        j->rc = cg_content_lookup(cs, j->key, &rec, &err);
        j->validated = j->rc == 0 && rec.validated;
    } else if (j->kind == JOB_VALIDATE) {
        j->rc = cg_content_mark_validated(cs, j->key, j->size, j->sha256, j->key_id, &err);
    } else {
        j->rc = change_state(cs, j, &err);
    }
    cg_strlcpy(j->err, err ? err : "", sizeof j->err);
}

static void job_free(cg_http_gate_job *base)
{
    content_job *j = (content_job *)base;
    if (j->u)
        up_free(j->u);
    free(j);
}

/* The gate leaves a PUT's upload context here for the filter selection
 * that follows it on the same thread for the same request. */
static _Thread_local upload *pending_upload;

static void hand_over(upload *u)
{
    if (pending_upload)
        up_free(pending_upload);
    pending_upload = u;
}

/* The decoupled manifest's answer once content_db had its say (the
 * local filter's on_end: its sentence on the body verdict). */
static cg_http_gate_verdict validated(content_job *j)
{
    decoupled *d = j->d;
    cg_http_body_verdict *v = j->v;
    if (j->rc == CG_E_NOTFOUND)
        return refuse(d, v, "no upload recorded for this path", NULL);
    if (j->rc < 0)
        return refuse(d, v, "recorded upload differs", j->err);
    v->validation = "valid";
    snprintf(d->detail, sizeof d->detail, "manifest valid for %.300s", d->path);
    v->detail = d->detail;
    return CG_HTTP_GATE_PASS;
}

static cg_http_gate_verdict job_finish(cg_http_gate_job *base, cg_http_gate_answer *a)
{
    content_job *j = (content_job *)base;
    if (j->kind == JOB_VALIDATE && j->rc != CG_E_UNAVAIL && j->rc != CG_E_DB &&
        j->rc != CG_E_BUSY) {
        cg_http_gate_verdict g = validated(j);
        a->status = j->v->status;
        return g;
    }
    if (j->kind == JOB_LOOKUP && (j->rc == 0 || j->rc == CG_E_NOTFOUND)) {
        if (j->validated)
            return CG_HTTP_GATE_PASS;
        snprintf(j->detail, sizeof j->detail,
                 "content under a signed-only path is not validated: %.300s", j->key);
        return refuse_gate(a, 403, j->detail);
    }
    if (j->rc < 0) {
        /* validation must never outlive the content it vouched for, and
         * unknown state is not served: refused, retry later */
        static const char *const verb[] = { "read", "cleared", "set" };
        cg_error("content_db: validated state of %s cannot be %s: %s", j->what, verb[j->kind],
                 j->err);
        snprintf(j->detail, sizeof j->detail, "content store unavailable: validated state "
                 "of %.300s cannot be %s", j->what, verb[j->kind]);
        if (j->kind == JOB_VALIDATE)
            (void)refuse_body(j->v, 503, j->detail);
        return refuse_gate(a, 503, j->detail);
    }
    hand_over(j->u); /* PUT: to select_filter, which runs next on this thread */
    j->u = NULL;
    return CG_HTTP_GATE_PASS;
}

static cg_http_gate_verdict start_job(int kind, const cg_http_request_view *req,
                                      const char *key, upload *u, cg_http_gate_answer *a)
{
    content_job *j = calloc(1, sizeof *j);
    if (!j) {
        if (u)
            up_free(u);
        return refuse_gate(a, 503, "out of memory");
    }
    j->base = (cg_http_gate_job){ .work = job_work, .finish = job_finish, .free = job_free };
    j->kind = kind;
    j->u = u;
    cg_strlcpy(j->method, req->method, sizeof j->method);
    cg_strlcpy(j->key, key, sizeof j->key);
    if (req->dest)
        key_of(req->dest, j->dest, sizeof j->dest);
    j->collection = is_collection(req->path);
    a->fctx = &j->base;
    return CG_HTTP_GATE_WAIT;
}

/* The decoupled manifest checked out: marking the recorded upload
 * validated is a job the gateway runs off the loop (http.h: on_end may
 * answer CG_HTTP_GATE_WAIT, the filter's job hands it over). */
static cg_http_gate_verdict validate_later(decoupled *d, const cg_manifest_item *it,
                                           cg_http_body_verdict *v)
{
    content_job *j = calloc(1, sizeof *j);
    if (!j)
        return refuse_body(v, 503, "out of memory");
    j->base = (cg_http_gate_job){ .work = job_work, .finish = job_finish, .free = job_free };
    j->kind = JOB_VALIDATE;
    cg_strlcpy(j->key, d->path, sizeof j->key);
    j->size = it->size;
    memcpy(j->sha256, it->sha256, sizeof j->sha256);
    cg_strlcpy(j->key_id, it->key_id, sizeof j->key_id);
    j->d = d;
    j->v = v;
    d->job = &j->base;
    return CG_HTTP_GATE_WAIT;
}

static cg_http_gate_verdict gate(const cg_http_request_view *req, cg_http_gate_answer *a)
{
    const char *m = req->method;
    const cg_principal *who = req->who;
    if (!who)
        return refuse_gate(a, 403, "principal unknown");
    char key[CG_CONTENT_MAX_PATH + 1];
    key_of(req->path, key, sizeof key);

    if (strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0) {
        if (!signed_only(req->snap, req->path, req->principal))
            return CG_HTTP_GATE_PASS;
        return start_job(JOB_LOOKUP, req, key, NULL, a);
    }
    if (strcmp(m, "POST") == 0) {
        size_t tl = 0;
        const char *ct = header(req, "content-type", &tl);
        size_t ml = sizeof MANIFEST_TYPE - 1;
        bool manifest = ct && tl >= ml && strncasecmp(ct, MANIFEST_TYPE, ml) == 0 &&
                        (tl == ml || ct[ml] == ';' || ct[ml] == ' ');
        if (manifest) {
            decoupled *d = calloc(1, sizeof *d);
            if (!d)
                return refuse_gate(a, 503, "out of memory");
            /* the request's snapshot is released when its head is done;
             * the manifest's key check at the end of the body needs it */
            d->snap = cg_snapshot_ref((cg_snapshot *)req->snap);
            d->who = who;
            cg_strlcpy(d->path, key, sizeof d->path);
            a->local = &decoupled_filter;
            a->fctx = d;
            return CG_HTTP_GATE_LOCAL;
        }
    }
    if (leaves_content(m))
        return CG_HTTP_GATE_PASS;
    /* anything else may change content, so its validated state goes
     * before the request is forwarded (SPEC 6); a PUT's manifest is
     * checked first, so one refused for it changes nothing */
    upload *u = NULL;
    if (strcmp(m, "PUT") == 0 && put_gate(req, &u, a, who) != CG_HTTP_GATE_PASS)
        return CG_HTTP_GATE_REFUSE;
    return start_job(JOB_CHANGE, req, key, u, a);
}

static cg_http_gate_verdict gate_hook(const cg_http_request_view *req, cg_http_gate_answer *a)
{
    hand_over(NULL); /* what an earlier request left, unclaimed */
    return gate(req, a);
}

static const cg_http_body_filter *select_filter(const cg_http_request_view *req, void **fctx)
{
    if (!pending_upload || strcmp(req->method, "PUT") != 0)
        return NULL;
    *fctx = pending_upload;
    pending_upload = NULL;
    return &upload_filter;
}

/* A worker thread ends: an upload it selected and never started goes. */
static void thread_end(void);

void cg_content_hooks_install(const char *content_db)
{
    pthread_once(&g_key_once, make_key);
    free(g_db_path);
    g_db_path = content_db ? strdup(content_db) : NULL;
    cg_http_set_gate(gate_hook);
    cg_http_set_body_filter(select_filter);
    cg_http_set_thread_end(thread_end);
}

static void thread_end(void)
{
    if (pending_upload) {
        up_free(pending_upload);
        pending_upload = NULL;
    }
}
