/* ctl_principal.c — placeholder until its module lands. */
#include "ctl.h"
int ctl_init(ctl_ctx *ctx, int argc, char **argv) { return ctl_fail("%s: not available yet", argv[0]); }
int ctl_principal(ctl_ctx *ctx, int argc, char **argv) { return ctl_fail("%s: not available yet", argv[0]); }
