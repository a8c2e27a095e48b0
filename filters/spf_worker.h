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
 * Why its lookups go back to the main process (DNS_QUERY / DNS_ANSWER,
 * spf_proto.h) instead of to a resolver of its own: one cache for every
 * lookup moat makes (an SPF record fetched for one message is a cache
 * hit for the next, whichever worker checks it), the shared cache in
 * Redis reaches SPF records too, and there is one
 * libunbound context (and its thread) per process instead of one more
 * per worker. The cost is a round trip on a socketpair per lookup,
 * small next to the lookup. The worker stays bounded on its own: it
 * waits for each answer at most the resolver timeout and what is left
 * of the check's budget, keeps the RFC 7208 lookup limits itself, and
 * cannot make the main process do more than one lookup at a time (a
 * new query cancels its previous one, the end of the check cancels the
 * last).
 */
#ifndef MOAT_SPF_WORKER_H
#define MOAT_SPF_WORKER_H

#define SPF_WORKER_FD 3			/* the socket, in the worker */
#define SPF_WORKER_ARG "--spf-worker"	/* argv[1] of a worker */

/* Runs the worker until its socket closes; returns the exit status. */
int spf_worker_main(void);

#endif
