/*
 * setSchedSlice(ns): ask the kernel for a shorter EEVDF slice for the calling thread
 * (sched_setattr, SCHED_OTHER, sched_runtime = ns; Linux 6.12 and later).
 *
 * Why: the sleeve sleeps in epoll until a frame or datagram arrives. On a busy CPU the
 * woken thread only runs once it may preempt the current one, which EEVDF decides by
 * virtual deadline = eligible time + slice. A short slice gives the woken daemon an early
 * deadline, so it preempts a CPU hog at once instead of queueing behind it (measured in
 * bench/latency.ts: the daemons' run-queue wait per wake-up). The CPU share is unchanged
 * (that is the weight, i.e. nice, which is kept); only the turns get shorter.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdint.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "addon.h"
#include "sched.h"

/* The first version of struct sched_attr (SCHED_ATTR_SIZE_VER0, 48 bytes). */
struct weavets_sched_attr {
  uint32_t size;
  uint32_t sched_policy;
  uint64_t sched_flags;
  int32_t sched_nice;
  uint32_t sched_priority;
  uint64_t sched_runtime;
  uint64_t sched_deadline;
  uint64_t sched_period;
};

int weavets_set_sched_slice(uint64_t ns) {
  /* Keep the nice value: sched_setattr sets it from the struct for SCHED_OTHER. */
  errno = 0;
  int nice = getpriority(PRIO_PROCESS, 0);
  if (nice == -1 && errno != 0) nice = 0;
  struct weavets_sched_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.size = sizeof attr;
  attr.sched_policy = SCHED_OTHER;
  attr.sched_nice = nice;
  attr.sched_runtime = ns;
  return syscall(SYS_sched_setattr, 0, &attr, 0) == 0 ? 0 : errno;
}

static napi_value js_set_sched_slice(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  double ns = -1;
  napi_valuetype t = napi_undefined;
  if (argc >= 1) napi_typeof(env, argv[0], &t);
  if (t != napi_number || napi_get_value_double(env, argv[0], &ns) != napi_ok ||
      !(ns >= 0 && ns <= 1e9) || ns != (double)(uint64_t)ns) {
    napi_throw_range_error(env, NULL, "setSchedSlice(ns): ns must be an integer in 0..1000000000");
    return NULL;
  }
  napi_value result;
  int err = weavets_set_sched_slice((uint64_t)ns);
  if (err != 0) {
    /* A kernel without custom slices (or a policy we must not replace) says no politely. */
    if (err == EINVAL || err == ENOSYS || err == E2BIG || err == EPERM) {
      napi_get_boolean(env, false, &result);
      return result;
    }
    weavets_throw_errno(env, "sched_setattr", err);
    return NULL;
  }
  napi_get_boolean(env, true, &result);
  return result;
}

napi_status weavets_init_sched(napi_env env, napi_value exports) {
  return weavets_export_fn(env, exports, "setSchedSlice", js_set_sched_slice);
}
