#ifndef WEAVETS_ADDON_H
#define WEAVETS_ADDON_H

#include <node_api.h>

/* Each unit registers its functions/classes on the exports object. */
napi_status weavets_init_tap(napi_env env, napi_value exports);
napi_status weavets_init_udp(napi_env env, napi_value exports);
napi_status weavets_init_netns(napi_env env, napi_value exports);
napi_status weavets_init_sched(napi_env env, napi_value exports);
napi_status weavets_init_copy(napi_env env, napi_value exports);
napi_status weavets_init_express(napi_env env, napi_value exports);
napi_status weavets_init_peer_crypto(napi_env env, napi_value exports);
napi_status weavets_init_memory(napi_env env, napi_value exports);

/* Set exports[name] to a JS function that calls cb. */
napi_status weavets_export_fn(napi_env env, napi_value exports, const char *name, napi_callback cb);

/* Throw a JS Error carrying errno as `code` (e.g. "EMSGSIZE") and `errno`. */
void weavets_throw_errno(napi_env env, const char *what, int err);

#endif
