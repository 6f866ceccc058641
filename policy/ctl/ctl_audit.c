/* ctl_audit.c — placeholder until its module lands. */
#include "ctl.h"
int ctl_audit(ctl_ctx *ctx, int argc, char **argv) { return ctl_fail("%s: not available yet", argv[0]); }
