/* tests/support/session_driver.h — the in-memory connection behind the
 * whole-session fuzzers (fuzz_imap_session, fuzz_http_session) and the unit
 * tests of the protocol glue (tests/unit/proxy/imap, tests/unit/proxy/http): implements the proxy/core/conn.h
 * API the protocol gateways call, runs a fuzzer-written script against one
 * of them, and hands every byte the gateway writes toward the backend to
 * the target's checker.
 *
 * Script (the fuzzer input): one byte choosing the listener variant, then
 * operations until the input ends:
 *   op byte, and for the data operations a 16-bit little-endian length and
 *   that many bytes (cut at the end of the input).
 * op % SD_NOPS:
 *   SD_CLIENT        bytes from the client (held while the gateway paused
 *                    reading, delivered when it resumes)
 *   SD_BACKEND       bytes from the backend (a pending connect completes
 *                    first)
 *   SD_CONNECT_OK    the pending backend connect succeeds
 *   SD_CONNECT_FAIL  it fails (refused, or connect timeout)
 *   SD_BACKEND_EOF   the backend closes (or fails)
 *   SD_TIMER         the protocol deadline (cg_conn_set_timer) passes
 *   SD_RESP_TIMEOUT  response_timeout passes while a response is expected
 *   SD_IDLE          the idle timeout passes (on_refuse, then close)
 *   SD_DRAIN         both write queues drain (on_drain)
 *   SD_CLIENT_EOF    the client closes
 *   SD_TLS_READY     a STARTTLS handshake finishes
 *   SD_SHUTDOWN      the gateway shuts down (on_refuse "shutting down")
 * Operations that do not apply in the connection's state are skipped, as
 * the real core would never make those calls. The script ends with the
 * connection closed (on_close), so leaks show. */
#ifndef CG_SESSION_DRIVER_H
#define CG_SESSION_DRIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/cg_buf.h"
#include "proxy/core/conn.h"

enum sd_op {
    SD_CLIENT, SD_BACKEND, SD_CONNECT_OK, SD_CONNECT_FAIL, SD_BACKEND_EOF,
    SD_TIMER, SD_RESP_TIMEOUT, SD_IDLE, SD_DRAIN, SD_CLIENT_EOF,
    SD_TLS_READY, SD_SHUTDOWN, SD_NOPS
};

/* A listener variant: the listener (with its upstream) and the identity
 * the core resolved before on_open. */
typedef struct sd_variant {
    cg_listener_cfg *listener;
    const char *principal;  /* NULL: none */
    unsigned auth_method;   /* CG_AUTH_* of that identity */
    bool tls;               /* the client side is TLS at on_open */
    const char *starttls_principal; /* identity after STARTTLS, or NULL */
} sd_variant;

/* What the target checks: called with every write toward the backend
 * (conn is the backend connection's number, new at every fresh connect;
 * a pooled reuse keeps it), at a fresh backend connection, with every
 * write to the client and with the client bytes the gateway is given. */
typedef struct sd_checker {
    void (*begin)(void);
    void (*backend_conn)(unsigned conn);
    void (*to_backend)(unsigned conn, const uint8_t *buf, size_t len);
    void (*to_client)(const uint8_t *buf, size_t len);
    void (*from_client)(const uint8_t *buf, size_t len); /* as delivered */
    void (*end)(void);
    /* Optional: after each operation of the script has run (and what it
     * set off), with the operation and the protocol's session. */
    void (*after)(enum sd_op op, const void *session);
} sd_checker;

/* Once, from LLVMFuzzerInitialize: a policy database (principals alice
 * and bob, allow and deny rules for both services, a digest credential,
 * a signed-only path) made with the store's own code, built into a
 * published snapshot; the audit writer on a scratch database; the content
 * gate on a scratch content database; logging quiet unless
 * CG_FUZZ_LOG=debug. */
void sd_init(void);

/* Runs one script against proto. */
void sd_run(const cg_proto_ops *proto, const sd_variant *variants, size_t nvariants,
            const sd_checker *chk, const uint8_t *data, size_t size);

/* A script written by a unit test: sd_script_init with the variant's index,
 * then the operations in order; sd_run it with sd_script_run. A script that
 * does not fit its array is marked over (the test fails on it). */
typedef struct sd_script {
    uint8_t b[65536];
    size_t len;
    bool over;
} sd_script;

void sd_script_init(sd_script *s, uint8_t variant);
/* An operation without data (SD_CONNECT_OK, SD_TIMER, ...). */
void sd_script_op(sd_script *s, enum sd_op op);
/* A data operation (SD_CLIENT, SD_BACKEND) carrying n bytes. */
void sd_script_data(sd_script *s, enum sd_op op, const void *d, size_t n);
void sd_script_text(sd_script *s, enum sd_op op, const char *text);

/* A checker that keeps what the gateway wrote: to the client, and to the
 * backend (all backend connections in order), each with a NUL after it;
 * backend_conns counts fresh backend connections. Reset at every run. */
typedef struct sd_capture {
    cg_buf client;
    cg_buf backend;
    unsigned backend_conns;
} sd_capture;

extern const sd_checker sd_capture_checker;
extern sd_capture sd_captured;

/* Runs s against proto with the capturing checker; what was written is in
 * sd_captured afterwards. */
void sd_script_run(const cg_proto_ops *proto, const sd_variant *variants, size_t nvariants,
                   const sd_script *s);

/* The libFuzzer entry points of a target. */
#define SD_FUZZ_TARGET(proto, variants, checker)                                   \
    int LLVMFuzzerInitialize(int *argc, char ***argv)                              \
    {                                                                              \
        (void)argc, (void)argv;                                                    \
        sd_init();                                                                 \
        return 0;                                                                  \
    }                                                                              \
    int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)                   \
    {                                                                              \
        sd_run(&(proto), (variants), sizeof(variants) / sizeof((variants)[0]),     \
               &(checker), data, size);                                            \
        return 0;                                                                  \
    }

#endif
