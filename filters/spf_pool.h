/*
 * spf_pool.h - the SPF worker processes, seen from moat's event loop:
 * start them, hand them checks, take their results, and replace the
 * ones that crash, hang or misbehave.
 *
 * A pool runs `workers` processes (spf_worker.h: each one a fresh image
 * of the running binary, started with posix_spawn(), talking over a
 * socketpair, spf_proto.h). A check goes to an idle worker, or waits in
 * a bounded queue. Every check ends with its callback, exactly once, on
 * the loop, never from inside spf_pool_submit(): with the worker's
 * result, or with a temperror result when the worker died, sent a
 * malformed message, or did not answer within the check's deadline
 * (the worker is then killed with SIGKILL, reaped, and restarted).
 *
 * The workers have no resolver of their own: each lookup of a check is
 * a message to the pool, which resolves it with moat's resolver (the
 * one the filters use, its cache and the shared cache included) and
 * sends the records back. spf_pool_set_resolver() says which resolver;
 * whoever replaces the process's resolver (a reload) sets the new one.
 * A retired resolver may still answer a lookup started on it; a
 * resolver must not be freed (moat_resolver_free()) while a pool that
 * used it runs: free the pool first.
 *
 * A process runs one pool at a time for its filters (moatd; `moat spf`
 * and `moat check` run their own): spf_pool_apply() starts, reconfigures
 * or stops it from a configuration, spf_pool_current() returns it.
 *
 * Owns its workers (processes, sockets, events, their pending DNS
 * lookups), queued and running jobs, and the zombie list until every
 * worker is reaped. Borrows the resolver.
 */
#ifndef MOAT_SPF_POOL_H
#define MOAT_SPF_POOL_H

#include <stddef.h>

#include "config.h"
#include "spf_proto.h"

struct event_base;
struct moat_resolver;
struct spf_pool;
struct spf_job;

#define SPF_BUDGET_MS 20000	/* RFC 7208 4.6.4: at least 20 s per check */
#define SPF_MAX_WORKERS 32
#define SPF_MAX_QUEUE 1000	/* checks waiting for a worker */

struct spf_pool_settings {
	int workers;			/* 1..SPF_MAX_WORKERS */
	long budget_ms;			/* time a worker gets for one check */
	long deadline_ms;		/* submit to callback, at most (> budget_ms) */
	struct spf_proto_config conf;	/* sent to every worker */
	const char *exe;		/* NULL: /proc/self/exe */
};

/* The settings a configuration implies: the `spf` section's workers,
 * the `resolver` section's timeout (how long a worker waits for one
 * answer), the global hostname as receiver. Returns 0, or -1 with err. */
int spf_pool_settings_from_config(const struct moat_config *c, struct spf_pool_settings *out,
				  char *err, size_t errlen);

/* Done callback: res holds the check's id and one result per identity
 * asked for. Borrowed for the call. */
typedef void (*spf_pool_cb)(void *arg, const struct spf_proto_result *res);

struct spf_pool *spf_pool_new(struct event_base *base, const struct spf_pool_settings *s,
			      char *err, size_t errlen);
/* New settings (a reload): workers get the new CONFIG before their next
 * check; the pool grows or shrinks. */
void spf_pool_reconfigure(struct spf_pool *p, const struct spf_pool_settings *s);
/* Kills the workers (their pending lookups are cancelled); every check
 * not finished gets its callback now, with temperror. */
void spf_pool_free(struct spf_pool *p);
/* The resolver the workers' lookups go to from now on (borrowed; NULL:
 * every lookup fails, as a DNS error). p may be NULL (no-op). */
void spf_pool_set_resolver(struct spf_pool *p, struct moat_resolver *r);

/* Queues a check (flags, ip, sender, helo prepared with spf_input.h;
 * id and budget are the pool's). NULL only when out of memory. */
struct spf_job *spf_pool_submit(struct spf_pool *p, const struct spf_proto_check *c,
				spf_pool_cb cb, void *arg);
/* The callback will not run (a running check still finishes in its
 * worker, or the worker is killed at the deadline; its lookups fail at
 * once from now on, so it finishes soon). */
void spf_pool_cancel(struct spf_job *j);

/* The receiver name the workers use (%{r}, Received-SPF receiver=). */
const char *spf_pool_receiver(const struct spf_pool *p);

struct spf_pool_stats {
	unsigned long long checks, crashes, kills, bad_messages, spawn_failures, queue_full;
	int running;		/* workers alive */
};
void spf_pool_stats(const struct spf_pool *p, struct spf_pool_stats *out);

/* The process's pool for its filters. spf_pool_apply() (start, SIGHUP)
 * starts it when "spf" is among c's filters (or always, with force),
 * reconfigures it, or stops it when spf is no longer enabled, and gives
 * it resolver (the process's current one; given even when the rest
 * fails); returns 0, or -1 with err. spf_pool_shutdown() stops it. */
int spf_pool_apply(struct event_base *base, const struct moat_config *c,
		   struct moat_resolver *resolver, int force, char *err, size_t errlen);
struct spf_pool *spf_pool_current(void);
void spf_pool_shutdown(void);

#endif
