/*
 * The poller shared by tap.c and udp.c: one uv_poll_t per object, the JS callbacks
 * invoked through napi_make_callback, the close()/finalizer lifecycle, and small
 * argument helpers.
 */
#ifndef WEAVETS_POLLER_H
#define WEAVETS_POLLER_H

#include <stdint.h>
#include <uv.h>

#include "addon.h"

#define WEAVETS_POLLER_KEEP 6

typedef struct weavets_poller weavets_poller;
/* Fill the receive slots from entry `from` on, with what is queued now (never waits);
 * return the entries filled in all (from + those read), which it also stores in
 * ring_filled; set *err to a fatal errno (0 if none). */
typedef uint32_t (*weavets_drain_fn)(weavets_poller *p, uint32_t from, int *err);
/* The express path (express.c) runs on entries [from, n) of a drained batch before JS
 * does (from is 0 but for a batch held on the data path thread): it forwards what it can
 * and returns the index of the first entry it left for JS. It may drain more into the
 * free slots after the batch (a fragment series whose last datagrams were still on their
 * way); JS gets everything up to ring_filled either way. On the data path thread it may
 * instead set express_hold: the entries from the one returned start a series whose rest
 * has not arrived, and should stay in the ring until more has (iothread.c). */
typedef uint32_t (*weavets_express_fn)(weavets_poller *p, uint32_t from, uint32_t n);

struct weavets_poller {
  napi_env env;
  int fd;
  uv_poll_t handle;
  napi_ref self;     /* the JS handle object; weak, made strong while reading */
  napi_ref on_data;  /* set while reading */
  napi_ref on_error; /* optional, set while reading */
  napi_async_context actx;
  int reading;
  weavets_drain_fn drain;
  /* Buffers the hot path writes into: kept alive as long as the C side uses them. */
  napi_ref keep[WEAVETS_POLLER_KEEP];
  void (*release)(weavets_poller *p); /* frees the containing object */
  /* The receive ring as express.c reads it: entry i is ring[i * ring_slot, + ring_lengths[i]);
   * ring_addrs, ring_segs and ring_flags are the UDP socket's (NULL for a TAP). */
  uint8_t *ring;
  uint32_t ring_slot;
  uint32_t ring_slots;  /* entries in the ring */
  uint32_t ring_filled; /* entries the last drain left filled: the batch JS is given */
  uint32_t *ring_lengths;
  uint32_t *ring_addrs;
  uint16_t *ring_segs;
  uint8_t *ring_flags;
  /* Set by express.c while an express path uses this poller; express_detach is called
   * once when the poller closes, so the express path never holds a freed poller. */
  weavets_express_fn express;
  void *express_ctx;
  void (*express_detach)(weavets_poller *p);
  /* Set while the data path thread (iothread.c) waits on this fd instead of the loop's
   * uv_poll; the fields below are its, read and written under its lock. */
  struct weavets_iothread *iot;
  uint32_t iot_slot;
  int iot_armed;       /* in the thread's epoll, waiting (one-shot: re-armed after a batch) */
  int handoff_pending; /* the thread left [handoff_first, ring_filled) of a batch to JS */
  uint32_t handoff_first;
  int handoff_err;
  int express_hold; /* set by the express path: hold [held_first, n) */
  int held;         /* the ring holds [held_first, ring_filled) for the express path */
  uint32_t held_first;
  uint64_t held_until; /* uv_hrtime(): then it goes to JS as it is */
};

/* Drain the ring from entry `had` on, then run the express path (if any) over entries
 * [from, n) when that drain brought anything: returns n, the entries now filled (the
 * express path may have drained more), and sets *first to the first entry left for JS
 * (`from` if the express path did not run). Both the loop's poll callback and the data
 * path thread take a batch this way. */
uint32_t weavets_poller_take_batch(weavets_poller *p, uint32_t from, uint32_t had, uint32_t *first,
                                   int *err);

/* What the poll callback does with a drained batch after the express path ran on it:
 * JS gets [first, n), and a fatal errno goes to onError (or stops reading). JS thread;
 * poller.c's poll callback and iothread.c's hand-off both end here. */
void weavets_poller_deliver(weavets_poller *p, uint32_t n, uint32_t first, int err);

/* Wait for readiness in the loop's uv_poll again (a poller the data path thread gave
 * back); 0 or a libuv error. */
int weavets_poller_resume_loop(weavets_poller *p);

napi_status weavets_poller_setup(napi_env env, weavets_poller *p, napi_value obj);
weavets_poller *weavets_poller_get(napi_env env, napi_value obj);
napi_status weavets_poller_start(napi_env env, weavets_poller *p, napi_value on_data,
                                 napi_value on_error);
void weavets_poller_stop(napi_env env, weavets_poller *p);
void weavets_poller_close(napi_env env, weavets_poller *p, napi_value obj);
void weavets_ensure_thrown(napi_env env, const char *what);
int weavets_get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv);
int weavets_get_u32(napi_env env, napi_value v, const char *what, uint32_t *out);
int weavets_get_bytes(napi_env env, napi_value v, uint8_t **data, size_t *len);
int weavets_get_typed(napi_env env, napi_value v, napi_typedarray_type type, const char *what,
                      void **data, size_t *len);
napi_value weavets_new_typed(napi_env env, napi_typedarray_type type, size_t elem, size_t count,
                             void **data);

/* Every offsets[i] + lengths[i] (i < count) lies within a buffer of buf_len bytes;
 * throws a RangeError and returns 0 otherwise. */
int weavets_check_batch(napi_env env, size_t buf_len, const uint32_t *offs, const uint32_t *lens,
                        uint32_t count);

/* JS-facing startReading(handle, onData, onError?), stopReading(handle) and close(handle),
 * shared by the TAP and UDP objects (both wrap a weavets_poller first). */
napi_value weavets_poller_js_start(napi_env env, napi_callback_info info);
napi_value weavets_poller_js_stop(napi_env env, napi_callback_info info);
napi_value weavets_poller_js_close(napi_env env, napi_callback_info info);

#endif
