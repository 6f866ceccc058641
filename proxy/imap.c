/* imap.c — placeholder until its module lands. */
#include "conn.h"
const cg_proto_ops cg_imap_proto = { .name = "imap" };
