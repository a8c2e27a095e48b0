/*
 * spf_worker.h - the SPF worker process: libspf2 behind a socket.
 *
 * moatd and moat start workers (spf_pool.c) by executing their own
 * binary afresh (/proc/self/exe SPF_WORKER_ARG) with one end of a
 * socketpair on descriptor SPF_WORKER_FD; their main() hands over to
 * spf_worker_main() when argv[1] is SPF_WORKER_ARG, before anything
 * else (no configuration is read: it comes over the socket).
 *
 * Why a process, and a fresh image: libspf2 resolves synchronously,
 * calls abort() on internal errors and has had memory-safety bugs in
 * the parsing of attacker-supplied records; a worker's crash or hang
 * costs one check (temperror), never the daemon or its loop. moatd has
 * threads (libevent workers, libunbound): a fork()ed child of a
 * threaded process may only call async-signal-safe functions, so the
 * worker is exec'd, not just forked.
 *
 * Why the worker has its own libunbound context (configured from
 * moat's `resolver` section, sent over the socket) instead of bridging
 * libspf2's lookups to the main process's resolver: libspf2 asks one
 * question at a time and waits for each answer inside its evaluation;
 * a bridge would add a round trip per lookup, a second protocol to
 * validate, and a way for a worker to make the main process do DNS
 * work. A private context keeps the worker self-contained, is just as
 * bounded (the worker enforces the per-query timeout and the check's
 * time budget itself), and the two caches only duplicate SPF answers.
 */
#ifndef MOAT_SPF_WORKER_H
#define MOAT_SPF_WORKER_H

#define SPF_WORKER_FD 3			/* the socket, in the worker */
#define SPF_WORKER_ARG "--spf-worker"	/* argv[1] of a worker */

/* Runs the worker until its socket closes; returns the exit status. */
int spf_worker_main(void);

#endif
