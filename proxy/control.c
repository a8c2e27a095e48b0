/*
 * control.c - moatd's control socket: a unix socket served on the loop,
 * where `moat status`, `moat reload` and `moat rep get|set|clear` reach
 * the running daemon.
 *
 * PROTOCOL
 *	The client sends one command line ending in LF (at most 1024
 *	octets): "status", "reload", "rep get WHAT" ("rep show WHAT"
 *	is the same), "rep clear WHAT", "rep set WHAT good|bad|neutral
 *	[DAYS]".
 *	moatd answers "ok" or "error" on the first line, then the text of
 *	the answer, line by line, and closes the connection. One command
 *	per connection; a client silent for 10 s is dropped.
 *
 * The socket file is created with mode 0660 (its directory, if missing,
 * 0750), so the owner and group of the daemon may use it; it is removed
 * when moatd stops. Owns the listener and each connection until its
 * answer is written (a connection waiting for the store outlives its
 * client's departure until the store answers).
 */
#include "control.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "pipeline.h"
#include "reputation.h"
#include "server.h"
#include "store_conf.h"

#define LINE_MAX_OCTETS 1024
#define READ_TIMEOUT 10

struct conn {
	struct control *ctl;
	struct bufferevent *bev;
	struct conn *next, *prev;
	int busy;		/* waiting for the store */
	int answered;		/* closes once the answer is written */
	int gone;		/* the client left while busy */
};

struct control {
	struct event_base *base;
	struct control_hooks hooks;
	struct evconnlistener *evl;
	char *path;
	struct conn *conns;
	time_t started;
};

/* ---- connections -------------------------------------------------------- */

static void conn_free(struct conn *c)
{
	struct control *ctl = c->ctl;
	if (c->prev)
		c->prev->next = c->next;
	else
		ctl->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	if (c->bev)
		bufferevent_free(c->bev);
	free(c);
}

/* The answer: "ok" or "error", then text; the connection closes once
 * it is written. */
static void answer(struct conn *c, int ok, const char *text)
{
	c->busy = 0;
	if (c->gone) {
		conn_free(c);
		return;
	}
	struct evbuffer *out = bufferevent_get_output(c->bev);
	size_t n = strlen(text);
	evbuffer_add_printf(out, "%s\n", ok ? "ok" : "error");
	evbuffer_add(out, text, n);
	if (n && text[n - 1] != '\n')
		evbuffer_add(out, "\n", 1);
	c->answered = 1;
	bufferevent_disable(c->bev, EV_READ);
	bufferevent_enable(c->bev, EV_WRITE);
}

static void answerf(struct conn *c, int ok, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void answerf(struct conn *c, int ok, const char *fmt, ...)
{
	char buf[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	answer(c, ok, buf);
}

/* ---- commands ------------------------------------------------------------- */

static void cmd_status(struct conn *c, char *arg)
{
	const struct server *srv = c->ctl->hooks.srv;
	const struct moat_pipeline_stats *ps = moat_pipeline_stats();
	struct moat_store *st = moat_store_current();
	char filters[512] = "", store[300];
	size_t used = 0;
	(void)arg;
	for (size_t i = 0; srv->conf && i < srv->conf->filters.n; i++) {
		int n = snprintf(filters + used, sizeof(filters) - used, "%s%s", i ? "," : "",
				 srv->conf->filters.v[i]);
		if (n > 0 && (size_t)n < sizeof(filters) - used)
			used += (size_t)n;
	}
	struct moat_store_stats ss = st ? st->stats : (struct moat_store_stats){0, 0, 0, 0};
	answerf(c, 1,
		"version=%s pid=%ld uptime=%lld config=%s\n"
		"listeners=%zu sessions=%zu accepted=%llu refused=%llu messages=%llu "
		"discarded=%llu\n"
		"filters=%s runs=%llu errors=%llu timeouts=%llu\n"
		"store=\"%s\" state=%s ops=%llu unavailable=%llu outages=%llu\n",
		MOAT_VERSION, (long)getpid(), (long long)(time(NULL) - c->ctl->started),
		srv->conf ? srv->conf->path : "-", srv->nlisteners, srv->nsessions,
		srv->n_accepted, srv->n_refused, srv->n_messages, srv->n_discarded,
		filters[0] ? filters : "none", ps->runs, ps->errors, ps->timeouts,
		moat_store_describe(store, sizeof(store)), !st ? "none" : ss.down ? "down" : "up",
		ss.ops, ss.unavailable, ss.outages);
}

static void cmd_reload(struct conn *c, char *arg)
{
	char why[4096] = "";
	(void)arg;
	if (c->ctl->hooks.reload(why, sizeof(why)) < 0)
		answer(c, 0, why[0] ? why : "reload failed");
	else
		answer(c, 1, "reloaded\n");
}

static void rep_answered(void *arg, int ok, const char *text)
{
	answer(arg, ok, text);
}

/* "rep set WHAT good|bad|neutral [DAYS]" */
static int rep_set(struct conn *c, const char *what, char *err, size_t errlen)
{
	const char *mark = strtok(NULL, " "), *days = strtok(NULL, " ");
	enum moat_rep_mark m = mark ? moat_rep_mark_parse(mark, strlen(mark), &(long long){0})
				    : MOAT_REP_MARK_NONE;
	char *end = NULL;
	long d = days ? strtol(days, &end, 10) : 0;
	if (m == MOAT_REP_MARK_NONE || strchr(mark, ' ') || (days && (*end || !*days)) ||
	    strtok(NULL, " ")) {
		snprintf(err, errlen, "usage: rep set ADDRESS|NETWORK|DOMAIN good|bad|neutral [DAYS]");
		return -1;
	}
	return moat_rep_set(moat_store_current(), what, m, d, rep_answered, c, err, errlen);
}

static void cmd_rep(struct conn *c, char *arg)
{
	char *verb = strtok(arg, " "), *what = strtok(NULL, " "), err[300];
	const struct moat_config *conf = c->ctl->hooks.srv->conf;
	const void *rconf = moat_config_section(conf, "reputation");
	int r;
	if (!verb || !what) {
		answer(c, 0, "usage: rep get|show|set|clear ADDRESS|NETWORK|DOMAIN ...");
		return;
	}
	c->busy = 1;
	if (strcmp(verb, "set") == 0) {
		r = rep_set(c, what, err, sizeof(err));
	} else if ((strcmp(verb, "get") == 0 || strcmp(verb, "show") == 0 ||
		    strcmp(verb, "clear") == 0) && !strtok(NULL, " ")) {
		r = (verb[0] == 'c' ? moat_rep_clear : moat_rep_show)(moat_store_current(), rconf,
								      what, rep_answered, c, err,
								      sizeof(err));
	} else {
		snprintf(err, sizeof(err), "usage: rep get|show|set|clear ADDRESS|NETWORK|DOMAIN ...");
		r = -1;
	}
	if (r < 0)
		answer(c, 0, err);
}

static const struct {
	const char *name;
	void (*run)(struct conn *c, char *arg);
} commands[] = {
	{"status", cmd_status},
	{"reload", cmd_reload},
	{"rep", cmd_rep},
};

static void dispatch(struct conn *c, char *line)
{
	char *arg = line + strcspn(line, " ");
	if (*arg)
		*arg++ = '\0';
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(line, commands[i].name) == 0) {
			commands[i].run(c, arg);
			return;
		}
	answerf(c, 0, "unknown command \"%.64s\" (status, reload, rep)", line);
}

static void on_read(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t n;
	if (c->busy || c->answered)
		return;
	char *line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF);
	if (!line) {
		if (evbuffer_get_length(in) > LINE_MAX_OCTETS)
			answer(c, 0, "command line too long");
		return;
	}
	if (n > LINE_MAX_OCTETS)
		answer(c, 0, "command line too long");
	else
		dispatch(c, line);
	free(line);
}

static void on_write(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	if (c->answered && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		conn_free(c);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;
	(void)bev;
	(void)what;
	if (c->busy) {		/* the store's answer frees it */
		c->gone = 1;
		bufferevent_free(c->bev);
		c->bev = NULL;
		return;
	}
	conn_free(c);
}

static void on_accept(struct evconnlistener *evl, evutil_socket_t fd, struct sockaddr *sa,
		      int salen, void *arg)
{
	struct control *ctl = arg;
	struct conn *c = calloc(1, sizeof(*c));
	(void)evl;
	(void)sa;
	(void)salen;
	if (!c || !(c->bev = bufferevent_socket_new(ctl->base, fd, BEV_OPT_CLOSE_ON_FREE))) {
		free(c);
		evutil_closesocket(fd);
		return;
	}
	c->ctl = ctl;
	c->next = ctl->conns;
	if (ctl->conns)
		ctl->conns->prev = c;
	ctl->conns = c;
	struct timeval tv = {READ_TIMEOUT, 0};
	bufferevent_setcb(c->bev, on_read, on_write, on_event, c);
	bufferevent_set_timeouts(c->bev, &tv, &tv);
	bufferevent_enable(c->bev, EV_READ);
}

/* ---- the socket ----------------------------------------------------------- */

static int open_socket(const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	struct stat st;
	char dir[sizeof(sun.sun_path)];
	if (strlen(path) >= sizeof(sun.sun_path)) {
		snprintf(err, errlen, "control_socket %s: path too long", path);
		return -1;
	}
	strcpy(sun.sun_path, path);
	strcpy(dir, path);
	const char *d = dirname(dir);
	if (stat(d, &st) < 0 && errno == ENOENT && mkdir(d, 0750) < 0) {
		snprintf(err, errlen, "control_socket %s: cannot create %s: %s", path, d,
			 strerror(errno));
		return -1;
	}
	/* a socket left by an earlier moatd; never anything else */
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			snprintf(err, errlen, "control_socket %s exists and is not a socket", path);
			return -1;
		}
		unlink(path);
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 ||
	    chmod(path, 0660) < 0 || listen(fd, 16) < 0) {
		snprintf(err, errlen, "control_socket %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

static void close_listener(struct control *ctl)
{
	if (ctl->evl) {
		evconnlistener_free(ctl->evl);
		ctl->evl = NULL;
		unlink(ctl->path);
	}
	free(ctl->path);
	ctl->path = NULL;
}

struct control *control_new(struct event_base *base, const struct control_hooks *hooks)
{
	struct control *ctl = calloc(1, sizeof(*ctl));
	if (!ctl)
		return NULL;
	ctl->base = base;
	ctl->hooks = *hooks;
	ctl->started = time(NULL);
	return ctl;
}

int control_apply(struct control *ctl, const struct moat_config *conf, char *err, size_t errlen)
{
	const char *path = conf->control_socket ? conf->control_socket : "";
	if (!ctl) {
		snprintf(err, errlen, "control socket: out of memory");
		return -1;
	}
	if (ctl->path && strcmp(ctl->path, path) == 0)
		return 0;
	if (!*path) {
		close_listener(ctl);
		return 0;
	}
	int fd = open_socket(path, err, errlen);
	if (fd < 0)
		return -1;
	struct evconnlistener *evl = evconnlistener_new(ctl->base, on_accept, ctl,
							LEV_OPT_CLOSE_ON_FREE, -1, fd);
	char *copy = strdup(path);
	if (!evl || !copy) {
		if (evl)
			evconnlistener_free(evl);
		else
			close(fd);
		free(copy);
		unlink(path);
		snprintf(err, errlen, "control socket: out of memory");
		return -1;
	}
	close_listener(ctl);
	ctl->evl = evl;
	ctl->path = copy;
	moat_log(LOG_INFO, "control socket %s", path);
	return 0;
}

void control_free(struct control *ctl)
{
	if (!ctl)
		return;
	close_listener(ctl);
	while (ctl->conns)
		conn_free(ctl->conns);
	free(ctl);
}
