/* policy/peer.h — remote environments, inbound (SPEC 7): whether a
 * peer's server principal is accepted with the credential it used, and
 * whether it may act for a remote user "user@DOMAIN". Pure lookups in a
 * snapshot: no I/O, no allocation, no locks. */
#ifndef CG_PEER_H
#define CG_PEER_H

#include <stdbool.h>
#include <stddef.h>

#include "common/cg_remote.h"
#include "policy/snapshot.h"

typedef enum cg_peer_verdict {
    CG_PEER_OK = 0,
    CG_PEER_CERT_REQUIRED, /* bound to a peer with auth = required, and
                            * not authenticated by its certificate */
    CG_PEER_BAD_NAME,      /* the originator is not user@DOMAIN */
    CG_PEER_NOT_SERVER,    /* a user principal names someone else */
    CG_PEER_NO_PEER,       /* a server principal bound to no peer */
    CG_PEER_OTHER_DOMAIN,  /* a domain not bound to this server principal */
} cg_peer_verdict;

/* One sentence for logs and audit records. */
const char *cg_peer_verdict_text(cg_peer_verdict v);

/* Is p accepted with the credential it used (by_cert: its certificate)?
 * A server principal bound to a peer with auth = required only by its
 * certificate; anyone else as before. */
cg_peer_verdict cg_peer_admit(const cg_snapshot *s, const cg_principal *p, bool by_cert);

/* May p act for the remote user in[0..len)? OK with its normal spelling
 * in out and the peer in *peer, when p is a server principal bound to
 * the peer of the user's domain and accepted as that peer's auth says. */
cg_peer_verdict cg_peer_originator(const cg_snapshot *s, const cg_principal *p, bool by_cert,
                                   const char *in, size_t len,
                                   char out[CG_REMOTE_USER_MAX + 1], const cg_peer **peer);

/* The first peer (in domain order) p is bound to, or NULL. */
const cg_peer *cg_peer_of(const cg_snapshot *s, const cg_principal *p);

/* The peers, in domain order (for the gateway's per-peer counters). */
size_t cg_snapshot_npeers(const cg_snapshot *s);
const cg_peer *cg_snapshot_peer_at(const cg_snapshot *s, size_t i);

#endif
