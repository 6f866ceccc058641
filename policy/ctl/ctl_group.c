/* ctl_group.c — placeholder until its module lands. */
#include "ctl.h"
int ctl_group(ctl_ctx *ctx, int argc, char **argv) { return ctl_fail("%s: not available yet", argv[0]); }
