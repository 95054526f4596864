/*
 * The sleeve's express path: the common frame forwarded in C, before a batch reaches JS.
 *
 * Why: a lone frame (a ping, a request, an ACK) crosses four handler runs on its round
 * trip, and on these VMs each run of the JS frame path after an idle gap costs 35-105 µs
 * before its syscall (docs/ARCHITECTURE.md, "Latency"). This file is a small cache of the
 * sleeve's decisions that forwards such a frame in a few hundred instructions.
 *
 * It is a cache, never the authority: the sleeve (src/datapath/sleeve/sleeve.ts) decides
 * everything and pushes here the facts the decision needs (peers it may send to directly,
 * the MACs it has learned behind them, its networks' TAPs). Whatever the cache does not
 * know, or anything unusual (broadcasts, relays, fragments, heartbeats, GRO batches, a
 * datagram that is not exactly the expected shape), stops the express path at that entry
 * and the rest of the batch goes to JS, which checks, counts and drops as always. So order
 * is kept: entries before `first` left here, the rest leave from JS after them.
 *
 *   TAP -> UDP: a unicast frame whose destination MAC is cached behind a peer that is up,
 *     reached directly (the route's next hop is the peer itself, not the kernel path):
 *     one FRAMES datagram with one record when that fits the peer's path MTU; a TCP
 *     super-frame (up to 64 KiB) as a fragment series, cut exactly as the JS path cuts it
 *     and handed to the kernel as UDP GSO sends (send_fragmented).
 *   UDP -> TAP: a FRAMES datagram from a known peer at its address whose every record
 *     comes from that peer, is for us, is on a network we carry, and whose source MAC is
 *     cached behind that same peer: each record written to its network's TAP. And a
 *     peer's fragment series, taken only whole within the batch (take_series): a clear
 *     one whose one record passes the same checks, written with one writev from the
 *     ring; a sealed one opened in a buffer of its own and kept only if its records do.
 *     A batch that ends inside a series is extended: the rest, usually one GSO send
 *     behind, is drained into the ring's free slots, on the event loop by polling for up
 *     to SERIES_WAIT_NS, on the data path thread by holding the batch (express_hold) until
 *     its epoll says more arrived.
 *
 * A sealed peer's datagrams are sealed and opened with the peer's one sealing state
 * (peer_crypto.c), which the JS path uses too: one nonce counter, one replay window. A
 * small frame is sealed in its own datagram (which must fit a SEAL_SLOT); a super-frame
 * is sealed once as a whole unit and then cut, as on the JS path. Fragment series are
 * numbered from one counter shared with JS (expressShareFragmentIds).
 * A datagram opened here but not forwarded (a heartbeat, a relay, a new MAC) is left to
 * JS marked EXPRESS_RX_OPENED in the ring's flags, so JS does not open it twice; one that
 * does not open is left untouched, and JS opens it again to count why.
 *
 * Batches run on the data path thread (iothread.c) when the path was created with one,
 * else on the event loop thread (poller.c calls us from the poll callback). With the
 * thread, the data path lock guards the tables: the thread holds it for a batch, and every
 * export below that reads or changes them takes it. Counters are deltas JS drains
 * (expressTake) into its own: per peer, per network, flows, MACs refreshed, drops.
 *
 * Exports (typed face: src/native/index.ts, ExpressPath):
 *   expressCreate(udp, selfHigh, selfLow, nowMs, macMaxAgeMs, countFlows, thread?,
 *                 schedSliceNs?) -> handle
 *   expressAddNetwork(h, networkId, tap)   expressRemoveNetwork(h, networkId)
 *   expressSetPeer(h, high, low, ip, port, maxDatagram, direct, sealed, crypto?)
 *   expressRemovePeer(h, high, low)
 *   expressLearn(h, networkId, macHigh, macLow, peerHigh, peerLow)
 *   expressForgetPeer(h, high, low)
 *   expressTake(h, what, out Float64Array) -> entries written
 *   expressCounters(h) -> [framesSent, framesDelivered, superframesSent, superframesDelivered]
 *   expressShareFragmentIds(h, cell Uint32Array(1))
 *   expressClose(h)
 */
#define _GNU_SOURCE /* sendmmsg */
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>
#include <uv.h>

#include "express.h"
#include "iothread.h"
#include "peer_crypto.h"
#include "poller.h"
#include "udp.h"

/* ---- the sleeve's wire format (docs/PROTOCOL.md; src/datapath/sleeve/codec.ts) ---- */

#define SLEEVE_MAGIC 0x57
#define SLEEVE_VERSION 1
#define KIND_FRAMES 1
#define KIND_FRAGMENT 4
#define KIND_SEALED 5
#define HEADER_LEN 12
#define HEADER_MAGIC 0
#define HEADER_VERSION 1
#define HEADER_KIND 2
#define HEADER_FLAGS 3
#define HEADER_SENDER 4
#define HEADER_RESERVED 10
#define RECORD_HEADER_LEN 30 /* with the offload block */
#define RECORD_SRC 0
#define RECORD_DST 6
#define RECORD_NETWORK 12
#define RECORD_HOPS 15
#define RECORD_LENGTH 16
#define RECORD_OFFLOAD 20
#define OFFLOAD_LEN 10
#define FRAGMENT_HEADER_LEN 12 /* frame id u32, chunk offset u32, record total u32 (BE) */
#define FRAGMENT_ID 0
#define FRAGMENT_OFFSET 4
#define FRAGMENT_TOTAL 8
#define MIN_FRAME 14
#define MAX_FRAME (65535 + 18)
#define GROUP_BIT 0x010000000000ull /* the I/G bit of a MAC's first byte */
/* A SEALED datagram: header, epoch u8 + counter u64, tag, inner kind, then the body. */
#define SEALED_INNER_KIND (HEADER_LEN + WEAVETS_SEAL_UNIT_OVERHEAD)
#define SEALED_BODY (SEALED_INNER_KIND + 1)

/* ---- sizes ---- */

#define PEER_SLOTS 2048 /* open addressing, at most half full */
#define MAX_PEERS (PEER_SLOTS / 2)
#define MAC_SETS 1024 /* x MAC_WAYS entries */
#define MAC_WAYS 4
#define FLOW_SETS 256
#define FLOW_WAYS 4
#define MAX_NETWORKS 64
#define TX_BATCH 64
/* Room to seal one datagram in; larger frames of sealed peers stay on JS. */
#define SEAL_SLOT 2048
#define MAX_ERRNO 134
/* A super-frame's fragment series (docs/PROTOCOL.md "Fragments"): the kernel takes at most
 * 64 segments and 65507 bytes per UDP GSO send. This path cuts only into chunks of 1 KiB
 * or more (fragmentable), so a unit is at most 65 of them; it rebuilds series of at most
 * FRAG_MAX chunks and leaves longer ones to JS. */
#define GSO_MAX_SEGMENTS 64
#define GSO_MAX_BYTES 65507
#define FRAG_MAX 128
#define FRAG_HEAD (HEADER_LEN + FRAGMENT_HEADER_LEN)
/* The sealed unit of a super-frame: prefix and tag, inner kind, record header, slot. */
#define UNIT_MAX (WEAVETS_SEAL_UNIT_OVERHEAD + 1 + RECORD_OFFLOAD + OFFLOAD_LEN + MAX_FRAME)
/* Largest record a series may rebuild (src/datapath/sleeve/codec.ts MAX_REASSEMBLED). */
#define MAX_REASSEMBLED (MAX_FRAME + RECORD_HEADER_LEN + 26)
_Static_assert((UNIT_MAX + 1023) / 1024 <= FRAG_MAX, "a 64 KiB unit in 1 KiB chunks fits FRAG_MAX");
/* Complete series one receive step may deliver (see take_series). */
#define RX_SERIES_MAX 4
/* How long a receive batch may poll for the rest of a fragment series (nanoseconds). */
#define SERIES_WAIT_NS 30000

typedef struct {
  uint64_t name; /* 0: empty (0 is NO_PEER, never a peer's name) */
  uint32_t ip;   /* host order */
  uint16_t port;
  uint8_t direct; /* frames for this peer may go straight to it (up, next hop itself, not kernel) */
  uint8_t sealed; /* the peer seals; without `crypto` this path leaves it to JS */
  weavets_peer_crypto *crypto; /* the peer's sealing state, shared with JS */
  napi_ref crypto_ref;         /* keeps the state's JS handle (and so the state) alive */
  uint32_t max_datagram;
  double frames_in, bytes_in, frames_out, bytes_out; /* deltas, drained by expressTake */
} xp_peer;

typedef struct {
  uint64_t mac; /* 48 bits; 0 with peer 0: empty */
  uint64_t peer;
  uint32_t net;
  uint8_t seen_dirty; /* refreshed by a delivery since the last EXPRESS_TAKE_SEEN */
  double seen_ms;
} xp_mac;

typedef struct {
  uint64_t src, dst;
  uint32_t net;
  uint8_t used;
  double frames, bytes;
} xp_flow;

typedef struct {
  uint32_t id;
  weavets_poller *tap; /* NULL: slot free */
  double from_bridge, to_bridge;
} xp_net;

/* One TAP's hook context: which express path and which network. */
typedef struct {
  struct express *x;
  uint32_t net;
} xp_tap_ctx;

typedef struct express {
  napi_env env;
  /* The data path thread the batches run on, or NULL: on the event loop (poller.c). */
  weavets_iothread *iot;
  weavets_poller *udp; /* NULL once the socket closed */
  napi_ref udp_ref;
  uint64_t self;
  double clock_offset_ms;
  double mac_max_age_ms;
  int count_flows;
  uint32_t peer_count;
  xp_peer peers[PEER_SLOTS];
  xp_mac macs[MAC_SETS * MAC_WAYS];
  xp_flow flows[FLOW_SETS * FLOW_WAYS];
  xp_net nets[MAX_NETWORKS];
  xp_tap_ctx tap_ctx[MAX_NETWORKS];
  /* Transmit batch: per datagram the two headers, then the TAP slot (offload + frame). */
  struct mmsghdr tx_msgs[TX_BATCH];
  struct iovec tx_iov[TX_BATCH][2];
  struct sockaddr_in tx_names[TX_BATCH];
  uint8_t tx_hdr[TX_BATCH][HEADER_LEN + RECORD_OFFLOAD];
  uint8_t tx_sealed[TX_BATCH][SEAL_SLOT];
  xp_peer *tx_peer[TX_BATCH];
  uint32_t tx_frame_len[TX_BATCH];
  /* A super-frame's fragment series: per segment its two headers, then its chunk of the
   * unit (clear: record header + the TAP slot, in place; sealed: sealed in `unit`). */
  uint8_t frag_head[FRAG_MAX][FRAG_HEAD];
  struct iovec frag_iov[FRAG_MAX * 3];
  uint8_t frag_record[RECORD_OFFLOAD];
  uint8_t *unit; /* UNIT_MAX bytes, allocated with the path */
  /* The sender's fragment id counter: a cell JS shares (expressShareFragmentIds), so
   * series from here and from the JS path take ids from one sequence. */
  uint32_t *frag_id;
  uint32_t own_frag_id;
  napi_ref frag_id_ref;
  int gso_refused; /* UDP GSO failed once: super-frames stay on JS, which falls back */
  /* Received series, delivered straight from the ring: per series the iovecs of its
   * offload block and frame, chunk by chunk. */
  struct iovec rx_iov[RX_SERIES_MAX][FRAG_MAX];
  uint32_t rx_iovs[RX_SERIES_MAX];
  uint32_t rx_net[RX_SERIES_MAX];
  uint32_t rx_frame_len[RX_SERIES_MAX];
  xp_mac *rx_mac[RX_SERIES_MAX];
  uint8_t *rx_unit; /* a sealed series rebuilt to be opened; MAX_REASSEMBLED, on first use */
  double superframes_delivered;     /* of frames_delivered: rebuilt from fragment series */
  double send_drops[MAX_ERRNO + 1]; /* by errno; [0]: queue full */
  double bridge_drops[MAX_ERRNO + 1];
  double frames_sent, frames_delivered; /* cumulative */
  double superframes_sent;              /* of frames_sent: as fragment series */
} express;

/* ---- helpers ---- */

static inline uint64_t get48(const uint8_t *b) {
  return ((uint64_t)b[0] << 40) | ((uint64_t)b[1] << 32) | ((uint64_t)b[2] << 24) |
         ((uint64_t)b[3] << 16) | ((uint64_t)b[4] << 8) | (uint64_t)b[5];
}

static inline void put48(uint8_t *b, uint64_t v) {
  for (int i = 5; i >= 0; i--, v >>= 8)
    b[i] = (uint8_t)v;
}

static inline uint32_t get24(const uint8_t *b) {
  return ((uint32_t)b[0] << 16) | ((uint32_t)b[1] << 8) | b[2];
}

static inline uint32_t get32(const uint8_t *b) {
  return ((uint32_t)b[0] << 24) | ((uint32_t)b[1] << 16) | ((uint32_t)b[2] << 8) | b[3];
}

static inline uint64_t mix(uint64_t a, uint64_t b) {
  uint64_t h = a * 0x9E3779B97F4A7C15ull ^ (b + 0x632BE59BD9B4E019ull) * 0xC2B2AE3D27D4EB4Full;
  return h ^ (h >> 29);
}

static double now_ms(const express *x) {
  return (double)uv_hrtime() / 1e6 + x->clock_offset_ms;
}

static uint64_t from_halves(uint32_t high, uint32_t low) {
  return ((uint64_t)(high & 0xffffff) << 24) | (low & 0xffffff);
}

/* ---- peers: linear probing, deletion by backward shift ---- */

static xp_peer *peer_find(express *x, uint64_t name) {
  if (name == 0) return NULL;
  for (uint32_t i = (uint32_t)mix(name, 0) & (PEER_SLOTS - 1);; i = (i + 1) & (PEER_SLOTS - 1)) {
    xp_peer *p = &x->peers[i];
    if (p->name == name) return p;
    if (p->name == 0) return NULL;
  }
}

static xp_peer *peer_upsert(express *x, uint64_t name) {
  uint32_t i = (uint32_t)mix(name, 0) & (PEER_SLOTS - 1);
  for (;; i = (i + 1) & (PEER_SLOTS - 1)) {
    xp_peer *p = &x->peers[i];
    if (p->name == name) return p;
    if (p->name == 0) break;
  }
  if (x->peer_count >= MAX_PEERS) return NULL;
  xp_peer *p = &x->peers[i];
  memset(p, 0, sizeof *p);
  p->name = name;
  x->peer_count++;
  return p;
}

static void peer_set_crypto(express *x, xp_peer *p, weavets_peer_crypto *c, napi_value handle) {
  if (p->crypto_ref) napi_delete_reference(x->env, p->crypto_ref);
  p->crypto_ref = NULL;
  p->crypto = NULL;
  if (c && napi_create_reference(x->env, handle, 1, &p->crypto_ref) == napi_ok) p->crypto = c;
}

static void peer_delete(express *x, xp_peer *gone) {
  uint32_t i = (uint32_t)(gone - x->peers);
  peer_set_crypto(x, gone, NULL, NULL);
  memset(gone, 0, sizeof *gone);
  x->peer_count--;
  /* Move later members of the probe run back into the hole, so lookups still find them. */
  for (uint32_t j = (i + 1) & (PEER_SLOTS - 1); x->peers[j].name != 0;
       j = (j + 1) & (PEER_SLOTS - 1)) {
    uint32_t home = (uint32_t)mix(x->peers[j].name, 0) & (PEER_SLOTS - 1);
    /* j's entry may fill hole i if its home is not cyclically in (i, j]. */
    if (((j - home) & (PEER_SLOTS - 1)) >= ((j - i) & (PEER_SLOTS - 1))) {
      x->peers[i] = x->peers[j];
      memset(&x->peers[j], 0, sizeof x->peers[j]);
      i = j;
    }
  }
}

/* ---- MACs: a set-associative cache ---- */

static xp_mac *mac_set(express *x, uint32_t net, uint64_t mac) {
  return &x->macs[(mix(mac, net) & (MAC_SETS - 1)) * MAC_WAYS];
}

static xp_mac *mac_find(express *x, uint32_t net, uint64_t mac) {
  xp_mac *set = mac_set(x, net, mac);
  for (int w = 0; w < MAC_WAYS; w++)
    if (set[w].peer != 0 && set[w].mac == mac && set[w].net == net) return &set[w];
  return NULL;
}

static void mac_learn(express *x, uint32_t net, uint64_t mac, uint64_t peer, double now) {
  xp_mac *set = mac_set(x, net, mac);
  xp_mac *slot = NULL;
  for (int w = 0; w < MAC_WAYS && !slot; w++)
    if (set[w].peer != 0 && set[w].mac == mac && set[w].net == net) slot = &set[w];
  /* A new MAC takes a free way, else the one seen longest ago. */
  for (int w = 0; w < MAC_WAYS && !slot; w++)
    if (set[w].peer == 0) slot = &set[w];
  if (!slot) {
    slot = &set[0];
    for (int w = 1; w < MAC_WAYS; w++)
      if (set[w].seen_ms < slot->seen_ms) slot = &set[w];
  }
  slot->net = net;
  slot->mac = mac;
  slot->peer = peer;
  slot->seen_ms = now;
  slot->seen_dirty = 0; /* JS told us: it knows */
}

/* ---- flows ---- */

static int flow_count(express *x, uint32_t net, uint64_t src, uint64_t dst, uint32_t bytes) {
  xp_flow *set = &x->flows[(mix(src ^ (dst << 7), net) & (FLOW_SETS - 1)) * FLOW_WAYS];
  xp_flow *free_way = NULL;
  for (int w = 0; w < FLOW_WAYS; w++) {
    xp_flow *f = &set[w];
    if (f->used && f->src == src && f->dst == dst && f->net == net) {
      f->frames++;
      f->bytes += bytes;
      return 1;
    }
    if (!f->used && !free_way) free_way = f;
  }
  if (!free_way) return 0; /* JS counts this one; the set empties at the next drain */
  free_way->used = 1;
  free_way->net = net;
  free_way->src = src;
  free_way->dst = dst;
  free_way->frames = 1;
  free_way->bytes = bytes;
  return 1;
}

static xp_net *net_find(express *x, uint32_t id) {
  for (int i = 0; i < MAX_NETWORKS; i++)
    if (x->nets[i].tap && x->nets[i].id == id) return &x->nets[i];
  return NULL;
}

static void count_drop(double *table, int err) {
  table[err == EAGAIN || err == EWOULDBLOCK || err == ENOBUFS
            ? 0
            : (err > 0 && err <= MAX_ERRNO ? err : MAX_ERRNO)]++;
}

/* ---- TAP -> UDP ---- */

static void tx_flush(express *x, uint32_t n) {
  if (n == 0 || !x->udp) return;
  uint32_t done = 0;
  while (done < n) {
    int r = sendmmsg(x->udp->fd, &x->tx_msgs[done], n - done, MSG_DONTWAIT);
    if (r < 0) {
      if (errno == EINTR) continue;
      /* The first datagram failed: count it and go on with the rest. */
      count_drop(x->send_drops, errno);
      done++;
      continue;
    }
    for (int i = 0; i < r; i++) {
      xp_peer *p = x->tx_peer[done + i];
      p->frames_out++;
      p->bytes_out += x->tx_frame_len[done + i];
    }
    x->frames_sent += r;
    done += (uint32_t)r;
  }
}

static inline void put32(uint8_t *b, uint32_t v) {
  b[0] = (uint8_t)(v >> 24);
  b[1] = (uint8_t)(v >> 16);
  b[2] = (uint8_t)(v >> 8);
  b[3] = (uint8_t)v;
}

/* Our datagram header of kind `kind` at h. */
static void write_header(uint8_t *h, uint64_t self, uint8_t kind) {
  h[HEADER_MAGIC] = SLEEVE_MAGIC;
  h[HEADER_VERSION] = SLEEVE_VERSION;
  h[HEADER_KIND] = kind;
  h[HEADER_FLAGS] = 0;
  put48(h + HEADER_SENDER, self);
  h[HEADER_RESERVED] = h[HEADER_RESERVED + 1] = 0;
}

/* A record header from us to `peer` (hops 0) up to its offload block. */
static void write_record(uint8_t *r, uint64_t self, uint64_t peer, uint32_t net,
                         uint32_t frame_len) {
  put48(r + RECORD_SRC, self);
  put48(r + RECORD_DST, peer);
  r[RECORD_NETWORK] = (uint8_t)(net >> 16);
  r[RECORD_NETWORK + 1] = (uint8_t)(net >> 8);
  r[RECORD_NETWORK + 2] = (uint8_t)net;
  r[RECORD_HOPS] = 0;
  put32(r + RECORD_LENGTH, frame_len);
}

/* A path MTU a fragment series can use: the largest unit in at most FRAG_MAX chunks (a
 * chunk of 1 KiB or more: at most 65 of them), and one segment per GSO send at least. */
static int fragmentable(const xp_peer *p) {
  if (p->max_datagram > GSO_MAX_BYTES || p->max_datagram < FRAG_HEAD + 1024) return 0;
  return (p->sealed ? p->crypto != NULL : 1);
}

/* Send the iovecs of segments [first, first+k) as one UDP GSO send of segment size seg;
 * iov_at[i] is where segment i's iovecs start. Returns 0, or the errno. */
static int send_segments(express *x, const xp_peer *p, uint32_t seg, const uint32_t *iov_at,
                         uint32_t first, uint32_t k) {
  struct sockaddr_in sa = {
      .sin_family = AF_INET, .sin_addr.s_addr = htonl(p->ip), .sin_port = htons(p->port)};
  return weavets_udp_send_gso(x->udp->fd, &sa, &x->frag_iov[iov_at[first]],
                              iov_at[first + k] - iov_at[first], (uint16_t)seg);
}

/*
 * One super-frame (the TAP slot: offload block + frame, len bytes) to `p` as a fragment
 * series, exactly as the JS path cuts it (src/datapath/sleeve/transmit.ts): the unit is
 * the record, or for a sealed peer prefix | tag | FRAMES | record sealed once as a whole;
 * it is cut into chunks behind a datagram header (kind FRAGMENT) and a fragment header,
 * every datagram but the last exactly the path MTU, and handed to the kernel as UDP GSO
 * sends. A clear unit is sent from the slot in place (iovecs); a sealed one is copied
 * once, to be sealed.
 */
static void send_fragmented(express *x, xp_peer *p, uint32_t net, uint8_t *slot, uint32_t len,
                            double now) {
  uint32_t frame_len = len - OFFLOAD_LEN;
  /* The unit as up to two pieces. */
  const uint8_t *piece[2];
  uint32_t piece_len[2], pieces;
  uint32_t total;
  if (p->sealed) {
    uint8_t *u = x->unit;
    u[WEAVETS_SEAL_UNIT_OVERHEAD] = KIND_FRAMES;
    write_record(u + WEAVETS_SEAL_UNIT_OVERHEAD + 1, x->self, p->name, net, frame_len);
    memcpy(u + WEAVETS_SEAL_UNIT_OVERHEAD + 1 + RECORD_OFFLOAD, slot, len);
    total = WEAVETS_SEAL_UNIT_OVERHEAD + 1 + RECORD_OFFLOAD + len;
    weavets_peer_crypto_seal(p->crypto, u, WEAVETS_SEAL_UNIT_OVERHEAD,
                             total - WEAVETS_SEAL_UNIT_OVERHEAD, now);
    piece[0] = u;
    piece_len[0] = total;
    pieces = 1;
  } else {
    write_record(x->frag_record, x->self, p->name, net, frame_len);
    piece[0] = x->frag_record;
    piece_len[0] = RECORD_OFFLOAD;
    piece[1] = slot;
    piece_len[1] = len;
    pieces = 2;
    total = RECORD_OFFLOAD + len;
  }
  uint32_t seg = p->max_datagram;
  uint32_t chunk_max = seg - FRAG_HEAD;
  /* Atomic: with the data path thread, the JS path takes ids from the cell meanwhile
   * (Atomics.add in transmit.ts). 0 is never an id. */
  uint32_t id = __atomic_fetch_add(x->frag_id, 1, __ATOMIC_RELAXED);
  if (id == 0) id = __atomic_fetch_add(x->frag_id, 1, __ATOMIC_RELAXED);
  uint32_t iov_at[FRAG_MAX + 1];
  uint32_t n = 0, v = 0, pi = 0, po = 0;
  for (uint32_t at = 0; at < total; at += chunk_max, n++) {
    uint32_t chunk = total - at < chunk_max ? total - at : chunk_max;
    uint8_t *fh = x->frag_head[n];
    write_header(fh, x->self, KIND_FRAGMENT);
    put32(fh + HEADER_LEN + FRAGMENT_ID, id);
    put32(fh + HEADER_LEN + FRAGMENT_OFFSET, at);
    put32(fh + HEADER_LEN + FRAGMENT_TOTAL, total);
    iov_at[n] = v;
    x->frag_iov[v].iov_base = fh;
    x->frag_iov[v++].iov_len = FRAG_HEAD;
    /* The chunk: the unit's bytes [at, at+chunk), from one piece or across two. */
    for (uint32_t left = chunk; left > 0;) {
      uint32_t take = piece_len[pi] - po < left ? piece_len[pi] - po : left;
      x->frag_iov[v].iov_base = (void *)(piece[pi] + po);
      x->frag_iov[v++].iov_len = take;
      left -= take;
      po += take;
      if (po == piece_len[pi] && pi + 1 < pieces) {
        pi++;
        po = 0;
      }
    }
  }
  iov_at[n] = v;
  uint32_t per_send =
      GSO_MAX_BYTES / seg < GSO_MAX_SEGMENTS ? GSO_MAX_BYTES / seg : GSO_MAX_SEGMENTS;
  for (uint32_t i = 0; i < n; i += per_send) {
    uint32_t k = n - i < per_send ? n - i : per_send;
    int err = send_segments(x, p, seg, iov_at, i, k);
    if (err == 0) continue;
    /* The rest of the series is useless to the receiver: count it dropped, as JS does. */
    if (err == EIO || err == EINVAL || err == ENOPROTOOPT) x->gso_refused = 1;
    for (uint32_t j = i; j < n; j++)
      count_drop(x->send_drops, err);
    return;
  }
  p->frames_out++;
  p->bytes_out += frame_len;
  x->frames_sent++;
  x->superframes_sent++;
}

static uint32_t express_from_tap(weavets_poller *tap, uint32_t from, uint32_t n) {
  xp_tap_ctx *ctx = tap->express_ctx;
  express *x = ctx->x;
  xp_net *net = net_find(x, ctx->net);
  if (!net || !x->udp) return from;
  double now = now_ms(x);
  uint32_t queued = 0, i = from;
  for (; i < n && queued < TX_BATCH; i++) {
    uint32_t len = tap->ring_lengths[i];
    if (len < OFFLOAD_LEN + MIN_FRAME || len - OFFLOAD_LEN > MAX_FRAME) break;
    uint8_t *slot = tap->ring + (size_t)i * tap->ring_slot;
    const uint8_t *eth = slot + OFFLOAD_LEN;
    uint64_t dst = get48(eth), src = get48(eth + 6);
    if (dst & GROUP_BIT) break;
    xp_mac *m = mac_find(x, ctx->net, dst);
    if (!m || now - m->seen_ms > x->mac_max_age_ms) break;
    xp_peer *p = peer_find(x, m->peer);
    if (!p || !p->direct || (p->sealed && !p->crypto)) break;
    uint32_t frame_len = len - OFFLOAD_LEN;
    /* The datagram: header, [sealing prefix, tag, inner kind], record header, slot. */
    uint32_t front = p->sealed ? SEALED_BODY : HEADER_LEN;
    uint64_t size = front + RECORD_OFFLOAD + (uint64_t)len;
    int super = size > p->max_datagram;
    if (super && (x->gso_refused || !fragmentable(p))) break;
    if (!super && p->sealed && size > SEAL_SLOT) break;
    if (x->count_flows && !flow_count(x, ctx->net, src, dst, frame_len)) break;
    if (super) {
      /* Cut into a fragment series, after what is queued (order). */
      tx_flush(x, queued);
      queued = 0;
      send_fragmented(x, p, ctx->net, slot, len, now);
      continue;
    }
    uint8_t *h = p->sealed ? x->tx_sealed[queued] : x->tx_hdr[queued];
    write_header(h, x->self, p->sealed ? KIND_SEALED : KIND_FRAMES);
    if (p->sealed) h[SEALED_INNER_KIND] = KIND_FRAMES;
    uint8_t *r = h + front;
    write_record(r, x->self, p->name, ctx->net, frame_len);
    if (p->sealed) {
      memcpy(r + RECORD_OFFLOAD, slot, len);
      weavets_peer_crypto_seal(p->crypto, h, SEALED_INNER_KIND, size - SEALED_INNER_KIND, now);
      x->tx_iov[queued][0].iov_base = h;
      x->tx_iov[queued][0].iov_len = size;
      x->tx_msgs[queued].msg_hdr.msg_iovlen = 1;
    } else {
      x->tx_iov[queued][0].iov_base = h;
      x->tx_iov[queued][0].iov_len = HEADER_LEN + RECORD_OFFLOAD;
      x->tx_iov[queued][1].iov_base = slot;
      x->tx_iov[queued][1].iov_len = len;
      x->tx_msgs[queued].msg_hdr.msg_iovlen = 2;
    }
    x->tx_names[queued].sin_addr.s_addr = htonl(p->ip);
    x->tx_names[queued].sin_port = htons(p->port);
    x->tx_peer[queued] = p;
    x->tx_frame_len[queued] = frame_len;
    queued++;
  }
  net->from_bridge += i - from;
  tx_flush(x, queued);
  return i;
}

/* ---- UDP -> TAP ---- */

/* The record at r (its header and at least its frame's two MACs in memory) is from
 * `sender`, for us, not relayed, on a carried network, and its source MAC is cached
 * behind that sender and fresh: then that MAC's cache entry, else NULL. */
static xp_mac *record_expressible(express *x, const uint8_t *r, uint64_t sender, double now) {
  if (get48(r + RECORD_SRC) != sender || get48(r + RECORD_DST) != x->self) return NULL;
  if (r[RECORD_HOPS] != 0) return NULL; /* relayed, or a kernel copy: JS decides */
  uint32_t net = get24(r + RECORD_NETWORK);
  if (!net_find(x, net)) return NULL;
  uint64_t src_mac = get48(r + RECORD_HEADER_LEN + 6);
  if (src_mac & GROUP_BIT) return NULL;
  xp_mac *m = mac_find(x, net, src_mac);
  if (!m || m->peer != sender || now - m->seen_ms > x->mac_max_age_ms) return NULL;
  return m;
}

/* Every record of buf[start, end) well-formed, from `sender`, for us, on a carried
 * network, with its source MAC cached behind the sender: then 1. */
static int records_expressible(express *x, const uint8_t *buf, uint32_t start, uint32_t end,
                               uint64_t sender, double now) {
  uint32_t o = start;
  while (o < end) {
    if (end - o < RECORD_HEADER_LEN) return 0;
    const uint8_t *r = buf + o;
    uint32_t frame_len = get32(r + RECORD_LENGTH);
    if (frame_len < MIN_FRAME || frame_len > MAX_FRAME || frame_len > end - o - RECORD_HEADER_LEN)
      return 0;
    if (!record_expressible(x, r, sender, now)) return 0;
    o += RECORD_HEADER_LEN + frame_len;
  }
  return o == end;
}

/* Write one frame from `p` (offload block and frame, in iovecs) to the network's TAP and
 * count it; returns whether the TAP took it. */
static int deliver(express *x, xp_peer *p, xp_net *net, const struct iovec *iov, uint32_t iovs,
                   uint32_t frame_len) {
  p->frames_in++;
  p->bytes_in += frame_len;
  ssize_t w;
  do
    w = writev(net->tap->fd, iov, (int)iovs);
  while (w < 0 && errno == EINTR);
  if (w < 0) {
    count_drop(x->bridge_drops, errno);
    return 0;
  }
  net->to_bridge++;
  x->frames_delivered++;
  return 1;
}

static void deliver_records(express *x, xp_peer *p, uint8_t *buf, uint32_t start, uint32_t end,
                            double now) {
  for (uint32_t o = start; o < end;) {
    uint8_t *r = buf + o;
    uint32_t frame_len = get32(r + RECORD_LENGTH);
    uint32_t net_id = get24(r + RECORD_NETWORK);
    xp_net *net = net_find(x, net_id);
    xp_mac *m = mac_find(x, net_id, get48(r + RECORD_HEADER_LEN + 6));
    if (m) {
      m->seen_ms = now;
      m->seen_dirty = 1;
    }
    struct iovec v = {.iov_base = r + RECORD_OFFLOAD, .iov_len = OFFLOAD_LEN + frame_len};
    deliver(x, p, net, &v, 1, frame_len);
    o += RECORD_HEADER_LEN + frame_len;
  }
}

/* A clear series' first chunk: one record from p, for us, not relayed, on a carried
 * network, from a source MAC cached behind p, spanning exactly the series' total; noted
 * as series k for delivery. */
static int series_head_expressible(express *x, const xp_peer *p, const uint8_t *r, uint32_t len,
                                   uint32_t total, uint32_t k, double now) {
  if (len < RECORD_HEADER_LEN + 12) return 0; /* the record header and both MACs */
  uint32_t frame_len = get32(r + RECORD_LENGTH);
  if (frame_len != total - RECORD_HEADER_LEN || frame_len > MAX_FRAME) return 0;
  xp_mac *m = record_expressible(x, r, p->name, now);
  if (!m) return 0;
  x->rx_net[k] = get24(r + RECORD_NETWORK);
  x->rx_frame_len[k] = frame_len;
  x->rx_mac[k] = m;
  return 1;
}

/*
 * A sealed peer's one complete series (rx_iov[0], `total` bytes): rebuilt into rx_unit
 * and opened there, without spending its counter, so that the ring still holds it as it
 * came. Kept (counter spent, records delivered) only if it holds FRAMES records that
 * records_expressible takes; otherwise 0, and JS rebuilds and opens it from the ring
 * (counting whatever is wrong with it), exactly as without this path.
 */
static int deliver_sealed_series(express *x, xp_peer *p, uint32_t total, double now) {
  if (!x->rx_unit && !(x->rx_unit = malloc(MAX_REASSEMBLED))) return 0;
  uint8_t *u = x->rx_unit;
  uint32_t w = 0;
  for (uint32_t k = 0; k < x->rx_iovs[0]; k++) {
    memcpy(u + w, x->rx_iov[0][k].iov_base, x->rx_iov[0][k].iov_len);
    w += (uint32_t)x->rx_iov[0][k].iov_len;
  }
  weavets_open_ticket ticket;
  if (total < WEAVETS_SEAL_UNIT_OVERHEAD + 1 + RECORD_HEADER_LEN ||
      weavets_peer_crypto_open_uncommitted(p->crypto, u, 0, total, now, &ticket) !=
          WEAVETS_OPEN_OK ||
      u[WEAVETS_SEAL_UNIT_OVERHEAD] != KIND_FRAMES ||
      !records_expressible(x, u, WEAVETS_SEAL_UNIT_OVERHEAD + 1, total, p->name, now))
    return 0;
  weavets_peer_crypto_open_commit(p->crypto, &ticket, now);
  deliver_records(x, p, u, WEAVETS_SEAL_UNIT_OVERHEAD + 1, total, now);
  x->superframes_delivered++;
  return 1;
}

/*
 * A peer's fragment series (docs/PROTOCOL.md "Fragments"), taken only whole: from entry i
 * on, every segment of every entry (a GRO train holds several) must be a FRAGMENT from
 * `p` at its address, continuing the series in order. Entries are taken up to the first
 * boundary where no series is open. A clear series' first chunk must show one record
 * records_expressible would take (series_head_expressible), and each complete clear
 * series is written to its TAP with one writev straight from the ring. A sealed peer's
 * step holds one series, which deliver_sealed_series opens and checks. Returns the
 * entries taken, or 0 when anything differs (a gap, another kind, another sender, a
 * series not complete within the batch, a sealed one not kept): then JS takes entry i and
 * everything after it, so a series is always rebuilt by one path, never half by each.
 * *open says whether the only thing missing was the rest of a series after entry n - 1.
 */
static uint32_t take_series(express *x, weavets_poller *udp, xp_peer *p, uint32_t i, uint32_t n,
                            double now, int *open) {
  *open = 0;
  uint32_t id = 0, got = 0, total = 0, series = 0;
  for (uint32_t e = i; e < n; e++) {
    uint32_t len = udp->ring_lengths[e];
    if (len == 0 || udp->ring_addrs[e] != p->ip) return 0;
    uint32_t seg = udp->ring_segs[e] ? udp->ring_segs[e] : len;
    uint8_t *entry = udp->ring + (size_t)e * udp->ring_slot;
    for (uint32_t o = 0; o < len; o += seg) {
      uint8_t *d = entry + o;
      uint32_t dlen = len - o < seg ? len - o : seg;
      if (dlen <= FRAG_HEAD || d[HEADER_MAGIC] != SLEEVE_MAGIC ||
          d[HEADER_VERSION] != SLEEVE_VERSION || d[HEADER_KIND] != KIND_FRAGMENT ||
          d[HEADER_FLAGS] != 0 || d[HEADER_RESERVED] != 0 || d[HEADER_RESERVED + 1] != 0 ||
          get48(d + HEADER_SENDER) != p->name)
        return 0;
      const uint8_t *f = d + HEADER_LEN;
      uint32_t fid = get32(f + FRAGMENT_ID), at = get32(f + FRAGMENT_OFFSET),
               ftotal = get32(f + FRAGMENT_TOTAL);
      uint8_t *chunk = d + FRAG_HEAD;
      uint32_t chunk_len = dlen - FRAG_HEAD;
      if (ftotal < RECORD_HEADER_LEN + MIN_FRAME || ftotal > MAX_REASSEMBLED ||
          chunk_len > ftotal - at || at > ftotal)
        return 0;
      if (got == 0) {
        /* A new series. A sealed one is checked once opened, and alone in its step. */
        if (at != 0 || series == (p->sealed ? 1 : RX_SERIES_MAX)) return 0;
        id = fid;
        total = ftotal;
        x->rx_iovs[series] = 0;
        if (!p->sealed) {
          if (!series_head_expressible(x, p, chunk, chunk_len, ftotal, series, now)) return 0;
          /* The TAP takes the offload block and the frame: skip the record's fixed fields. */
          chunk += RECORD_OFFLOAD;
          chunk_len -= RECORD_OFFLOAD;
          got = RECORD_OFFLOAD;
        }
      } else {
        if (fid != id || at != got || ftotal != total) return 0;
      }
      if (x->rx_iovs[series] == FRAG_MAX) return 0;
      struct iovec *v = &x->rx_iov[series][x->rx_iovs[series]++];
      v->iov_base = chunk;
      v->iov_len = chunk_len;
      got += chunk_len;
      if (got == total) {
        series++;
        got = 0;
      }
    }
    if (got != 0) continue; /* a series still open: it must complete in a later entry */
    /* Entries [i, e] hold `series` complete series and nothing else: deliver them. */
    if (p->sealed) return deliver_sealed_series(x, p, total, now) ? e - i + 1 : 0;
    for (uint32_t k = 0; k < series; k++) {
      xp_net *net = net_find(x, x->rx_net[k]);
      xp_mac *m = x->rx_mac[k];
      m->seen_ms = now;
      m->seen_dirty = 1;
      if (deliver(x, p, net, x->rx_iov[k], x->rx_iovs[k], x->rx_frame_len[k]))
        x->superframes_delivered++;
    }
    return e - i + 1;
  }
  *open = 1;
  return 0;
}

/*
 * The rest of a series left open at the end of a batch is usually one GSO send behind:
 * the sender hands a 64 KiB series to its kernel as two sends, and this receiver woke
 * for the first. Drain into the ring's free slots, polling for at most SERIES_WAIT_NS
 * per batch (*deadline, 0 until the first wait), so the series stays on this path
 * instead of going to JS whole. Returns the entries now in the ring (n if none came).
 */
static uint32_t drain_rest_of_series(weavets_poller *udp, uint32_t n, uint64_t *deadline) {
  if (n >= udp->ring_slots) return n;
  uint64_t t = uv_hrtime();
  if (*deadline == 0) *deadline = t + SERIES_WAIT_NS;
  for (;;) {
    int err = 0;
    uint32_t filled = udp->drain(udp, n, &err);
    /* A socket error is seen again by the next poll, which reports it. */
    if (filled > n || err || t >= *deadline) return filled;
    t = uv_hrtime();
  }
}

static uint32_t express_from_udp(weavets_poller *udp, uint32_t from, uint32_t n) {
  express *x = udp->express_ctx;
  double now = now_ms(x);
  uint32_t i = from;
  uint64_t deadline = 0;
  for (; i < n; i++) {
    uint32_t len = udp->ring_lengths[i];
    uint32_t seg = udp->ring_segs[i];
    uint8_t *d = udp->ring + (size_t)i * udp->ring_slot;
    if (len > HEADER_LEN && d[HEADER_KIND] == KIND_FRAGMENT) {
      /* Fragments, possibly coalesced by GRO: whole series only. */
      xp_peer *p = len >= FRAG_HEAD ? peer_find(x, get48(d + HEADER_SENDER)) : NULL;
      if (!p || (p->sealed && !p->crypto)) break;
      int open;
      uint32_t took = take_series(x, udp, p, i, n, now, &open);
      /* On the data path thread the rest is waited for in its epoll, the batch held in
       * the ring (iothread.c); on the loop, by polling for a moment. */
      while (took == 0 && open && !udp->iot) {
        uint32_t filled = drain_rest_of_series(udp, n, &deadline);
        if (filled == n) break;
        n = filled;
        took = take_series(x, udp, p, i, n, now, &open);
      }
      if (took == 0) {
        if (open && udp->iot && n < udp->ring_slots) udp->express_hold = 1;
        break;
      }
      i += took - 1;
      continue;
    }
    if (len < HEADER_LEN + RECORD_HEADER_LEN || (seg != 0 && seg < len)) break;
    uint8_t kind = d[HEADER_KIND];
    if (d[HEADER_MAGIC] != SLEEVE_MAGIC || d[HEADER_VERSION] != SLEEVE_VERSION ||
        (kind != KIND_FRAMES && kind != KIND_SEALED) || d[HEADER_FLAGS] != 0 ||
        d[HEADER_RESERVED] != 0 || d[HEADER_RESERVED + 1] != 0)
      break;
    uint64_t sender = get48(d + HEADER_SENDER);
    xp_peer *p = peer_find(x, sender);
    if (!p || udp->ring_addrs[i] != p->ip) break;
    uint32_t body = HEADER_LEN;
    if (p->sealed) {
      /* A clear datagram from a sealing peer, or one we cannot open: JS counts it. */
      if (kind != KIND_SEALED || !p->crypto || len < SEALED_BODY + RECORD_HEADER_LEN) break;
      if (weavets_peer_crypto_open(p->crypto, d, HEADER_LEN, len - HEADER_LEN, now) !=
          WEAVETS_OPEN_OK)
        break;
      /* Opened (and its counter spent): from here on JS must not open it again. */
      if (d[SEALED_INNER_KIND] != KIND_FRAMES ||
          !records_expressible(x, d, SEALED_BODY, len, sender, now)) {
        udp->ring_flags[i] = EXPRESS_RX_OPENED;
        break;
      }
      body = SEALED_BODY;
    } else if (kind != KIND_FRAMES || !records_expressible(x, d, HEADER_LEN, len, sender, now))
      break;
    deliver_records(x, p, d, body, len, now);
  }
  return i;
}

/* ---- lifecycle ---- */

/* The poller closes (poller_shutdown, JS thread): forget it, and take it out of the data
 * path thread before its fd is closed. */
static void detach_tap(weavets_poller *tap) {
  xp_tap_ctx *ctx = tap->express_ctx;
  weavets_iothread *iot = ctx ? ctx->x->iot : NULL;
  weavets_iothread_lock(iot);
  xp_net *net = ctx ? net_find(ctx->x, ctx->net) : NULL;
  if (net && net->tap == tap) net->tap = NULL;
  weavets_iothread_detach_locked(tap, 0);
  tap->express = NULL;
  tap->express_ctx = NULL;
  weavets_iothread_unlock(iot);
}

static void detach_udp(weavets_poller *udp) {
  express *x = udp->express_ctx;
  weavets_iothread *iot = x ? x->iot : NULL;
  weavets_iothread_lock(iot);
  if (x) x->udp = NULL;
  weavets_iothread_detach_locked(udp, 0);
  udp->express = NULL;
  udp->express_ctx = NULL;
  weavets_iothread_unlock(iot);
}

/* Lock held. The TAP goes back to the loop (unless the environment is going away), its
 * frames to JS. */
static void remove_network(express *x, xp_net *net, int resume) {
  weavets_poller *tap = net->tap;
  weavets_iothread_detach_locked(tap, resume);
  tap->express = NULL;
  tap->express_ctx = NULL;
  tap->express_detach = NULL;
  net->tap = NULL;
}

/* Unhook from every poller (which go back to the loop, unless the environment is going
 * away) and stop the data path thread. */
static void express_unhook(express *x, int resume) {
  weavets_iothread_lock(x->iot);
  for (int i = 0; i < MAX_NETWORKS; i++)
    if (x->nets[i].tap) remove_network(x, &x->nets[i], resume);
  if (x->udp) {
    weavets_iothread_detach_locked(x->udp, resume);
    x->udp->express = NULL;
    x->udp->express_ctx = NULL;
    x->udp->express_detach = NULL;
    x->udp = NULL;
  }
  weavets_iothread_unlock(x->iot);
  weavets_iothread_stop(x->iot);
  x->iot = NULL;
}

/* The environment is going away (process exit, a worker ending): no thread may outlive
 * it. The finalizer that follows finds the path unhooked. */
static void express_env_cleanup(void *data) {
  express_unhook(data, 0);
}

static void express_finalize(napi_env env, void *data, void *hint) {
  express *x = data;
  napi_remove_env_cleanup_hook(env, express_env_cleanup, x);
  express_unhook(x, 1);
  for (size_t i = 0; i < PEER_SLOTS; i++)
    if (x->peers[i].crypto_ref) napi_delete_reference(env, x->peers[i].crypto_ref);
  if (x->udp_ref) napi_delete_reference(env, x->udp_ref);
  if (x->frag_id_ref) napi_delete_reference(env, x->frag_id_ref);
  free(x->unit);
  free(x->rx_unit);
  free(x);
}

static express *express_get(napi_env env, napi_value obj) {
  void *x = NULL;
  if (napi_unwrap(env, obj, &x) != napi_ok || !x) {
    weavets_ensure_thrown(env, "not an open express path");
    return NULL;
  }
  return x;
}

static int get_name(napi_env env, napi_value high, napi_value low, uint64_t *out) {
  uint32_t h, l;
  if (!weavets_get_u32(env, high, "high", &h) || !weavets_get_u32(env, low, "low", &l)) return 0;
  if (h > 0xffffff || l > 0xffffff) {
    napi_throw_range_error(env, NULL, "name halves must be 24-bit");
    return 0;
  }
  *out = from_halves(h, l);
  return 1;
}

static int get_double(napi_env env, napi_value v, const char *what, double *out) {
  if (napi_get_value_double(env, v, out) != napi_ok || *out != *out) {
    char msg[96];
    snprintf(msg, sizeof msg, "%s must be a number", what);
    napi_throw_type_error(env, NULL, msg);
    return 0;
  }
  return 1;
}

static int get_bool(napi_env env, napi_value v, const char *what, bool *out) {
  if (napi_get_value_bool(env, v, out) != napi_ok) {
    char msg[96];
    snprintf(msg, sizeof msg, "%s must be a boolean", what);
    napi_throw_type_error(env, NULL, msg);
    return 0;
  }
  return 1;
}

static napi_value js_create(napi_env env, napi_callback_info info) {
  napi_value argv[8];
  if (!weavets_get_args(env, info, 8, argv)) return NULL;
  weavets_poller *udp = weavets_poller_get(env, argv[0]);
  if (!udp) return NULL;
  if (!udp->ring_addrs) {
    napi_throw_type_error(env, NULL, "expressCreate wants the UDP socket");
    return NULL;
  }
  if (udp->express) {
    napi_throw_error(env, NULL, "the UDP socket already has an express path");
    return NULL;
  }
  uint64_t self;
  double js_now, max_age;
  bool flows, thread = false;
  uint32_t slice_ns = 0;
  napi_valuetype tt;
  if (!get_name(env, argv[1], argv[2], &self) || !get_double(env, argv[3], "nowMs", &js_now) ||
      !get_double(env, argv[4], "macMaxAgeMs", &max_age) ||
      !get_bool(env, argv[5], "countFlows", &flows) || napi_typeof(env, argv[6], &tt) != napi_ok ||
      (tt != napi_undefined && !get_bool(env, argv[6], "thread", &thread)) ||
      napi_typeof(env, argv[7], &tt) != napi_ok ||
      (tt != napi_undefined && !weavets_get_u32(env, argv[7], "schedSliceNs", &slice_ns)))
    return NULL;
  if (self == 0) {
    napi_throw_range_error(env, NULL, "self must not be 0");
    return NULL;
  }
  express *x = calloc(1, sizeof *x);
  if (!x) {
    weavets_throw_errno(env, "calloc", ENOMEM);
    return NULL;
  }
  x->env = env;
  x->self = self;
  x->clock_offset_ms = js_now - (double)uv_hrtime() / 1e6;
  x->mac_max_age_ms = max_age;
  x->count_flows = flows;
  x->own_frag_id = 1;
  x->frag_id = &x->own_frag_id;
  x->unit = malloc(UNIT_MAX);
  if (!x->unit) {
    free(x);
    weavets_throw_errno(env, "malloc", ENOMEM);
    return NULL;
  }
  for (int i = 0; i < TX_BATCH; i++) {
    struct msghdr *h = &x->tx_msgs[i].msg_hdr;
    h->msg_name = &x->tx_names[i];
    h->msg_namelen = sizeof x->tx_names[i];
    h->msg_iov = x->tx_iov[i];
    h->msg_iovlen = 2;
    x->tx_names[i].sin_family = AF_INET;
  }
  napi_value obj;
  if (napi_create_object(env, &obj) != napi_ok ||
      napi_wrap(env, obj, x, express_finalize, NULL, NULL) != napi_ok) {
    free(x->unit);
    free(x);
    weavets_ensure_thrown(env, "expressCreate failed");
    return NULL;
  }
  /* Keep the socket object alive as long as we are hooked into it. */
  napi_create_reference(env, argv[0], 1, &x->udp_ref);
  int err = 0;
  const char *failed = "data path thread";
  if (thread) {
    x->iot = weavets_iothread_start(env, slice_ns, &err);
    if (!x->iot) goto thread_failed;
    napi_add_env_cleanup_hook(env, express_env_cleanup, x);
  }
  weavets_iothread_lock(x->iot);
  x->udp = udp;
  udp->express_ctx = x;
  udp->express_detach = detach_udp;
  udp->express = express_from_udp;
  err = x->iot ? weavets_iothread_attach_locked(x->iot, udp) : 0;
  weavets_iothread_unlock(x->iot);
  if (!err) return obj;
  failed = "data path thread: the socket";
thread_failed:;
  void *ignored;
  napi_remove_wrap(env, obj, &ignored);
  express_finalize(env, x, NULL);
  weavets_throw_errno(env, failed, err);
  return NULL;
}

static napi_value js_add_network(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!weavets_get_args(env, info, 3, argv)) return NULL;
  express *x = express_get(env, argv[0]);
  uint32_t id;
  if (!x || !weavets_get_u32(env, argv[1], "networkId", &id)) return NULL;
  weavets_poller *tap = weavets_poller_get(env, argv[2]);
  if (!tap) return NULL;
  if (tap->ring_addrs || id > 0xffffff) {
    napi_throw_range_error(env, NULL, "expressAddNetwork wants a 24-bit network id and a TAP");
    return NULL;
  }
  if (net_find(x, id) || tap->express) {
    napi_throw_error(env, NULL, "network or TAP already on the express path");
    return NULL;
  }
  for (int i = 0; i < MAX_NETWORKS; i++) {
    if (x->nets[i].tap) continue;
    weavets_iothread_lock(x->iot);
    xp_net *net = &x->nets[i];
    memset(net, 0, sizeof *net);
    net->id = id;
    net->tap = tap;
    x->tap_ctx[i].x = x;
    x->tap_ctx[i].net = id;
    tap->express_ctx = &x->tap_ctx[i];
    tap->express_detach = detach_tap;
    tap->express = express_from_tap;
    /* A TAP the thread cannot take (epoll refused it) stays on JS: C must not run for it
     * on the loop while the thread runs the socket's batches. */
    int taken = !x->iot || weavets_iothread_attach_locked(x->iot, tap) == 0;
    if (!taken) remove_network(x, net, 1);
    weavets_iothread_unlock(x->iot);
    napi_value result;
    napi_get_boolean(env, taken, &result);
    return result;
  }
  /* Full: this network's frames all go through JS. */
  napi_value no;
  napi_get_boolean(env, false, &no);
  return no;
}

static napi_value js_remove_network(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!weavets_get_args(env, info, 2, argv)) return NULL;
  express *x = express_get(env, argv[0]);
  uint32_t id;
  if (!x || !weavets_get_u32(env, argv[1], "networkId", &id)) return NULL;
  weavets_iothread_lock(x->iot);
  xp_net *net = net_find(x, id);
  if (net) remove_network(x, net, 1);
  weavets_iothread_unlock(x->iot);
  return NULL;
}

static napi_value js_set_peer(napi_env env, napi_callback_info info) {
  napi_value argv[9];
  if (!weavets_get_args(env, info, 9, argv)) return NULL;
  express *x = express_get(env, argv[0]);
  uint64_t name;
  uint32_t ip, port, max_datagram;
  bool direct, sealed;
  if (!x || !get_name(env, argv[1], argv[2], &name) || !weavets_get_u32(env, argv[3], "ip", &ip) ||
      !weavets_get_u32(env, argv[4], "port", &port) ||
      !weavets_get_u32(env, argv[5], "maxDatagram", &max_datagram) ||
      !get_bool(env, argv[6], "direct", &direct) || !get_bool(env, argv[7], "sealed", &sealed))
    return NULL;
  if (name == 0 || port > 65535) {
    napi_throw_range_error(env, NULL, "peer name must not be 0, port 0..65535");
    return NULL;
  }
  /* The sealing state: a handle from peerCryptoCreate, or undefined/null for none. */
  weavets_peer_crypto *crypto = NULL;
  napi_valuetype ct;
  if (napi_typeof(env, argv[8], &ct) != napi_ok) return NULL;
  if (ct != napi_undefined && ct != napi_null) {
    crypto = weavets_peer_crypto_unwrap(env, argv[8]);
    if (!crypto) {
      napi_throw_type_error(env, NULL, "crypto must be a handle from peerCryptoCreate");
      return NULL;
    }
  }
  weavets_iothread_lock(x->iot);
  xp_peer *p = peer_upsert(x, name);
  if (p) {
    p->ip = ip;
    p->port = (uint16_t)port;
    p->max_datagram = max_datagram;
    p->direct = direct;
    p->sealed = sealed || crypto != NULL;
    peer_set_crypto(x, p, crypto, argv[8]);
  }
  weavets_iothread_unlock(x->iot);
  napi_value ok;
  napi_get_boolean(env, p != NULL, &ok); /* full: this peer's frames go through JS */
  return ok;
}

static napi_value js_remove_peer(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!weavets_get_args(env, info, 3, argv)) return NULL;
  express *x = express_get(env, argv[0]);
  uint64_t name;
  if (!x || !get_name(env, argv[1], argv[2], &name)) return NULL;
  weavets_iothread_lock(x->iot);
  xp_peer *p = peer_find(x, name);
  if (p) peer_delete(x, p);
  weavets_iothread_unlock(x->iot);
  return NULL;
}

static napi_value js_learn(napi_env env, napi_callback_info info) {
  napi_value argv[6];
  if (!weavets_get_args(env, info, 6, argv)) return NULL;
  express *x = express_get(env, argv[0]);
  uint32_t net;
  uint64_t mac, peer;
  if (!x || !weavets_get_u32(env, argv[1], "networkId", &net) ||
      !get_name(env, argv[2], argv[3], &mac) || !get_name(env, argv[4], argv[5], &peer))
    return NULL;
  if (peer == 0 || (mac & GROUP_BIT)) return NULL;
  weavets_iothread_lock(x->iot);
  mac_learn(x, net, mac, peer, now_ms(x));
  weavets_iothread_unlock(x->iot);
  return NULL;
}

static napi_value js_forget_peer(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!weavets_get_args(env, info, 3, argv)) return NULL;
  express *x = express_get(env, argv[0]);
  uint64_t name;
  if (!x || !get_name(env, argv[1], argv[2], &name)) return NULL;
  weavets_iothread_lock(x->iot);
  for (size_t i = 0; i < MAC_SETS * MAC_WAYS; i++)
    if (x->macs[i].peer == name) memset(&x->macs[i], 0, sizeof x->macs[i]);
  weavets_iothread_unlock(x->iot);
  return NULL;
}

static void put_halves(double *out, uint64_t v) {
  out[0] = (double)((v >> 24) & 0xffffff);
  out[1] = (double)(v & 0xffffff);
}

static uint32_t take(express *x, uint32_t what, double *out, size_t room) {
  uint32_t n = 0;
  if (what == EXPRESS_TAKE_PEERS) {
    for (size_t i = 0; i < PEER_SLOTS && room >= 6; i++) {
      xp_peer *p = &x->peers[i];
      if (!p->name || (p->frames_in == 0 && p->frames_out == 0)) continue;
      put_halves(out, p->name);
      out[2] = p->frames_in, out[3] = p->bytes_in, out[4] = p->frames_out, out[5] = p->bytes_out;
      p->frames_in = p->bytes_in = p->frames_out = p->bytes_out = 0;
      out += 6, room -= 6, n++;
    }
  } else if (what == EXPRESS_TAKE_NETWORKS) {
    for (size_t i = 0; i < MAX_NETWORKS && room >= 3; i++) {
      xp_net *net = &x->nets[i];
      if (!net->tap || (net->from_bridge == 0 && net->to_bridge == 0)) continue;
      out[0] = net->id, out[1] = net->from_bridge, out[2] = net->to_bridge;
      net->from_bridge = net->to_bridge = 0;
      out += 3, room -= 3, n++;
    }
  } else if (what == EXPRESS_TAKE_FLOWS) {
    for (size_t i = 0; i < FLOW_SETS * FLOW_WAYS && room >= 7; i++) {
      xp_flow *f = &x->flows[i];
      if (!f->used) continue;
      out[0] = f->net;
      put_halves(out + 1, f->src);
      put_halves(out + 3, f->dst);
      out[5] = f->frames, out[6] = f->bytes;
      memset(f, 0, sizeof *f);
      out += 7, room -= 7, n++;
    }
  } else if (what == EXPRESS_TAKE_SEEN) {
    for (size_t i = 0; i < MAC_SETS * MAC_WAYS && room >= 6; i++) {
      xp_mac *m = &x->macs[i];
      if (!m->peer || !m->seen_dirty) continue;
      out[0] = m->net;
      put_halves(out + 1, m->mac);
      put_halves(out + 3, m->peer);
      out[5] = m->seen_ms;
      m->seen_dirty = 0;
      out += 6, room -= 6, n++;
    }
  } else if (what == EXPRESS_TAKE_DROPS) {
    for (int where = 0; where < 2; where++) {
      double *t = where == 0 ? x->send_drops : x->bridge_drops;
      for (int e = 0; e <= MAX_ERRNO && room >= 3; e++) {
        if (t[e] == 0) continue;
        out[0] = where, out[1] = e, out[2] = t[e];
        t[e] = 0;
        out += 3, room -= 3, n++;
      }
    }
  }
  return n;
}

static napi_value js_take(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!weavets_get_args(env, info, 3, argv)) return NULL;
  express *x = express_get(env, argv[0]);
  uint32_t what;
  void *data;
  size_t len;
  if (!x || !weavets_get_u32(env, argv[1], "what", &what) ||
      !weavets_get_typed(env, argv[2], napi_float64_array, "out", &data, &len))
    return NULL;
  if (what > EXPRESS_TAKE_DROPS) {
    napi_throw_range_error(env, NULL, "unknown expressTake kind");
    return NULL;
  }
  weavets_iothread_lock(x->iot);
  uint32_t n = take(x, what, data, len);
  weavets_iothread_unlock(x->iot);
  napi_value result;
  napi_create_uint32(env, n, &result);
  return result;
}

static napi_value js_counters(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!weavets_get_args(env, info, 1, argv)) return NULL;
  express *x = express_get(env, argv[0]);
  if (!x) return NULL;
  weavets_iothread_lock(x->iot);
  double counts[4] = {x->frames_sent, x->frames_delivered, x->superframes_sent,
                      x->superframes_delivered};
  weavets_iothread_unlock(x->iot);
  napi_value arr, v;
  napi_create_array_with_length(env, 4, &arr);
  for (uint32_t i = 0; i < 4; i++) {
    napi_create_double(env, counts[i], &v);
    napi_set_element(env, arr, i, v);
  }
  return arr;
}

/* expressShareFragmentIds(h, cell: Uint32Array(1)): take fragment ids from cell[0], the
 * counter the JS path's TransmitArena uses, so one sender has one id sequence. */
static napi_value js_share_fragment_ids(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!weavets_get_args(env, info, 2, argv)) return NULL;
  express *x = express_get(env, argv[0]);
  void *data;
  size_t len;
  if (!x || !weavets_get_typed(env, argv[1], napi_uint32_array, "cell", &data, &len)) return NULL;
  if (len < 1) {
    napi_throw_range_error(env, NULL, "cell must hold one Uint32");
    return NULL;
  }
  napi_ref ref;
  if (napi_create_reference(env, argv[1], 1, &ref) != napi_ok) return NULL;
  if (x->frag_id_ref) napi_delete_reference(env, x->frag_id_ref);
  x->frag_id_ref = ref;
  weavets_iothread_lock(x->iot);
  x->frag_id = data;
  weavets_iothread_unlock(x->iot);
  return NULL;
}

static napi_value js_close(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!weavets_get_args(env, info, 1, argv)) return NULL;
  void *data = NULL;
  /* close() twice is a no-op. */
  if (napi_remove_wrap(env, argv[0], &data) != napi_ok || !data) {
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (pending) {
      napi_value ignored;
      napi_get_and_clear_last_exception(env, &ignored);
    }
    return NULL;
  }
  express_finalize(env, data, NULL);
  return NULL;
}

napi_status weavets_init_express(napi_env env, napi_value exports) {
  static const struct {
    const char *name;
    napi_callback fn;
  } fns[] = {
      {"expressCreate", js_create},
      {"expressAddNetwork", js_add_network},
      {"expressRemoveNetwork", js_remove_network},
      {"expressSetPeer", js_set_peer},
      {"expressRemovePeer", js_remove_peer},
      {"expressLearn", js_learn},
      {"expressForgetPeer", js_forget_peer},
      {"expressTake", js_take},
      {"expressCounters", js_counters},
      {"expressShareFragmentIds", js_share_fragment_ids},
      {"expressClose", js_close},
  };
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    napi_status s = weavets_export_fn(env, exports, fns[i].name, fns[i].fn);
    if (s != napi_ok) return s;
  }
  return napi_ok;
}
