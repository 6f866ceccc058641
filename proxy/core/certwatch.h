/* proxy/core/certwatch.h — certificates, keys, CAs, CRLs and the SAML IdP
 * certificate followed on disk: when one changes, new connections get a
 * runtime built from the same configuration with the new files, within
 * about a second and without a signal; a file that does not load leaves
 * the one in force and the gateway degraded. Main loop only. */
#ifndef CG_CERTWATCH_H
#define CG_CERTWATCH_H

#include <uv.h>

#include "proxy/core/config.h"

/* Starts following the files of the runtime in force (cg_runtime_acquire).
 * 0 or a negative libuv code. */
int cg_certwatch_start(uv_loop_t *loop) __attribute__((warn_unused_result));
/* After a configuration reload: follow the files the new one names. */
void cg_certwatch_follow(void);
void cg_certwatch_stop(void);
/* Why the files in force are not the newest ones (the last change did not
 * load), or NULL. */
const char *cg_certwatch_problem(void);
/* Every file cfg loads into a runtime, in order (NULL for unset ones). */
void cg_certwatch_files(const cg_config *cfg, void (*fn)(const char *path));

#endif
