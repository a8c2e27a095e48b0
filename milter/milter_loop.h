/*
 * milter_loop.h - inside the milter process: how libmilter's connection
 * threads reach the one thread that may run the filter pipeline.
 *
 * The loop thread (milter_main.c) owns the event base, the resolver, the
 * worker pool and every pipeline run; nothing else touches them. A
 * connection thread puts a job on the queue (milter_loop_post); the loop
 * thread runs job->run(job) in order of posting. Jobs are owned by the
 * poster and must stay valid until run() has returned.
 */
#ifndef MOAT_MILTER_LOOP_H
#define MOAT_MILTER_LOOP_H

#include <libmilter/mfapi.h>

#include "config.h"

struct event_base;
struct moat_resolver;
struct moat_worker_pool;

struct milter_job {
	void (*run)(struct milter_job *job);	/* on the loop thread */
	struct milter_job *next;
};

/* Any thread. Returns 0, or -1 when the loop has stopped (the job will
 * never run). */
int milter_loop_post(struct milter_job *job);

/* The loop thread's services: only the loop thread may use them. */
struct event_base *milter_loop_base(void);
struct moat_worker_pool *milter_loop_workers(void);
struct moat_resolver *milter_loop_resolver(void);

/* The current configuration, with a new reference (any thread). */
struct moat_config *milter_config_get(void);

/* ---- milter_session.c ---- */

/* libmilter's description of moat's callbacks. */
extern struct smfiDesc milter_desc;
/* MTA connections open now, and those with a message in progress. */
long milter_sessions(void);
long milter_sessions_in_tx(void);

#endif
