/* proxy/http/gate.c — the hooks of http.h (request gate, body filter), a
 * gate's blocking work on libuv's thread pool while the request waits, and
 * the requests the gateway answers itself (CG_HTTP_GATE_LOCAL). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <uv.h>

#include "common/cg_error.h"
#include "proxy/core/conn.h"
#include "proxy/http/internal.h"

static cg_http_filter_select_fn g_filter_select;
static cg_http_gate_fn g_gate;
static void (*g_thread_end)(void);

void cg_http_set_body_filter(cg_http_filter_select_fn fn)
{
    g_filter_select = fn;
}

void cg_http_set_thread_end(void (*fn)(void))
{
    g_thread_end = fn;
}

void cg_http_thread_end(void)
{
    if (g_thread_end)
        g_thread_end();
}

void cg_http_set_gate(cg_http_gate_fn fn)
{
    g_gate = fn;
}

bool cg_http_filter_select(const cg_http_request_view *v, const cg_http_body_filter **filter,
                           void **fctx)
{
    if (!g_filter_select)
        return false;
    *filter = g_filter_select(v, fctx);
    return true;
}

/* A gate job on libuv's thread pool (http.h CG_HTTP_GATE_WAIT). The
 * request waits in S_GATE; its view points into the session and the
 * snapshot, both kept until the job is done. */
typedef struct gate_wait {
    uv_work_t work;
    http_sess *s;                 /* NULL once the connection closed */
    cg_http_gate_job *job;
    cg_http_request_view v;
    cg_snapshot *snap;
    char *if_out;
    const char *dest_canon;       /* in the session's path buffers */
    bool local;                   /* for a local filter's on_end, not the gate */
} gate_wait;

static void gate_work(uv_work_t *w)
{
    gate_wait *gw = w->data;
    gw->job->work(gw->job);
}

static void gate_wait_free(gate_wait *gw)
{
    gw->job->free(gw->job);
    free(gw->if_out);
    if (gw->snap)
        cg_snapshot_release(gw->snap);
    free(gw);
}

static void local_answer(http_sess *s, cg_http_gate_verdict g, int status);

/* The request ends before its job: the job finishes alone and is freed. */
void cg_http_gate_detach(http_sess *s)
{
    if (s->ex->gate) {
        s->ex->gate->s = NULL;
        s->ex->gate = NULL;
    }
}

static void gate_done(uv_work_t *w, int status)
{
    gate_wait *gw = w->data;
    http_sess *s = gw->s;
    if (s) {
        s->ex->gate = NULL;
        cg_http_gate_answer a = { .detail = "content check could not run" };
        cg_http_gate_verdict g = CG_HTTP_GATE_REFUSE;
        if (status == 0)
            g = gw->job->finish(gw->job, &a);
        else
            a.status = 503;
        if (g == CG_HTTP_GATE_WAIT) {
            g = CG_HTTP_GATE_REFUSE;
            a.status = 500;
            a.detail = "content check asked to wait twice";
        }
        if (gw->local) { /* a local filter's on_end (no view, no forwarding) */
            if (!s->ex->r.verdict.detail)
                s->ex->r.verdict.detail = a.detail;
            local_answer(s, g, a.status);
        } else {
            /* the request resumes at the gate's answer; the snapshot and
             * the rewritten If stay the wait's until it is freed */
            cg_http_stage_ctx x;
            cg_http_stage_ctx_init(&x, cg_conn_info_of(s->c));
            x.view = gw->v;
            x.who = gw->v.who;
            x.dest_canon = gw->dest_canon;
            x.if_out = gw->if_out;
            x.gate = g;
            x.answer = a;
            cg_http_run_stages(s, &x, cg_http_stage_gate_answer);
        }
        if (s->state == S_BODY) /* what the client sent while we waited */
            cg_http_run_pending(s);
    }
    gate_wait_free(gw);
}

int cg_http_gate_wait_start(http_sess *s, const cg_http_request_view *v, void *job,
                            cg_snapshot *snap, char *if_out, const char *dest_canon)
{
    gate_wait *gw = job ? calloc(1, sizeof *gw) : NULL;
    if (!gw) {
        if (job)
            ((cg_http_gate_job *)job)->free(job);
        free(if_out);
        if (snap)
            cg_snapshot_release(snap);
        return CG_E_NOMEM;
    }
    *gw = (gate_wait){ .s = s, .job = job, .snap = snap, .if_out = if_out,
                       .dest_canon = dest_canon, .local = !v };
    if (v)
        gw->v = *v;
    gw->work.data = gw;
    if (uv_queue_work(cg_conn_loop(s->c), &gw->work, gate_work, gate_done) != 0) {
        gw->s = NULL;
        gate_wait_free(gw);
        return CG_E_UNAVAIL;
    }
    s->ex->gate = gw;
    s->state = S_GATE;
    return 0;
}

/* A request the gate answers itself: its whole body goes to the local
 * filter, on_end's verdict (PASS: 200, REFUSE: its status) with the
 * verdict's detail is the answer. The backend never sees it. */
void cg_http_local_end(http_sess *s)
{
    http_req *r = &s->ex->r;
    r->body_done = true;
    cg_http_gate_verdict g = CG_HTTP_GATE_PASS;
    if (r->filter && r->filter->on_end)
        g = r->filter->on_end(r->fctx, &r->verdict);
    if (g == CG_HTTP_GATE_WAIT && r->filter->job) {
        if (cg_http_gate_wait_start(s, NULL, r->filter->job(r->fctx), NULL, NULL, NULL) < 0)
            cg_http_refuse(s, &(cg_http_refusal){ .status = 503,
                                                  .detail = "content check could not start" });
        return;
    }
    local_answer(s, g, r->verdict.status);
}

/* PASS answers 200, REFUSE its status; a verdict a local filter may not
 * give (LOCAL, WAIT without a job) is the gateway's own error. */
static void local_answer(http_sess *s, cg_http_gate_verdict g, int status)
{
    http_req *r = &s->ex->r;
    int st = g == CG_HTTP_GATE_PASS ? 200 : g == CG_HTTP_GATE_REFUSE ? status : 500;
    if (st >= 400)
        r->decision = "error";
    const char *detail = r->verdict.detail ? r->verdict.detail
                         : st == 200       ? "accepted"
                                           : "refused";
    cg_http_refuse(s, &(cg_http_refusal){ .status = st, .detail = detail });
}

void cg_http_start_local(http_sess *s)
{
    http_req *r = &s->ex->r;
    r->local = true;
    if (!r->has_body) {
        cg_http_local_end(s);
        return;
    }
    if (r->expect_continue)
        cg_http_write_client(s, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    s->state = S_BODY;
    cg_conn_set_timer(s->c, (uint64_t)cg_conn_info_of(s->c)->listener->client_timeout * 1000);
}

cg_http_gate_verdict cg_http_gate_ask(const cg_http_request_view *v, cg_http_gate_answer *a)
{
    return g_gate ? g_gate(v, a) : CG_HTTP_GATE_PASS;
}
