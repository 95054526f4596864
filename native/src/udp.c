/*
 * IPv4 UDP socket with recvmmsg/sendmmsg batching and UDP GSO, polled by libuv.
 * Addresses cross the boundary as host-order 32-bit numbers, ports as host order.
 *
 * Exports (the typed face is src/native/index.ts):
 *   udpBind(addr, port, rcvbuf, sndbuf, slots, slotSize, flags)
 *       -> handle {fd, port, rxBuf, rxLengths, rxAddrs, rxPorts, rxSegSizes, rxFlags, gro}
 *     rxFlags[i] is set by the express path (express.h: EXPRESS_RX_OPENED) and 0 otherwise.
 *     flags bit 0 (UDP_BIND_GRO): setsockopt(UDP_GRO) so the kernel may hand over
 *     several same-flow segments as one coalesced datagram; each recvmmsg entry then
 *     carries a control buffer and rxSegSizes[i] is the segment size read from the
 *     SOL_UDP/UDP_GRO cmsg (0 for a plain datagram).
 *   udpStartReading(handle, onDatagrams, onError?)   udpStopReading(handle)
 *   udpSendBatch(handle, buf, offsets, lengths, addrs, ports, count) -> number
 *   udpSend(handle, buf, offset, length, addr, port) -> boolean
 *   udpSendSegmented(handle, buf, offset, length, segmentSize, addr, port) -> boolean
 *   udpClose(handle)
 *
 * IP_MTU_DISCOVER is deliberately left at the kernel default (IP_PMTUDISC_WANT with
 * the default net.ipv4.ip_no_pmtu_disc=0): a datagram larger than the path MTU is
 * fragmented locally instead of failing with EMSGSIZE or being dropped. The sleeve
 * does its own PMTU discovery on top and sizes datagrams to avoid fragmentation;
 * this keeps an over-estimate from turning into silent loss meanwhile.
 */
#define _GNU_SOURCE /* recvmmsg, sendmmsg */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "poller.h"
#include "udp.h"

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif

#define UDP_BIND_GRO 1u

/* Per-slot receive control buffer: room for the UDP_GRO int and some slack in case
 * another cmsg is ever enabled; kept aligned for struct cmsghdr. */
typedef union {
  char buf[CMSG_SPACE(sizeof(int)) * 4];
  struct cmsghdr align;
} udp_rx_control;

/* sendmmsg chunk: big enough to amortise the syscall, small enough to live inline. */
#define TX_CHUNK 64

typedef struct {
  weavets_poller p; /* first: the poller callbacks cast back to udp_sock */
  uint32_t slots;
  uint32_t slot_size;
  uint8_t *rx;
  uint32_t *rx_lengths;
  uint32_t *rx_addrs;
  uint16_t *rx_ports;
  uint16_t *rx_seg_sizes;
  uint8_t *rx_flags; /* per entry, set by the express path (express.h); 0 after a drain */
  int gro;
  udp_rx_control *rx_control; /* NULL without GRO */
  struct mmsghdr *rx_msgs;
  struct iovec *rx_iov;
  struct sockaddr_in *rx_names;
  struct mmsghdr tx_msgs[TX_CHUNK];
  struct iovec tx_iov[TX_CHUNK];
  struct sockaddr_in tx_names[TX_CHUNK];
} udp_sock;

static void udp_release(weavets_poller *p) {
  udp_sock *u = (udp_sock *)p;
  free(u->rx_msgs);
  free(u->rx_iov);
  free(u->rx_names);
  free(u->rx_control);
  free(u);
}

/* Errors a recv can return that concern one earlier datagram, not the socket. */
static int transient_rx_error(int e) {
  return e == ECONNREFUSED || e == EHOSTUNREACH || e == ENETUNREACH || e == EHOSTDOWN ||
         e == ENETDOWN || e == EMSGSIZE || e == EPROTO || e == ENOPROTOOPT;
}

static uint32_t udp_drain(weavets_poller *p, uint32_t from, int *err) {
  udp_sock *u = (udp_sock *)p;
  p->ring_filled = from;
  if (from >= u->slots) return from;
  for (uint32_t i = from; i < u->slots; i++) {
    u->rx_msgs[i].msg_hdr.msg_namelen = sizeof(struct sockaddr_in);
    /* The kernel shrinks msg_controllen to what it wrote: restore it every time. */
    if (u->rx_control) u->rx_msgs[i].msg_hdr.msg_controllen = sizeof(udp_rx_control);
  }
  int r;
  do
    r = recvmmsg(p->fd, u->rx_msgs + from, u->slots - from, MSG_DONTWAIT, NULL);
  while (r < 0 && errno == EINTR);
  if (r < 0) {
    /* Level-triggered poll: if data is still queued behind a transient error we
     * are called again on the next loop turn. */
    if (errno != EAGAIN && !transient_rx_error(errno)) *err = errno;
    return from;
  }
  for (uint32_t i = from; i < from + (uint32_t)r; i++) {
    const struct mmsghdr *m = &u->rx_msgs[i];
    u->rx_lengths[i] = (m->msg_hdr.msg_flags & MSG_TRUNC) ? 0 : m->msg_len;
    u->rx_addrs[i] = ntohl(u->rx_names[i].sin_addr.s_addr);
    u->rx_ports[i] = ntohs(u->rx_names[i].sin_port);
    uint32_t seg = 0;
    if (u->rx_control) {
      struct msghdr *h = (struct msghdr *)&m->msg_hdr;
      for (struct cmsghdr *c = CMSG_FIRSTHDR(h); c; c = CMSG_NXTHDR(h, c)) {
        if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO &&
            c->cmsg_len >= CMSG_LEN(sizeof(int))) {
          int v;
          memcpy(&v, CMSG_DATA(c), sizeof v);
          seg = v > 0 && v <= 65535 ? (uint32_t)v : 0;
        }
      }
      /* Only a datagram that really holds more than one segment counts as coalesced. */
      if (m->msg_len <= seg) seg = 0;
    }
    u->rx_seg_sizes[i] = (uint16_t)seg;
    u->rx_flags[i] = 0;
  }
  p->ring_filled = from + (uint32_t)r;
  return p->ring_filled;
}

static void set_buffer(int fd, int force_opt, int opt, uint32_t size) {
  if (size == 0) return;
  int v = size > INT32_MAX ? INT32_MAX : (int)size;
  /* FORCE ignores net.core.[rw]mem_max (needs CAP_NET_ADMIN); else the capped one. */
  if (setsockopt(fd, SOL_SOCKET, force_opt, &v, sizeof v) < 0)
    setsockopt(fd, SOL_SOCKET, opt, &v, sizeof v);
}

#define SET_PROP(obj, key, val)                                                                    \
  do {                                                                                             \
    if ((val) == NULL || napi_set_named_property(env, obj, key, val) != napi_ok)                   \
      goto fail_wrapped;                                                                           \
  } while (0)

static napi_value udp_bind(napi_env env, napi_callback_info info) {
  napi_value argv[7];
  if (!weavets_get_args(env, info, 7, argv)) return NULL;
  uint32_t addr, port, rcvbuf, sndbuf, slots, slot_size, flags = 0;
  napi_valuetype ft;
  if (napi_typeof(env, argv[6], &ft) != napi_ok) return NULL;
  if (ft != napi_undefined && !weavets_get_u32(env, argv[6], "flags", &flags)) return NULL;
  if (flags & ~UDP_BIND_GRO) {
    napi_throw_range_error(env, NULL, "unknown udpBind flags");
    return NULL;
  }
  if (!weavets_get_u32(env, argv[0], "address", &addr) ||
      !weavets_get_u32(env, argv[1], "port", &port) ||
      !weavets_get_u32(env, argv[2], "rcvbuf", &rcvbuf) ||
      !weavets_get_u32(env, argv[3], "sndbuf", &sndbuf) ||
      !weavets_get_u32(env, argv[4], "slots", &slots) ||
      !weavets_get_u32(env, argv[5], "slotSize", &slot_size))
    return NULL;
  if (port > 65535 || slots < 1 || slots > 1024 || slot_size < 64 || slot_size > (1u << 20)) {
    napi_throw_range_error(env, NULL, "port 0..65535, slots 1..1024, slotSize 64..1048576");
    return NULL;
  }

  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    weavets_throw_errno(env, "socket", errno);
    return NULL;
  }
  set_buffer(fd, SO_RCVBUFFORCE, SO_RCVBUF, rcvbuf);
  set_buffer(fd, SO_SNDBUFFORCE, SO_SNDBUF, sndbuf);
  int gro = 0;
  if (flags & UDP_BIND_GRO) {
    int one = 1;
    /* A kernel without UDP_GRO (< 5.0) answers ENOPROTOOPT: carry on without it. */
    gro = setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof one) == 0;
  }
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  sa.sin_addr.s_addr = htonl(addr);
  socklen_t sl = sizeof sa;
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
      getsockname(fd, (struct sockaddr *)&sa, &sl) < 0) {
    int e = errno;
    close(fd);
    weavets_throw_errno(env, "bind", e);
    return NULL;
  }

  udp_sock *u = calloc(1, sizeof *u);
  if (u) {
    u->rx_msgs = calloc(slots, sizeof *u->rx_msgs);
    u->rx_iov = calloc(slots, sizeof *u->rx_iov);
    u->rx_names = calloc(slots, sizeof *u->rx_names);
    if (gro) u->rx_control = calloc(slots, sizeof *u->rx_control);
  }
  if (!u || !u->rx_msgs || !u->rx_iov || !u->rx_names || (gro && !u->rx_control)) {
    close(fd);
    if (u) udp_release(&u->p);
    weavets_throw_errno(env, "calloc", ENOMEM);
    return NULL;
  }
  u->p.fd = fd;
  u->p.drain = udp_drain;
  u->p.release = udp_release;
  u->slots = slots;
  u->slot_size = slot_size;
  u->gro = gro;

  napi_value obj;
  if (napi_create_object(env, &obj) != napi_ok) {
    close(fd);
    udp_release(&u->p);
    weavets_ensure_thrown(env, "napi_create_object failed");
    return NULL;
  }
  if (weavets_poller_setup(env, &u->p, obj) != napi_ok) {
    weavets_ensure_thrown(env, "poller setup failed");
    return NULL;
  }

  napi_value rx_buf, v;
  void *data;
  if (napi_create_buffer(env, (size_t)slot_size * slots, &data, &rx_buf) != napi_ok)
    goto fail_wrapped;
  u->rx = data;
  napi_value rx_lengths = weavets_new_typed(env, napi_uint32_array, 4, slots, &data);
  u->rx_lengths = data;
  napi_value rx_addrs = weavets_new_typed(env, napi_uint32_array, 4, slots, &data);
  u->rx_addrs = data;
  napi_value rx_ports = weavets_new_typed(env, napi_uint16_array, 2, slots, &data);
  u->rx_ports = data;
  napi_value rx_seg_sizes = weavets_new_typed(env, napi_uint16_array, 2, slots, &data);
  u->rx_seg_sizes = data;
  napi_value rx_flags = weavets_new_typed(env, napi_uint8_array, 1, slots, &data);
  u->rx_flags = data;
  if (!rx_lengths || !rx_addrs || !rx_ports || !rx_seg_sizes || !rx_flags) goto fail_wrapped;
  napi_value keep[] = {rx_buf, rx_lengths, rx_addrs, rx_ports, rx_seg_sizes, rx_flags};
  for (int i = 0; i < 6; i++)
    if (napi_create_reference(env, keep[i], 1, &u->p.keep[i]) != napi_ok) goto fail_wrapped;

  for (uint32_t i = 0; i < slots; i++) {
    u->rx_iov[i].iov_base = u->rx + (size_t)i * slot_size;
    u->rx_iov[i].iov_len = slot_size;
    struct msghdr *h = &u->rx_msgs[i].msg_hdr;
    h->msg_name = &u->rx_names[i];
    h->msg_namelen = sizeof u->rx_names[i];
    h->msg_iov = &u->rx_iov[i];
    h->msg_iovlen = 1;
    if (u->rx_control) {
      h->msg_control = u->rx_control[i].buf;
      h->msg_controllen = sizeof u->rx_control[i];
    }
  }
  for (uint32_t i = 0; i < TX_CHUNK; i++) {
    struct msghdr *h = &u->tx_msgs[i].msg_hdr;
    h->msg_name = &u->tx_names[i];
    h->msg_namelen = sizeof u->tx_names[i];
    h->msg_iov = &u->tx_iov[i];
    h->msg_iovlen = 1;
    u->tx_names[i].sin_family = AF_INET;
  }

  SET_PROP(obj, "rxBuf", rx_buf);
  SET_PROP(obj, "rxLengths", rx_lengths);
  SET_PROP(obj, "rxAddrs", rx_addrs);
  SET_PROP(obj, "rxPorts", rx_ports);
  SET_PROP(obj, "rxSegSizes", rx_seg_sizes);
  SET_PROP(obj, "rxFlags", rx_flags);
  u->p.ring = u->rx;
  u->p.ring_slot = slot_size;
  u->p.ring_slots = u->slots;
  u->p.ring_lengths = u->rx_lengths;
  u->p.ring_addrs = u->rx_addrs;
  u->p.ring_segs = u->rx_seg_sizes;
  u->p.ring_flags = u->rx_flags;
  v = NULL;
  napi_get_boolean(env, gro, &v);
  SET_PROP(obj, "gro", v);
  v = NULL;
  napi_create_uint32(env, ntohs(sa.sin_port), &v);
  SET_PROP(obj, "port", v);
  v = NULL;
  napi_create_int32(env, fd, &v);
  SET_PROP(obj, "fd", v);
  return obj;

fail_wrapped:
  weavets_poller_close(env, &u->p, obj);
  weavets_ensure_thrown(env, "udpBind failed");
  return NULL;
}

static udp_sock *udp_get(napi_env env, napi_value obj) {
  return (udp_sock *)weavets_poller_get(env, obj);
}

static int get_port(napi_env env, napi_value v, uint16_t *out) {
  uint32_t x;
  if (!weavets_get_u32(env, v, "port", &x)) return 0;
  if (x > 65535) {
    napi_throw_range_error(env, NULL, "port must be 0..65535");
    return 0;
  }
  *out = (uint16_t)x;
  return 1;
}

static int queue_full(int e) {
  return e == EAGAIN || e == ENOBUFS;
}

static napi_value udp_send_batch(napi_env env, napi_callback_info info) {
  napi_value argv[7];
  if (!weavets_get_args(env, info, 7, argv)) return NULL;
  udp_sock *u = udp_get(env, argv[0]);
  if (!u) return NULL;
  uint8_t *buf;
  size_t buf_len, n_off, n_len, n_addr, n_port;
  uint32_t *offs, *lens, *addrs, count;
  uint16_t *ports;
  if (!weavets_get_bytes(env, argv[1], &buf, &buf_len) ||
      !weavets_get_typed(env, argv[2], napi_uint32_array, "offsets", (void **)&offs, &n_off) ||
      !weavets_get_typed(env, argv[3], napi_uint32_array, "lengths", (void **)&lens, &n_len) ||
      !weavets_get_typed(env, argv[4], napi_uint32_array, "addrs", (void **)&addrs, &n_addr) ||
      !weavets_get_typed(env, argv[5], napi_uint16_array, "ports", (void **)&ports, &n_port) ||
      !weavets_get_u32(env, argv[6], "count", &count))
    return NULL;
  if (count > n_off || count > n_len || count > n_addr || count > n_port) {
    napi_throw_range_error(env, NULL, "count beyond offsets/lengths/addrs/ports");
    return NULL;
  }
  if (!weavets_check_batch(env, buf_len, offs, lens, count)) return NULL;

  uint32_t sent = 0;
  while (sent < count) {
    uint32_t chunk = count - sent < TX_CHUNK ? count - sent : TX_CHUNK;
    for (uint32_t j = 0; j < chunk; j++) {
      uint32_t i = sent + j;
      u->tx_iov[j].iov_base = buf + offs[i];
      u->tx_iov[j].iov_len = lens[i];
      u->tx_names[j].sin_addr.s_addr = htonl(addrs[i]);
      u->tx_names[j].sin_port = htons(ports[i]);
    }
    int r;
    do
      r = sendmmsg(u->p.fd, u->tx_msgs, chunk, MSG_DONTWAIT);
    while (r < 0 && errno == EINTR);
    if (r < 0) {
      if (!queue_full(errno) && sent == 0) {
        weavets_throw_errno(env, "sendmmsg", errno);
        return NULL;
      }
      break;
    }
    /* A short count means message sent+r failed; the next round starts there and
     * either gets the error back (we stop) or, if it was transient, carries on. */
    sent += (uint32_t)r;
  }
  napi_value result;
  napi_create_uint32(env, sent, &result);
  return result;
}

/* addr: the address as a uint32, or the same 32 bits as a signed int32 (addr | 0 in JS),
 * which V8 passes as a small integer where a uint32 of 128.0.0.0 and above would be a
 * newly allocated heap number on every send. */
static int get_addr(napi_env env, napi_value v, uint32_t *out) {
  double d;
  if (napi_get_value_double(env, v, &d) != napi_ok || !(d >= -2147483648.0 && d <= 4294967295.0) ||
      d != (double)(int64_t)d) {
    napi_throw_range_error(env, NULL, "addr must be a 32-bit integer");
    return 0;
  }
  *out = (uint32_t)(int64_t)d;
  return 1;
}

static int get_dest(napi_env env, napi_value a, napi_value p, struct sockaddr_in *sa) {
  uint32_t addr;
  uint16_t port;
  if (!get_addr(env, a, &addr) || !get_port(env, p, &port)) return 0;
  memset(sa, 0, sizeof *sa);
  sa->sin_family = AF_INET;
  sa->sin_addr.s_addr = htonl(addr);
  sa->sin_port = htons(port);
  return 1;
}

static int get_span(napi_env env, napi_value b, napi_value o, napi_value l, uint8_t **data,
                    uint32_t *len) {
  uint8_t *buf;
  size_t buf_len;
  uint32_t off;
  if (!weavets_get_bytes(env, b, &buf, &buf_len) || !weavets_get_u32(env, o, "offset", &off) ||
      !weavets_get_u32(env, l, "length", len))
    return 0;
  if ((uint64_t)off + *len > buf_len) {
    napi_throw_range_error(env, NULL, "offset + length beyond the buffer");
    return 0;
  }
  *data = buf + off;
  return 1;
}

/* sendmsg result to JS: true sent, false queue full, exception otherwise. */
static napi_value send_result(napi_env env, ssize_t r, const char *what) {
  napi_value result;
  if (r < 0 && !queue_full(errno)) {
    weavets_throw_errno(env, what, errno);
    return NULL;
  }
  napi_get_boolean(env, r >= 0, &result);
  return result;
}

static napi_value udp_send(napi_env env, napi_callback_info info) {
  napi_value argv[6];
  if (!weavets_get_args(env, info, 6, argv)) return NULL;
  udp_sock *u = udp_get(env, argv[0]);
  if (!u) return NULL;
  uint8_t *data;
  uint32_t len;
  struct sockaddr_in sa;
  if (!get_span(env, argv[1], argv[2], argv[3], &data, &len) ||
      !get_dest(env, argv[4], argv[5], &sa))
    return NULL;
  ssize_t r;
  do
    r = sendto(u->p.fd, data, len, MSG_DONTWAIT, (struct sockaddr *)&sa, sizeof sa);
  while (r < 0 && errno == EINTR);
  return send_result(env, r, "sendto");
}

static napi_value udp_send_segmented(napi_env env, napi_callback_info info) {
  napi_value argv[7];
  if (!weavets_get_args(env, info, 7, argv)) return NULL;
  udp_sock *u = udp_get(env, argv[0]);
  if (!u) return NULL;
  uint8_t *data;
  uint32_t len, seg;
  struct sockaddr_in sa;
  if (!get_span(env, argv[1], argv[2], argv[3], &data, &len) ||
      !weavets_get_u32(env, argv[4], "segmentSize", &seg) || !get_dest(env, argv[5], argv[6], &sa))
    return NULL;
  if (seg < 1 || seg > 65535) {
    napi_throw_range_error(env, NULL, "segmentSize must be 1..65535");
    return NULL;
  }
  struct iovec iov = {.iov_base = data, .iov_len = len};
  int err = weavets_udp_send_gso(u->p.fd, &sa, &iov, 1, (uint16_t)seg);
  if (err) errno = err;
  return send_result(env, err ? -1 : (ssize_t)len, "sendmsg(UDP_SEGMENT)");
}

int weavets_udp_send_gso(int fd, const struct sockaddr_in *to, struct iovec *iov, size_t iovlen,
                         uint16_t segment) {
  union {
    char buf[CMSG_SPACE(sizeof(uint16_t))];
    struct cmsghdr align;
  } control;
  memset(&control, 0, sizeof control);
  struct msghdr mh = {
      .msg_name = (void *)to,
      .msg_namelen = sizeof *to,
      .msg_iov = iov,
      .msg_iovlen = iovlen,
      .msg_control = control.buf,
      .msg_controllen = sizeof control.buf,
  };
  struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
  cm->cmsg_level = SOL_UDP;
  cm->cmsg_type = UDP_SEGMENT;
  cm->cmsg_len = CMSG_LEN(sizeof(uint16_t));
  memcpy(CMSG_DATA(cm), &segment, sizeof segment);
  ssize_t r;
  do
    r = sendmsg(fd, &mh, MSG_DONTWAIT);
  while (r < 0 && errno == EINTR);
  return r < 0 ? errno : 0;
}

napi_status weavets_init_udp(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"udpBind", NULL, udp_bind, NULL, NULL, NULL, napi_default_jsproperty, NULL},
      {"udpStartReading", NULL, weavets_poller_js_start, NULL, NULL, NULL, napi_default_jsproperty,
       NULL},
      {"udpStopReading", NULL, weavets_poller_js_stop, NULL, NULL, NULL, napi_default_jsproperty,
       NULL},
      {"udpSendBatch", NULL, udp_send_batch, NULL, NULL, NULL, napi_default_jsproperty, NULL},
      {"udpSend", NULL, udp_send, NULL, NULL, NULL, napi_default_jsproperty, NULL},
      {"udpSendSegmented", NULL, udp_send_segmented, NULL, NULL, NULL, napi_default_jsproperty,
       NULL},
      {"udpClose", NULL, weavets_poller_js_close, NULL, NULL, NULL, napi_default_jsproperty, NULL},
  };
  return napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
