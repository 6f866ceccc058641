/* proxy/core/policy_watch.h — the gateway's policy: the store opened read-only
 * and the first snapshot published at start, then a thread of its own
 * that notices committed changes and publishes each new snapshot (a large
 * build must not stall the main loop), copying policy_log rows into the
 * audit chain as they come. */
#ifndef CG_POLICY_WATCH_H
#define CG_POLICY_WATCH_H

#include <uv.h>

#include "proxy/core/config.h"

/* Opens cfg's policy store and publishes the first snapshot; 0, or a
 * negative code and why (the gateway must not start). */
int cg_policy_start(const cg_config *cfg, const char **why)
    __attribute__((warn_unused_result));
/* The watcher thread, and for a PostgreSQL store its LISTEN connection
 * on loop (proxy/core/policy_listen.h); 0 or a negative code. */
int cg_policy_thread_start(uv_loop_t *loop) __attribute__((warn_unused_result));
/* Waits for a build in progress to finish, ends the thread and the
 * LISTEN connection. */
void cg_policy_thread_stop(void);
/* Closes the store (after the thread stopped). */
void cg_policy_close(void);

#endif
