/* proxy/imap/imap.h — the IMAP gateway as the daemon registers it with
 * the core (cg_proto_register, proxy/core/conn.h). Everything else of the
 * gateway is internal to proxy/imap (internal.h). */
#ifndef CG_IMAP_H
#define CG_IMAP_H

#include "proxy/core/conn.h"

extern const cg_proto_ops cg_imap_proto;

#endif
