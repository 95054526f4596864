/*
 * The data path's per-peer sealing state in C; see peer_crypto.h. Every rule here is
 * PeerCrypto's (src/datapath/sleeve/peer-crypto.ts), with the replay window of
 * src/crypto/replay.ts, the rekey step of src/crypto/kdf.ts (nextDataKey) and the nonce of
 * src/crypto/seal.ts (writeNonce); docs/CRYPTO.md (Data path) states them. Sealing is
 * libsodium's secretbox (XSalsa20-Poly1305), the same as the sodium-native sealer.
 *
 * Why in C: the sleeve's express path forwards frames without entering JS, and a sealed
 * peer must keep one nonce counter and one replay window whichever path a datagram takes.
 *
 * Times are milliseconds as doubles from the caller, never read from a clock here, so
 * both paths and the tests agree on "now".
 */
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

#include "addon.h"
#include "peer_crypto.h"
#include "poller.h"

#define KEY_LEN crypto_secretbox_KEYBYTES     /* 32 */
#define TAG_LEN crypto_secretbox_MACBYTES     /* 16 */
#define NONCE_LEN crypto_secretbox_NONCEBYTES /* 24 */
#define PREFIX_LEN 9
#define REKEY_AFTER_MS 120000.0
#define REKEY_AFTER_MESSAGES (UINT64_C(1) << 28)
#define PREVIOUS_KEY_GRACE_MS 30000.0
/* The largest counter a nonce takes (MAX_NONCE_COUNTER): exact in a double. */
#define MAX_COUNTER (UINT64_C(1) << 53)

#define REPLAY_WINDOW 4096
#define REPLAY_BLOCK_BITS 32
/* One block more than the window, rounded up to a power of two (replay.ts): 129 -> 256. */
#define REPLAY_BLOCKS 256

static const char REKEY_LABEL[] = "weavets v1 data rekey";

/* ReplayWindow (src/crypto/replay.ts), window 4096: a ring of 32-bit blocks. */
typedef struct {
  uint32_t ring[REPLAY_BLOCKS];
  int64_t highest; /* largest accepted counter; -1 before the first */
} replay_window;

struct weavets_peer_crypto {
  /* The sleeve's JS path seals on the loop thread while the data path thread (iothread.c)
   * seals and opens: every use of the state below takes it. */
  pthread_mutex_t mu;
  uint8_t send_key[KEY_LEN];
  uint64_t send_epoch;       /* epochs since the handshake (the wire carries it mod 256) */
  uint64_t peer_opens_epoch; /* highest send epoch the peer proved it opens */
  int64_t hb_epoch;          /* send epoch of heartbeats hb_first_seq..hb_last_seq; -1 before */
  uint32_t hb_first_seq;
  uint32_t hb_last_seq;
  uint64_t send_counter;
  double send_epoch_started;
  uint64_t send_epoch_messages;

  uint8_t recv_key[KEY_LEN];
  uint8_t recv_epoch; /* as on the wire */
  uint8_t recv_next_key[KEY_LEN];
  uint8_t recv_prev_key[KEY_LEN];
  bool has_recv_prev;
  double recv_prev_until;
  replay_window replay;
};

/* A tag on the handle objects, so unwrap never mistakes another wrapped object (a TAP or
 * UDP handle) for this state. */
static const napi_type_tag PEER_CRYPTO_TAG = {0x7765617665747363ULL, 0x70656572637279ULL};

/* ---- the key chain: nextDataKey = HKDF-SHA256(ikm = key, no salt, REKEY_LABEL, 32) ---- */

static void next_data_key(uint8_t out[KEY_LEN], const uint8_t key[KEY_LEN]) {
  /* Extract: PRK = HMAC(salt, ikm); no salt means HashLen zero bytes (RFC 5869 2.2). */
  static const uint8_t zero_salt[crypto_auth_hmacsha256_KEYBYTES];
  uint8_t prk[crypto_auth_hmacsha256_BYTES];
  crypto_auth_hmacsha256(prk, key, KEY_LEN, zero_salt);
  /* Expand, one block: T(1) = HMAC(PRK, info || 0x01); L = 32 = HashLen. */
  crypto_auth_hmacsha256_state st;
  static const uint8_t one = 0x01;
  crypto_auth_hmacsha256_init(&st, prk, sizeof prk);
  crypto_auth_hmacsha256_update(&st, (const uint8_t *)REKEY_LABEL, sizeof REKEY_LABEL - 1);
  crypto_auth_hmacsha256_update(&st, &one, 1);
  crypto_auth_hmacsha256_final(&st, out);
  sodium_memzero(prk, sizeof prk);
  sodium_memzero(&st, sizeof st);
}

/* ---- replay window ---- */

static bool replay_would_accept(const replay_window *w, uint64_t counter) {
  if (counter > MAX_COUNTER) return false;
  if ((int64_t)counter > w->highest) return true;
  if (w->highest - (int64_t)counter >= REPLAY_WINDOW) return false;
  uint32_t word = w->ring[(counter / REPLAY_BLOCK_BITS) % REPLAY_BLOCKS];
  return ((word >> (counter % REPLAY_BLOCK_BITS)) & 1) == 0;
}

static bool replay_accept(replay_window *w, uint64_t counter) {
  if (!replay_would_accept(w, counter)) return false;
  int64_t block = (int64_t)(counter / REPLAY_BLOCK_BITS);
  if ((int64_t)counter > w->highest) {
    /* floor(highest / 32), which is -1 before the first counter */
    int64_t current = w->highest < 0 ? -1 : w->highest / REPLAY_BLOCK_BITS;
    int64_t advance = block - current;
    if (advance >= REPLAY_BLOCKS) {
      memset(w->ring, 0, sizeof w->ring);
    } else {
      for (int64_t i = 1; i <= advance; i++)
        w->ring[(current + i) % REPLAY_BLOCKS] = 0;
    }
    w->highest = (int64_t)counter;
  }
  w->ring[block % REPLAY_BLOCKS] |= UINT32_C(1) << (counter % REPLAY_BLOCK_BITS);
  return true;
}

/* ---- byte order and nonce ---- */

static void store_be64(uint8_t *p, uint64_t v) {
  for (int i = 7; i >= 0; i--) {
    p[i] = (uint8_t)v;
    v >>= 8;
  }
}

static uint64_t load_be64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v = (v << 8) | p[i];
  return v;
}

/* writeNonce: the counter as u64 big-endian in bytes 0..7, bytes 8..23 zero. */
static void make_nonce(uint8_t nonce[NONCE_LEN], uint64_t counter) {
  store_be64(nonce, counter);
  memset(nonce + 8, 0, NONCE_LEN - 8);
}

/* ---- the state ---- */

static weavets_peer_crypto *peer_crypto_new(const uint8_t send_key[KEY_LEN],
                                            const uint8_t recv_key[KEY_LEN], double now_ms) {
  weavets_peer_crypto *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  if (pthread_mutex_init(&c->mu, NULL) != 0) {
    free(c);
    return NULL;
  }
  memcpy(c->send_key, send_key, KEY_LEN);
  memcpy(c->recv_key, recv_key, KEY_LEN);
  next_data_key(c->recv_next_key, c->recv_key);
  c->hb_epoch = -1;
  c->send_epoch_started = now_ms;
  c->replay.highest = -1;
  return c;
}

static void peer_crypto_free(weavets_peer_crypto *c) {
  pthread_mutex_destroy(&c->mu);
  sodium_memzero(c, sizeof *c);
  free(c);
}

/* True once sealing would need a counter past 2^53 (never in practice: 2^53 datagrams). */
static bool send_exhausted(const weavets_peer_crypto *c) {
  return c->send_counter > MAX_COUNTER;
}

static void seal_locked(weavets_peer_crypto *c, uint8_t *buf, size_t msg_off, size_t msg_len,
                        double now_ms) {
  if ((c->send_epoch_messages >= REKEY_AFTER_MESSAGES ||
       now_ms - c->send_epoch_started >= REKEY_AFTER_MS) &&
      /* Never two epochs ahead of the receiver: it would drop everything as bad_epoch. */
      c->peer_opens_epoch >= c->send_epoch) {
    uint8_t next[KEY_LEN];
    next_data_key(next, c->send_key);
    memcpy(c->send_key, next, KEY_LEN);
    sodium_memzero(next, sizeof next);
    c->send_epoch++;
    c->send_epoch_started = now_ms;
    c->send_epoch_messages = 0;
  }
  uint64_t counter = c->send_counter++;
  c->send_epoch_messages++;
  uint8_t *prefix = buf + msg_off - WEAVETS_SEAL_UNIT_OVERHEAD;
  uint8_t *tag = buf + msg_off - TAG_LEN;
  prefix[0] = (uint8_t)(c->send_epoch & 0xff);
  store_be64(prefix + 1, counter);
  if (counter > MAX_COUNTER) {
    /* No nonce is left (where PeerCrypto's writeNonce throws): never reuse one. The
     * message and tag become zeros, which every receiver drops as forged (counter > 2^53). */
    sodium_memzero(tag, TAG_LEN + msg_len);
    return;
  }
  uint8_t nonce[NONCE_LEN];
  make_nonce(nonce, counter);
  uint8_t *m = buf + msg_off;
  crypto_secretbox_detached(m, tag, m, msg_len, nonce, c->send_key);
}

static int open_uncommitted_locked(weavets_peer_crypto *c, uint8_t *buf, size_t off, size_t len,
                                   double now_ms, weavets_open_ticket *ticket) {
  if (len < WEAVETS_SEAL_UNIT_OVERHEAD) return WEAVETS_OPEN_FORGED;
  uint8_t *unit = buf + off;
  uint8_t epoch = unit[0];
  uint64_t counter = load_be64(unit + 1);
  if (counter > MAX_COUNTER) return WEAVETS_OPEN_FORGED;
  /* Cheap check first: a replay costs no decryption. */
  if (!replay_would_accept(&c->replay, counter)) return WEAVETS_OPEN_REPLAYED;
  const uint8_t *key;
  bool advancing = false;
  if (epoch == c->recv_epoch) {
    key = c->recv_key;
  } else if (epoch == (uint8_t)(c->recv_epoch + 1)) {
    key = c->recv_next_key;
    advancing = true;
  } else if (epoch == (uint8_t)(c->recv_epoch + 0xff) && c->has_recv_prev &&
             now_ms < c->recv_prev_until) {
    key = c->recv_prev_key;
  } else {
    return WEAVETS_OPEN_BAD_EPOCH;
  }
  uint8_t nonce[NONCE_LEN];
  make_nonce(nonce, counter);
  uint8_t *box = unit + WEAVETS_SEAL_UNIT_OVERHEAD;
  /* Verifies the tag before it decrypts anything: a forged unit leaves buf unchanged. */
  if (crypto_secretbox_open_detached(box, box, unit + PREFIX_LEN, len - WEAVETS_SEAL_UNIT_OVERHEAD,
                                     nonce, key) != 0)
    return WEAVETS_OPEN_FORGED;
  ticket->counter = counter;
  ticket->epoch = epoch;
  ticket->advancing = advancing;
  return WEAVETS_OPEN_OK;
}

static void open_commit_locked(weavets_peer_crypto *c, const weavets_open_ticket *ticket,
                               double now_ms) {
  /* Nothing ran on this state since the uncommitted open, so the counter is still new. */
  replay_accept(&c->replay, ticket->counter);
  if (ticket->advancing) {
    memcpy(c->recv_prev_key, c->recv_key, KEY_LEN);
    c->has_recv_prev = true;
    c->recv_prev_until = now_ms + PREVIOUS_KEY_GRACE_MS;
    memcpy(c->recv_key, c->recv_next_key, KEY_LEN);
    c->recv_epoch = ticket->epoch;
    next_data_key(c->recv_next_key, c->recv_key);
  }
}

void weavets_peer_crypto_seal(weavets_peer_crypto *c, uint8_t *buf, size_t msg_off, size_t msg_len,
                              double now_ms) {
  pthread_mutex_lock(&c->mu);
  seal_locked(c, buf, msg_off, msg_len, now_ms);
  pthread_mutex_unlock(&c->mu);
}

int weavets_peer_crypto_open_uncommitted(weavets_peer_crypto *c, uint8_t *buf, size_t off,
                                         size_t len, double now_ms, weavets_open_ticket *ticket) {
  pthread_mutex_lock(&c->mu);
  int r = open_uncommitted_locked(c, buf, off, len, now_ms, ticket);
  pthread_mutex_unlock(&c->mu);
  return r;
}

void weavets_peer_crypto_open_commit(weavets_peer_crypto *c, const weavets_open_ticket *ticket,
                                     double now_ms) {
  pthread_mutex_lock(&c->mu);
  open_commit_locked(c, ticket, now_ms);
  pthread_mutex_unlock(&c->mu);
}

int weavets_peer_crypto_open(weavets_peer_crypto *c, uint8_t *buf, size_t off, size_t len,
                             double now_ms) {
  weavets_open_ticket ticket;
  pthread_mutex_lock(&c->mu);
  int r = open_uncommitted_locked(c, buf, off, len, now_ms, &ticket);
  if (r == WEAVETS_OPEN_OK) open_commit_locked(c, &ticket, now_ms);
  pthread_mutex_unlock(&c->mu);
  return r;
}

/* The heartbeat `seq` was just sealed (and sent). */
static void heartbeat_sent(weavets_peer_crypto *c, uint32_t seq) {
  if (c->hb_epoch != (int64_t)c->send_epoch) {
    c->hb_epoch = (int64_t)c->send_epoch;
    c->hb_first_seq = seq;
  }
  c->hb_last_seq = seq;
}

/* An authenticated answer echoing `seq` arrived; u32 sequence numbers compared mod 2^32. */
static void heartbeat_acked(weavets_peer_crypto *c, uint32_t seq) {
  if (c->hb_epoch < 0) return;
  if ((uint32_t)(seq - c->hb_first_seq) <= (uint32_t)(c->hb_last_seq - c->hb_first_seq)) {
    if ((uint64_t)c->hb_epoch > c->peer_opens_epoch) c->peer_opens_epoch = (uint64_t)c->hb_epoch;
  }
}

/* ---- N-API ---- */

weavets_peer_crypto *weavets_peer_crypto_unwrap(napi_env env, napi_value v) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_object) return NULL;
  bool tagged = false;
  if (napi_check_object_type_tag(env, v, &PEER_CRYPTO_TAG, &tagged) != napi_ok || !tagged)
    return NULL;
  void *c = NULL;
  if (napi_unwrap(env, v, &c) != napi_ok) return NULL;
  return c;
}

static weavets_peer_crypto *get_handle(napi_env env, napi_value v) {
  weavets_peer_crypto *c = weavets_peer_crypto_unwrap(env, v);
  if (!c) napi_throw_type_error(env, NULL, "expected a peer crypto handle (peerCryptoCreate)");
  return c;
}

static bool get_key(napi_env env, napi_value v, const char *what, uint8_t **key) {
  size_t len;
  if (!weavets_get_bytes(env, v, key, &len)) return false;
  if (len != KEY_LEN) {
    char msg[64];
    snprintf(msg, sizeof msg, "%s must be %d bytes", what, KEY_LEN);
    napi_throw_range_error(env, NULL, msg);
    return false;
  }
  return true;
}

static bool get_now(napi_env env, napi_value v, double *now_ms) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_number) {
    napi_throw_type_error(env, NULL, "nowMs must be a number");
    return false;
  }
  napi_get_value_double(env, v, now_ms);
  if (!isfinite(*now_ms)) {
    napi_throw_range_error(env, NULL, "nowMs must be finite");
    return false;
  }
  return true;
}

static void finalize(napi_env env, void *data, void *hint) {
  peer_crypto_free(data);
}

/* peerCryptoCreate(sendKey, recvKey, nowMs) -> handle */
static napi_value js_create(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!weavets_get_args(env, info, 3, argv)) return NULL;
  uint8_t *send_key, *recv_key;
  double now_ms;
  if (!get_key(env, argv[0], "sendKey", &send_key) ||
      !get_key(env, argv[1], "recvKey", &recv_key) || !get_now(env, argv[2], &now_ms))
    return NULL;
  weavets_peer_crypto *c = peer_crypto_new(send_key, recv_key, now_ms);
  if (!c) {
    napi_throw_error(env, "ENOMEM", "peerCryptoCreate: out of memory");
    return NULL;
  }
  napi_value obj;
  if (napi_create_object(env, &obj) != napi_ok ||
      napi_type_tag_object(env, obj, &PEER_CRYPTO_TAG) != napi_ok) {
    peer_crypto_free(c);
    weavets_ensure_thrown(env, "peerCryptoCreate");
    return NULL;
  }
  if (napi_wrap(env, obj, c, finalize, NULL, NULL) != napi_ok) {
    peer_crypto_free(c);
    weavets_ensure_thrown(env, "peerCryptoCreate");
    return NULL;
  }
  return obj;
}

/* peerCryptoSeal(h, buf, msgOff, msgLen, nowMs) */
static napi_value js_seal(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  if (!weavets_get_args(env, info, 5, argv)) return NULL;
  weavets_peer_crypto *c = get_handle(env, argv[0]);
  if (!c) return NULL;
  uint8_t *buf;
  size_t buf_len;
  uint32_t msg_off, msg_len;
  double now_ms;
  if (!weavets_get_bytes(env, argv[1], &buf, &buf_len) ||
      !weavets_get_u32(env, argv[2], "msgOff", &msg_off) ||
      !weavets_get_u32(env, argv[3], "msgLen", &msg_len) || !get_now(env, argv[4], &now_ms))
    return NULL;
  if (msg_off < WEAVETS_SEAL_UNIT_OVERHEAD || (uint64_t)msg_off + msg_len > buf_len) {
    napi_throw_range_error(env, NULL,
                           "peerCryptoSeal: need msgOff >= 25 and msgOff + msgLen within buf");
    return NULL;
  }
  pthread_mutex_lock(&c->mu);
  bool exhausted = send_exhausted(c);
  if (!exhausted) seal_locked(c, buf, msg_off, msg_len, now_ms);
  pthread_mutex_unlock(&c->mu);
  if (exhausted)
    napi_throw_error(env, "EWEAVETS_CRYPTO_BAD_INPUT", "peerCryptoSeal: nonce counter past 2^53");
  return NULL;
}

/* peerCryptoOpen(h, buf, off, len, nowMs) -> WEAVETS_OPEN_* */
static napi_value js_open(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  if (!weavets_get_args(env, info, 5, argv)) return NULL;
  weavets_peer_crypto *c = get_handle(env, argv[0]);
  if (!c) return NULL;
  uint8_t *buf;
  size_t buf_len;
  uint32_t off, len;
  double now_ms;
  if (!weavets_get_bytes(env, argv[1], &buf, &buf_len) ||
      !weavets_get_u32(env, argv[2], "off", &off) || !weavets_get_u32(env, argv[3], "len", &len) ||
      !get_now(env, argv[4], &now_ms))
    return NULL;
  if ((uint64_t)off + len > buf_len) {
    napi_throw_range_error(env, NULL, "peerCryptoOpen: off + len outside buf");
    return NULL;
  }
  napi_value result;
  napi_create_int32(env, weavets_peer_crypto_open(c, buf, off, len, now_ms), &result);
  return result;
}

/* peerCryptoHeartbeatSent(h, seq), peerCryptoHeartbeatAcked(h, seq); seq a u32. */
static napi_value js_heartbeat(napi_env env, napi_callback_info info, bool acked) {
  napi_value argv[2];
  if (!weavets_get_args(env, info, 2, argv)) return NULL;
  weavets_peer_crypto *c = get_handle(env, argv[0]);
  uint32_t seq;
  if (!c || !weavets_get_u32(env, argv[1], "seq", &seq)) return NULL;
  pthread_mutex_lock(&c->mu);
  if (acked)
    heartbeat_acked(c, seq);
  else
    heartbeat_sent(c, seq);
  pthread_mutex_unlock(&c->mu);
  return NULL;
}

static napi_value js_heartbeat_sent(napi_env env, napi_callback_info info) {
  return js_heartbeat(env, info, false);
}

static napi_value js_heartbeat_acked(napi_env env, napi_callback_info info) {
  return js_heartbeat(env, info, true);
}

/* peerCryptoEpoch(h) -> [send & 0xff, recv] */
static napi_value js_epoch(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!weavets_get_args(env, info, 1, argv)) return NULL;
  weavets_peer_crypto *c = get_handle(env, argv[0]);
  if (!c) return NULL;
  pthread_mutex_lock(&c->mu);
  uint32_t send_epoch = (uint32_t)(c->send_epoch & 0xff), recv_epoch = c->recv_epoch;
  pthread_mutex_unlock(&c->mu);
  napi_value arr, send, recv;
  if (napi_create_array_with_length(env, 2, &arr) != napi_ok ||
      napi_create_uint32(env, send_epoch, &send) != napi_ok ||
      napi_create_uint32(env, recv_epoch, &recv) != napi_ok ||
      napi_set_element(env, arr, 0, send) != napi_ok ||
      napi_set_element(env, arr, 1, recv) != napi_ok) {
    weavets_ensure_thrown(env, "peerCryptoEpoch");
    return NULL;
  }
  return arr;
}

/* For the unit tests only: set the count of datagrams sealed in the current send epoch, so
 * the REKEY_AFTER_MESSAGES rule can be checked without sealing 2^28 datagrams. */
static napi_value js_set_epoch_messages_for_test(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!weavets_get_args(env, info, 2, argv)) return NULL;
  weavets_peer_crypto *c = get_handle(env, argv[0]);
  uint32_t n;
  if (!c || !weavets_get_u32(env, argv[1], "messages", &n)) return NULL;
  pthread_mutex_lock(&c->mu);
  c->send_epoch_messages = n;
  pthread_mutex_unlock(&c->mu);
  return NULL;
}

napi_status weavets_init_peer_crypto(napi_env env, napi_value exports) {
  if (sodium_init() < 0) {
    napi_throw_error(env, NULL, "sodium_init failed");
    return napi_pending_exception;
  }
  static const struct {
    const char *name;
    napi_callback cb;
  } fns[] = {
      {"peerCryptoCreate", js_create},
      {"peerCryptoSeal", js_seal},
      {"peerCryptoOpen", js_open},
      {"peerCryptoHeartbeatSent", js_heartbeat_sent},
      {"peerCryptoHeartbeatAcked", js_heartbeat_acked},
      {"peerCryptoEpoch", js_epoch},
      {"peerCryptoSetEpochMessagesForTest", js_set_epoch_messages_for_test},
  };
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    napi_status s = weavets_export_fn(env, exports, fns[i].name, fns[i].cb);
    if (s != napi_ok) return s;
  }
  return napi_ok;
}
