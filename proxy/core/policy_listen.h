/* proxy/core/policy_listen.h — a PostgreSQL policy store followed without
 * polling: the main loop watches the LISTEN connection's socket
 * (uv_poll_t, libpq's non-blocking reads) and wakes the policy thread on
 * a notification; the policy thread keeps the store connected (reconnect
 * with backoff from 0.25 s to 5 s, said once in the log, then a full
 * reload) and hands each new LISTEN connection to the loop. A SQLite
 * store needs none of it (PRAGMA data_version, polled). */
#ifndef CG_POLICY_LISTEN_H
#define CG_POLICY_LISTEN_H

#include <stdbool.h>

#include <uv.h>

#include "store/policy_store.h"

/* Main thread, before the policy thread starts. wake: makes the policy
 * thread look now (any thread). 0, or a negative libuv code; a no-op for
 * a SQLite store. s may be NULL for a store not open yet (a gateway
 * started from its policy cache): db, the policy_db value, says whether
 * it is PostgreSQL, and cg_policy_listen_attach gives the store later. */
int cg_policy_listen_start(uv_loop_t *loop, cg_pstore *s, const char *db, void (*wake)(void))
    __attribute__((warn_unused_result));
/* Policy thread: the store, once it could be opened. */
void cg_policy_listen_attach(cg_pstore *s);
/* Main thread, after the policy thread stopped. */
void cg_policy_listen_stop(void);
/* Policy thread, before each look at the store: reconnects a store that
 * is down (when its backoff allows) and opens a LISTEN connection when
 * the loop has none. Whether the store can be read now. */
bool cg_policy_listen_tend(void);

#endif
