/*
 * worker.h - run blocking work (synchronous libraries, CPU-heavy crypto)
 * in a pool of threads, and get the result back on the event loop.
 *
 * The event loop never blocks: a caller submits work(arg), which runs on
 * a worker thread, then done(arg) runs on the loop thread. The pool owns
 * its threads and queues; the caller owns arg throughout.
 */
#ifndef MOAT_WORKER_H
#define MOAT_WORKER_H

struct event_base;
struct moat_worker_pool;

typedef void (*moat_work_fn)(void *arg);

/* Needs evthread_use_pthreads() to have been called. NULL on failure. */
struct moat_worker_pool *moat_worker_pool_new(struct event_base *base, int nthreads);

/* Queues work; done runs later on the loop thread (never from inside
 * this call). Returns 0, or -1 if out of memory. */
int moat_worker_submit(struct moat_worker_pool *pool, moat_work_fn work,
		       moat_work_fn done, void *arg);

/* Stops the threads after the work already queued; done callbacks that
 * did not run yet are run now, on the calling (loop) thread. */
void moat_worker_pool_free(struct moat_worker_pool *pool);

#endif
