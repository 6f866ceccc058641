/* proxy/admin/admin.h — the optional admin listener (admin_listen): GET /metrics
 * (Prometheus text) and GET /healthz, on the main loop. Loopback or a
 * management network only: it has no authentication. */
#ifndef CG_ADMIN_H
#define CG_ADMIN_H

#include <uv.h>

#include "proxy/core/config.h"

int cg_admin_start(uv_loop_t *loop, const cg_config *cfg, const char **error_r)
    __attribute__((warn_unused_result));
void cg_admin_stop(void);

#endif
