#define _GNU_SOURCE /* strerrorname_np */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "addon.h"

void weavets_throw_errno(napi_env env, const char *what, int err) {
  char msg[256];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  napi_value code, message, error, errnum;
  const char *name = strerrorname_np(err);
  napi_create_string_utf8(env, name ? name : "EUNKNOWN", NAPI_AUTO_LENGTH, &code);
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &message);
  napi_create_error(env, code, message, &error);
  napi_create_int32(env, err, &errnum);
  napi_set_named_property(env, error, "errno", errnum);
  napi_throw(env, error);
}

napi_status weavets_export_fn(napi_env env, napi_value exports, const char *name,
                              napi_callback cb) {
  napi_value fn;
  napi_status s = napi_create_function(env, name, NAPI_AUTO_LENGTH, cb, NULL, &fn);
  if (s != napi_ok) return s;
  return napi_set_named_property(env, exports, name, fn);
}

static napi_value init(napi_env env, napi_value exports) {
  if (weavets_init_tap(env, exports) != napi_ok) return NULL;
  if (weavets_init_udp(env, exports) != napi_ok) return NULL;
  if (weavets_init_netns(env, exports) != napi_ok) return NULL;
  if (weavets_init_sched(env, exports) != napi_ok) return NULL;
  if (weavets_init_copy(env, exports) != napi_ok) return NULL;
  if (weavets_init_express(env, exports) != napi_ok) return NULL;
  if (weavets_init_peer_crypto(env, exports) != napi_ok) return NULL;
  if (weavets_init_memory(env, exports) != napi_ok) return NULL;
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
