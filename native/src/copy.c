/*
 * copyBytes(target, targetStart, source, sourceStart, sourceEnd): memmove between two
 * Buffers, returning the count copied.
 *
 * Why: the sleeve copies every frame at least once (ring to transmit arena, fragment
 * chunks, reassembly), and Node 20's Buffer.prototype.copy makes a new Uint8Array view
 * of the source for every copy that does not start at its first byte. That is a
 * short-lived heap object per frame, the largest part of what the hot path allocated;
 * this copy allocates nothing on the JS heap. Arguments are checked like
 * Buffer.prototype.copy's, except that a range reaching past either buffer throws
 * instead of being clipped.
 */
#include <stdint.h>
#include <string.h>

#include "addon.h"
#include "poller.h"

static napi_value js_copy_bytes(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  if (!weavets_get_args(env, info, 5, argv)) return NULL;
  uint8_t *dst, *src;
  size_t dst_len, src_len;
  uint32_t dst_at, src_at, src_end;
  if (!weavets_get_bytes(env, argv[0], &dst, &dst_len) ||
      !weavets_get_u32(env, argv[1], "targetStart", &dst_at) ||
      !weavets_get_bytes(env, argv[2], &src, &src_len) ||
      !weavets_get_u32(env, argv[3], "sourceStart", &src_at) ||
      !weavets_get_u32(env, argv[4], "sourceEnd", &src_end))
    return NULL;
  if (src_end < src_at || src_end > src_len || (uint64_t)dst_at + (src_end - src_at) > dst_len) {
    napi_throw_range_error(env, NULL, "copyBytes: range outside a buffer");
    return NULL;
  }
  memmove(dst + dst_at, src + src_at, src_end - src_at);
  napi_value result;
  napi_create_uint32(env, src_end - src_at, &result);
  return result;
}

napi_status weavets_init_copy(napi_env env, napi_value exports) {
  return weavets_export_fn(env, exports, "copyBytes", js_copy_bytes);
}
