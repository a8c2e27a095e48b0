/*
 * spf_pool.c - the SPF worker processes on the main event loop (what a
 * pool promises: spf_pool.h; the worker itself: spf_worker.c).
 *
 * Each worker slot holds one process and its socket, idle or running
 * one job. Jobs wait in a FIFO queue; each has a timer for its whole
 * deadline (queue and run): when it fires on a queued job, the job
 * ends in temperror; on a running one, the worker is killed too. A
 * worker that exits, is killed, or sends anything but the RESULT of its
 * job (well-formed and with the job's id) or, while the job runs,
 * well-formed DNS_QUERY messages, is closed and its job ends in
 * temperror; the slot is refilled at once, or after a second if its
 * previous process lived less than that (a crash loop must not spin).
 * Dead processes are reaped with waitpid(WNOHANG), retried on a timer
 * until they are gone.
 *
 * DNS for the workers: a DNS_QUERY starts moat_resolver_query() on the
 * pool's resolver (the process's current one, spf_pool_set_resolver())
 * with the resolver's own timeout, and its answer goes back as a
 * DNS_ANSWER with the query's id: status, rcode, TTL, the secure flag
 * and the raw records (RDATA), nothing parsed here. One query per
 * worker at a time: a new DNS_QUERY cancels the one still pending (the
 * worker gave up on it), and so does the end of the job in any way
 * (result, deadline, worker death, pool stopped). A cancelled job's
 * worker gets ERROR at once, for its pending query and every further
 * one, so that it finishes quickly; without a resolver every answer is
 * ERROR. Only one DNS_ANSWER is ever unread in a worker's socket (the
 * one to the query it gave up on last), so a frame of at most 64 KB
 * goes out with one send() on the non-blocking socket.
 *
 * Workers are started with posix_spawn() of /proc/self/exe (a fresh
 * image: the daemon is multi-threaded), the socket dup2()ed to
 * SPF_WORKER_FD, an empty signal mask and default dispositions.
 *
 * Owns: the pool, its workers and jobs, each worker's pending DNS query,
 * the buffer DNS answers are encoded in, the zombie list, and `current`
 * (the process's pool for its filters), all on the loop thread. The
 * resolver is borrowed.
 */
#include "spf_pool.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "resolver.h"
#include "spf.h"
#include "spf_worker.h"

extern char **environ;

#define RESPAWN_MS 1000		/* least time between two starts of a slot */
#define REAP_MS 200
#define MIN_BUDGET_MS 1000

struct spf_job {
	struct spf_pool *p;
	struct spf_job *next, *prev;	/* the queue */
	struct worker *w;		/* running on */
	struct spf_proto_check check;
	spf_pool_cb cb;			/* NULL: cancelled */
	void *arg;
	struct event *timer;
	struct timespec deadline;
	int failing;			/* never queued: fails from the loop */
	struct spf_job *fnext, *fprev;	/* the pool's list of failing jobs */
};

struct worker {
	struct spf_pool *p;
	int slot;
	pid_t pid;			/* 0: no process */
	int fd;
	struct event *ev;
	unsigned config_gen;		/* CONFIG it has */
	struct spf_job *job;
	struct moat_dns_query *dq;	/* its DNS_QUERY being resolved, or NULL */
	uint32_t dq_id;			/* that query's id */
	struct timespec started;
	unsigned char rbuf[SPF_PROTO_HDR + SPF_PROTO_WORKER_MAX];
	size_t rlen;
};

struct spf_pool {
	struct spf_job *failing;	/* jobs failing at once (queue full) */
	struct event_base *base;
	struct spf_pool_settings s;
	unsigned config_gen;
	int nslots;			/* slots wanted */
	struct worker w[SPF_MAX_WORKERS];
	struct spf_job *head, *tail;	/* queue */
	size_t queued;
	uint32_t next_id;
	pid_t zombies[4 * SPF_MAX_WORKERS];
	size_t nzombies;
	struct event *reap_timer, *respawn_timer, *dispatch_ev;
	struct moat_resolver *resolver;	/* borrowed; NULL: answers are ERROR */
	unsigned char *tx;		/* SPF_PROTO_HDR + SPF_PROTO_MAX: DNS answers */
	struct spf_pool_stats stats;
};

static long ms_since(const struct timespec *t)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (long)(now.tv_sec - t->tv_sec) * 1000 + (now.tv_nsec - t->tv_nsec) / 1000000;
}

static void ms_timeval(long ms, struct timeval *tv)
{
	tv->tv_sec = ms / 1000;
	tv->tv_usec = (ms % 1000) * 1000;
}

/* ---- settings ---- */

int spf_pool_settings_from_config(const struct moat_config *c, struct spf_pool_settings *out,
				  char *err, size_t errlen)
{
	const struct spf_conf *sc = moat_config_section(c, "spf");
	const struct moat_resolver_conf *rc = moat_config_section(c, "resolver");

	memset(out, 0, sizeof(*out));
	if (!sc || !rc) {
		snprintf(err, errlen, "no spf or resolver configuration");
		return -1;
	}
	out->workers = (int)sc->workers;
	out->budget_ms = SPF_BUDGET_MS;
	out->deadline_ms = SPF_BUDGET_MS + 2000;
	if (out->deadline_ms > sc->common.timeout * 1000)	/* moat spf: no stage timeout */
		out->deadline_ms = sc->common.timeout * 1000;
	/* the worker waits for one answer as long as the resolver takes */
	out->conf.timeout_ms = (uint32_t)(rc->timeout > 0 ? rc->timeout * 1000 : 5000);
	snprintf(out->conf.receiver, sizeof(out->conf.receiver), "%s",
		 c->hostname ? c->hostname : "");
	return 0;
}

/* ---- jobs ---- */

static void queue_unlink(struct spf_job *j)
{
	struct spf_pool *p = j->p;
	if (j->prev)
		j->prev->next = j->next;
	else if (p->head == j)
		p->head = j->next;
	else
		return;		/* not queued */
	if (j->next)
		j->next->prev = j->prev;
	else
		p->tail = j->prev;
	j->next = j->prev = NULL;
	p->queued--;
}

static void failure_result(const struct spf_job *j, const char *why, struct spf_proto_result *r)
{
	memset(r, 0, sizeof(*r));
	r->id = j->check.id;
	struct spf_proto_identity *ids[2] = {&r->mailfrom, &r->helo};
	const int flags[2] = {SPF_CHECK_MAILFROM, SPF_CHECK_HELO};
	for (int i = 0; i < 2; i++) {
		if (!(j->check.flags & flags[i]))
			continue;
		ids[i]->done = 1;
		ids[i]->result = SPF_RES_TEMPERROR;
		snprintf(ids[i]->problem, sizeof(ids[i]->problem), "%s", why);
	}
}

/* The job is over: its callback (unless cancelled), then it goes. */
static void failing_unlink(struct spf_job *j)
{
	struct spf_pool *p = j->p;
	if (!j->failing)
		return;
	if (j->fprev)
		j->fprev->fnext = j->fnext;
	else
		p->failing = j->fnext;
	if (j->fnext)
		j->fnext->fprev = j->fprev;
	j->fnext = j->fprev = NULL;
	j->failing = 0;
}

static void worker_dns_cancel(struct worker *w)
{
	if (w->dq)
		moat_dns_cancel(w->dq);
	w->dq = NULL;
}

static void job_finish(struct spf_job *j, const struct spf_proto_result *r)
{
	queue_unlink(j);
	failing_unlink(j);
	if (j->w) {
		worker_dns_cancel(j->w);
		j->w->job = NULL;
	}
	j->w = NULL;
	if (j->timer)
		event_free(j->timer);
	j->timer = NULL;
	if (j->cb)
		j->cb(j->arg, r);
	free(j);
}

static void job_fail(struct spf_job *j, const char *why)
{
	struct spf_proto_result r;
	failure_result(j, why, &r);
	job_finish(j, &r);
}

/* ---- workers ---- */

static void schedule_dispatch(struct spf_pool *p);

static void reap(struct spf_pool *p)
{
	size_t k = 0;
	for (size_t i = 0; i < p->nzombies; i++) {
		pid_t r = waitpid(p->zombies[i], NULL, WNOHANG);
		if (r == 0 || (r < 0 && errno == EINTR))
			p->zombies[k++] = p->zombies[i];
	}
	p->nzombies = k;
	if (k && p->reap_timer) {
		struct timeval tv;
		ms_timeval(REAP_MS, &tv);
		evtimer_add(p->reap_timer, &tv);
	}
}

static void on_reap(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	reap(arg);
}

/* Closes the worker (killing its process) and ends its job with why. */
static void worker_close(struct worker *w, const char *why, int kill_it)
{
	struct spf_pool *p = w->p;
	worker_dns_cancel(w);
	if (w->ev)
		event_free(w->ev);
	w->ev = NULL;
	if (w->fd >= 0)
		close(w->fd);
	w->fd = -1;
	w->rlen = 0;
	if (w->pid > 0) {
		if (kill_it)
			kill(w->pid, SIGKILL);
		if (p->nzombies < sizeof(p->zombies) / sizeof(p->zombies[0]))
			p->zombies[p->nzombies++] = w->pid;
		else
			waitpid(w->pid, NULL, 0);	/* cannot happen: slots are bounded */
		w->pid = 0;
		reap(p);
	}
	p->stats.running--;
	if (w->job)
		job_fail(w->job, why);
}

static int worker_send(struct worker *w, const unsigned char *buf, size_t n)
{
	ssize_t k;
	do
		k = send(w->fd, buf, n, MSG_NOSIGNAL | MSG_DONTWAIT);
	while (k < 0 && errno == EINTR);
	return k == (ssize_t)n ? 0 : -1;	/* one frame in flight: the buffer is empty */
}

static int send_config(struct worker *w)
{
	unsigned char buf[SPF_PROTO_HDR + SPF_PROTO_WORKER_MAX];	/* a few hundred octets */
	int n = spf_proto_encode_config(&w->p->s.conf, buf, sizeof(buf));
	if (n < 0 || worker_send(w, buf, (size_t)n) < 0)
		return -1;
	w->config_gen = w->p->config_gen;
	return 0;
}

static void on_worker(evutil_socket_t fd, short what, void *arg);

static void worker_start(struct worker *w)
{
	struct spf_pool *p = w->p;
	int sv[2];
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t none, defaults;
	char *argv[] = {"moat-spf-worker", SPF_WORKER_ARG, NULL};
	const char *exe = p->s.exe ? p->s.exe : "/proc/self/exe";

	clock_gettime(CLOCK_MONOTONIC, &w->started);
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		goto fail;
	if (sv[1] == SPF_WORKER_FD) {	/* dup2 onto itself would keep CLOEXEC */
		int d = fcntl(sv[1], F_DUPFD_CLOEXEC, SPF_WORKER_FD + 1);
		close(sv[1]);
		if (d < 0) {
			close(sv[0]);
			goto fail;
		}
		sv[1] = d;
	}
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, sv[1], SPF_WORKER_FD);
	posix_spawnattr_init(&attr);
	sigemptyset(&none);
	sigemptyset(&defaults);
	sigaddset(&defaults, SIGPIPE);
	sigaddset(&defaults, SIGCHLD);
	sigaddset(&defaults, SIGTERM);
	sigaddset(&defaults, SIGHUP);
	sigaddset(&defaults, SIGINT);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &defaults);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	int rc = posix_spawn(&w->pid, exe, &fa, &attr, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	close(sv[1]);
	if (rc != 0) {
		w->pid = 0;
		close(sv[0]);
		moat_log(LOG_ERR, "spf: cannot start a worker (%s): %s", exe, strerror(rc));
		goto fail;
	}
	w->fd = sv[0];
	evutil_make_socket_nonblocking(w->fd);
	/* room for a DNS answer besides one unread (header comment) */
	int sndbuf = 4 * (SPF_PROTO_HDR + SPF_PROTO_MAX);
	setsockopt(w->fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
	w->ev = event_new(p->base, w->fd, EV_READ | EV_PERSIST, on_worker, w);
	p->stats.running++;
	if (!w->ev || event_add(w->ev, NULL) < 0 || send_config(w) < 0) {
		worker_close(w, "SPF worker failed to start", 1);
		goto fail;
	}
	return;
fail:
	p->stats.spawn_failures++;
	w->pid = 0;
}

/* Fills the slots that have no process (unless started too recently). */
static void fill_slots(struct spf_pool *p)
{
	long wait = -1;
	for (int i = 0; i < p->nslots; i++) {
		struct worker *w = &p->w[i];
		if (w->pid > 0)
			continue;
		long since = ms_since(&w->started);
		if (w->started.tv_sec && since < RESPAWN_MS) {
			if (wait < 0 || RESPAWN_MS - since < wait)
				wait = RESPAWN_MS - since;
			continue;
		}
		worker_start(w);
		if (w->pid <= 0 && (wait < 0 || wait > RESPAWN_MS))
			wait = RESPAWN_MS;
	}
	if (wait >= 0 && p->respawn_timer && !evtimer_pending(p->respawn_timer, NULL)) {
		struct timeval tv;
		ms_timeval(wait + 1, &tv);
		evtimer_add(p->respawn_timer, &tv);
	}
}

static void on_respawn(evutil_socket_t fd, short what, void *arg)
{
	struct spf_pool *p = arg;
	(void)fd;
	(void)what;
	fill_slots(p);
	schedule_dispatch(p);
}

static void worker_died(struct worker *w, const char *why, int kill_it)
{
	struct spf_pool *p = w->p;
	worker_close(w, why, kill_it);
	if (w->slot < p->nslots)
		fill_slots(p);
	schedule_dispatch(p);
}

/* Sends a DNS_ANSWER to w: 0, or -1 (the socket is gone or full). */
static int send_answer(struct worker *w, const struct spf_proto_dns_answer *a)
{
	struct spf_pool *p = w->p;
	int n = spf_proto_encode_dns_answer(a, p->tx, SPF_PROTO_HDR + SPF_PROTO_MAX);
	if (n < 0) {	/* cannot happen with the resolver's answers; still an answer */
		struct spf_proto_dns_answer e = {.id = a->id, .status = MOAT_DNS_ERROR};
		n = spf_proto_encode_dns_answer(&e, p->tx, SPF_PROTO_HDR + SPF_PROTO_MAX);
	}
	return n < 0 ? -1 : worker_send(w, p->tx, (size_t)n);
}

static int send_dns_error(struct worker *w, uint32_t id)
{
	struct spf_proto_dns_answer e = {.id = id, .status = MOAT_DNS_ERROR};
	return send_answer(w, &e);
}

/* The resolver answered w's DNS_QUERY: to the worker, as it came. */
static void on_dns_answer(void *arg, const struct moat_dns_answer *a)
{
	struct worker *w = arg;
	struct spf_proto_dns_answer out;

	w->dq = NULL;
	memset(&out, 0, sizeof(out));
	out.id = w->dq_id;
	out.status = (uint8_t)a->status;
	out.rcode = (uint16_t)(a->rcode < 0 ? 0 : a->rcode > 4095 ? 4095 : a->rcode);
	out.ttl = (uint32_t)(a->ttl > 0 ? a->ttl : 0);
	out.secure = a->secure ? 1 : 0;
	if (a->status == MOAT_DNS_OK && a->nraw > 0) {
		out.nrr = a->nraw;
		out.rr = a->raw;
		out.rrlen = a->rawlen;
	} else if (a->status == MOAT_DNS_OK) {
		out.status = MOAT_DNS_NODATA;
	}
	if (send_answer(w, &out) < 0) {
		moat_log(LOG_ERR, "spf: worker %ld did not take a DNS answer", (long)w->pid);
		worker_died(w, "SPF worker did not take a DNS answer", 1);
	}
}

/* A DNS_QUERY from w: resolved, or answered ERROR at once. 0, -1 (the
 * worker misbehaved) or 1 (w was closed). */
static int worker_dns_query(struct worker *w, const unsigned char *payload, size_t n)
{
	struct spf_pool *p = w->p;
	struct spf_proto_dns_query q;
	char err[128];

	if (spf_proto_decode_dns_query(payload, n, &q, err, sizeof(err)) < 0) {
		moat_log(LOG_ERR, "spf: malformed message from worker %ld: %s", (long)w->pid, err);
		return -1;
	}
	if (!w->job) {
		moat_log(LOG_ERR, "spf: worker %ld asked a DNS question outside a check",
			 (long)w->pid);
		return -1;
	}
	worker_dns_cancel(w);	/* the worker gave up on it */
	w->dq_id = q.id;
	if (w->job->cb && p->resolver)
		w->dq = moat_resolver_query(p->resolver, q.name, q.type, 0, on_dns_answer, w);
	if (!w->dq && send_dns_error(w, q.id) < 0) {
		moat_log(LOG_ERR, "spf: worker %ld did not take a DNS answer", (long)w->pid);
		worker_died(w, "SPF worker did not take a DNS answer", 1);
		return 1;
	}
	return 0;
}

/* The RESULT of w's job. 0, or -1: the worker misbehaved. */
static int worker_result(struct worker *w, const unsigned char *payload, size_t n)
{
	struct spf_proto_result r;
	char err[128];
	struct spf_job *j = w->job;

	if (spf_proto_decode_result(payload, n, &r, err, sizeof(err)) < 0) {
		moat_log(LOG_ERR, "spf: malformed message from worker %ld: %s", (long)w->pid, err);
		return -1;
	}
	if (!j || r.id != j->check.id ||
	    r.mailfrom.done != !!(j->check.flags & SPF_CHECK_MAILFROM) ||
	    r.helo.done != !!(j->check.flags & SPF_CHECK_HELO)) {
		moat_log(LOG_ERR, "spf: worker %ld answered a check it was not given", (long)w->pid);
		return -1;
	}
	job_finish(j, &r);
	return 0;
}

/* Handles one complete frame of w's: 0, -1 (the worker misbehaved), or
 * 1 (w was closed meanwhile). */
static int worker_frame(struct worker *w, const unsigned char *payload, size_t n)
{
	int type = spf_proto_type(payload, n);
	switch (type) {
	case SPF_MSG_RESULT:
		return worker_result(w, payload, n);
	case SPF_MSG_DNS_QUERY:
		return worker_dns_query(w, payload, n);
	default:
		moat_log(LOG_ERR, "spf: malformed message from worker %ld: unexpected message "
			 "type %d", (long)w->pid, type);
		return -1;
	}
}

static void on_worker(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	struct spf_pool *p = w->p;
	(void)what;

	ssize_t k = read(fd, w->rbuf + w->rlen, sizeof(w->rbuf) - w->rlen);
	if (k < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (k <= 0) {
		p->stats.crashes += w->job != NULL;
		moat_log(w->job ? LOG_ERR : LOG_WARNING, "spf: worker %ld exited%s", (long)w->pid,
			 w->job ? " during a check" : "");
		worker_died(w, "SPF worker died during the check", 1);
		return;
	}
	w->rlen += (size_t)k;
	for (;;) {
		long n = spf_proto_frame(w->rbuf, w->rlen, SPF_PROTO_WORKER_MAX);
		if (n == 0)
			break;
		int rc = n < 0 ? -1 : worker_frame(w, w->rbuf + SPF_PROTO_HDR, (size_t)n);
		if (rc > 0)
			return;
		if (rc < 0) {
			p->stats.bad_messages++;
			if (n < 0)
				moat_log(LOG_ERR, "spf: bad frame from worker %ld", (long)w->pid);
			worker_died(w, "SPF worker sent a malformed message", 1);
			return;
		}
		size_t used = SPF_PROTO_HDR + (size_t)n;
		memmove(w->rbuf, w->rbuf + used, w->rlen - used);
		w->rlen -= used;
	}
	if (w->slot >= p->nslots && !w->job) {	/* the pool shrank */
		worker_close(w, "", 1);
		return;
	}
	schedule_dispatch(p);
}

/* ---- dispatch ---- */

static void on_job_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct spf_job *j = arg;
	(void)fd;
	(void)what;
	if (j->w) {
		struct worker *w = j->w;
		j->p->stats.kills++;
		moat_log(LOG_ERR, "spf: worker %ld did not finish a check in time; killed",
			 (long)w->pid);
		worker_died(w, "SPF check took too long; worker killed", 1);
	} else {
		job_fail(j, "no SPF worker free in time");
	}
}

static void dispatch(struct spf_pool *p)
{
	unsigned char buf[SPF_PROTO_HDR + SPF_PROTO_WORKER_MAX];	/* a CHECK: < 1 KB */

	for (int i = 0; p->head && i < p->nslots; i++) {
		struct worker *w = &p->w[i];
		if (w->pid <= 0 || w->job)
			continue;
		struct spf_job *j = p->head;
		queue_unlink(j);
		/* what is left of the deadline, less a margin for the answer */
		struct timespec now;
		clock_gettime(CLOCK_MONOTONIC, &now);
		long left = (long)(j->deadline.tv_sec - now.tv_sec) * 1000 +
			    (j->deadline.tv_nsec - now.tv_nsec) / 1000000 - 1000;
		long budget = p->s.budget_ms < left ? p->s.budget_ms : left;
		j->check.budget_ms = (uint32_t)(budget < MIN_BUDGET_MS ? MIN_BUDGET_MS : budget);
		int n = spf_proto_encode_check(&j->check, buf, sizeof(buf));
		if (n < 0) {
			job_fail(j, "SPF check could not be encoded");
			i--;
			continue;
		}
		w->job = j;
		j->w = w;
		if ((w->config_gen != p->config_gen && send_config(w) < 0) ||
		    worker_send(w, buf, (size_t)n) < 0) {
			worker_died(w, "SPF worker did not take the check", 1);
			return;	/* worker_died() schedules the next round */
		}
	}
}

static void on_dispatch(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	dispatch(arg);
}

static void schedule_dispatch(struct spf_pool *p)
{
	if (p->dispatch_ev && !event_pending(p->dispatch_ev, EV_TIMEOUT, NULL)) {
		struct timeval tv = {0, 0};
		evtimer_add(p->dispatch_ev, &tv);
	}
}

/* ---- the pool ---- */

static void set_settings(struct spf_pool *p, const struct spf_pool_settings *s)
{
	p->s = *s;
	if (p->s.workers < 1)
		p->s.workers = 1;
	if (p->s.workers > SPF_MAX_WORKERS)
		p->s.workers = SPF_MAX_WORKERS;
	if (p->s.budget_ms < MIN_BUDGET_MS)
		p->s.budget_ms = MIN_BUDGET_MS;
	if (p->s.deadline_ms < MIN_BUDGET_MS + 1000)
		p->s.deadline_ms = MIN_BUDGET_MS + 1000;
	p->config_gen++;
}

struct spf_pool *spf_pool_new(struct event_base *base, const struct spf_pool_settings *s,
			      char *err, size_t errlen)
{
	struct spf_pool *p = calloc(1, sizeof(*p));
	if (!p) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	p->base = base;
	p->tx = malloc(SPF_PROTO_HDR + SPF_PROTO_MAX);
	if (!p->tx) {
		free(p);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	set_settings(p, s);
	for (int i = 0; i < SPF_MAX_WORKERS; i++) {
		p->w[i].p = p;
		p->w[i].slot = i;
		p->w[i].fd = -1;
	}
	p->reap_timer = evtimer_new(base, on_reap, p);
	p->respawn_timer = evtimer_new(base, on_respawn, p);
	p->dispatch_ev = evtimer_new(base, on_dispatch, p);
	if (!p->reap_timer || !p->respawn_timer || !p->dispatch_ev) {
		spf_pool_free(p);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	p->nslots = p->s.workers;
	fill_slots(p);
	if (p->stats.running == 0) {
		snprintf(err, errlen, "cannot start SPF worker processes");
		spf_pool_free(p);
		return NULL;
	}
	return p;
}

void spf_pool_reconfigure(struct spf_pool *p, const struct spf_pool_settings *s)
{
	set_settings(p, s);
	int old = p->nslots;
	p->nslots = p->s.workers;
	for (int i = p->nslots; i < old; i++)	/* idle ones go now, busy ones after */
		if (p->w[i].pid > 0 && !p->w[i].job)
			worker_close(&p->w[i], "", 1);
	for (int i = 0; i < p->nslots; i++)	/* idle ones get the new CONFIG now */
		if (p->w[i].pid > 0 && !p->w[i].job && send_config(&p->w[i]) < 0)
			worker_died(&p->w[i], "", 1);
	fill_slots(p);
	schedule_dispatch(p);
}

void spf_pool_free(struct spf_pool *p)
{
	if (!p)
		return;
	p->nslots = 0;
	for (int i = 0; i < SPF_MAX_WORKERS; i++)
		if (p->w[i].pid > 0 || p->w[i].fd >= 0)
			worker_close(&p->w[i], "SPF workers stopped", 1);
	while (p->head)
		job_fail(p->head, "SPF workers stopped");
	while (p->failing)	/* never queued, their timer still pending */
		job_fail(p->failing, "SPF workers stopped");
	for (size_t i = 0; i < p->nzombies; i++)
		waitpid(p->zombies[i], NULL, 0);	/* SIGKILLed: gone at once */
	if (p->reap_timer)
		event_free(p->reap_timer);
	if (p->respawn_timer)
		event_free(p->respawn_timer);
	if (p->dispatch_ev)
		event_free(p->dispatch_ev);
	free(p->tx);
	free(p);
}

struct spf_job *spf_pool_submit(struct spf_pool *p, const struct spf_proto_check *c,
				spf_pool_cb cb, void *arg)
{
	struct spf_job *j = calloc(1, sizeof(*j));
	if (!j)
		return NULL;
	j->p = p;
	j->check = *c;
	j->check.id = ++p->next_id;
	j->cb = cb;
	j->arg = arg;
	clock_gettime(CLOCK_MONOTONIC, &j->deadline);
	j->deadline.tv_sec += p->s.deadline_ms / 1000;
	j->deadline.tv_nsec += (p->s.deadline_ms % 1000) * 1000000;
	if (j->deadline.tv_nsec >= 1000000000) {
		j->deadline.tv_sec++;
		j->deadline.tv_nsec -= 1000000000;
	}
	j->timer = evtimer_new(p->base, on_job_timeout, j);
	if (!j->timer) {
		free(j);
		return NULL;
	}
	struct timeval tv;
	p->stats.checks++;
	if (p->queued >= SPF_MAX_QUEUE) {
		p->stats.queue_full++;
		ms_timeval(0, &tv);	/* fails at once, from the loop */
		j->failing = 1;
		j->fnext = p->failing;	/* on a list, so spf_pool_free() finds it */
		if (p->failing)
			p->failing->fprev = j;
		p->failing = j;
	} else {
		ms_timeval(p->s.deadline_ms, &tv);
		j->prev = p->tail;
		if (p->tail)
			p->tail->next = j;
		else
			p->head = j;
		p->tail = j;
		p->queued++;
		schedule_dispatch(p);
	}
	evtimer_add(j->timer, &tv);
	return j;
}

void spf_pool_cancel(struct spf_job *j)
{
	if (!j)
		return;
	j->cb = NULL;
	if (!j->w && !j->failing) {	/* queued: goes now */
		queue_unlink(j);
		if (j->timer)
			event_free(j->timer);
		free(j);
		return;
	}
	/* running (or failing at once): ends at its result or deadline; its
	 * lookups are not worth doing any more, the worker is told so (a
	 * send that fails leaves the worker to its deadline, or to EOF) */
	if (j->w && j->w->dq) {
		worker_dns_cancel(j->w);
		(void)send_dns_error(j->w, j->w->dq_id);
	}
}

void spf_pool_set_resolver(struct spf_pool *p, struct moat_resolver *r)
{
	if (p)
		p->resolver = r;
}

const char *spf_pool_receiver(const struct spf_pool *p)
{
	return p->s.conf.receiver;
}

void spf_pool_stats(const struct spf_pool *p, struct spf_pool_stats *out)
{
	*out = p->stats;
}

/* ---- the process's pool ---- */

static struct spf_pool *current;

struct spf_pool *spf_pool_current(void)
{
	return current;
}

int spf_pool_apply(struct event_base *base, const struct moat_config *c,
		   struct moat_resolver *resolver, int force, char *err, size_t errlen)
{
	struct spf_pool_settings s;
	int enabled = force;

	spf_pool_set_resolver(current, resolver);	/* whatever else fails */
	for (size_t i = 0; i < c->filters.n; i++)
		enabled |= strcmp(c->filters.v[i], "spf") == 0;
	if (!enabled) {
		spf_pool_shutdown();
		return 0;
	}
	if (spf_pool_settings_from_config(c, &s, err, errlen) < 0)
		return -1;
	if (current) {
		spf_pool_reconfigure(current, &s);
		return 0;
	}
	current = spf_pool_new(base, &s, err, errlen);
	spf_pool_set_resolver(current, resolver);
	return current ? 0 : -1;
}

void spf_pool_shutdown(void)
{
	struct spf_pool *p = current;
	current = NULL;
	spf_pool_free(p);
}
