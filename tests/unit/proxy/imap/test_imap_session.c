/* tests/unit/proxy/imap/test_imap_session.c — the IMAP gateway (cg_imap_proto)
 * driven without sockets through tests/support/session_driver: each test
 * writes a script (the backend's greeting and its answers to the gateway's
 * own login, the client's commands) and checks what the gateway wrote to
 * the client and to the backend. The policy is session_driver.c's: alice
 * may do everything but on Secret (nothing) and Archive (list, read);
 * bob reads everything and may do all on INBOX. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "policy/acl.h"
#include "proxy/imap/imap.h"
#include "tests/support/session_driver.h"

static cg_upstream_cfg up_master = {
    .name = "dovecot", .address = "127.0.0.1:143", .imap_login = CG_IMAP_LOGIN_MASTER,
    .master_user = "gwmaster", .master_password = "master-secret", .connect_timeout = 5,
    .response_timeout = 30,
};

#define LISTENER(nm, mode, auths)                                                            \
    {                                                                                        \
        .name = nm, .protocol = CG_PROTO_IMAP, .listen = "127.0.0.1:993", .tls = mode,       \
        .auth = auths, .upstream_name = (char *)"dovecot", .upstream = &up_master,           \
        .tls12 = true, .tls13 = true, .handshake_timeout = 10, .idle_timeout = 1800,         \
        .client_timeout = 60, .max_line = 65536, .max_literal = 1 << 20,                     \
    }

static cg_listener_cfg l_cert = LISTENER("imaps-cert", CG_TLS_IMPLICIT, CG_AUTH_CERT);
static cg_listener_cfg l_starttls = LISTENER("imap-starttls", CG_TLS_STARTTLS,
                                             CG_AUTH_CERT | CG_AUTH_LOGIN);

enum { V_ALICE, V_BOB, V_STARTTLS };
static const sd_variant variants[] = {
    [V_ALICE] = { &l_cert, "alice", CG_AUTH_CERT, true, NULL },
    [V_BOB] = { &l_cert, "bob", CG_AUTH_CERT, true, NULL },
    [V_STARTTLS] = { &l_starttls, NULL, 0, false, NULL },
};

/* What Dovecot 2.3 offers, with the extensions the gateway removes. */
#define DOVECOT_CAPS                                                                        \
    "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY THREAD=REFERENCES " \
    "THREAD=REFS THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL CATENATE UNSELECT CHILDREN " \
    "NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH ESORT "          \
    "SEARCHRES WITHIN CONTEXT=SEARCH LIST-STATUS BINARY MOVE SNIPPET=FUZZY PREVIEW=FUZZY "  \
    "PREVIEW STATUS=SIZE SAVEDATE LITERAL+ NOTIFY SPECIAL-USE COMPRESS=DEFLATE METADATA "   \
    "URLAUTH=BASIC QUOTA ACL AUTH=PLAIN STARTTLS"
/* The same, as the gateway offers it: what has a row in the command table. */
#define OFFERED_CAPS                                                                        \
    "IMAP4rev1 SASL-IR ID ENABLE IDLE SORT SORT=DISPLAY THREAD=REFERENCES THREAD=REFS "     \
    "THREAD=ORDEREDSUBJECT MULTIAPPEND UNSELECT CHILDREN NAMESPACE UIDPLUS LIST-EXTENDED "  \
    "I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH ESORT SEARCHRES WITHIN CONTEXT=SEARCH "          \
    "LIST-STATUS BINARY MOVE LITERAL+ SPECIAL-USE"

/* The backend's side of the start of a session: the greeting, then the
 * answers to the gateway's own ID, LOGIN and LIST "" "" (the client's
 * login command comes in between, from the test). */
static void backend_greets(sd_script *sc)
{
    sd_script_text(sc, SD_BACKEND, "* OK [CAPABILITY " DOVECOT_CAPS "] Dovecot ready.\r\n");
}

static void backend_logs_in(sd_script *sc)
{
    sd_script_text(sc, SD_BACKEND, "cgi1 OK ID completed\r\n");
    sd_script_text(sc, SD_BACKEND, "cgi2 OK [CAPABILITY " DOVECOT_CAPS "] Logged in\r\n");
    sd_script_text(sc, SD_BACKEND, "* LIST (\\Noselect) \"/\" \"\"\r\ncgi3 OK List completed\r\n");
}

/* A session logged in as user (the certificate's principal), ready for the
 * test's commands; the backend's bytes so far are the login sequence. */
static void logged_in(sd_script *sc, uint8_t variant, const char *user)
{
    char line[128];
    sd_script_init(sc, variant);
    backend_greets(sc);
    snprintf(line, sizeof line, "a1 LOGIN %s x\r\n", user);
    sd_script_text(sc, SD_CLIENT, line);
    backend_logs_in(sc);
}

static void run(const sd_script *sc)
{
    assert_false(sc->over);
    sd_script_run(&cg_imap_proto, variants, sizeof variants / sizeof variants[0], sc);
}

/* What the backend got after the gateway's own login (cgi3 LIST). */
static const char *after_login(void)
{
    const char *b = strstr(sd_captured.backend.p, "cgi3 LIST \"\" \"\"\r\n");
    assert_non_null(b);
    return b + strlen("cgi3 LIST \"\" \"\"\r\n");
}

static void test_login_sequence_logs_in_as_master_and_answers_ok(void **state)
{
    sd_script sc;
    logged_in(&sc, V_ALICE, "alice");
    run(&sc);
    assert_non_null(strstr(sd_captured.backend.p, "cgi2 LOGIN \"alice*gwmaster\" \"master-secret\"\r\n"));
    assert_non_null(strstr(sd_captured.client.p, "a1 OK [CAPABILITY " OFFERED_CAPS "] Logged in\r\n"));
}

/* A row with a mailbox argument: judged, then forwarded with the name in
 * the form the backend expects (INBOX in any case is INBOX; modified
 * UTF-7 canonical; quoted). */
static void test_allowed_row_forwards_with_mailbox_normalised(void **state)
{
    sd_script sc;
    logged_in(&sc, V_ALICE, "alice");
    sd_script_text(&sc, SD_CLIENT, "a2 select inbox\r\n");
    sd_script_text(&sc, SD_BACKEND, "a2 OK [READ-WRITE] Select completed\r\n");
    sd_script_text(&sc, SD_CLIENT, "a3 RENAME Work/Old {8}\r\n");
    sd_script_text(&sc, SD_CLIENT, "Work/New\r\n");
    run(&sc);
    assert_string_equal(after_login(),
                        "a2 select \"INBOX\"\r\n"
                        "a3 RENAME \"Work/Old\" \"Work/New\"\r\n");
    assert_non_null(strstr(sd_captured.client.p, "a2 OK [READ-WRITE] Select completed\r\n"));
}

/* The second mailbox of COPY (after UID's sequence set) is the one judged
 * for write; the selected mailbox for read. */
static void test_uid_copy_judges_its_destination(void **state)
{
    sd_script sc;
    logged_in(&sc, V_ALICE, "alice");
    sd_script_text(&sc, SD_CLIENT, "a2 SELECT INBOX\r\n");
    sd_script_text(&sc, SD_BACKEND, "a2 OK Select completed\r\n");
    sd_script_text(&sc, SD_CLIENT, "a3 UID COPY 1:* Archive\r\n");
    sd_script_text(&sc, SD_CLIENT, "a4 UID COPY 1:* Work\r\n");
    run(&sc);
    assert_non_null(strstr(sd_captured.client.p,
                           "a3 NO [NOPERM] write denied on \"Archive\" (txid "));
    assert_string_equal(after_login(), "a2 SELECT \"INBOX\"\r\na4 UID COPY 1:* \"Work\"\r\n");
}

/* A denied mailbox: a tagged NO [NOPERM], and nothing reaches the backend. */
static void test_denied_mailbox_gets_tagged_no_and_nothing_to_backend(void **state)
{
    sd_script sc;
    logged_in(&sc, V_ALICE, "alice");
    sd_script_text(&sc, SD_CLIENT, "a2 SELECT Secret\r\n");
    sd_script_text(&sc, SD_CLIENT, "a3 DELETE Secret/Old\r\n");
    sd_script_text(&sc, SD_CLIENT, "a4 APPEND Secret {5}\r\n");
    run(&sc);
    assert_non_null(strstr(sd_captured.client.p,
                           "a2 NO [NOPERM] read denied on \"Secret\" (txid "));
    assert_non_null(strstr(sd_captured.client.p,
                           "a3 NO [NOPERM] delete denied on \"Secret/Old\" (txid "));
    assert_non_null(strstr(sd_captured.client.p,
                           "a4 NO [NOPERM] write denied on \"Secret\" (txid "));
    assert_null(strstr(sd_captured.client.p, "+ OK")); /* no literal invited */
    assert_string_equal(after_login(), "");
}

/* APPEND's row: the streamed message goes out behind a judged mailbox. */
static void test_append_streams_behind_its_row(void **state)
{
    sd_script sc;
    logged_in(&sc, V_ALICE, "alice");
    sd_script_text(&sc, SD_CLIENT, "a2 APPEND inbox (\\Seen) {5}\r\n");
    sd_script_text(&sc, SD_CLIENT, "hello\r\n");
    run(&sc);
    assert_string_equal(after_login(), "a2 APPEND \"INBOX\" (\\Seen) {5+}\r\nhello\r\n");
    assert_non_null(strstr(sd_captured.client.p, "+ OK\r\n"));
}

/* The states of a row: a command valid only after login is refused
 * before it, one valid only before login is refused after it, a command
 * with no row is refused in both, and UID goes only with rows that
 * allow it. None reaches the backend. */
static void test_commands_outside_their_states_are_refused(void **state)
{
    sd_script sc;
    sd_script_init(&sc, V_ALICE);
    backend_greets(&sc);
    sd_script_text(&sc, SD_CLIENT, "p1 SELECT INBOX\r\n");
    sd_script_text(&sc, SD_CLIENT, "p2 GETACL INBOX\r\n");
    sd_script_text(&sc, SD_CLIENT, "a1 LOGIN alice x\r\n");
    backend_logs_in(&sc);
    sd_script_text(&sc, SD_CLIENT, "a2 LOGIN alice x\r\n");
    sd_script_text(&sc, SD_CLIENT, "a3 STARTTLS\r\n");
    sd_script_text(&sc, SD_CLIENT, "a4 GETACL INBOX\r\n");
    sd_script_text(&sc, SD_CLIENT, "a5 UID SELECT INBOX\r\n");
    run(&sc);
    const char *cl = sd_captured.client.p;
    assert_non_null(strstr(cl, "p1 BAD Log in first (txid "));
    assert_non_null(strstr(cl, "p2 BAD Log in first (txid "));
    assert_non_null(strstr(cl, "a2 BAD Already authenticated (txid "));
    assert_non_null(strstr(cl, "a3 BAD Already authenticated (txid "));
    assert_non_null(strstr(cl, "a4 BAD Unknown or unsupported command (txid "));
    assert_non_null(strstr(cl, "a5 BAD Unknown or unsupported command (txid "));
    assert_string_equal(after_login(), "");
}

/* A row on the selected mailbox: judged there when one is selected, left
 * to the backend ("No mailbox selected") when none is. */
static void test_selected_rights_are_judged_on_the_selected_mailbox(void **state)
{
    sd_script sc;
    logged_in(&sc, V_ALICE, "alice");
    sd_script_text(&sc, SD_CLIENT, "a2 STORE 1 +FLAGS (\\Seen)\r\n");
    sd_script_text(&sc, SD_BACKEND, "a2 BAD No mailbox selected\r\n");
    sd_script_text(&sc, SD_CLIENT, "a3 EXAMINE Archive\r\n");
    sd_script_text(&sc, SD_BACKEND, "a3 OK [READ-ONLY] Examine completed\r\n");
    sd_script_text(&sc, SD_CLIENT, "a4 FETCH 1 FLAGS\r\n");
    sd_script_text(&sc, SD_BACKEND, "a4 OK Fetch completed\r\n");
    sd_script_text(&sc, SD_CLIENT, "a5 STORE 1 +FLAGS (\\Seen)\r\n");
    run(&sc);
    assert_non_null(strstr(sd_captured.client.p, "a2 BAD No mailbox selected\r\n"));
    assert_non_null(strstr(sd_captured.client.p,
                           "a5 NO [NOPERM] write denied on \"Archive\" (txid "));
    assert_string_equal(after_login(), "a2 STORE 1 +FLAGS (\\Seen)\r\n"
                                       "a3 EXAMINE \"Archive\"\r\n"
                                       "a4 FETCH 1 FLAGS\r\n");
}

/* CLOSE's own handler: without delete on the selected mailbox it goes out
 * as UNSELECT, so nothing is expunged. */
static void test_close_without_delete_goes_out_as_unselect(void **state)
{
    sd_script sc;
    logged_in(&sc, V_BOB, "bob@example.org");
    sd_script_text(&sc, SD_CLIENT, "a2 SELECT Shared\r\n");
    sd_script_text(&sc, SD_BACKEND, "a2 OK Select completed\r\n");
    sd_script_text(&sc, SD_CLIENT, "a3 CLOSE\r\n");
    run(&sc);
    assert_string_equal(after_login(), "a2 SELECT \"Shared\"\r\na3 UNSELECT\r\n");
}

/* LIST's row filters its answers: lines for mailboxes without the list
 * right are removed. */
static void test_list_answer_is_filtered(void **state)
{
    sd_script sc;
    logged_in(&sc, V_ALICE, "alice");
    sd_script_text(&sc, SD_CLIENT, "a2 LIST \"\" *\r\n");
    sd_script_text(&sc, SD_BACKEND,
                   "* LIST () \"/\" INBOX\r\n* LIST () \"/\" Secret\r\n"
                   "* LIST () \"/\" Secret/Plans\r\n* LIST () \"/\" Work\r\n"
                   "a2 OK List completed\r\n");
    run(&sc);
    assert_string_equal(after_login(), "a2 LIST \"\" *\r\n");
    const char *cl = strstr(sd_captured.client.p, "Logged in\r\n");
    assert_non_null(cl);
    assert_string_equal(cl, "Logged in\r\n* LIST () \"/\" INBOX\r\n* LIST () \"/\" Work\r\n"
                            "a2 OK List completed\r\n");
}

/* The capability lines the client sees (greeting, CAPABILITY before and
 * after login, a [CAPABILITY] code) list only capabilities whose commands
 * are rows of the table, plus the gateway's own before login. */
static void test_capability_lines_offer_only_what_the_table_has(void **state)
{
    sd_script sc;
    sd_script_init(&sc, V_ALICE);
    backend_greets(&sc);
    sd_script_text(&sc, SD_CLIENT, "c1 CAPABILITY\r\n");
    sd_script_text(&sc, SD_CLIENT, "a1 LOGIN alice x\r\n");
    backend_logs_in(&sc);
    sd_script_text(&sc, SD_CLIENT, "c2 CAPABILITY\r\n");
    sd_script_text(&sc, SD_BACKEND, "* CAPABILITY " DOVECOT_CAPS "\r\nc2 OK Capability completed\r\n");
    sd_script_text(&sc, SD_CLIENT, "c3 NOOP\r\n");
    sd_script_text(&sc, SD_BACKEND, "c3 OK [CAPABILITY " DOVECOT_CAPS "] NOOP completed\r\n");
    run(&sc);
    const char *cl = sd_captured.client.p;
    assert_non_null(strstr(cl, "* OK [CAPABILITY " OFFERED_CAPS " AUTH=EXTERNAL AUTH=PLAIN] cpmgate ready"));
    assert_non_null(strstr(cl, "* CAPABILITY " OFFERED_CAPS " AUTH=EXTERNAL AUTH=PLAIN\r\nc1 OK"));
    assert_non_null(strstr(cl, "* CAPABILITY " OFFERED_CAPS "\r\nc2 OK Capability completed\r\n"));
    assert_non_null(strstr(cl, "c3 OK [CAPABILITY " OFFERED_CAPS "] NOOP completed\r\n"));
    /* the gateway's CAPABILITY before login is its own answer */
    assert_string_equal(after_login(), "c2 CAPABILITY\r\nc3 NOOP\r\n");
    assert_null(strstr(cl, "NOTIFY"));
    assert_null(strstr(cl, "CATENATE"));
    assert_null(strstr(cl, "COMPRESS"));
}

/* Before STARTTLS only the rows marked for it are answered. */
static void test_before_starttls_only_its_rows_are_answered(void **state)
{
    sd_script sc;
    sd_script_init(&sc, V_STARTTLS);
    backend_greets(&sc);
    sd_script_text(&sc, SD_CLIENT, "s1 LOGIN alice x\r\n");
    sd_script_text(&sc, SD_CLIENT, "s2 CAPABILITY\r\n");
    sd_script_text(&sc, SD_CLIENT, "s3 NOOP\r\n");
    run(&sc);
    const char *cl = sd_captured.client.p;
    assert_non_null(strstr(cl, "s1 NO [PRIVACYREQUIRED] STARTTLS first (txid "));
    assert_non_null(strstr(cl, "* CAPABILITY " OFFERED_CAPS " STARTTLS LOGINDISABLED\r\ns2 OK"));
    assert_non_null(strstr(cl, "s3 OK NOOP completed\r\n"));
    assert_null(strstr(sd_captured.backend.p, "LOGIN"));
}

/* The core's refusals (on_refuse) end the session with * BYE. */
static void test_shutdown_and_idle_answer_bye(void **state)
{
    sd_script sc;
    logged_in(&sc, V_ALICE, "alice");
    sd_script_op(&sc, SD_SHUTDOWN);
    run(&sc);
    assert_non_null(strstr(sd_captured.client.p, "\r\n* BYE [UNAVAILABLE] shutting down\r\n"));

    logged_in(&sc, V_ALICE, "alice");
    sd_script_op(&sc, SD_IDLE);
    run(&sc);
    assert_non_null(strstr(sd_captured.client.p, "\r\n* BYE Autologout; idle for too long\r\n"));
}


/* ---- pipelining: what went where, in order -------------------------------- */

/* Every write of the gateway in one log, in order: "\x01B:" and the bytes
 * toward the backend, "\x01C:" and the bytes toward the client. */
static cg_buf g_log;

static void log_begin(void)
{
    cg_buf_free(&g_log);
    cg_buf_init(&g_log, 1 << 20);
}

static void log_backend(unsigned conn, const uint8_t *buf, size_t len)
{
    (void)conn;
    cg_buf_add(&g_log, "\x01" "B:", 3);
    cg_buf_add(&g_log, buf, len);
}

static void log_client(const uint8_t *buf, size_t len)
{
    cg_buf_add(&g_log, "\x01" "C:", 3);
    cg_buf_add(&g_log, buf, len);
}

static void log_end(void)
{
    cg_buf_add(&g_log, "\x01", 1);
}

static const sd_checker log_checker = {
    .begin = log_begin, .to_backend = log_backend, .to_client = log_client, .end = log_end,
};

static void run_logged(const sd_script *sc)
{
    assert_false(sc->over);
    sd_run(&cg_imap_proto, variants, sizeof variants / sizeof variants[0], &log_checker,
           sc->b, sc->len);
    assert_false(g_log.failed);
}

/* Where text is in the log (the test fails when it is not there). */
static size_t at(const char *text)
{
    const char *p = strstr(g_log.p, text);
    if (!p)
        fail_msg("not written: \"%s\"", text);
    return (size_t)(p - g_log.p);
}

static void selected(sd_script *sc, const char *cmd, const char *answer)
{
    logged_in(sc, V_ALICE, "alice");
    sd_script_text(sc, SD_CLIENT, cmd);
    sd_script_text(sc, SD_BACKEND, answer);
}

/* Commands that leave the selected mailbox as it is go out together, in
 * one write, before any answer; EXAMINE waits until every one before it
 * is answered (in whatever order the backend answers), and the command
 * after it is judged on the mailbox it selected. */
static void test_pipelined_commands_go_out_together_until_one_changes_the_mailbox(void **state)
{
    sd_script sc;
    selected(&sc, "a2 SELECT INBOX\r\n", "a2 OK [READ-WRITE] Select completed\r\n");
    sd_script_text(&sc, SD_CLIENT,
                   "a3 FETCH 1 FLAGS\r\na4 NOOP\r\na5 EXAMINE Archive\r\n"
                   "a6 STORE 1 +FLAGS (\\Seen)\r\n");
    sd_script_text(&sc, SD_BACKEND, "* 1 FETCH (FLAGS ())\r\na4 OK NOOP completed\r\n");
    sd_script_text(&sc, SD_BACKEND, "a3 OK Fetch completed\r\n");
    sd_script_text(&sc, SD_BACKEND, "a5 OK [READ-ONLY] Examine completed\r\n");
    run_logged(&sc);
    at("\x01" "B:a3 FETCH 1 FLAGS\r\na4 NOOP\r\n\x01");
    assert_true(at("a4 OK NOOP completed") < at("a3 OK Fetch completed"));
    assert_true(at("a3 OK Fetch completed") < at("B:a5 EXAMINE \"Archive\"\r\n"));
    /* alice may only list and read Archive */
    assert_true(at("a5 OK [READ-ONLY]") < at("C:a6 NO [NOPERM] write denied on \"Archive\""));
    assert_null(strstr(g_log.p, "a6 STORE"));
}

/* While commands are in flight the gateway writes nothing of its own: a
 * refusal, and the invitation to send a literal, wait for their answers. */
static void test_pipelined_refusal_and_literal_wait_for_the_commands_in_flight(void **state)
{
    sd_script sc;
    selected(&sc, "a2 SELECT INBOX\r\n", "a2 OK [READ-WRITE] Select completed\r\n");
    sd_script_text(&sc, SD_CLIENT, "a3 FETCH 1 FLAGS\r\na4 GETACL INBOX\r\na5 SEARCH TEXT {3}\r\n");
    sd_script_text(&sc, SD_BACKEND, "* 1 FETCH (FLAGS ())\r\n");
    sd_script_text(&sc, SD_BACKEND, "a3 OK Fetch completed\r\n");
    sd_script_text(&sc, SD_CLIENT, "abc\r\n");
    sd_script_text(&sc, SD_BACKEND, "* SEARCH 1\r\na5 OK Search completed\r\n");
    run_logged(&sc);
    assert_true(at("a3 OK Fetch completed") < at("C:a4 BAD Unknown or unsupported command"));
    assert_true(at("C:a4 BAD") < at("C:+ OK\r\n"));
    assert_true(at("C:+ OK") < at("B:a5 SEARCH TEXT {3+}\r\nabc\r\n"));
    at("a5 OK Search completed");
    assert_null(strstr(g_log.p, "GETACL"));
}

/* A pipelined command the ACL refuses on the selected mailbox is refused
 * in its turn and never sent; the ones after it still go out. */
static void test_pipelined_command_denied_on_the_selected_mailbox_is_not_sent(void **state)
{
    sd_script sc;
    selected(&sc, "a2 EXAMINE Archive\r\n", "a2 OK [READ-ONLY] Examine completed\r\n");
    sd_script_text(&sc, SD_CLIENT,
                   "a3 FETCH 1 FLAGS\r\na4 STORE 1 +FLAGS (\\Seen)\r\na5 NOOP\r\n");
    sd_script_text(&sc, SD_BACKEND, "a3 OK Fetch completed\r\n");
    sd_script_text(&sc, SD_BACKEND, "a5 OK NOOP completed\r\n");
    run_logged(&sc);
    at("\x01" "B:a3 FETCH 1 FLAGS\r\n\x01");
    assert_true(at("a3 OK Fetch completed") < at("C:a4 NO [NOPERM] write denied on \"Archive\""));
    assert_true(at("C:a4 NO [NOPERM]") < at("B:a5 NOOP\r\n"));
    at("a5 OK NOOP completed");
    assert_null(strstr(g_log.p, "a4 STORE"));
}

/* The client's LOGIN is answered when the backend's is; a command sent
 * before the gateway's own LIST "" "" is answered waits for it, and is
 * read with the delimiter it gives ("inbox.Work" is below INBOX when the
 * delimiter is ".", and goes out as "INBOX.Work"). */
static void test_login_answered_before_the_delimiter_which_the_next_command_waits_for(void **state)
{
    sd_script sc;
    sd_script_init(&sc, V_ALICE);
    backend_greets(&sc);
    sd_script_text(&sc, SD_CLIENT, "a1 LOGIN alice x\r\n");
    sd_script_text(&sc, SD_BACKEND, "cgi1 OK ID completed\r\n");
    sd_script_text(&sc, SD_BACKEND, "cgi2 OK [CAPABILITY " DOVECOT_CAPS "] Logged in\r\n");
    sd_script_text(&sc, SD_CLIENT, "a2 SELECT inbox.Work\r\n");
    sd_script_text(&sc, SD_BACKEND, "* LIST (\\Noselect) \".\" \"\"\r\ncgi3 OK List completed\r\n");
    run_logged(&sc);
    assert_true(at("B:cgi3 LIST") < at("C:a1 OK [CAPABILITY"));
    assert_true(at("C:a1 OK [CAPABILITY") < at("B:a2 SELECT \"INBOX.Work\"\r\n"));
}

/* A tag already in flight makes its command wait: the answers stay each
 * its own command's. */
static void test_a_tag_in_flight_makes_its_command_wait(void **state)
{
    sd_script sc;
    selected(&sc, "a2 SELECT INBOX\r\n", "a2 OK [READ-WRITE] Select completed\r\n");
    sd_script_text(&sc, SD_CLIENT, "x FETCH 1 FLAGS\r\nx STORE 1 +FLAGS (\\Seen)\r\n");
    sd_script_text(&sc, SD_BACKEND, "x OK Fetch completed\r\n");
    sd_script_text(&sc, SD_BACKEND, "x OK Store completed\r\n");
    run_logged(&sc);
    at("\x01" "B:x FETCH 1 FLAGS\r\n\x01");
    assert_true(at("C:x OK Fetch completed") < at("B:x STORE 1 +FLAGS (\\Seen)\r\n"));
    at("C:x OK Store completed");
}

/* At most PIPE_MAX (16) commands are in flight: the 17th goes out when
 * the first is answered. */
static void test_at_most_sixteen_commands_are_in_flight(void **state)
{
    sd_script sc;
    logged_in(&sc, V_ALICE, "alice");
    char many[20 * 16] = "", line[32];
    for (int i = 1; i <= 20; i++) {
        snprintf(line, sizeof line, "n%d NOOP\r\n", i);
        strcat(many, line);
    }
    sd_script_text(&sc, SD_CLIENT, many);
    sd_script_text(&sc, SD_BACKEND, "n1 OK NOOP completed\r\n");
    sd_script_text(&sc, SD_BACKEND, "n2 OK NOOP completed\r\n");
    run_logged(&sc);
    size_t first = at("B:n1 NOOP\r\n");
    assert_true(at("n16 NOOP\r\n\x01") > first);
    assert_true(at("B:n17 NOOP\r\n") > at("C:n1 OK NOOP completed"));
    assert_true(at("B:n18 NOOP\r\n") > at("C:n2 OK NOOP completed"));
    assert_null(strstr(g_log.p, "n19 NOOP"));
}

int main(void)
{
    sd_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_login_sequence_logs_in_as_master_and_answers_ok),
        cmocka_unit_test(test_allowed_row_forwards_with_mailbox_normalised),
        cmocka_unit_test(test_uid_copy_judges_its_destination),
        cmocka_unit_test(test_denied_mailbox_gets_tagged_no_and_nothing_to_backend),
        cmocka_unit_test(test_append_streams_behind_its_row),
        cmocka_unit_test(test_commands_outside_their_states_are_refused),
        cmocka_unit_test(test_selected_rights_are_judged_on_the_selected_mailbox),
        cmocka_unit_test(test_close_without_delete_goes_out_as_unselect),
        cmocka_unit_test(test_list_answer_is_filtered),
        cmocka_unit_test(test_capability_lines_offer_only_what_the_table_has),
        cmocka_unit_test(test_before_starttls_only_its_rows_are_answered),
        cmocka_unit_test(test_shutdown_and_idle_answer_bye),
        cmocka_unit_test(test_pipelined_commands_go_out_together_until_one_changes_the_mailbox),
        cmocka_unit_test(test_pipelined_refusal_and_literal_wait_for_the_commands_in_flight),
        cmocka_unit_test(test_pipelined_command_denied_on_the_selected_mailbox_is_not_sent),
        cmocka_unit_test(test_at_most_sixteen_commands_are_in_flight),
        cmocka_unit_test(test_a_tag_in_flight_makes_its_command_wait),
        cmocka_unit_test(test_login_answered_before_the_delimiter_which_the_next_command_waits_for),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
