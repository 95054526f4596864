/*
 * Giving an idle daemon's spare memory back to the kernel. V8 keeps the heap it grew to
 * in a burst (a mesh forming, peers joining) until a memory-reducing collection, and its
 * own memory reducer, after a few at start, waits for the heap to grow well past the size
 * it last ran at before it runs another; glibc keeps freed
 * malloc pages in its arenas. Moderate memory pressure makes V8 start an incremental,
 * memory-reducing collection: marked in small steps and on its worker thread, then one
 * short pause that compacts, shrinks the young generation and releases emptied pages.
 * malloc_trim returns the free pages of every arena at once. JS decides when
 * (src/daemon/memory-trim.ts).
 *
 * C++ only because MemoryPressureNotification is V8's, not Node-API's; the rest of the
 * addon is C.
 */
#include <malloc.h>
#include <v8.h>

extern "C" {
#include "addon.h"
}

static napi_value js_trim_memory(napi_env env, napi_callback_info info) {
  v8::Isolate *isolate = v8::Isolate::GetCurrent();
  if (isolate != nullptr) isolate->MemoryPressureNotification(v8::MemoryPressureLevel::kModerate);
  malloc_trim(0);
  return nullptr;
}

napi_status weavets_init_memory(napi_env env, napi_value exports) {
  return weavets_export_fn(env, exports, "trimMemory", js_trim_memory);
}
