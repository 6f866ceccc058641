/* ctl_key.c — placeholder until its module lands. */
#include "ctl.h"
int ctl_key(ctl_ctx *ctx, int argc, char **argv) { return ctl_fail("%s: not available yet", argv[0]); }
int ctl_require_signed(ctl_ctx *ctx, int argc, char **argv) { return ctl_fail("%s: not available yet", argv[0]); }
int ctl_peer(ctl_ctx *ctx, int argc, char **argv) { return ctl_fail("%s: not available yet", argv[0]); }
