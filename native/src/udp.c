#include "addon.h"

napi_status weavets_init_udp(napi_env env, napi_value exports) { return napi_ok; }
