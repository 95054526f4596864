/* The calling thread's EEVDF slice (sched.c); shared by setSchedSlice and the data path
 * thread (iothread.c). */
#ifndef WEAVETS_SCHED_H
#define WEAVETS_SCHED_H

#include <stdint.h>

/* Ask for a `ns` scheduler slice for the calling thread, its nice value kept; 0 or the
 * errno (EINVAL/ENOSYS/E2BIG before Linux 6.12, EPERM under another policy). */
int weavets_set_sched_slice(uint64_t ns);

#endif
