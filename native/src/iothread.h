/*
 * The data path thread: one native thread that waits on the express path's pollers (the
 * sleeve's UDP socket and its TAPs) in an epoll of its own and runs each drained batch
 * through the express path there, off the event loop. See iothread.c.
 */
#ifndef WEAVETS_IOTHREAD_H
#define WEAVETS_IOTHREAD_H

#include <stdint.h>

#include "poller.h"

typedef struct weavets_iothread weavets_iothread;

/* Start the thread on env's loop; sched_slice_ns > 0 asks for that scheduler slice for
 * it (sched.c). NULL with *err set when it cannot (the caller stays on the loop). */
weavets_iothread *weavets_iothread_start(napi_env env, uint64_t sched_slice_ns, int *err);

/* Stop and join the thread; detach every poller first. The memory goes on the loop's next
 * turn (a JS callback running under iothread's own callback may be what stopped it).
 * Idempotent; never fails. */
void weavets_iothread_stop(weavets_iothread *t);

/* The data path lock: held by the thread while it runs a batch, and by the JS thread
 * whenever it changes what a batch reads (express.c's tables, a poller's hooks). NULL-safe. */
void weavets_iothread_lock(weavets_iothread *t);
void weavets_iothread_unlock(weavets_iothread *t);

/* Hand p's readiness to the thread (0), or leave it on the loop (an errno: the thread has
 * no room, or epoll refused). Call with the lock held. */
int weavets_iothread_attach_locked(weavets_iothread *t, weavets_poller *p);

/* Give p back to the loop: a reading poller resumes its uv_poll when `resume` is set (not
 * while it closes). Call with the lock held; a no-op for a poller not attached. */
void weavets_iothread_detach_locked(weavets_poller *p, int resume);

/* poller.c's side: p started or stopped reading while attached (JS thread, lock not held). */
void weavets_iothread_poller_started(weavets_poller *p);
void weavets_iothread_poller_stopped(weavets_poller *p);

#endif
