/*
 * milter_proc.c - moatd's side of the milter process: start it, tell it
 * to reload or stop, reap it, restart it when it dies.
 *
 * moatd is threaded (worker pool, libunbound), so it never forks to go
 * on running code: the milter process is its own binary, exec'ed with
 * posix_spawn() as "moatd -M [-f] [-c FILE] [-o name=value]...", with one
 * end of a socketpair as descriptor MILTER_CTL_FD. Control messages are
 * lines: "reload", "stop". A milter process that dies unasked is logged
 * and started again after a back-off (1 s, doubling to 60 s; back to 1 s
 * once one has run for a minute).
 *
 * Owns the child's pid, the parent's end of the socketpair, the SIGCHLD
 * event and the restart timer.
 */
#include "milter.h"

#include <errno.h>
#include <event2/event.h>
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

#define BACKOFF_MAX 60
#define STABLE_AFTER 60		/* seconds of running that reset the back-off */

extern char **environ;

struct milter_proc {
	struct event_base *base;
	const char *path;
	char *const *overrides;
	size_t noverrides;
	int foreground;
	char *want;		/* the socket the configuration asks for ("" none) */
	char *running;		/* the socket of the running process */
	pid_t pid;
	int ctl;
	int stopping;		/* SIGTERM: never restart */
	int restart_now;	/* the socket changed: start again when it exits */
	long backoff;
	time_t started;
	struct event *sigchld, *timer;
};

static void start(struct milter_proc *p);

static void ctl_send(struct milter_proc *p, const char *msg)
{
	if (p->ctl < 0)
		return;
	size_t n = strlen(msg);
	if (send(p->ctl, msg, n, MSG_NOSIGNAL | MSG_DONTWAIT) != (ssize_t)n)
		moat_log(LOG_ERR, "milter: cannot tell the milter process (pid %ld) \"%.*s\": %s",
			 (long)p->pid, (int)n - 1, msg, strerror(errno));
}

static void reaped(struct milter_proc *p, int status)
{
	char how[64];
	if (WIFSIGNALED(status))
		snprintf(how, sizeof(how), "killed by signal %d", WTERMSIG(status));
	else
		snprintf(how, sizeof(how), "exit status %d", WEXITSTATUS(status));
	pid_t pid = p->pid;
	p->pid = 0;
	if (p->ctl >= 0)
		close(p->ctl);
	p->ctl = -1;
	free(p->running);
	p->running = NULL;
	if (p->stopping || (!p->restart_now && !*p->want)) {
		moat_log(LOG_INFO, "milter: process %ld ended (%s)", (long)pid, how);
		return;
	}
	if (p->restart_now) {
		p->restart_now = 0;
		moat_log(LOG_INFO, "milter: process %ld ended (%s); starting it again", (long)pid, how);
		start(p);
		return;
	}
	if (time(NULL) - p->started >= STABLE_AFTER)
		p->backoff = 1;
	else
		p->backoff = p->backoff ? (p->backoff * 2 > BACKOFF_MAX ? BACKOFF_MAX : p->backoff * 2) : 1;
	moat_log(LOG_ERR, "milter: process %ld died (%s); restarting it in %lds", (long)pid, how,
		 p->backoff);
	struct timeval tv = {p->backoff, 0};
	evtimer_add(p->timer, &tv);
}

static void on_sigchld(evutil_socket_t fd, short what, void *arg)
{
	struct milter_proc *p = arg;
	int status;
	(void)fd;
	(void)what;
	if (p->pid > 0 && waitpid(p->pid, &status, WNOHANG) == p->pid)
		reaped(p, status);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct milter_proc *p = arg;
	(void)fd;
	(void)what;
	if (!p->pid && !p->stopping && *p->want)
		start(p);
}

static void start(struct milter_proc *p)
{
	int sv[2];
	char *argv[8 + 2 * 256];
	size_t a = 0;
	posix_spawn_file_actions_t fa;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		moat_log(LOG_ERR, "milter: socketpair: %s", strerror(errno));
		goto retry;
	}
	argv[a++] = "moatd";
	argv[a++] = "-M";
	if (p->foreground)
		argv[a++] = "-f";
	if (p->path) {
		argv[a++] = "-c";
		argv[a++] = (char *)p->path;
	}
	for (size_t i = 0; i < p->noverrides && i < 256; i++) {
		argv[a++] = "-o";
		argv[a++] = p->overrides[i];
	}
	argv[a] = NULL;
	posix_spawn_file_actions_init(&fa);
	/* dup2 onto MILTER_CTL_FD clears close-on-exec there (also when
	 * sv[1] already is that descriptor: glibc 2.29 and later) */
	posix_spawn_file_actions_adddup2(&fa, sv[1], MILTER_CTL_FD);
	int rc = posix_spawn(&p->pid, "/proc/self/exe", &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(sv[1]);
	if (rc != 0) {
		moat_log(LOG_ERR, "milter: cannot start the milter process: %s", strerror(rc));
		close(sv[0]);
		p->pid = 0;
		goto retry;
	}
	p->ctl = sv[0];
	p->started = time(NULL);
	free(p->running);
	p->running = strdup(p->want);
	moat_log(LOG_INFO, "milter: started process %ld for %s", (long)p->pid, p->want);
	return;
retry:
	p->backoff = p->backoff ? (p->backoff * 2 > BACKOFF_MAX ? BACKOFF_MAX : p->backoff * 2) : 1;
	struct timeval tv = {p->backoff, 0};
	evtimer_add(p->timer, &tv);
}

struct milter_proc *milter_proc_new(struct event_base *base, const char *path,
				    char *const *overrides, size_t noverrides, int foreground)
{
	struct milter_proc *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->base = base;
	p->path = path;
	p->overrides = overrides;
	p->noverrides = noverrides;
	p->foreground = foreground;
	p->ctl = -1;
	p->want = strdup("");
	p->sigchld = evsignal_new(base, SIGCHLD, on_sigchld, p);
	p->timer = evtimer_new(base, on_timer, p);
	if (!p->want || !p->sigchld || !p->timer || evsignal_add(p->sigchld, NULL) < 0) {
		milter_proc_free(p);
		return NULL;
	}
	return p;
}

void milter_proc_apply(struct milter_proc *p, const struct moat_config *c)
{
	const char *want = moat_config_milter(c)->socket;
	char *w;
	if (!p || p->stopping || !(w = strdup(want)))
		return;
	free(p->want);
	p->want = w;
	if (!p->pid) {
		if (*want && !evtimer_pending(p->timer, NULL))
			start(p);
		return;
	}
	if (!*want) {
		moat_log(LOG_INFO, "milter: no milter socket any more; stopping process %ld",
			 (long)p->pid);
		ctl_send(p, "stop\n");
	} else if (!p->running || strcmp(p->running, want) != 0) {
		moat_log(LOG_INFO, "milter: socket changed to %s; restarting process %ld", want,
			 (long)p->pid);
		p->restart_now = 1;
		ctl_send(p, "stop\n");
	} else {
		ctl_send(p, "reload\n");
	}
}

void milter_proc_stop(struct milter_proc *p)
{
	if (!p)
		return;
	p->stopping = 1;
	evtimer_del(p->timer);
	if (p->pid)
		ctl_send(p, "stop\n");
}

void milter_proc_wait(struct milter_proc *p, long timeout)
{
	int status;
	if (!p || !p->pid)
		return;
	p->stopping = 1;
	for (long i = 0; i < timeout * 20; i++) {
		pid_t r = waitpid(p->pid, &status, WNOHANG);
		if (r == p->pid || (r < 0 && errno == ECHILD)) {
			if (r == p->pid)
				reaped(p, status);
			p->pid = 0;
			return;
		}
		usleep(50 * 1000);
	}
	moat_log(LOG_WARNING, "milter: process %ld did not stop within %lds; killing it",
		 (long)p->pid, timeout);
	kill(p->pid, SIGKILL);
	if (waitpid(p->pid, &status, 0) == p->pid)
		reaped(p, status);
	p->pid = 0;
}

void milter_proc_free(struct milter_proc *p)
{
	if (!p)
		return;
	if (p->sigchld)
		event_free(p->sigchld);
	if (p->timer)
		event_free(p->timer);
	if (p->ctl >= 0)
		close(p->ctl);
	free(p->want);
	free(p->running);
	free(p);
}
