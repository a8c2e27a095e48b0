/*
 * milter_main.c - the milter process: configuration, the loop thread,
 * the control socket, and libmilter's main loop.
 *
 * Threads: the main thread runs smfi_main() (libmilter's listener; it
 * starts one thread per MTA connection and a thread of its own that
 * sigwait()s SIGHUP, SIGTERM and SIGINT, any of which stops it). One loop
 * thread owns the event base and with it every pipeline service: the
 * resolver, the worker pool, filter activation, the job queue that
 * connection threads post stages to (milter_loop.h), and the control
 * socket from moatd (MILTER_CTL_FD: "reload", "stop"; end of file means
 * moatd is gone and stops the milter as well).
 *
 * Reload re-reads the configuration on the loop thread; a bad one is
 * logged and the running one stays. Connections hold a reference to the
 * configuration they started with. On stop, smfi_main() returns; messages
 * in progress get up to shutdown_timeout seconds, then the loop ends.
 *
 * Owns the event base, the services, the current configuration and the
 * job queue.
 */
#include "milter.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <poll.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "filter.h"
#include "log.h"
#include "metrics_http.h"
#include "milter_loop.h"
#include "privilege.h"
#include "resolver.h"
#include "server.h"
#include "store_conf.h"
#include "spf_pool.h"
#include "worker.h"

#define WORKER_THREADS 2

static struct {
	const char *path;
	char *const *overrides;
	size_t noverrides;
	int foreground;
	/* the loop thread's */
	struct event_base *base;
	struct moat_worker_pool *workers;
	struct moat_resolver *resolver;
	const struct moat_resolver_conf *resolver_conf;
	struct moat_config *resolver_owner;
	struct event *queue_ev, *ctl_ev, *wake_ev;
	/* the milter's own metrics listener (milter.metrics_listen); its
	 * status page sees this server: no listeners, the current config */
	struct server msrv;
	struct metrics_http *metrics;
	int stopping, wakes;
	char ctl_buf[64];
	size_t ctl_len;
	/* shared */
	pthread_mutex_t mu;		/* conf, queue, dead */
	struct moat_config *conf;
	struct milter_job *head, *tail;
	int dead;			/* the loop stopped: no more jobs */
} g = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* ---- the job queue ------------------------------------------------- */

int milter_loop_post(struct milter_job *job)
{
	pthread_mutex_lock(&g.mu);
	if (g.dead) {
		pthread_mutex_unlock(&g.mu);
		return -1;
	}
	job->next = NULL;
	if (g.tail)
		g.tail->next = job;
	else
		g.head = job;
	g.tail = job;
	pthread_mutex_unlock(&g.mu);
	event_active(g.queue_ev, EV_READ, 0);
	return 0;
}

static void queue_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	for (;;) {
		pthread_mutex_lock(&g.mu);
		struct milter_job *j = g.head;
		if (j) {
			g.head = j->next;
			if (!g.head)
				g.tail = NULL;
		}
		pthread_mutex_unlock(&g.mu);
		if (!j)
			return;
		j->run(j);
	}
}

struct event_base *milter_loop_base(void)
{
	return g.base;
}

struct moat_worker_pool *milter_loop_workers(void)
{
	return g.workers;
}

struct moat_resolver *milter_loop_resolver(void)
{
	return g.resolver;
}

struct moat_config *milter_config_get(void)
{
	pthread_mutex_lock(&g.mu);
	struct moat_config *c = moat_config_ref(g.conf);
	pthread_mutex_unlock(&g.mu);
	return c;
}

/* ---- configuration ---------------------------------------------------- */

/* As server_apply_resolver() in the proxy: a new resolver only when its
 * section changed; the old one finishes its queries. Loop thread. */
static int apply_resolver(const struct moat_config *c, char *err, size_t errlen)
{
	const struct moat_resolver_conf *rc = moat_config_section(c, "resolver");
	if (!rc) {
		snprintf(err, errlen, "no resolver configuration");
		return -1;
	}
	if (!(g.resolver && g.resolver_conf && moat_resolver_conf_equal(g.resolver_conf, rc))) {
		struct moat_resolver *r = moat_resolver_new(g.base, rc, err, errlen);
		if (!r)
			return -1;
		moat_resolver_retire(g.resolver);
		g.resolver = r;
	}
	moat_config_unref(g.resolver_owner);
	g.resolver_owner = moat_config_ref((struct moat_config *)c);
	g.resolver_conf = rc;
	return 0;
}

static struct moat_config *load(int to_log)
{
	struct moat_config *c;
	struct moat_config_errors errs;
	if (moat_config_load(g.path, g.overrides, g.noverrides, &c, &errs) == 0)
		return c;
	for (size_t i = 0; i < errs.n; i++) {
		if (to_log)
			moat_log(LOG_ERR, "%s", errs.msg[i]);
		else
			fprintf(stderr, "%s\n", errs.msg[i]);
	}
	moat_config_errors_free(&errs);
	return NULL;
}

/* Binds, moves or closes the milter process's metrics listener. */
static void apply_metrics(struct moat_config *c)
{
	char err[512];
	const struct moat_milter_conf *mc = moat_config_milter(c);
	g.msrv.base = g.base;
	g.msrv.conf = c;
	g.msrv.resolver = g.resolver;
	if (!g.metrics && mc->metrics_listen && *mc->metrics_listen)
		g.metrics = metrics_http_new(g.base, &g.msrv);
	if (g.metrics && metrics_http_listen(g.metrics, mc->metrics_listen, &mc->metrics_addr, err,
					     sizeof(err)) < 0)
		moat_log(LOG_ERR, "milter: %s", err);
}

static void reload(void)
{
	char err[512];
	struct moat_config *c = load(1);
	if (!c) {
		moat_log(LOG_ERR, "milter: reload failed; the running configuration stays");
		return;
	}
	const char *olds = moat_config_milter(g.conf)->socket;
	const char *news = moat_config_milter(c)->socket;
	if (strcmp(olds, news) != 0)
		moat_log(LOG_NOTICE, "milter: socket changed from %s to %s: moatd restarts the "
			 "milter process", olds, news);
	if (apply_resolver(c, err, sizeof(err)) < 0)
		moat_log(LOG_ERR, "milter: reload: %s; the running resolver stays", err);
	if (moat_store_apply(g.base, c, err, sizeof(err)) < 0)
		moat_log(LOG_ERR, "milter: reload: %s; the running store stays", err);
	pthread_mutex_lock(&g.mu);
	struct moat_config *old = g.conf;
	g.conf = c;
	pthread_mutex_unlock(&g.mu);
	moat_config_unref(old);	/* connections hold their own references */
	if (spf_pool_apply(g.base, c, g.resolver, 0, err, sizeof(err)) < 0)
		moat_log(LOG_ERR, "milter: reload: spf: %s; the SPF filter's checks end in temperror",
			 err);
	moat_filters_activate(c, g.base, g.resolver);
	apply_metrics(c);
	if (!g.foreground)
		moat_log_open("moatd/milter", 0, c->facility);
	moat_log(LOG_INFO, "milter: reloaded %s", c->path);
}

/* ---- the control socket ------------------------------------------------ */

/* libmilter's listener holds its lock while it waits in select() for 5
 * seconds, and smfi_stop() needs that lock: so smfi_stop() runs in a
 * thread of its own, and connections of our own wake the listener (each
 * is closed unused: its libmilter thread just sees end of file). Returns
 * 0 if the connection was made, -1 if not (the listener is closed). */
static int wake_listener(const char *spec)
{
	struct sockaddr_storage ss;
	socklen_t len = 0;
	memset(&ss, 0, sizeof(ss));
	if (strncmp(spec, "unix:", 5) == 0 || strncmp(spec, "local:", 6) == 0) {
		struct sockaddr_un *un = (struct sockaddr_un *)&ss;
		const char *path = strchr(spec, ':') + 1;
		un->sun_family = AF_UNIX;
		if (strlen(path) >= sizeof(un->sun_path))
			return -1;
		strcpy(un->sun_path, path);
		len = sizeof(*un);
	} else {
		int six = strncmp(spec, "inet6:", 6) == 0;
		const char *p = spec + (six ? 6 : 5);
		int port = atoi(p);
		const char *at = strchr(p, '@');
		const char *host = at ? at + 1 : six ? "::1" : "127.0.0.1";
		if (six) {
			struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
			in6->sin6_family = AF_INET6;
			in6->sin6_port = htons((uint16_t)port);
			if (inet_pton(AF_INET6, host, &in6->sin6_addr) != 1 ||
			    IN6_IS_ADDR_UNSPECIFIED(&in6->sin6_addr))
				in6->sin6_addr = in6addr_loopback;
			len = sizeof(*in6);
		} else {
			struct sockaddr_in *in = (struct sockaddr_in *)&ss;
			in->sin_family = AF_INET;
			in->sin_port = htons((uint16_t)port);
			if (inet_pton(AF_INET, host, &in->sin_addr) != 1 ||
			    in->sin_addr.s_addr == htonl(INADDR_ANY))
				in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
			len = sizeof(*in);
		}
	}
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&ss, len) < 0 && errno != EINPROGRESS) {
		close(fd);
		return -1;
	}
	struct pollfd pfd = {fd, POLLOUT, 0};
	int ok = poll(&pfd, 1, 200) == 1 && !(pfd.revents & (POLLERR | POLLHUP));
	close(fd);
	return ok ? 0 : -1;
}

static void *stop_thread(void *arg)
{
	(void)arg;
	smfi_stop();
	return NULL;
}

static void wake_cb(evutil_socket_t fd, short what, void *arg)
{
	struct timeval tv = {0, 100 * 1000};
	(void)fd;
	(void)what;
	(void)arg;
	if (wake_listener(moat_config_milter(g.conf)->socket) == 0 && ++g.wakes < 100)
		evtimer_add(g.wake_ev, &tv);
}

static void stop_milter(void)
{
	pthread_t t;
	struct timeval tv = {0, 20 * 1000};
	if (g.stopping)
		return;
	g.stopping = 1;
	if (pthread_create(&t, NULL, stop_thread, NULL) == 0)
		pthread_detach(t);
	else
		smfi_stop();
	if (g.wake_ev)
		evtimer_add(g.wake_ev, &tv);
}

static void ctl_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)what;
	(void)arg;
	ssize_t n = read(fd, g.ctl_buf + g.ctl_len, sizeof(g.ctl_buf) - 1 - g.ctl_len);
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n <= 0) {
		moat_log(LOG_NOTICE, "milter: moatd is gone; stopping");
		event_del(g.ctl_ev);
		stop_milter();
		return;
	}
	g.ctl_len += (size_t)n;
	char *nl;
	while ((nl = memchr(g.ctl_buf, '\n', g.ctl_len))) {
		*nl = '\0';
		if (strcmp(g.ctl_buf, "reload") == 0) {
			reload();
		} else if (strcmp(g.ctl_buf, "stop") == 0) {
			moat_log(LOG_INFO, "milter: stopping: %ld connection(s) open", milter_sessions());
			stop_milter();
		} else {
			/* a malformed message is a bug in moatd */
			moat_log(LOG_ERR, "milter: unknown control message \"%s\"", g.ctl_buf);
		}
		size_t used = (size_t)(nl - g.ctl_buf) + 1;
		memmove(g.ctl_buf, nl + 1, g.ctl_len - used);
		g.ctl_len -= used;
	}
	if (g.ctl_len == sizeof(g.ctl_buf) - 1) {
		moat_log(LOG_ERR, "milter: control message too long");
		g.ctl_len = 0;
	}
}

/* ---- threads ---------------------------------------------------------- */

static void *loop_thread(void *arg)
{
	(void)arg;
	event_base_loop(g.base, EVLOOP_NO_EXIT_ON_EMPTY);
	return NULL;
}

static void stop_job_run(struct milter_job *job)
{
	(void)job;
	pthread_mutex_lock(&g.mu);
	g.dead = 1;		/* later posts fail: default_action */
	pthread_mutex_unlock(&g.mu);
	event_base_loopbreak(g.base);
}

/* Seconds since start on the monotonic clock. */
static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int milter_main(const char *path, char *const *overrides, size_t noverrides, int foreground)
{
	char err[512];
	pthread_t loop;
	sigset_t sigs;

	g.path = path;
	g.overrides = overrides;
	g.noverrides = noverrides;
	g.foreground = foreground;
	moat_log_open("moatd/milter", foreground, LOG_MAIL);
	/* moatd gone without a word (SIGKILL): libmilter stops on SIGTERM */
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() == 1) {
		moat_log(LOG_ERR, "milter: moatd is gone before the milter started");
		return 1;
	}
	g.conf = load(1);
	if (!g.conf)
		return 1;
	/* moatd starts this process after its own drop; check it anyway */
	if (moat_privilege_drop(g.conf->user, g.conf->group, g.conf->chroot, err, sizeof(err)) < 0) {
		moat_log(LOG_ERR, "milter: cannot drop privileges: %s", err);
		return 1;
	}
	if (!foreground)
		moat_log_open("moatd/milter", 0, g.conf->facility);
	const struct moat_milter_conf *mc = moat_config_milter(g.conf);
	if (!*mc->socket) {
		moat_log(LOG_ERR, "milter: no milter socket configured");
		moat_config_unref(g.conf);
		return 1;
	}
	/* Only libmilter's signal thread takes these: block them before any
	 * thread starts, so none inherits them unblocked. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGHUP);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	evthread_use_pthreads();
	g.base = event_base_new();
	if (!g.base) {
		moat_log(LOG_ERR, "milter: cannot create the event loop");
		return 1;
	}
	g.queue_ev = event_new(g.base, -1, 0, queue_cb, NULL);
	g.ctl_ev = event_new(g.base, MILTER_CTL_FD, EV_READ | EV_PERSIST, ctl_cb, NULL);
	g.wake_ev = evtimer_new(g.base, wake_cb, NULL);
	g.workers = moat_worker_pool_new(g.base, WORKER_THREADS);
	if (!g.queue_ev || !g.ctl_ev || !g.workers) {
		moat_log(LOG_ERR, "milter: out of memory at start");
		return 1;
	}
	evutil_make_socket_nonblocking(MILTER_CTL_FD);
	evutil_make_socket_closeonexec(MILTER_CTL_FD);
	event_add(g.ctl_ev, NULL);
	if (apply_resolver(g.conf, err, sizeof(err)) < 0) {
		moat_log(LOG_ERR, "milter: %s", err);
		return 1;
	}
	if (spf_pool_apply(g.base, g.conf, g.resolver, 0, err, sizeof(err)) < 0)
		moat_log(LOG_ERR, "milter: spf: %s; the SPF filter's checks end in temperror", err);
	if (moat_store_apply(g.base, g.conf, err, sizeof(err)) < 0)
		moat_log(LOG_ERR, "milter: %s", err);
	moat_filters_activate(g.conf, g.base, g.resolver);	/* before the loop thread runs */
	apply_metrics(g.conf);

	if (smfi_register(milter_desc) != MI_SUCCESS ||
	    smfi_setconn(mc->socket) != MI_SUCCESS) {
		moat_log(LOG_ERR, "milter: libmilter refused the socket %s", mc->socket);
		return 1;
	}
	if (smfi_opensocket(1) != MI_SUCCESS) {
		moat_log(LOG_ERR, "milter: cannot listen on %s: %s", mc->socket,
			 errno ? strerror(errno) : "libmilter error");
		return 1;
	}
	if (pthread_create(&loop, NULL, loop_thread, NULL) != 0) {
		moat_log(LOG_ERR, "milter: cannot start the loop thread");
		return 1;
	}
	moat_log(LOG_INFO, "milter: listening on %s, config %s", mc->socket, g.conf->path);

	int rc = smfi_main();

	/* Messages in progress may finish; then the loop ends. */
	long grace = g.conf->shutdown_timeout;
	double end = now_s() + (double)grace;
	while (milter_sessions_in_tx() > 0 && now_s() < end)
		usleep(50 * 1000);
	if (milter_sessions_in_tx() > 0)
		moat_log(LOG_NOTICE, "milter: shutdown_timeout reached with %ld message(s) in "
			 "progress", milter_sessions_in_tx());
	static struct milter_job stop_job = {.run = stop_job_run};
	if (milter_loop_post(&stop_job) == 0)
		pthread_join(loop, NULL);
	spf_pool_shutdown();
	moat_log(LOG_INFO, "milter: stopped%s", rc == MI_SUCCESS ? "" : " (libmilter error)");
	if (milter_sessions() == 0) {
		/* Nothing can reach the services any more: free them, so the
		 * leak checker sees a clean end. */
		metrics_http_free(g.metrics);
		moat_worker_pool_free(g.workers);
		moat_resolver_free(g.resolver);
		moat_store_shutdown();
		moat_config_unref(g.resolver_owner);
		event_free(g.ctl_ev);
		if (g.wake_ev)
			event_free(g.wake_ev);
		event_free(g.queue_ev);
		moat_config_unref(g.conf);
	}
	return rc == MI_SUCCESS ? 0 : 1;
}
