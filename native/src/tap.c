/*
 * TAP device: open (IFF_TAP | IFF_NO_PI, non-blocking), batched reads driven by a
 * libuv poll, single and batched writes.
 *
 * The uv_poll/callback machinery shared with udp.c lives in poller.c.
 *
 * Exports (the typed face is src/native/index.ts):
 *   tapOpen(name, slotSize, slots, flags) -> handle {name, fd, rxBuf, rxLengths, vnetHdr, offloads}
 *     flags bit 0 (TAP_OPEN_VNET_HDR): IFF_VNET_HDR with a 10-byte little-endian
 *     struct virtio_net_hdr in front of every frame read and written, and the
 *     TUNSETOFFLOAD bits in `offloads` (checksum offload, TSO, maybe USO) so reads may
 *     be GSO super-frames of up to ~64 KiB.
 *   tapStartReading(handle, onFrames, onError?)   tapStopReading(handle)
 *   tapWrite(handle, buf, offset, length) -> boolean
 *   tapWriteBatch(handle, buf, offsets, lengths, count) -> number
 *   tapClose(handle)
 */
#define _GNU_SOURCE /* strerrorname_np */
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>
#include <endian.h>
#include <uv.h>

#include "poller.h"

/* ------------------------------------------------------------------- TAP ---- */

/* Newer than some installed headers (Linux 6.2). */
#ifndef TUN_F_USO4
#define TUN_F_USO4 0x20
#endif
#ifndef TUN_F_USO6
#define TUN_F_USO6 0x40
#endif

#define TAP_OPEN_VNET_HDR 1u
/* struct virtio_net_hdr without num_buffers. */
#define TAP_VNET_HDR_LEN 10

/* Configure IFF_VNET_HDR framing and offloads on a freshly attached fd; returns the
 * accepted TUN_F_* bits, or -1 with errno set and *what naming the failing step. */
static int tap_setup_vnet(int fd, const char **what) {
  int hdr_len = TAP_VNET_HDR_LEN;
  if (ioctl(fd, TUNSETVNETHDRSZ, &hdr_len) < 0) {
    *what = "TUNSETVNETHDRSZ";
    return -1;
  }
  /* Little-endian header fields whatever the host; on a little-endian host that is
   * the default anyway, so a kernel refusing the ioctl is harmless there. */
  int le = 1;
  if (ioctl(fd, TUNSETVNETLE, &le) < 0 && !(errno == EINVAL && __BYTE_ORDER == __LITTLE_ENDIAN)) {
    *what = "TUNSETVNETLE";
    return -1;
  }
  /* Richest set first; the kernel answers EINVAL for any bit it does not know. USO
   * (UDP segmentation, 6.2+) is only accepted as the USO4|USO6 pair. */
  static const unsigned tries[] = {
      TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN | TUN_F_USO4 | TUN_F_USO6,
      TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_USO4 | TUN_F_USO6,
      TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN,
      TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6,
  };
  for (size_t i = 0; i < sizeof tries / sizeof tries[0]; i++) {
    if (ioctl(fd, TUNSETOFFLOAD, (unsigned long)tries[i]) == 0) return (int)tries[i];
    if (errno != EINVAL) break;
  }
  *what = "TUNSETOFFLOAD";
  return -1;
}

typedef struct {
  weavets_poller p; /* first: the poller callbacks cast back to tap_dev */
  uint8_t *rx;
  uint32_t *rx_lengths;
  uint32_t slot_size;
  uint32_t slots;
} tap_dev;

static void tap_release(weavets_poller *p) {
  free(p);
}

static uint32_t tap_drain(weavets_poller *p, uint32_t from, int *err) {
  tap_dev *t = (tap_dev *)p;
  /* tun copies what fits and returns the bytes copied, so a frame longer than the
   * slot is only visible through an extra byte of room: it lands in `spill`. */
  uint8_t spill;
  struct iovec iov[2] = {{NULL, t->slot_size}, {&spill, 1}};
  uint32_t n = from;
  while (n < t->slots) {
    iov[0].iov_base = t->rx + (size_t)n * t->slot_size;
    ssize_t r = readv(p->fd, iov, 2);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN) *err = errno;
      break;
    }
    /* Truncated frames are reported with length 0 so JS drops them. */
    t->rx_lengths[n++] = (size_t)r > t->slot_size ? 0 : (uint32_t)r;
  }
  p->ring_filled = n;
  return n;
}

#define SET_PROP(obj, key, val)                                                                    \
  do {                                                                                             \
    if ((val) == NULL || napi_set_named_property(env, obj, key, val) != napi_ok)                   \
      goto fail_wrapped;                                                                           \
  } while (0)

static napi_value tap_open(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  if (!weavets_get_args(env, info, 4, argv)) return NULL;
  char name[IFNAMSIZ + 1];
  size_t name_len = 0;
  if (napi_get_value_string_utf8(env, argv[0], name, sizeof name, &name_len) != napi_ok) {
    napi_throw_type_error(env, NULL, "name must be a string");
    return NULL;
  }
  if (name_len == 0 || name_len >= IFNAMSIZ) {
    napi_throw_range_error(env, NULL, "name must be 1..15 bytes");
    return NULL;
  }
  uint32_t slot_size, slots;
  if (!weavets_get_u32(env, argv[1], "slotSize", &slot_size)) return NULL;
  if (!weavets_get_u32(env, argv[2], "slots", &slots)) return NULL;
  uint32_t flags = 0;
  napi_valuetype ft;
  if (napi_typeof(env, argv[3], &ft) != napi_ok) return NULL;
  if (ft != napi_undefined && !weavets_get_u32(env, argv[3], "flags", &flags)) return NULL;
  if (flags & ~TAP_OPEN_VNET_HDR) {
    napi_throw_range_error(env, NULL, "unknown tapOpen flags");
    return NULL;
  }
  const int vnet = (flags & TAP_OPEN_VNET_HDR) != 0;
  if (slot_size < 64 || slot_size > (1u << 20) || slots < 1 || slots > 1024) {
    napi_throw_range_error(env, NULL, "slotSize must be 64..1048576 and slots 1..1024");
    return NULL;
  }

  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    weavets_throw_errno(env, "open /dev/net/tun", errno);
    return NULL;
  }
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | (vnet ? IFF_VNET_HDR : 0);
  memcpy(ifr.ifr_name, name, name_len);
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    int e = errno;
    close(fd);
    weavets_throw_errno(env, "TUNSETIFF", e);
    return NULL;
  }
  int offloads = 0;
  if (vnet) {
    const char *what = "vnet";
    offloads = tap_setup_vnet(fd, &what);
    if (offloads < 0) {
      int e = errno;
      close(fd); /* a device created by this fd goes with it */
      weavets_throw_errno(env, what, e);
      return NULL;
    }
  }

  tap_dev *t = calloc(1, sizeof *t);
  if (!t) {
    close(fd);
    weavets_throw_errno(env, "calloc", ENOMEM);
    return NULL;
  }
  t->p.fd = fd;
  t->p.drain = tap_drain;
  t->p.release = tap_release;
  t->slot_size = slot_size;
  t->slots = slots;

  napi_value obj;
  if (napi_create_object(env, &obj) != napi_ok) {
    close(fd);
    free(t);
    weavets_ensure_thrown(env, "napi_create_object failed");
    return NULL;
  }
  if (weavets_poller_setup(env, &t->p, obj) != napi_ok) {
    weavets_ensure_thrown(env, "poller setup failed");
    return NULL;
  }

  napi_value rx_buf, rx_lengths, v;
  void *data;
  if (napi_create_buffer(env, (size_t)slot_size * slots, &data, &rx_buf) != napi_ok)
    goto fail_wrapped;
  t->rx = data;
  rx_lengths = weavets_new_typed(env, napi_uint32_array, 4, slots, &data);
  if (!rx_lengths) goto fail_wrapped;
  t->rx_lengths = data;
  if (napi_create_reference(env, rx_buf, 1, &t->p.keep[0]) != napi_ok ||
      napi_create_reference(env, rx_lengths, 1, &t->p.keep[1]) != napi_ok)
    goto fail_wrapped;
  SET_PROP(obj, "rxBuf", rx_buf);
  t->p.ring = t->rx;
  t->p.ring_slot = t->slot_size;
  t->p.ring_slots = t->slots;
  t->p.ring_lengths = t->rx_lengths;
  SET_PROP(obj, "rxLengths", rx_lengths);
  v = NULL;
  napi_create_string_utf8(env, ifr.ifr_name, strnlen(ifr.ifr_name, IFNAMSIZ), &v);
  SET_PROP(obj, "name", v);
  v = NULL;
  napi_create_int32(env, fd, &v);
  SET_PROP(obj, "fd", v);
  v = NULL;
  napi_get_boolean(env, vnet, &v);
  SET_PROP(obj, "vnetHdr", v);
  v = NULL;
  napi_create_uint32(env, (uint32_t)offloads, &v);
  SET_PROP(obj, "offloads", v);
  return obj;

fail_wrapped:
  weavets_poller_close(env, &t->p, obj);
  weavets_ensure_thrown(env, "tapOpen failed");
  return NULL;
}

/* 1 written, 0 EAGAIN, -1 other error (errno set). */
static int tap_write_one(int fd, const uint8_t *data, size_t len) {
  for (;;) {
    ssize_t r = write(fd, data, len);
    if (r >= 0) return 1;
    if (errno == EINTR) continue;
    return errno == EAGAIN ? 0 : -1;
  }
}

static napi_value tap_write(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  if (!weavets_get_args(env, info, 4, argv)) return NULL;
  weavets_poller *p = weavets_poller_get(env, argv[0]);
  if (!p) return NULL;
  uint8_t *buf;
  size_t buf_len;
  uint32_t off, len;
  if (!weavets_get_bytes(env, argv[1], &buf, &buf_len) ||
      !weavets_get_u32(env, argv[2], "offset", &off) ||
      !weavets_get_u32(env, argv[3], "length", &len))
    return NULL;
  if ((uint64_t)off + len > buf_len) {
    napi_throw_range_error(env, NULL, "offset + length beyond the buffer");
    return NULL;
  }
  int r = tap_write_one(p->fd, buf + off, len);
  if (r < 0) {
    weavets_throw_errno(env, "write", errno);
    return NULL;
  }
  napi_value result;
  napi_get_boolean(env, r == 1, &result);
  return result;
}

static napi_value tap_write_batch(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  if (!weavets_get_args(env, info, 5, argv)) return NULL;
  weavets_poller *p = weavets_poller_get(env, argv[0]);
  if (!p) return NULL;
  uint8_t *buf;
  size_t buf_len, n_off, n_len;
  uint32_t *offs, *lens, count;
  if (!weavets_get_bytes(env, argv[1], &buf, &buf_len) ||
      !weavets_get_typed(env, argv[2], napi_uint32_array, "offsets", (void **)&offs, &n_off) ||
      !weavets_get_typed(env, argv[3], napi_uint32_array, "lengths", (void **)&lens, &n_len) ||
      !weavets_get_u32(env, argv[4], "count", &count))
    return NULL;
  if (count > n_off || count > n_len) {
    napi_throw_range_error(env, NULL, "count beyond offsets/lengths");
    return NULL;
  }
  /* Validate everything first so a bad entry never leaves a half-written batch. */
  if (!weavets_check_batch(env, buf_len, offs, lens, count)) return NULL;
  uint32_t done = 0;
  for (; done < count; done++) {
    int r = tap_write_one(p->fd, buf + offs[done], lens[done]);
    if (r == 1) continue;
    if (r < 0 && done == 0) {
      weavets_throw_errno(env, "write", errno);
      return NULL;
    }
    break;
  }
  napi_value result;
  napi_create_uint32(env, done, &result);
  return result;
}

napi_status weavets_init_tap(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"tapOpen", NULL, tap_open, NULL, NULL, NULL, napi_default_jsproperty, NULL},
      {"tapStartReading", NULL, weavets_poller_js_start, NULL, NULL, NULL, napi_default_jsproperty,
       NULL},
      {"tapStopReading", NULL, weavets_poller_js_stop, NULL, NULL, NULL, napi_default_jsproperty,
       NULL},
      {"tapWrite", NULL, tap_write, NULL, NULL, NULL, napi_default_jsproperty, NULL},
      {"tapWriteBatch", NULL, tap_write_batch, NULL, NULL, NULL, napi_default_jsproperty, NULL},
      {"tapClose", NULL, weavets_poller_js_close, NULL, NULL, NULL, napi_default_jsproperty, NULL},
  };
  return napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
