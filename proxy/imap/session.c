/* proxy/imap/session.c — the IMAP gateway's session (SPEC sections 2-5):
 * its life from on_open to on_close, the client's bytes (a bounded input
 * buffer, the parser's events, IDLE and SASL continuation lines), the
 * deadlines on the connection's one timer, and cg_imap_proto. Pipelined
 * commands that leave the session's state as it was go out together
 * (proxy/imap/pipeline.c); anything else waits for the commands in flight,
 * so each decision sees the state (selected mailbox) left by the commands
 * before it. Nothing the
 * client sends reaches the backend unparsed: commands are re-serialised
 * from their tokens (proxy/imap/out.c). The files of the gateway are
 * listed in proxy/imap/README.md. */
#include "proxy/imap/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cg_buf.h"
#include "common/cg_error.h"
#include "common/cg_log.h"
#include "common/cg_util.h"

/* Arms the connection's timer for the earlier of the session's
 * deadlines (or cancels it when there is none). */
void cg_imap_arm_timer(cg_conn *c, const imap_sess *s)
{
    uint64_t due = 0;
    if (s->fail_at)
        due = s->fail_at;
    if (s->cmd_deadline && (!due || s->cmd_deadline < due))
        due = s->cmd_deadline;
    if (!due) {
        cg_conn_set_timer(c, 0);
        return;
    }
    uint64_t now = cg_mono_ms();
    /* at least 1 ms: 0 would cancel a deadline that is already due */
    cg_conn_set_timer(c, due > now ? due - now : 1);
}
/* ---- client input -------------------------------------------------------- */

static void handle_event(cg_conn *c, imap_sess *s, const cg_imapp_event *ev)
{
    bool between = !s->streaming && !s->discarding; /* not inside an APPEND */
    if (between && ev->type == CG_IMAPP_EV_COMMAND && cg_imap_pipe_take(c, s))
        return;
    if (between && s->nflight &&
        (ev->type == CG_IMAPP_EV_COMMAND || ev->type == CG_IMAPP_EV_LITERAL ||
         ev->type == CG_IMAPP_EV_STREAM_START || ev->type == CG_IMAPP_EV_ERROR)) {
        /* until the flights are answered (its tokens, and the parser's
         * error text, stay until the parser is fed again) */
        s->stalled = *ev;
        s->has_stalled = true;
        return;
    }
    switch (ev->type) {
    case CG_IMAPP_EV_COMMAND:
        if (s->discarding) {
            s->discarding = false;
            return;
        }
        if (s->streaming && s->answered) {
            /* the rest of a command already answered: sent, not awaited */
            cg_buf o;
            cg_buf_init(&o, OUT_MAX);
            cg_imap_serialise(s, s->fwd_tok, cg_imapp_ntok(s->parser), NULL, &o);
            cg_buf_add(&o, "\r\n", 2);
            s->streaming = false;
            s->answered = false;
            s->fwd_tok = 0;
            if (!cg_imap_write_backend(c, &o))
                cg_debug("conn=%llu imap: the rest of an answered APPEND not sent",
                         (unsigned long long)cg_conn_info_of(c)->id);
            return;
        }
        if (s->streaming) {
            /* all of the APPEND is sent: an answer now is the answer */
            s->streaming = false;
            s->bytes_in += s->line_bytes; /* the end of its line */
            s->line_bytes = 0;
            cg_imap_forward(c, s, NULL, K_PLAIN);
            return;
        }
        cg_imap_begin_command(s);
        cg_imap_run_command(c, s);
        return;
    case CG_IMAPP_EV_LITERAL:
        if (s->discarding) {
            cg_imapp_reset(s->parser);
            s->discarding = false;
            return;
        }
        if (s->state == S_PREAUTH) {
            /* judge early: never invite a password literal in plaintext */
            cg_imap_begin_command(s);
            if (!cg_imap_preauth_allowed(c, s)) {
                cg_imapp_reset(s->parser);
                return;
            }
            s->n--; /* counted once, when the command completes */
            s->op[0] = '\0';
            s->line_bytes = s->bytes_in; /* and its bytes with it */
        }
        cg_imap_send(c, s, "+ OK");
        return;
    case CG_IMAPP_EV_STREAM_START:
        cg_imap_stream_start(c, s, ev);
        return;
    case CG_IMAPP_EV_STREAM_DATA:
        if (s->streaming && !s->discarding) {
            s->bytes_in += (int64_t)ev->len;
            if (cg_conn_write_upstream(c, ev->data, ev->len) < 0)
                cg_conn_close(c, "upstream write failed");
        }
        if (s->cmd_deadline) { /* the longest the literal may stall */
            s->cmd_deadline = cg_mono_ms() +
                (uint64_t)cg_conn_info_of(c)->listener->client_timeout * 1000;
            cg_imap_arm_timer(c, s);
        }
        return;
    case CG_IMAPP_EV_STREAM_END:
        return;
    case CG_IMAPP_EV_ERROR:
        if (s->streaming) {
            /* mid-APPEND: the backend holds half a command; end the session */
            cg_imap_bye(c, s, "append aborted", "%s", ev->error);
            return;
        }
        if (s->discarding) {
            s->discarding = false;
            if (!ev->fatal)
                return;
        }
        cg_imap_begin_command(s);
        if (!cg_imapp_tag(s->parser))
            s->n--; /* untagged: not a command */
        cg_imap_refuse(c, s, "BAD", NULL, NULL, 0, "%s", ev->error);
        if (ev->fatal) {
            cg_imap_bye(c, s, ev->error, "%s", ev->error);
        }
        return;
    default:
        return;
    }
}

/* The parser is not fed: a command runs alone, an event waits for the
 * flights, or as many are in flight as may be. */
static bool input_waits(const imap_sess *s)
{
    return s->busy || s->has_stalled || s->nflight >= PIPE_MAX;
}

/* One line from the input buffer (IDLE's DONE, a SASL response). */
static bool take_line(imap_sess *s, const char **line, size_t *len)
{
    uint8_t *st = s->in + s->inoff;
    uint8_t *lf = memchr(st, '\n', s->inlen - s->inoff);
    if (!lf)
        return false;
    *line = (const char *)st;
    *len = (size_t)(lf - st);
    if (*len && st[*len - 1] == '\r')
        (*len)--;
    s->inoff += (size_t)(lf - st) + 1;
    return true;
}

void cg_imap_process_input(cg_conn *c, imap_sess *s)
{
    const cg_listener_cfg *l = cg_conn_info_of(c)->listener;
    while (s->state != S_CLOSED && s->inoff < s->inlen) {
        if (s->idle || s->auth_wait) {
            const char *line;
            size_t len;
            if (!take_line(s, &line, &len)) {
                if (s->inlen - s->inoff > l->max_line) {
                    cg_imap_bye(c, s, "line too long", "line too long");
                }
                break;
            }
            if (s->idle) {
                /* RFC 2177: DONE ends IDLE; anything else ends it too */
                s->idle = false;
                cg_imap_send_backend(c, "DONE");
                continue;
            }
            bool ext = s->auth_wait == AW_EXTERNAL;
            s->auth_wait = AW_NONE;
            s->busy = false;
            if (len == 1 && line[0] == '*') {
                cg_imap_refuse(c, s, "BAD", NULL, NULL, 0, "Authentication cancelled");
                continue;
            }
            char tmp[2048];
            if (len >= sizeof tmp) {
                cg_imap_refuse(c, s, "BAD", NULL, NULL, 0, "response too long");
                continue;
            }
            memcpy(tmp, line, len);
            tmp[len] = '\0';
            cg_imap_sasl_response(c, s, ext, tmp, len);
            continue;
        }
        if (input_waits(s))
            break;
        cg_imapp_event ev;
        size_t used = cg_imapp_feed(s->parser, s->in + s->inoff,
                                    s->inlen - s->inoff, &ev);
        s->inoff += used;
        if (ev.type != CG_IMAPP_EV_STREAM_DATA)
            s->line_bytes += (int64_t)used;
        if (ev.type != CG_IMAPP_EV_NONE)
            handle_event(c, s, &ev);
    }
    if (!cg_imap_pipe_flush(c, s))
        return;
    if (s->inoff == s->inlen) {
        s->inoff = s->inlen = 0;
        if (s->incap > IN_KEEP) {
            /* a big literal passed: an idle session keeps little */
            free(s->in);
            s->in = NULL;
            s->incap = 0;
        }
    } else if (s->inoff > 0 && s->inoff > s->incap / 2) {
        memmove(s->in, s->in + s->inoff, s->inlen - s->inoff);
        s->inlen -= s->inoff;
        s->inoff = 0;
    }
    /* client_timeout: a deadline for a whole command line, not reset by
     * each byte (a client dripping bytes is cut) */
    bool partial = s->state != S_CLOSED && !input_waits(s) &&
                   (!cg_imapp_idle(s->parser) || s->inoff < s->inlen);
    if (partial && !s->cmd_deadline)
        s->cmd_deadline = cg_mono_ms() + (uint64_t)l->client_timeout * 1000;
    else if (!partial)
        s->cmd_deadline = 0;
    if (s->state != S_CLOSED)
        cg_imap_arm_timer(c, s);
    cg_conn_read_client(c, s->inlen < IN_MAX);
}

void cg_imap_pipe_drained(cg_conn *c, imap_sess *s)
{
    if (s->has_stalled && !s->nflight) {
        cg_imapp_event ev = s->stalled;
        s->has_stalled = false;
        handle_event(c, s, &ev);
    }
    if (s->state != S_CLOSED)
        cg_imap_process_input(c, s);
}

static void imap_client_data(cg_conn *c, const uint8_t *buf, size_t len)
{
    imap_sess *s = cg_conn_session(c);
    if (s->state == S_CLOSED)
        return;
    size_t max = IN_MAX + 65536 + cg_conn_info_of(c)->listener->max_line;
    if (s->inlen + len > max) {
        cg_imap_bye(c, s, "input buffer full", "too much pipelined input");
        return;
    }
    if (!cg_buf_grow((void **)&s->in, &s->incap, s->inlen + len, IN_KEEP, max)) {
        cg_conn_abort(c, "out of memory");
        return;
    }
    memcpy(s->in + s->inlen, buf, len);
    s->inlen += len;
    if (s->state == S_CONNECTING)
        return; /* the greeting comes first */
    cg_imap_process_input(c, s);
}
/* ---- connection callbacks ------------------------------------------------ */

static void imap_open(cg_conn *c)
{
    imap_sess *s = cg_conn_session(c);
    const cg_conn_info *ci = cg_conn_info_of(c);
    const cg_listener_cfg *l = ci->listener;
    cg_buf_init(&s->hold, HOLD_MAX + 1); /* content up to HOLD_MAX */
    cg_buf_init(&s->up, OUT_MAX);
    s->delim = '/';
    s->route = l->route;
    s->state = S_CONNECTING;
    if (l->tls == CG_TLS_NONE &&
        !(l->allow_plaintext && ci->auth_method == CG_AUTH_ADDRESS)) {
        /* SPEC 3: plaintext only for trusted, address-authenticated hosts */
        cg_imap_send(c, s, "* BYE [PRIVACYREQUIRED] TLS required (session %s)",
                     ci->session_id);
        cg_imap_audit(c, s, "connect", NULL, "deny", 0, "BYE", "plaintext refused");
        s->state = S_CLOSED;
        cg_conn_close(c, "plaintext refused");
        return;
    }
    if (ci->principal_id)
        s->method = ci->auth_method;
    cg_imapp_limits lim = {
        .max_line = l->max_line ? l->max_line : 8192,
        .max_literal = l->max_literal ? l->max_literal : 67108864,
        .max_depth = 32,
        .max_tokens = 4096,
    };
    cg_imapp_limits rlim = { .max_line = HOLD_MAX, .max_literal = HOLD_MAX,
                             .max_depth = 32, .max_tokens = 4096, .server = true };
    s->parser = cg_imapp_new(&lim);
    s->rparser = cg_imapp_new(&rlim);
    s->scan = cg_imaps_new();
    if (!s->parser || !s->rparser || !s->scan) {
        cg_conn_abort(c, "out of memory");
        return;
    }
    if (cg_conn_upstream_connect(c) < 0) {
        cg_imap_bye(c, s, "no upstream", "[UNAVAILABLE] backend unavailable");
        return;
    }
    cg_conn_upstream_expect(c, true);
}

/* A remote gateway that cannot be reached, whose certificate fails
 * verification, or a route that is full: refused like a local backend
 * that is down, and recorded here (SPEC section 7). */
static void route_unavailable(cg_conn *c, imap_sess *s, int status)
{
    char reason[256];
    snprintf(reason, sizeof reason, "route %s: %s", s->route->domain,
             cg_conn_upstream_why(c)[0] ? cg_conn_upstream_why(c) : cg_strerror(status));
    cg_imap_audit(c, s, "connect", s->route->domain, "error", 0, "BYE", reason);
    cg_imap_bye(c, s, "remote gateway unavailable", "[UNAVAILABLE] %s",
                status == CG_E_TLS     ? "remote gateway not trusted"
                : status == CG_E_LIMIT ? "too many sessions to the remote gateway"
                                       : "backend unavailable");
}

static void imap_upstream_connected(cg_conn *c, int status)
{
    imap_sess *s = cg_conn_session(c);
    if (status < 0 && s->state != S_CLOSED) {
        cg_warn("conn=%llu imap: backend unavailable: %s",
                (unsigned long long)cg_conn_info_of(c)->id, cg_strerror(status));
        if (s->route) {
            route_unavailable(c, s, status);
            return;
        }
        cg_imap_bye(c, s, "backend unavailable", "[UNAVAILABLE] backend unavailable");
    }
}

static void imap_upstream_eof(cg_conn *c, int status)
{
    imap_sess *s = cg_conn_session(c);
    if (s->state != S_CLOSED) {
        if (!s->logout)
            cg_imap_send(c, s, "* BYE [UNAVAILABLE] %s",
                         status == CG_E_TIMEOUT ? "backend timed out"
                                                : "backend connection lost");
        if (s->op[0])
            cg_imap_command_done(c, s, "BYE");
        cg_imap_pipe_end(c, s, "BYE");
        s->state = S_CLOSED;
    }
    cg_conn_close(c, "backend closed");
}

static void imap_client_eof(cg_conn *c)
{
    imap_sess *s = cg_conn_session(c);
    s->state = S_CLOSED;
    /* an IMAP client never half-closes: nothing queued can still be read */
    cg_conn_abort(c, "client closed");
}

static void imap_tls_ready(cg_conn *c)
{
    imap_sess *s = cg_conn_session(c);
    const cg_conn_info *ci = cg_conn_info_of(c);
    s->busy = false;
    if (ci->principal_id)
        s->method = ci->auth_method;
    cg_imap_process_input(c, s);
}

static void imap_timer(cg_conn *c)
{
    imap_sess *s = cg_conn_session(c);
    uint64_t now = cg_mono_ms();
    if (s->state == S_CLOSED)
        return;
    if (s->fail_at && now >= s->fail_at) {
        s->fail_at = 0;
        cg_imap_refuse(c, s, "NO", "AUTHENTICATIONFAILED", s->login_user, 0,
                       "Authentication failed");
        cg_imap_process_input(c, s); /* re-arms for what is left */
        return;
    }
    if (s->cmd_deadline && now >= s->cmd_deadline) {
        s->cmd_deadline = 0;
        cg_imap_bye(c, s, "client timeout", "command timed out");
        return;
    }
    cg_imap_arm_timer(c, s); /* woken a little early: wait for the rest */
}

static void imap_refuse(cg_conn *c, int err, const char *reason)
{
    imap_sess *s = cg_conn_session(c);
    if (s->state == S_CLOSED)
        return;
    if (err == CG_E_UNAVAIL && cg_conn_info_of(c)->shutting_down)
        cg_imap_send(c, s, "* BYE [UNAVAILABLE] shutting down");
    else if (err == CG_E_TIMEOUT)
        cg_imap_send(c, s, "* BYE Autologout; idle for too long");
    else
        cg_imap_send(c, s, "* BYE [UNAVAILABLE] %s", reason ? reason : "refused");
    s->state = S_CLOSED;
}

static void imap_close(cg_conn *c)
{
    imap_sess *s = cg_conn_session(c);
    cg_audit_release(&s->resv);
    cg_imap_pipe_free(s);
    free(s->caps_backend);
    s->caps_backend = NULL;
    cg_imapp_free(s->parser);
    cg_imapp_free(s->rparser);
    cg_imaps_free(s->scan);
    free(s->in);
    cg_buf_free(&s->hold);
    s->parser = s->rparser = NULL;
    s->scan = NULL;
    s->in = NULL;
}

const cg_proto_ops cg_imap_proto = {
    .name = "imap",
    .session_size = sizeof(imap_sess),
    .on_open = imap_open,
    .on_client_data = imap_client_data,
    .on_client_eof = imap_client_eof,
    .on_tls_ready = imap_tls_ready,
    .on_upstream_connected = imap_upstream_connected,
    .on_upstream_data = cg_imap_upstream_data,
    .on_upstream_eof = imap_upstream_eof,
    .on_timer = imap_timer,
    .on_refuse = imap_refuse,
    .on_close = imap_close,
};
