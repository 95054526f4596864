/*
 * The data path thread (see iothread.h).
 *
 * Why: on the event loop thread the express path shares its turns with everything the
 * daemon's JavaScript does (timers, gossip, HTTP, collections), and the sleeve can never
 * use more than that one thread. Here one native thread waits on the express path's
 * pollers in an epoll of its own and runs each batch in C as it arrives; the loop thread
 * keeps the JS path, the control plane, and whatever the express path leaves.
 *
 * Hand-off, so order is kept: every fd is armed EPOLLONESHOT. The thread drains a batch
 * into the poller's ring and runs the express path on it under the data path lock. If C
 * took all of it, the fd is re-armed at once. If it left [first, n) (a broadcast, a
 * heartbeat, an unknown MAC, an error), the fd stays unarmed and the batch is handed to
 * the loop (uv_async); the loop gives it to the poller's JS callback exactly as the poll
 * callback would (weavets_poller_deliver) and only then re-arms the fd. So the thread
 * never touches a ring while JS reads it, and nothing after `first` leaves before JS has
 * sent or written what it took.
 *
 * The lock covers what a batch reads and JS changes: express.c's tables and counters and
 * the pollers' hooks and reading state. JS takes it for each change (a learned MAC, a
 * peer's path, a drain of counters); the thread holds it for one batch. Sealing state
 * has its own lock (peer_crypto.c), since the JS path seals on the loop thread meanwhile.
 *
 * Pollers are named to the epoll by slot and generation, not by pointer: an event already
 * returned for a poller that the loop thread detached (and may free) since is recognised
 * as stale under the lock and ignored.
 */
#define _GNU_SOURCE /* pthread_setname_np */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <uv.h>

#include "iothread.h"
#include "sched.h"

/* The express path's UDP socket and up to 64 TAPs (express.c MAX_NETWORKS). */
#define IOT_SLOTS 65
#define IOT_EVENTS 16
#define WAKE_TAG UINT64_MAX
/* How long a batch ending inside a fragment series waits for the rest (run_batch). The
 * rest is usually one GSO send, microseconds, behind; a series that lost a datagram goes
 * to JS after this, which drops it as the express path would not. */
#define HOLD_NS 1000000

struct weavets_iothread {
  pthread_mutex_t mu;
  pthread_t thread;
  int epfd;
  int wakefd;   /* eventfd: stop */
  int stopping; /* set once: the thread is stopped and joined, or being so */
  uint64_t sched_slice_ns;
  uv_async_t async; /* the thread -> the loop: a hand-off is pending */
  weavets_poller *slots[IOT_SLOTS];
  uint32_t gen[IOT_SLOTS];
};

void weavets_iothread_lock(weavets_iothread *t) {
  if (t) pthread_mutex_lock(&t->mu);
}

void weavets_iothread_unlock(weavets_iothread *t) {
  if (t) pthread_mutex_unlock(&t->mu);
}

static uint64_t tag_of(weavets_iothread *t, uint32_t slot) {
  return ((uint64_t)t->gen[slot] << 32) | slot;
}

/* Lock held. Wait for p's next readiness (again). */
static void arm(weavets_iothread *t, weavets_poller *p) {
  struct epoll_event ev = {.events = EPOLLIN | EPOLLONESHOT, .data.u64 = tag_of(t, p->iot_slot)};
  if (epoll_ctl(t->epfd, EPOLL_CTL_MOD, p->fd, &ev) == 0) p->iot_armed = 1;
}

/* Lock held. No readiness of p is reported until arm. */
static void disarm(weavets_iothread *t, weavets_poller *p) {
  struct epoll_event ev = {.events = 0, .data.u64 = tag_of(t, p->iot_slot)};
  epoll_ctl(t->epfd, EPOLL_CTL_MOD, p->fd, &ev);
  p->iot_armed = 0;
}

/* The loop keeps running while a poller in the thread reads, as it would for its uv_poll. */
static void update_ref(weavets_iothread *t) {
  int reading = 0;
  for (uint32_t i = 0; i < IOT_SLOTS && !reading; i++)
    reading = t->slots[i] && t->slots[i]->reading;
  if (reading)
    uv_ref((uv_handle_t *)&t->async);
  else
    uv_unref((uv_handle_t *)&t->async);
}

/*
 * One batch of p, on the thread, lock held. Returns whether the loop must take over.
 *
 * A batch that ends inside a fragment series the express path would take is held: it
 * stays in the ring, the fd is re-armed, and the next readiness drains behind it and
 * runs the express path again from where it stopped. On the loop the express path can
 * only poll for the rest for a moment (express.c SERIES_WAIT_NS) before JS must have the
 * batch; here it waits in epoll, up to HOLD_NS, and only then hands it over as it is.
 */
static int run_batch(weavets_poller *p, uint64_t now) {
  int err = 0;
  /* While held, nothing else drains p: ring_filled is still where the hold left it. */
  uint32_t from = p->held ? p->held_first : 0, had = p->held ? p->ring_filled : 0, first;
  p->express_hold = 0;
  uint32_t n = weavets_poller_take_batch(p, from, had, &first, &err);
  int waited_out = p->held && now >= p->held_until && first == from;
  if (p->express_hold && err == 0 && !waited_out) {
    if (!p->held || first > from) p->held_until = now + HOLD_NS; /* progress: wait afresh */
    p->held = 1;
    p->held_first = first;
    return 0;
  }
  if (p->held && n == had && err == 0 && !waited_out) return 0; /* nothing new yet */
  p->held = 0;
  if (first == n && err == 0) return 0;
  p->handoff_pending = 1;
  p->handoff_first = first;
  p->handoff_err = err;
  return 1;
}

static void *thread_main(void *arg) {
  weavets_iothread *t = arg;
  if (t->sched_slice_ns) weavets_set_sched_slice(t->sched_slice_ns);
  struct epoll_event ev[IOT_EVENTS];
  uint64_t wake_by = 0; /* the earliest held batch's deadline; 0: none */
  for (;;) {
    int timeout_ms = -1;
    if (wake_by) {
      uint64_t now = uv_hrtime();
      timeout_ms = wake_by > now ? (int)((wake_by - now + 999999) / 1000000) : 0;
    }
    int k = epoll_wait(t->epfd, ev, IOT_EVENTS, timeout_ms);
    if (k < 0) {
      if (errno != EINTR) return NULL; /* EBADF/EINVAL: nothing left to wait on */
      k = 0;
    }
    int handoff = 0;
    uint64_t now = uv_hrtime();
    pthread_mutex_lock(&t->mu);
    for (int i = 0; i < k; i++) {
      if (ev[i].data.u64 == WAKE_TAG) continue;
      uint32_t slot = (uint32_t)ev[i].data.u64;
      weavets_poller *p = slot < IOT_SLOTS ? t->slots[slot] : NULL;
      if (!p || ev[i].data.u64 != tag_of(t, slot) || !p->iot_armed) continue; /* stale */
      p->iot_armed = 0; /* one-shot: it fired */
      if (!p->reading) continue;
      if (run_batch(p, now))
        handoff = 1;
      else
        arm(t, p);
    }
    /* Held batches whose wait is over go to JS as they are. */
    wake_by = 0;
    for (uint32_t s = 0; s < IOT_SLOTS; s++) {
      weavets_poller *p = t->slots[s];
      if (!p || !p->held || !p->reading) continue;
      if (now < p->held_until) {
        if (!wake_by || p->held_until < wake_by) wake_by = p->held_until;
        continue;
      }
      if (p->iot_armed) disarm(t, p);
      if (run_batch(p, now)) {
        handoff = 1;
        continue;
      }
      arm(t, p);
      /* Still held: what arrived meanwhile took it further, and its wait starts afresh. */
      if (p->held && (!wake_by || p->held_until < wake_by)) wake_by = p->held_until;
    }
    int stopping = t->stopping;
    pthread_mutex_unlock(&t->mu);
    if (handoff) uv_async_send(&t->async);
    if (stopping) return NULL;
  }
}

/* On the loop: give each pending batch to its JS callback, then re-arm. */
static void on_async(uv_async_t *a) {
  weavets_iothread *t = a->data;
  for (uint32_t i = 0; i < IOT_SLOTS; i++) {
    /* Slots change only on this thread, so reading them here needs no lock; a callback
     * below may detach any poller or stop the whole thread. */
    if (t->stopping) return;
    weavets_poller *p = t->slots[i];
    if (!p) continue;
    pthread_mutex_lock(&t->mu);
    /* Unarmed until delivered, p is not drained: ring_filled is the handed-off batch's end. */
    int pending = p->handoff_pending;
    uint32_t n = p->ring_filled, first = p->handoff_first;
    int err = p->handoff_err;
    p->handoff_pending = 0;
    pthread_mutex_unlock(&t->mu);
    if (!pending) continue;
    weavets_poller_deliver(p, n, first, err);
    if (t->stopping || t->slots[i] != p) continue;
    pthread_mutex_lock(&t->mu);
    if (p->reading && !p->iot_armed && !p->handoff_pending) arm(t, p);
    pthread_mutex_unlock(&t->mu);
  }
}

static void on_async_closed(uv_handle_t *h) {
  weavets_iothread *t = h->data;
  pthread_mutex_destroy(&t->mu);
  free(t);
}

weavets_iothread *weavets_iothread_start(napi_env env, uint64_t sched_slice_ns, int *err) {
  uv_loop_t *loop;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) {
    *err = EINVAL;
    return NULL;
  }
  weavets_iothread *t = calloc(1, sizeof *t);
  if (!t) {
    *err = ENOMEM;
    return NULL;
  }
  t->sched_slice_ns = sched_slice_ns;
  t->epfd = epoll_create1(EPOLL_CLOEXEC);
  t->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  struct epoll_event wake = {.events = EPOLLIN, .data.u64 = WAKE_TAG};
  int r;
  if (t->epfd < 0 || t->wakefd < 0 || epoll_ctl(t->epfd, EPOLL_CTL_ADD, t->wakefd, &wake) < 0) {
    r = errno;
    goto fail;
  }
  if ((r = pthread_mutex_init(&t->mu, NULL)) != 0) goto fail;
  if ((r = -uv_async_init(loop, &t->async, on_async)) != 0) {
    pthread_mutex_destroy(&t->mu);
    goto fail;
  }
  t->async.data = t;
  uv_unref((uv_handle_t *)&t->async);
  if ((r = pthread_create(&t->thread, NULL, thread_main, t)) == 0) {
    /* Named here, not in the thread, so it has its name once this returns. */
    pthread_setname_np(t->thread, "weavets-dp");
    return t;
  }
  close(t->epfd);
  close(t->wakefd);
  /* The open handle's memory is t: it goes in the handle's close callback. */
  uv_close((uv_handle_t *)&t->async, on_async_closed);
  *err = r;
  return NULL;
fail:
  if (t->epfd >= 0) close(t->epfd);
  if (t->wakefd >= 0) close(t->wakefd);
  free(t);
  *err = r ? r : EINVAL;
  return NULL;
}

int weavets_iothread_attach_locked(weavets_iothread *t, weavets_poller *p) {
  uint32_t slot = 0;
  while (slot < IOT_SLOTS && t->slots[slot])
    slot++;
  if (slot == IOT_SLOTS) return ENOSPC;
  t->gen[slot]++;
  struct epoll_event ev = {.events = 0, .data.u64 = tag_of(t, slot)};
  if (epoll_ctl(t->epfd, EPOLL_CTL_ADD, p->fd, &ev) < 0) return errno;
  t->slots[slot] = p;
  p->iot = t;
  p->iot_slot = slot;
  p->iot_armed = 0;
  p->handoff_pending = 0;
  p->held = 0;
  if (p->reading) {
    uv_poll_stop(&p->handle);
    arm(t, p);
  }
  update_ref(t);
  return 0;
}

void weavets_iothread_detach_locked(weavets_poller *p, int resume) {
  weavets_iothread *t = p->iot;
  if (!t) return;
  epoll_ctl(t->epfd, EPOLL_CTL_DEL, p->fd, NULL);
  t->slots[p->iot_slot] = NULL;
  t->gen[p->iot_slot]++;
  p->iot = NULL;
  p->iot_armed = 0;
  /* A batch handed off but not yet delivered, or held, goes with it: the poller closes,
   * or its network or the whole express path is going away, and those frames are lost
   * as a closing socket's queue is. */
  p->handoff_pending = 0;
  p->held = 0;
  if (resume && p->reading) weavets_poller_resume_loop(p);
  update_ref(t);
}

void weavets_iothread_poller_started(weavets_poller *p) {
  weavets_iothread *t = p->iot;
  pthread_mutex_lock(&t->mu);
  if (!p->iot_armed && !p->handoff_pending) arm(t, p);
  update_ref(t);
  pthread_mutex_unlock(&t->mu);
}

void weavets_iothread_poller_stopped(weavets_poller *p) {
  weavets_iothread *t = p->iot;
  pthread_mutex_lock(&t->mu);
  p->reading = 0;
  p->handoff_pending = 0;
  p->held = 0;
  disarm(t, p);
  update_ref(t);
  pthread_mutex_unlock(&t->mu);
}

void weavets_iothread_stop(weavets_iothread *t) {
  if (!t || t->stopping) return;
  pthread_mutex_lock(&t->mu);
  for (uint32_t i = 0; i < IOT_SLOTS; i++)
    if (t->slots[i]) weavets_iothread_detach_locked(t->slots[i], 0);
  t->stopping = 1;
  pthread_mutex_unlock(&t->mu);
  uint64_t one = 1;
  ssize_t w;
  do
    w = write(t->wakefd, &one, sizeof one);
  while (w < 0 && errno == EINTR);
  pthread_join(t->thread, NULL);
  close(t->epfd);
  close(t->wakefd);
  uv_close((uv_handle_t *)&t->async, on_async_closed);
}
