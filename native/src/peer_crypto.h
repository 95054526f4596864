/*
 * The data path's sealing state towards one peer, in C: the same state and rules as
 * PeerCrypto (src/datapath/sleeve/peer-crypto.ts, the reference the unit tests compare
 * this with), so the sleeve's JS slow path and the C express path share ONE state per
 * peer: one nonce counter, one replay window, one rekey chain.
 *
 * JS makes the state with peerCryptoCreate (a handle object); C code that was handed that
 * object gets the state with weavets_peer_crypto_unwrap. The state lives as long as the
 * handle object: C code that keeps the pointer beyond a call must keep a reference to the
 * handle. Each call takes the state's own lock, so the data path thread (iothread.c) and
 * the JS thread may use one state at once.
 */
#ifndef WEAVETS_PEER_CRYPTO_H
#define WEAVETS_PEER_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <node_api.h>

typedef struct weavets_peer_crypto weavets_peer_crypto;

enum {
  WEAVETS_OPEN_OK = 0,
  WEAVETS_OPEN_FORGED = 1,
  WEAVETS_OPEN_REPLAYED = 2,
  WEAVETS_OPEN_BAD_EPOCH = 3
};

/* Bytes in front of a sealed message: epoch u8 + counter u64 BE (9), then the tag (16). */
#define WEAVETS_SEAL_UNIT_OVERHEAD 25

/* The state behind a JS handle made by peerCryptoCreate, or NULL (no exception set) if v is
 * not one. */
weavets_peer_crypto *weavets_peer_crypto_unwrap(napi_env env, napi_value v);

/* Seal buf[msg_off, msg_off+msg_len) in place; prefix at msg_off-25, tag at msg_off-16.
 * Caller guarantees msg_off >= 25. */
void weavets_peer_crypto_seal(weavets_peer_crypto *c, uint8_t *buf, size_t msg_off, size_t msg_len,
                              double now_ms);

/* Open the sealed unit at buf[off, off+len) (prefix, tag, ciphertext) in place; on OK the
 * plaintext is at off+25. */
int weavets_peer_crypto_open(weavets_peer_crypto *c, uint8_t *buf, size_t off, size_t len,
                             double now_ms);

/* The same in two steps, for a caller that decides only after reading the plaintext
 * whether it keeps the datagram (express.c's fragment series): the first opens in place
 * and changes no state; the second, called before anything else opens with the state, spends
 * the counter (and moves to the peer's next epoch) as weavets_peer_crypto_open would.
 * Without the commit the unit may be opened again from its ciphertext, elsewhere. */
typedef struct {
  uint64_t counter;
  uint8_t epoch;
  bool advancing;
} weavets_open_ticket;
int weavets_peer_crypto_open_uncommitted(weavets_peer_crypto *c, uint8_t *buf, size_t off,
                                         size_t len, double now_ms, weavets_open_ticket *ticket);
void weavets_peer_crypto_open_commit(weavets_peer_crypto *c, const weavets_open_ticket *ticket,
                                     double now_ms);

#endif
