/*
 * setns(fd, CLONE_NEWNET) for the calling thread.
 *
 * Why: an rtnetlink socket is bound to the network namespace of the thread that
 * creates it. src/netlink switches the main JS thread into a container's namespace,
 * creates its socket synchronously, and switches straight back. Only the calling
 * thread moves; libuv's thread pool and other threads stay where they are.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>

#include "addon.h"

static napi_value js_setns(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;

  int32_t fd = -1;
  napi_valuetype t = napi_undefined;
  if (argc >= 1) napi_typeof(env, argv[0], &t);
  if (t != napi_number || napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE",
                          "setns(fd): fd must be a non-negative integer");
    return NULL;
  }
  if (setns(fd, CLONE_NEWNET) != 0) {
    weavets_throw_errno(env, "setns", errno);
    return NULL;
  }
  return NULL;
}

napi_status weavets_init_netns(napi_env env, napi_value exports) {
  return weavets_export_fn(env, exports, "setns", js_setns);
}
