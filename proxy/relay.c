/* relay.c — placeholder until its module lands. */
#include "conn.h"
const cg_proto_ops cg_relay_proto = { .name = "relay" };
