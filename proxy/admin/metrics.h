/* proxy/admin/metrics.h — the Prometheus text exposition of the
 * process-wide counters (proxy/core/counters.h) for the admin listener's
 * /metrics. */
#ifndef CG_METRICS_H
#define CG_METRICS_H

#include <stdbool.h>

#include "common/cg_buf.h"
#include "proxy/core/counters.h"

/* Adds the exposition to o (fixed storage for the admin listener); false
 * when not all of it fit (o->failed): the text then ends with the last
 * whole piece that did. */
bool cg_metrics_render(cg_buf *o);

#endif
