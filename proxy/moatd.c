/*
 * moatd.c - the moat daemon: command line, configuration, signals, and
 * the event loop.
 *
 * SYNOPSIS
 *	moatd [-f] [-t [-D]] [-c file] [-o name=value]...
 *
 * Reads the configuration (and exits 1 with "file:line: ..." for each
 * error; -t also reads the TLS certificates, keys and CA files, checks
 * as root that the user moatd runs as can read the DKIM keys, and with
 * -D compares each DKIM key with its DNS record), binds
 * every listener, writes its pid file, gives up root for the configured
 * user (util/privilege.h), then runs in the background (or in the
 * foreground with -f, logging to stderr) until SIGTERM. SIGHUP re-reads
 * the configuration; a bad one is reported and the running one stays.
 * With a milter socket configured, moatd also runs the milter front end
 * in a process of its own (milter/milter.h): started by exec'ing this
 * binary with the hidden option -M, told to reload on SIGHUP and to stop
 * on SIGTERM, restarted if it dies.
 * The metrics and status listener (metrics_http.h) is bound, like the
 * listeners, before privileges are dropped, and follows reloads.
 * Owns the struct server, the event base, the milter process handle and
 * the metrics listener.
 */
#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "config.h"
#include "control.h"
#include "dkim_published.h"
#include "filter.h"
#include "log.h"
#include "metrics.h"
#include "metrics_http.h"
#include "milter.h"
#include "privilege.h"
#include "resolver.h"
#include "server.h"
#include "spf_pool.h"
#include "spf_worker.h"
#include "store_conf.h"
#include "tls.h"
#include "worker.h"

#define MAX_OVERRIDES 256
#define WORKER_THREADS 2

static struct {
	const char *path;
	char *overrides[MAX_OVERRIDES];
	size_t noverrides;
	int foreground;
	struct server srv;
	struct event_base *base;
	struct milter_proc *milter;
	struct control *control;
	struct metrics_http *metrics;
} g;

static void usage(void)
{
	fprintf(stderr, "usage: moatd [-f] [-t [-D]] [-c file] [-o name=value]...\n"
		"  -c file        configuration file (default %s)\n"
		"  -f             stay in the foreground, log to stderr\n"
		"  -t             check the configuration and exit\n"
		"  -D             with -t: check each DKIM key against its DNS record\n"
		"  -o name=value  override an option (listener.NAME.option=value)\n"
		"  -V             print the version\n", moat_config_default_path());
	exit(2);
}

static void report_errors(struct moat_config_errors *errs, int to_log)
{
	for (size_t i = 0; i < errs->n; i++) {
		if (to_log)
			moat_log(LOG_ERR, "%s", errs->msg[i]);
		else
			fprintf(stderr, "%s\n", errs->msg[i]);
	}
}

static void schedule_probe(void);

/* -t: the certificate, key and CA files each listener names must be
 * readable, as at start. Returns the number of failures. */
static int check_tls_files(const struct moat_config *c)
{
	char why[512];
	int bad = 0;
	for (size_t i = 0; i < c->nlisteners; i++) {
		const struct moat_listener_conf *lc = &c->listeners[i];
		if (lc->tls_level != MOAT_TLS_NONE) {
			struct tls_server *ts = tls_server_new(lc, why, sizeof(why));
			if (!ts && ++bad)
				fprintf(stderr, "listener %s: %s\n", lc->name, why);
			tls_server_unref(ts);
		}
		if (lc->upstream_tls_level != MOAT_TLS_NONE) {
			SSL_CTX *ctx = tls_client_ctx_new(lc, why, sizeof(why));
			if (!ctx && ++bad)
				fprintf(stderr, "listener %s: upstream_tls: %s\n", lc->name, why);
			SSL_CTX_free(ctx);
		}
	}
	return bad;
}

static void print_key_finding(void *arg, const char *key, const char *word, const char *text)
{
	(void)arg;
	fprintf(strcmp(word, "match") == 0 ? stdout : stderr, "dkim: key %s: %s: %s\n", key,
		word, text);
}

/* -t -D: each DKIM key against its published record. Returns the
 * number of failures. */
static int check_published_keys(const struct moat_config *c)
{
	char why[512];
	int bad = dkim_published_check(c, print_key_finding, NULL, why, sizeof(why));
	if (bad < 0)
		fprintf(stderr, "dkim: cannot check the keys' DNS records: %s\n", why);
	return bad < 0 ? 1 : bad;
}

/* SIGHUP, and `moat reload` through the control socket: why gets the
 * errors of a refused configuration, one a line. */
static int reload(char *why, size_t whylen)
{
	struct moat_config *c;
	struct moat_config_errors errs;
	char err[512];

	moat_log(LOG_INFO, "SIGHUP: reloading %s", g.path ? g.path : moat_config_default_path());
	if (moat_config_load(g.path, g.overrides, g.noverrides, &c, &errs) < 0) {
		report_errors(&errs, 1);
		moat_log(LOG_ERR, "reload failed: %zu error(s); the running configuration stays",
			 errs.n);
		for (size_t i = 0, used = 0; i < errs.n && used + 1 < whylen; i++) {
			int n = snprintf(why + used, whylen - used, "%s\n", errs.msg[i]);
			used += n > 0 ? (size_t)n : 0;
		}
		moat_config_errors_free(&errs);
		moat_metrics_add(MOAT_M_RELOADS, "failed", NULL, 1);
		return -1;
	}
	if (server_apply_config(&g.srv, c, err, sizeof(err)) < 0) {
		moat_log(LOG_ERR, "reload failed: %s; the running configuration stays", err);
		snprintf(why, whylen, "%s", err);
		moat_config_unref(c);
		moat_metrics_add(MOAT_M_RELOADS, "failed", NULL, 1);
		return -1;
	}
	moat_metrics_add(MOAT_M_RELOADS, "ok", NULL, 1);
	if (server_apply_resolver(&g.srv, c, err, sizeof(err)) < 0)
		moat_log(LOG_ERR, "reload: %s; the running resolver stays", err);
	if (spf_pool_apply(g.base, g.srv.conf, g.srv.resolver, 0, err, sizeof(err)) < 0)
		moat_log(LOG_ERR, "reload: spf: %s; the SPF filter's checks end in temperror", err);
	if (moat_store_apply(g.base, g.srv.conf, err, sizeof(err)) < 0)
		moat_log(LOG_ERR, "reload: %s; the running store stays", err);
	if (control_apply(g.control, g.srv.conf, err, sizeof(err)) < 0)
		moat_log(LOG_ERR, "reload: %s; the control socket stays where it was", err);
	if (metrics_http_apply(g.metrics, g.srv.conf, err, sizeof(err)) < 0)
		moat_log(LOG_ERR, "reload: %s; the metrics listener stays where it was", err);
	moat_filters_activate(g.srv.conf, g.base, g.srv.resolver);
	moat_config_unref(c);	/* the server holds its own reference */
	if (!g.foreground)
		moat_log_open("moatd", 0, g.srv.conf->facility);
	moat_log(LOG_INFO, "reloaded: %zu listener(s)", g.srv.nlisteners);
	milter_proc_apply(g.milter, g.srv.conf);
	server_probe_all(&g.srv);
	schedule_probe();
	return 0;
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	(void)what;
	(void)arg;
	if (sig == SIGHUP) {
		char why[512];
		reload(why, sizeof(why));
	} else {
		milter_proc_stop(g.milter);
		server_stop(&g.srv);
	}
}

static void on_probe_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	server_probe_all(&g.srv);
	schedule_probe();
}

static void schedule_probe(void)
{
	struct timeval tv = {g.srv.conf->upstream_probe_interval, 0};
	if (!g.srv.probe_timer)
		g.srv.probe_timer = evtimer_new(g.base, on_probe_timer, NULL);
	if (g.srv.probe_timer)
		evtimer_add(g.srv.probe_timer, &tv);
}

static void write_pid_file(const char *path)
{
	FILE *f;
	if (!path || !*path)
		return;
	f = fopen(path, "w");
	if (!f) {
		moat_log(LOG_WARNING, "cannot write pid_file %s: %s", path, strerror(errno));
		return;
	}
	fprintf(f, "%ld\n", (long)getpid());
	fclose(f);
}

/* Each session may hold two descriptors (client, upstream) and a spool
 * file: raise the limit towards what max_connections needs (the hard
 * limit too while root), or say clearly that it cannot be. */
static void raise_fd_limit(long max_connections)
{
	struct rlimit rl;
	rlim_t want = (rlim_t)max_connections * 3 + 64;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= want)
		return;
	struct rlimit nl = rl;
	nl.rlim_cur = want;
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want)
		nl.rlim_max = want;
	if (setrlimit(RLIMIT_NOFILE, &nl) == 0)
		return;
	nl = rl;	/* not allowed above the hard limit: go as far as it */
	nl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want ? want : rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &nl) < 0)
		nl.rlim_cur = rl.rlim_cur;
	moat_log(LOG_WARNING, "open file limit (RLIMIT_NOFILE) is %lu, below the %lu that "
		 "max_connections = %ld may need; raise it (systemd LimitNOFILE=, ulimit -n) or "
		 "lower max_connections", (unsigned long)nl.rlim_cur, (unsigned long)want,
		 max_connections);
}

/* Gives up root once the ports are bound and the pid file is written,
 * before any thread or child starts. Returns 0 or -1 (logged). */
static int drop_privileges(const struct moat_config *c)
{
	char err[512];
	int rc = moat_privilege_drop(c->user, c->group, c->chroot, err, sizeof(err));
	if (rc < 0) {
		moat_log(LOG_ERR, "cannot drop privileges: %s", err);
		return -1;
	}
	if (rc > 0)
		moat_log(LOG_INFO, "running as user %s (uid %ld, gid %ld)%s%s", c->user,
			 (long)getuid(), (long)getgid(), *c->chroot ? ", chroot " : "", c->chroot);
	if (c->spool_directory && access(c->spool_directory, W_OK | X_OK) < 0) {
		moat_log(LOG_ERR, "spool_directory %s is not writable by uid %ld: %s (make it "
			 "owned by user %s, mode 0700)", c->spool_directory, (long)getuid(),
			 strerror(errno), c->user);
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct moat_config *c;
	struct moat_config_errors errs;
	char err[512];
	int check = 0, check_dns = 0, milter = 0, opt;
	struct event *sigs[3];
	const int signums[3] = {SIGTERM, SIGINT, SIGHUP};

	/* An SPF worker process (hidden; started by filters/spf_pool.c). */
	if (argc == 2 && strcmp(argv[1], SPF_WORKER_ARG) == 0)
		return spf_worker_main();
	while ((opt = getopt(argc, argv, "c:ftDo:VhM")) != -1) {
		switch (opt) {
		case 'M': milter = 1; break;	/* hidden: the milter process */
		case 'c': g.path = optarg; break;
		case 'f': g.foreground = 1; break;
		case 't': check = 1; break;
		case 'D': check_dns = 1; break;
		case 'o':
			if (g.noverrides == MAX_OVERRIDES) {
				fprintf(stderr, "moatd: too many -o options\n");
				return 2;
			}
			g.overrides[g.noverrides++] = optarg;
			break;
		case 'V': printf("moatd %s\n", MOAT_VERSION); return 0;
		default: usage();
		}
	}
	if (optind != argc || (check_dns && !check))
		usage();
	moat_filters_register_builtin();
	/* In the background the working directory is /, and SIGHUP reads
	 * the file again: remember where it really is. */
	static char abspath[4096];
	if (g.path && g.path[0] != '/' && realpath(g.path, abspath))
		g.path = abspath;
	if (milter)
		return milter_main(g.path, g.overrides, g.noverrides, g.foreground);

	moat_privilege_check_files(check);	/* -t: keys readable after the drop */
	if (moat_config_load(g.path, g.overrides, g.noverrides, &c, &errs) < 0) {
		report_errors(&errs, 0);
		moat_config_errors_free(&errs);
		return 1;
	}
	if (check) {
		int bad = check_tls_files(c);
		if (check_dns)
			bad += check_published_keys(c);
		moat_config_unref(c);
		return bad ? 1 : 0;
	}
	moat_log_open("moatd", g.foreground, c->facility);
	struct moat_privilege pv;	/* a missing user, said before daemon() */
	if (geteuid() == 0 && moat_privilege_lookup(c->user, c->group, &pv, err, sizeof(err)) < 0) {
		if (!g.foreground)
			fprintf(stderr, "moatd: %s\n", err);
		moat_log(LOG_ERR, "%s", err);
		moat_config_unref(c);
		return 1;
	}
	raise_fd_limit(c->max_connections);
	signal(SIGPIPE, SIG_IGN);
	evthread_use_pthreads();
	g.base = event_base_new();
	if (!g.base) {
		fprintf(stderr, "moatd: cannot create the event loop\n");
		return 1;
	}
	g.srv.base = g.base;
	if (server_apply_config(&g.srv, c, err, sizeof(err)) < 0) {
		fprintf(stderr, "moatd: %s\n", err);
		moat_log(LOG_ERR, "%s", err);
		moat_config_unref(c);
		return 1;
	}
	moat_config_unref(c);
	if (!g.foreground) {
		if (daemon(0, 0) < 0) {
			fprintf(stderr, "moatd: cannot run in the background: %s\n", strerror(errno));
			return 1;
		}
		event_reinit(g.base);
		write_pid_file(g.srv.conf->pid_file);
	}
	/* the control socket as the user moatd starts as (as the listeners) */
	g.control = control_new(g.base, &(struct control_hooks){&g.srv, reload});
	if (control_apply(g.control, g.srv.conf, err, sizeof(err)) < 0)
		moat_log(LOG_ERR, "%s; moatd goes on without it", err);
	g.metrics = metrics_http_new(g.base, &g.srv);
	if (metrics_http_apply(g.metrics, g.srv.conf, err, sizeof(err)) < 0)
		moat_log(LOG_ERR, "%s; moatd goes on without it", err);
	if (drop_privileges(g.srv.conf) < 0)
		return 1;
	g.srv.workers = moat_worker_pool_new(g.base, WORKER_THREADS);
	if (!g.srv.workers) {
		moat_log(LOG_ERR, "cannot start worker threads");
		return 1;
	}
	/* threads (worker pool, libunbound) only after daemon()'s fork */
	if (server_apply_resolver(&g.srv, g.srv.conf, err, sizeof(err)) < 0) {
		moat_log(LOG_ERR, "%s", err);
		return 1;
	}
	for (int i = 0; i < 3; i++) {
		sigs[i] = evsignal_new(g.base, signums[i], on_signal, NULL);
		evsignal_add(sigs[i], NULL);
	}
	g.milter = milter_proc_new(g.base, g.path, g.overrides, g.noverrides, g.foreground);
	if (!g.milter) {
		moat_log(LOG_ERR, "cannot set up the milter process");
		return 1;
	}
	moat_log(LOG_INFO, "moatd %s started: %zu listener(s), config %s", MOAT_VERSION,
		 g.srv.nlisteners, g.srv.conf->path);
	milter_proc_apply(g.milter, g.srv.conf);
	server_probe_all(&g.srv);
	schedule_probe();
	if (spf_pool_apply(g.base, g.srv.conf, g.srv.resolver, 0, err, sizeof(err)) < 0)
		moat_log(LOG_ERR, "spf: %s; the SPF filter's checks end in temperror", err);
	if (moat_store_apply(g.base, g.srv.conf, err, sizeof(err)) < 0)
		moat_log(LOG_ERR, "%s", err);
	moat_filters_activate(g.srv.conf, g.base, g.srv.resolver);

	event_base_dispatch(g.base);

	/* the milter process had shutdown_timeout for its messages too */
	milter_proc_wait(g.milter, g.srv.conf->shutdown_timeout + 5);
	milter_proc_free(g.milter);

	spf_pool_shutdown();
	/* the resolver before the store: a lookup may wait for the shared
	 * cache, and a store op not yet sent is freed without its callback */
	moat_resolver_free(g.srv.resolver);
	g.srv.resolver = NULL;
	moat_store_shutdown();	/* answers what waits, the control socket's too */
	control_free(g.control);
	metrics_http_free(g.metrics);
	moat_log(LOG_INFO, "moatd stopped");
	for (int i = 0; i < 3; i++)
		event_free(sigs[i]);
	if (!g.foreground && g.srv.conf->pid_file && *g.srv.conf->pid_file)
		unlink(g.srv.conf->pid_file);
	server_free(&g.srv);
	/* The base stays allocated: upstream connections still saying QUIT
	 * hang off it, and the process ends here anyway. */
	return 0;
}
