/*
 * The sleeve's express path: frames forwarded in C, on the event loop thread, before a
 * batch reaches JS. See express.c.
 */
#ifndef WEAVETS_EXPRESS_H
#define WEAVETS_EXPRESS_H

/* rxFlags[i] of the UDP ring: the express path opened this SEALED datagram in place and
 * left it for JS (its plaintext inner kind is at SEALED_INNER_KIND_OFFSET). */
#define EXPRESS_RX_OPENED 1u

/* What expressTake(handle, what, out) drains; each entry is that many doubles. */
#define EXPRESS_TAKE_PEERS 0    /* peerHigh, peerLow, framesIn, bytesIn, framesOut, bytesOut */
#define EXPRESS_TAKE_NETWORKS 1 /* networkId, framesFromBridge, framesToBridge */
#define EXPRESS_TAKE_FLOWS 2    /* networkId, srcHigh, srcLow, dstHigh, dstLow, frames, bytes */
#define EXPRESS_TAKE_SEEN 3     /* networkId, macHigh, macLow, peerHigh, peerLow, seenMs */
#define EXPRESS_TAKE_DROPS 4    /* where (0 UDP send, 1 TAP write), errno (0: queue full), count */

#endif
