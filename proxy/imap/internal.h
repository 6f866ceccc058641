/* proxy/imap/internal.h — internal to the IMAP gateway (the .c files of proxy/imap/):
 * the session every file works on, and the functions the files call in
 * one another. Not for other modules: the gateway's one public name is
 * cg_imap_proto (proxy/core/conn.h). */
#ifndef CG_IMAP_INTERNAL_H
#define CG_IMAP_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/cg_buf.h"
#include "common/cg_remote.h"
#include "policy/acl.h"
#include "policy/snapshot.h"
#include "proxy/core/conn.h"
#include "proxy/imap/imap.h"
#include "proxy/imap/parser.h"
#include "proxy/imap/scan.h"
#include "store/audit.h"

#define IN_MAX (256 * 1024)     /* pipelined client bytes held at most */
#define HOLD_MAX (64 * 1024)    /* a held (filtered) response */
/* A command re-serialised toward the backend: at most twice the longest
 * line (max_line <= 1 MiB, every byte escaped) and a literal head per
 * token; a line to the client is shorter. */
#define OUT_MAX (4u << 20)
#define HOLD_KEEP 4096          /* hold buffer kept between responses */
#define IN_KEEP 2048            /* client input buffer kept while idle */
#define NAME_MAX_ 1024          /* a decoded mailbox name */
#define ROUTED_NAME_MAX (NAME_MAX_ + 64) /* "DOMAIN:" and a name (a route's
                                          * domain is at most 40 bytes) */

enum state { S_CONNECTING, S_PREAUTH, S_LOGIN, S_AUTH, S_CLOSED };
/* What the tagged answer of the command in flight means. */
enum kind { K_PLAIN, K_SELECT, K_DESELECT, K_LOGOUT, K_IDLE };
/* Internal commands of the login sequence. */
enum istage { I_NONE, I_ID, I_LOGIN, I_LIST };
enum auth_wait { AW_NONE, AW_PLAIN, AW_EXTERNAL };

#define CG_IMAP_OP_MAX 32       /* a command's name, "UID FETCH" */
#define PIPE_MAX 16             /* commands in flight together at most */
#define UP_FLUSH (64 * 1024)    /* pipelined commands held for one write */

/* A command forwarded while others may be in flight (pipeline.c): what
 * its record needs when its tagged answer comes. It was judged on the
 * selected mailbox, which no command in flight can change. */
typedef struct imap_flight {
    cg_audit_resv resv;         /* the place of its audit record */
    uint64_t n;                 /* its txid SID.n */
    int64_t rule_id;
    int64_t bytes_in, bytes_out;
    bool on_selected;           /* the selected mailbox is its resource */
    char tag[64];
    char op[CG_IMAP_OP_MAX];
} imap_flight;

typedef struct imap_sess {
    cg_imapp *parser;
    cg_imapp *rparser;          /* server mode: held LIST/STATUS lines */
    cg_imaps *scan;
    int state;
    uint8_t *in;
    size_t inlen, inoff, incap;
    cg_buf hold;                /* a response being held (to HOLD_MAX) */
    bool holding, hold_overflow;
    /* the command being handled */
    cg_audit_resv resv;         /* the place of its audit record (SPEC 5) */
    bool busy;
    uint64_t n;                 /* command counter: txid SID.n */
    char tag[64];
    char op[CG_IMAP_OP_MAX];
    char resource[NAME_MAX_];
    char decision[8];
    int64_t rule_id;
    int64_t bytes_in, bytes_out;
    int64_t line_bytes;         /* client bytes of the command being read */
    int kind;
    bool pending_readonly;
    bool streaming, discarding;
    bool answered;              /* the backend answered the APPEND being
                                 * streamed before all of it was sent */
    size_t fwd_tok;
    bool idle;
    /* Commands in flight together (RFC 3501 5.5): only those the
     * pipeline's rule lets through (pipeline.c), oldest first; any other
     * event of the client's waits in `stalled` until none is left, so
     * the gateway writes nothing of its own between backend answers and
     * judges every later command on the state the earlier ones left. */
    imap_flight *flights;       /* PIPE_MAX, made at the first */
    unsigned nflight;
    unsigned flight_rx;         /* the flight an answer's bytes count for */
    bool has_stalled;
    cg_imapp_event stalled;
    cg_buf up;                  /* pipelined commands, one write a read */
    /* Two deadlines (cg_mono_ms; 0 = none) share the connection's one
     * protocol timer, armed for the earlier: each is set and cleared
     * only by its own owner, so ending a command line never cancels a
     * pending login-failure answer. */
    uint64_t cmd_deadline;      /* client_timeout: the command line (or a
                                 * stalled APPEND literal) must be done */
    /* login */
    int istage;
    int auth_wait;
    char login_user[CG_NAME_MAX + 1];
    uint64_t fail_at;           /* a delayed AUTHENTICATIONFAILED is due */
    char fail_tag[64];
    /* the session */
    int64_t principal_id;  /* what each command looks up; 0 before login */
    char principal[CG_NAME_MAX + 1]; /* for logs and audit */
    char mailbox_login[CG_NAME_MAX + 1];
    unsigned method;
    /* SPEC 7: the remote user a peer's server principal acts for ("" for
     * itself), and the transaction id its gateway sent with ID (kept only
     * with an originator) */
    char originator[CG_REMOTE_USER_MAX + 1];
    char origin_txid[CG_REMOTE_TXID_MAX];
    char selected[NAME_MAX_];
    bool has_selected;
    char delim;
    bool utf8;
    bool literal_plus;
    char *caps_backend;         /* filtered, without our own (NULL: none
                                 * learnt); its own length, not a 2 KiB
                                 * array in every session */
    bool logout;
    const cg_route_cfg *route;  /* the remote domain the session goes to
                                 * (its listener's route), or NULL */
} imap_sess;

/* ---- proxy/imap/out.c: wire output, the audit record, the one refusal ---- */

/* An IMAP string: quoted when it can be, else a non-synchronising literal. */
void cg_imap_astring(cg_buf *o, const char *s, size_t n);

/* One line to the client (CRLF added). */
void cg_imap_send(cg_conn *c, imap_sess *s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Bytes to the client as they are (a backend response). */
void cg_imap_to_client(cg_conn *c, imap_sess *s, const void *d, size_t n);
/* The command's transaction id, SESSION.n. */
typedef struct imap_txid {
    char s[40];
} imap_txid;
void cg_imap_txid(cg_conn *c, const imap_sess *s, imap_txid *id);
/* A name made safe for a resp-text. */
void cg_imap_text_name(const char *in, char *out, size_t cap);
const char *cg_imap_method_name(unsigned m);

void cg_imap_audit(cg_conn *c, imap_sess *s, const char *operation,
                   const char *resource, const char *decision, int64_t rule_id,
                   const char *result, const char *reason);
/* The record of a flight answered (or ended) with result. */
void cg_imap_audit_flight(cg_conn *c, imap_sess *s, imap_flight *f, const char *result);
/* The one refusal path: the wire answer, the log line, the audit record.
 * result is NO or BAD; code may be NULL. The command is over. */
void cg_imap_refuse(cg_conn *c, imap_sess *s, const char *result,
                    const char *code, const char *resource, int64_t rule_id,
                    const char *fmt, ...) __attribute__((format(printf, 7, 8)));
/* The session ends: "* BYE text" to the client, then the close (why is
 * the close's reason in the log). */
void cg_imap_bye(cg_conn *c, imap_sess *s, const char *why, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The command is over (answered by us or by the backend). */
void cg_imap_command_done(cg_conn *c, imap_sess *s, const char *result);

/* The mailbox tokens of a command that go out in their normalised wire
 * form: (token index, wire name) pairs with their own count. A command
 * names at most two mailboxes (RENAME, COPY's one, APPEND's one), so the
 * set is small and fixed; it is looked up by token index and never indexed
 * by one, whatever the number of tokens the client sent. */
typedef struct imap_repl {
    struct {
        size_t tok;
        const char *wire;
    } at[2];
    size_t n;
} imap_repl;

void cg_imap_repl_set(imap_repl *r, size_t tok, const char *wire);
/* Re-serialises tokens [from, to) of the current command (repl may be NULL). */
void cg_imap_serialise(const imap_sess *s, size_t from, size_t to,
                       const imap_repl *repl, cg_buf *o);
/* o to the backend, then freed; false (and the session closing) when it
 * did not fit or could not be written. */
bool cg_imap_write_backend(cg_conn *c, cg_buf *o) __attribute__((warn_unused_result));
/* The current command from token fwd_tok on, to the backend; its tagged
 * answer means kind. */
void cg_imap_forward(cg_conn *c, imap_sess *s, const imap_repl *repl, int kind);
/* A line of the gateway's own (plus CRLF) to the backend, which is to
 * answer it. */
void cg_imap_send_backend(cg_conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* o plus CRLF to the backend, which is to answer it; frees o. */
void cg_imap_send_upstream(cg_conn *c, cg_buf *o);

/* ---- proxy/imap/judge.c: mailbox names and the ACL ---------------------- */

typedef struct imap_judge {
    cg_snapshot *snap;
    const cg_principal *p;
} imap_judge;

bool cg_imap_mailbox_decode(const imap_sess *s, const char *raw, size_t len,
                            char *name, size_t namecap, char *wire,
                            size_t wirecap) __attribute__((warn_unused_result));
cg_decision cg_imap_decide(const imap_judge *j, const imap_sess *s, unsigned right,
                           const char *name);
/* Judges one right on one name; refuses on the wire when denied. */
bool cg_imap_need(cg_conn *c, imap_sess *s, const imap_judge *j, unsigned right,
                  const char *name, bool subtree) __attribute__((warn_unused_result));
/* The mailbox argument i, decoded; refuses when absent or invalid. */
bool cg_imap_arg_mailbox(cg_conn *c, imap_sess *s, size_t i, char *name,
                         char *wire) __attribute__((warn_unused_result));
/* The rights on the selected mailbox, without a word on the wire: 0 when
 * each is granted or none is selected (*rule: the last grant's rule),
 * else the first right denied (*rule: the rule that denied it). */
unsigned cg_imap_selected_denied(const imap_judge *j, const imap_sess *s, unsigned rights,
                                 int64_t *rule) __attribute__((warn_unused_result));
/* rights on the selected mailbox, if there is one; refuses when denied. */
bool cg_imap_need_selected(cg_conn *c, imap_sess *s, const imap_judge *j,
                           unsigned rights) __attribute__((warn_unused_result));
/* The principal in the current snapshot; false (nothing held, nothing
 * said) when it may no longer act. */
bool cg_imap_judge_try(const imap_sess *s, imap_judge *j) __attribute__((warn_unused_result));
/* The same; closes the session (BYE) when it is gone or disabled. */
bool cg_imap_judge_acquire(cg_conn *c, imap_sess *s, imap_judge *j) __attribute__((warn_unused_result));

/* ---- proxy/imap/commands.c: the command table ---------------------------- */

/* The states a command is valid in (RFC 3501 section 3). */
enum { CG_IMAP_NOTAUTH = 1 << 0, CG_IMAP_AUTH = 1 << 1 };
/* Row flags. */
enum {
    CG_IMAP_BEFORE_TLS = 1 << 0, /* also before STARTTLS (RFC 3501 6.2.1) */
    CG_IMAP_UID = 1 << 1,        /* also as "UID name" (RFC 3501 6.4.8) */
};
/* How the untagged answer a command brings is filtered (filter.c). */
enum { ANS_PASS, ANS_LIST, ANS_STATUS, ANS_CAPS };

typedef struct cg_imap_cmd cg_imap_cmd;
/* A command's own handling: before login (j is NULL) or after. */
typedef void cg_imap_cmd_fn(cg_conn *c, imap_sess *s, const imap_judge *j,
                            const cg_imap_cmd *cmd);

struct cg_imap_cmd {
    const char *name;        /* upper case, as cg_imap_begin_command folds it */
    uint8_t states;          /* CG_IMAP_NOTAUTH | CG_IMAP_AUTH */
    uint8_t flags;           /* CG_IMAP_BEFORE_TLS | CG_IMAP_UID */
    unsigned selected;       /* CG_RIGHT_* judged on the selected mailbox */
    struct {
        uint8_t arg;         /* 0: the first argument after the name */
        unsigned right;      /* one CG_RIGHT_*; 0 ends the list */
        bool subtree;        /* judged on everything below it too */
    } mbox[2];               /* mailbox arguments, judged in this order */
    uint8_t patterns;        /* bit i: argument i is a mailbox pattern */
    uint8_t kind;            /* what its tagged answer means (K_*) */
    uint8_t answer;          /* how its untagged answer is filtered (ANS_*) */
    cg_imap_cmd_fn *pre;     /* before login: the gateway answers */
    cg_imap_cmd_fn *run;     /* after login: instead of judge-and-forward */
};

extern const cg_imap_cmd cg_imap_commands[];
extern const size_t cg_imap_ncommands;
/* The row of a command name as in s->op ("FETCH", "UID FETCH"); NULL when
 * the gateway does not accept it. */
const cg_imap_cmd *cg_imap_cmd_find(const char *op);


const char *cg_imap_tok_str(const imap_sess *s, size_t i, size_t *len);
/* The name of the parser's command, upper case, with a UID prefix. */
void cg_imap_peek_op(const cg_imapp *p, char op[CG_IMAP_OP_MAX]);
/* Starts the command: its number, tag and name (with a UID prefix). */
void cg_imap_begin_command(imap_sess *s);
/* May this command be given before login? Refuses it when not. */
bool cg_imap_preauth_allowed(cg_conn *c, imap_sess *s) __attribute__((warn_unused_result));
void cg_imap_run_command(cg_conn *c, imap_sess *s);
/* An APPEND message literal starts. */
void cg_imap_stream_start(cg_conn *c, imap_sess *s, const cg_imapp_event *ev);

/* ---- proxy/imap/login.c: login and failed-login limiting ---------------- */

void cg_imap_login_fail(cg_conn *c, imap_sess *s, const char *why, bool delay);
/* Counts a failed login of the client's address (the limit of the listener). */
void cg_imap_login_count_failure(cg_conn *c);
void cg_imap_login(cg_conn *c, imap_sess *s, const char *authz,
                   const char *user, const char *pass, size_t passlen,
                   bool external);
void cg_imap_sasl_response(cg_conn *c, imap_sess *s, bool external,
                           const char *b64, size_t len);
/* The table's handlers of STARTTLS, LOGIN and AUTHENTICATE. */
cg_imap_cmd_fn cg_imap_cmd_starttls, cg_imap_cmd_login, cg_imap_cmd_authenticate;
/* A backend answer during the internal login sequence. */
void cg_imap_login_response(cg_conn *c, imap_sess *s, const uint8_t *d,
                            size_t n);

/* ---- proxy/imap/remote.c: a peer's gateway logging in (SPEC 7) --------- */

/* Keeps the "cpm-transaction-id" of a client's ID before login. */
void cg_imap_id_origin(imap_sess *s);
/* The peer rules for a principal the TLS layer or the address identified:
 * accepted as its peer's auth says, acting for the authzid of EXTERNAL
 * (s->originator) only when it is a user of its own peer's domain. False
 * when refused (answered, counted, audited). */
bool cg_imap_remote_login(cg_conn *c, imap_sess *s, const cg_snapshot *snap,
                          const cg_principal *p, const char *authz, bool external)
    __attribute__((warn_unused_result));
/* The same judged again in the current snapshot (a peer removed, its auth
 * made required): false when the session may no longer continue. */
bool cg_imap_remote_still(const cg_snapshot *snap, const cg_principal *p, const imap_sess *s)
    __attribute__((warn_unused_result));

/* ---- proxy/imap/filter.c: capabilities and mailbox lines ---------------- */

/* A capability of the allow-list and the commands it brings or extends
 * (NULL-terminated, names as cg_imap_cmd_find takes them). */
typedef struct cg_imap_cap {
    const char *name;
    const char *const *commands;
} cg_imap_cap;

extern const cg_imap_cap cg_imap_caps[];
extern const size_t cg_imap_ncaps;
/* Is the capability w (n bytes) offered to the client? */
bool cg_imap_cap_offered(const char *w, size_t n);
void cg_imap_filter_answer(cg_conn *c, imap_sess *s, int answer, const uint8_t *d,
                           size_t n);

void cg_imap_filter_caps(const char *in, size_t len, char *out, size_t cap,
                         bool *literal_plus);
/* The backend's capability list as learnt (filtered), or "IMAP4rev1"
 * when none was. */
const char *cg_imap_backend_caps(const imap_sess *s);
void cg_imap_our_caps(cg_conn *c, imap_sess *s, char *out, size_t cap);
/* The backend's capabilities from a [CAPABILITY] code in d (its greeting,
 * its answer to the gateway's LOGIN), filtered, kept for the client. */
void cg_imap_learn_caps(imap_sess *s, const uint8_t *d, size_t n);
/* The delimiter from the answer to the gateway's own LIST "" "". */
void cg_imap_learn_delim(imap_sess *s, const uint8_t *d, size_t n);
/* A response line to the client as it is, but for a [CAPABILITY] code in
 * it, filtered. */
void cg_imap_pass_answer(cg_conn *c, imap_sess *s, const uint8_t *d, size_t n);
bool cg_imap_keep_mailbox_line(cg_conn *c, imap_sess *s, const uint8_t *d,
                               size_t n, bool status) __attribute__((warn_unused_result));

/* ---- proxy/imap/response.c: what the backend says ----------------------- */

void cg_imap_upstream_data(cg_conn *c, const uint8_t *buf, size_t len);

/* ---- proxy/imap/pipeline.c: commands in flight together ----------------- */

/* The parser's command forwarded as a flight, when the pipeline's rule
 * lets it through now: false leaves everything as it was (the command
 * then runs alone, once nothing is in flight). */
bool cg_imap_pipe_take(cg_conn *c, imap_sess *s) __attribute__((warn_unused_result));
/* A tagged answer: true when it ended a flight (its record written). */
bool cg_imap_pipe_answer(cg_conn *c, imap_sess *s, const uint8_t *d, size_t n);
/* The pipelined commands to the backend in one write; false when the
 * session is closing. Called before any other write to the backend. */
bool cg_imap_pipe_flush(cg_conn *c, imap_sess *s) __attribute__((warn_unused_result));
/* The backend is gone: every flight's record, with result. */
void cg_imap_pipe_end(cg_conn *c, imap_sess *s, const char *result);
/* The session closes: flights' places given back, memory freed. */
void cg_imap_pipe_free(imap_sess *s);

/* ---- proxy/imap/session.c: the session's life --------------------------- */

void cg_imap_arm_timer(cg_conn *c, const imap_sess *s);
void cg_imap_process_input(cg_conn *c, imap_sess *s);
/* The last flight is answered: the stalled event, then the input. */
void cg_imap_pipe_drained(cg_conn *c, imap_sess *s);

#endif
