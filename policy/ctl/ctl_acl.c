/* ctl_acl.c — placeholder until its module lands. */
#include "ctl.h"
int ctl_acl(ctl_ctx *ctx, int argc, char **argv) { return ctl_fail("%s: not available yet", argv[0]); }
int ctl_check(ctl_ctx *ctx, int argc, char **argv) { return ctl_fail("%s: not available yet", argv[0]); }
