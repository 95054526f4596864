/* The poller shared by tap.c and udp.c; see poller.h. */
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
#include <uv.h>

#include "iothread.h"
#include "poller.h"

static void poller_on_closed(uv_handle_t *h) {
  weavets_poller *p = h->data;
  p->release(p);
}

static void poller_drop_refs(napi_env env, weavets_poller *p) {
  napi_ref *all[] = {&p->on_data, &p->on_error, &p->self};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
    if (*all[i]) napi_delete_reference(env, *all[i]);
    *all[i] = NULL;
  }
  for (int i = 0; i < WEAVETS_POLLER_KEEP; i++) {
    if (p->keep[i]) napi_delete_reference(env, p->keep[i]);
    p->keep[i] = NULL;
  }
}

/* The handle is closed first (libuv removes the fd from epoll synchronously in
 * uv_close), then the fd, so a reused fd number is never touched. The memory goes
 * in the close callback, never synchronously: a JS callback may call close() while
 * the poll callback still holds p. */
static void poller_shutdown(weavets_poller *p) {
  if (p->express_detach) p->express_detach(p);
  p->express = NULL;
  p->express_detach = NULL;
  uv_close((uv_handle_t *)&p->handle, poller_on_closed);
  if (p->fd >= 0) close(p->fd);
  p->fd = -1;
}

static void poller_finalize(napi_env env, void *data, void *hint) {
  weavets_poller *p = data;
  /* Reading objects are strongly held, so this only happens with reading set at
   * environment teardown; the async context is left to die with the environment. */
  if (p->reading) uv_poll_stop(&p->handle);
  p->reading = 0;
  poller_drop_refs(env, p);
  poller_shutdown(p);
}

/* Takes ownership of p (and p->fd) whatever the outcome: on failure it is released. */
napi_status weavets_poller_setup(napi_env env, weavets_poller *p, napi_value obj) {
  uv_loop_t *loop;
  p->env = env;
  int r = napi_get_uv_event_loop(env, &loop) == napi_ok ? uv_poll_init(loop, &p->handle, p->fd)
                                                        : UV_EINVAL;
  if (r < 0) {
    close(p->fd);
    p->release(p);
    weavets_throw_errno(env, "uv_poll_init", -r);
    return napi_pending_exception;
  }
  p->handle.data = p;
  napi_status s = napi_wrap(env, obj, p, poller_finalize, NULL, NULL);
  if (s != napi_ok) {
    poller_shutdown(p);
    return s;
  }
  s = napi_create_reference(env, obj, 0, &p->self);
  if (s != napi_ok) weavets_poller_close(env, p, obj);
  return s;
}

/* Make sure a failed native call leaves a JS exception behind. */
void weavets_ensure_thrown(napi_env env, const char *what) {
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (!pending) napi_throw_error(env, NULL, what);
}

/* The poller obj wraps, or NULL with no exception pending when it was closed. */
static weavets_poller *poller_peek(napi_env env, napi_value obj) {
  void *p = NULL;
  if (napi_unwrap(env, obj, &p) != napi_ok || p == NULL) {
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (pending) {
      napi_value ignored;
      napi_get_and_clear_last_exception(env, &ignored);
    }
    return NULL;
  }
  return p;
}

weavets_poller *weavets_poller_get(napi_env env, napi_value obj) {
  weavets_poller *p = poller_peek(env, obj);
  if (!p) weavets_throw_errno(env, "closed", EBADF);
  return p;
}

static void surface_exception(napi_env env) {
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (!pending) return;
  napi_value err;
  if (napi_get_and_clear_last_exception(env, &err) == napi_ok) napi_fatal_exception(env, err);
}

/* Whether p is waiting for readiness: in the loop's uv_poll, or in the data path thread. */
static int poller_polling(weavets_poller *p) {
  return p->iot ? p->iot_armed : uv_is_active((uv_handle_t *)&p->handle);
}

void weavets_poller_deliver(weavets_poller *p, uint32_t n, uint32_t first, int err) {
  napi_env env = p->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value self, fn, args[2], result;
  napi_get_reference_value(env, p->self, &self);
  if (first < n) {
    napi_get_reference_value(env, p->on_data, &fn);
    napi_create_uint32(env, n, &args[0]);
    napi_create_uint32(env, first, &args[1]);
    if (napi_make_callback(env, p->actx, self, fn, 2, args, &result) != napi_ok)
      surface_exception(env);
  }
  /* The callback may have stopped or closed us; then the error is moot. */
  if (err && p->reading) {
    napi_value error;
    weavets_throw_errno(env, "read", err);
    napi_get_and_clear_last_exception(env, &error);
    /* A hard error would otherwise fire forever (a thread's poller is not armed now). */
    if (!p->iot) uv_poll_stop(&p->handle);
    if (p->on_error) {
      napi_get_reference_value(env, p->on_error, &fn);
      if (napi_make_callback(env, p->actx, self, fn, 1, &error, &result) != napi_ok)
        surface_exception(env);
      /* Unless onError restarted reading, finish the stop. */
      if (p->reading && !poller_polling(p)) weavets_poller_stop(env, p);
    } else {
      weavets_poller_stop(env, p);
      napi_fatal_exception(env, error);
    }
  }
  napi_close_handle_scope(env, scope);
}

uint32_t weavets_poller_take_batch(weavets_poller *p, uint32_t from, uint32_t had, uint32_t *first,
                                   int *err) {
  uint32_t n = p->drain(p, had, err);
  *first = from;
  if (n > had && p->express) {
    *first = p->express(p, from, n);
    n = p->ring_filled; /* the express path may have drained more */
  }
  return n;
}

static void poller_on_poll(uv_poll_t *h, int status, int events) {
  weavets_poller *p = h->data;
  if (!p->reading) return;
  int err = 0;
  uint32_t n = 0, first = 0;
  if (status < 0)
    err = -status;
  else
    n = weavets_poller_take_batch(p, 0, 0, &first, &err);
  if (first == n && err == 0) return;
  weavets_poller_deliver(p, n, first, err);
}

int weavets_poller_resume_loop(weavets_poller *p) {
  return uv_poll_start(&p->handle, UV_READABLE, poller_on_poll);
}

napi_status weavets_poller_start(napi_env env, weavets_poller *p, napi_value on_data,
                                 napi_value on_error) {
  napi_valuetype t;
  if (napi_typeof(env, on_data, &t) != napi_ok || t != napi_function) {
    napi_throw_type_error(env, NULL, "callback must be a function");
    return napi_function_expected;
  }
  int has_error_cb = 0;
  if (on_error) {
    if (napi_typeof(env, on_error, &t) != napi_ok) return napi_generic_failure;
    if (t == napi_function)
      has_error_cb = 1;
    else if (t != napi_undefined && t != napi_null) {
      napi_throw_type_error(env, NULL, "onError must be a function");
      return napi_function_expected;
    }
  }
  /* Restarting replaces the callbacks. */
  if (p->on_data) napi_delete_reference(env, p->on_data);
  if (p->on_error) napi_delete_reference(env, p->on_error);
  p->on_data = p->on_error = NULL;
  napi_status s = napi_create_reference(env, on_data, 1, &p->on_data);
  if (s == napi_ok && has_error_cb) s = napi_create_reference(env, on_error, 1, &p->on_error);
  if (s != napi_ok) return s;
  if (!p->reading) {
    napi_value resource, name;
    napi_create_object(env, &resource);
    napi_create_string_utf8(env, "weavets:native-io", NAPI_AUTO_LENGTH, &name);
    s = napi_async_init(env, resource, name, &p->actx);
    if (s != napi_ok) return s;
    uint32_t count;
    napi_reference_ref(env, p->self, &count); /* no GC while the poll can call back */
    p->reading = 1;
  }
  if (p->iot) {
    weavets_iothread_poller_started(p);
    return napi_ok;
  }
  int r = uv_poll_start(&p->handle, UV_READABLE, poller_on_poll);
  if (r < 0) {
    weavets_poller_stop(env, p);
    weavets_throw_errno(env, "uv_poll_start", -r);
    return napi_pending_exception;
  }
  return napi_ok;
}

void weavets_poller_stop(napi_env env, weavets_poller *p) {
  if (!p->reading) return;
  uv_poll_stop(&p->handle);
  /* Under the thread's lock: once this returns, the thread never drains p again. */
  if (p->iot)
    weavets_iothread_poller_stopped(p);
  else
    p->reading = 0;
  if (p->on_data) napi_delete_reference(env, p->on_data);
  if (p->on_error) napi_delete_reference(env, p->on_error);
  p->on_data = p->on_error = NULL;
  napi_async_destroy(env, p->actx);
  p->actx = NULL;
  uint32_t count;
  napi_reference_unref(env, p->self, &count);
}

void weavets_poller_close(napi_env env, weavets_poller *p, napi_value obj) {
  weavets_poller_stop(env, p);
  void *ignored;
  napi_remove_wrap(env, obj, &ignored); /* the finalizer will not run any more */
  poller_drop_refs(env, p);
  poller_shutdown(p);
}

/* ------------------------------------------------------- argument helpers ---- */

int weavets_get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return 0;
  for (size_t i = argc; i < want; i++)
    napi_get_undefined(env, &argv[i]);
  return 1;
}

int weavets_get_u32(napi_env env, napi_value v, const char *what, uint32_t *out) {
  double d;
  if (napi_get_value_double(env, v, &d) != napi_ok || !(d >= 0 && d <= 4294967295.0) ||
      d != (double)(uint32_t)d) {
    char msg[96];
    snprintf(msg, sizeof msg, "%s must be an unsigned 32-bit integer", what);
    napi_throw_range_error(env, NULL, msg);
    return 0;
  }
  *out = (uint32_t)d;
  return 1;
}

int weavets_get_bytes(napi_env env, napi_value v, uint8_t **data, size_t *len) {
  bool ok = false;
  if (napi_is_buffer(env, v, &ok) != napi_ok || !ok ||
      napi_get_buffer_info(env, v, (void **)data, len) != napi_ok) {
    napi_throw_type_error(env, NULL, "expected a Buffer");
    return 0;
  }
  return 1;
}

int weavets_get_typed(napi_env env, napi_value v, napi_typedarray_type type, const char *what,
                      void **data, size_t *len) {
  bool ok = false;
  napi_typedarray_type t;
  napi_value ab;
  size_t off;
  if (napi_is_typedarray(env, v, &ok) != napi_ok || !ok ||
      napi_get_typedarray_info(env, v, &t, len, data, &ab, &off) != napi_ok || t != type) {
    char msg[96];
    snprintf(msg, sizeof msg, "%s has the wrong typed array type", what);
    napi_throw_type_error(env, NULL, msg);
    return 0;
  }
  return 1;
}

napi_value weavets_new_typed(napi_env env, napi_typedarray_type type, size_t elem, size_t count,
                             void **data) {
  napi_value ab, ta;
  if (napi_create_arraybuffer(env, elem * count, data, &ab) != napi_ok) return NULL;
  if (napi_create_typedarray(env, type, count, ab, 0, &ta) != napi_ok) return NULL;
  return ta;
}

int weavets_check_batch(napi_env env, size_t buf_len, const uint32_t *offs, const uint32_t *lens,
                        uint32_t count) {
  for (uint32_t i = 0; i < count; i++) {
    if ((uint64_t)offs[i] + lens[i] > buf_len) {
      napi_throw_range_error(env, NULL, "offsets[i] + lengths[i] beyond the buffer");
      return 0;
    }
  }
  return 1;
}

napi_value weavets_poller_js_start(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!weavets_get_args(env, info, 3, argv)) return NULL;
  weavets_poller *p = weavets_poller_get(env, argv[0]);
  if (p) weavets_poller_start(env, p, argv[1], argv[2]);
  return NULL;
}

napi_value weavets_poller_js_stop(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!weavets_get_args(env, info, 1, argv)) return NULL;
  weavets_poller *p = weavets_poller_get(env, argv[0]);
  if (p) weavets_poller_stop(env, p);
  return NULL;
}

napi_value weavets_poller_js_close(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!weavets_get_args(env, info, 1, argv)) return NULL;
  /* close() twice is a no-op. */
  weavets_poller *p = poller_peek(env, argv[0]);
  if (p) weavets_poller_close(env, p, argv[0]);
  return NULL;
}
