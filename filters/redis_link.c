/*
 * redis_link.c - one connection to one Redis server (or Sentinel)
 * through hiredis on the event loop.
 *
 * The libevent glue is moat's own rather than hiredis's adapter, so
 * that every reply can be bounded: hiredis 0.14 has no cap on what a
 * server may make it allocate. Two bounds apply, both max_reply octets:
 * the reader's buffer of a reply not yet complete (checked after every
 * read, so it never holds more than max_reply plus one 16 KiB read), and
 * the objects of one reply as they are built (the reader's object
 * functions are wrapped and count octets; a huge array count is refused
 * before hiredis allocates it). A reply over the cap cannot be skipped
 * without reading it, so the connection is dropped: its command and the
 * others in flight get no reply (their operations answer "unknown"),
 * and the link reconnects at once. That is logged at most once a
 * minute.
 *
 * Reconnection after a loss waits 0.1 s, doubling to 10 s. An outage
 * (a lost connection, or a command that timed out while connected) is
 * logged once, and so is the recovery.
 *
 * Owns the hiredis context, the loop events of the glue, and copies of
 * the address and credentials.
 */
#include "redis_link.h"

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "store.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 10000
#define DEFAULT_MAX_REPLY (1024 * 1024)
#define OBJ_OVERHEAD 64		/* counted per reply object */

struct redis_link {
	struct event_base *eb;
	char *kind, *user, *password;
	long db;
	size_t max_reply;
	struct moat_store_stats *stats;
	char *host;		/* NULL: no address yet */
	int port;
	char *unix_path;
	redisAsyncContext *ac;
	int up;
	int down_logged;
	long backoff_ms;
	struct event *reconnect_ev;
	int switching;		/* the address changed: drop and connect now */
	size_t reply_bytes;	/* of the reply being built */
	int too_large;		/* the reader refused a reply over the cap */
	time_t too_large_logged;
	redis_link_state_cb state_cb;
	void *owner;
};

/* ---- addresses -------------------------------------------------------- */

int redis_addr_parse(const char *spec, char *host, size_t hostlen, int *port)
{
	const char *colon = spec ? strrchr(spec, ':') : NULL;
	const char *h = spec, *he = colon;
	char *end;
	if (!colon || !colon[1])
		return -1;
	long p = strtol(colon + 1, &end, 10);
	if (h[0] == '[') {
		h++;
		he = colon > spec && colon[-1] == ']' ? colon - 1 : NULL;
	}
	if (!he || he <= h || (size_t)(he - h) >= hostlen || *end || p < 1 || p > 65535)
		return -1;
	memcpy(host, h, (size_t)(he - h));
	host[he - h] = '\0';
	*port = (int)p;
	return 0;
}

const char *redis_link_where(const struct redis_link *l, char *buf, size_t len)
{
	if (l->unix_path)
		snprintf(buf, len, "unix:%s", l->unix_path);
	else if (!l->host)
		snprintf(buf, len, "(unknown)");
	else if (strchr(l->host, ':'))
		snprintf(buf, len, "[%s]:%d", l->host, l->port);
	else
		snprintf(buf, len, "%s:%d", l->host, l->port);
	return buf;
}

/* ---- the reply cap ------------------------------------------------------ */

static redisReplyObjectFunctions *hiredis_fns;	/* hiredis's own, wrapped below */

static int count(const redisReadTask *t, size_t n)
{
	struct redis_link *l = t->privdata;
	if (!l)
		return 0;
	if (!t->parent)
		l->reply_bytes = 0;
	l->reply_bytes += n;
	if (l->reply_bytes > l->max_reply) {
		l->too_large = 1;
		return -1;
	}
	return 0;
}

static void *capped_string(const redisReadTask *t, char *s, size_t len)
{
	return count(t, OBJ_OVERHEAD + len) < 0 ? NULL : hiredis_fns->createString(t, s, len);
}

static void *capped_array(const redisReadTask *t, int elements)
{
	size_t n = OBJ_OVERHEAD + (elements > 0 ? (size_t)elements : 0) * (sizeof(void *) + OBJ_OVERHEAD);
	return count(t, n) < 0 ? NULL : hiredis_fns->createArray(t, elements);
}

static void *capped_integer(const redisReadTask *t, long long v)
{
	return count(t, OBJ_OVERHEAD) < 0 ? NULL : hiredis_fns->createInteger(t, v);
}

static void *capped_nil(const redisReadTask *t)
{
	return count(t, OBJ_OVERHEAD) < 0 ? NULL : hiredis_fns->createNil(t);
}

static void capped_free(void *obj)
{
	hiredis_fns->freeObject(obj);
}

static redisReplyObjectFunctions capped_fns = {
	capped_string, capped_array, capped_integer, capped_nil, capped_free,
};

static void log_too_large(struct redis_link *l)
{
	char w[300];
	time_t now = time(NULL);
	if (l->too_large_logged && now - l->too_large_logged < 60)
		return;
	l->too_large_logged = now;
	moat_log(LOG_WARNING, "%s %s: a reply larger than %zu octets (redis_max_reply); its "
		 "operation answers \"unknown\" and the connection is reset", l->kind,
		 redis_link_where(l, w, sizeof(w)), l->max_reply);
}

/* ---- outages --------------------------------------------------------- */

static void log_down(struct redis_link *l, const char *why)
{
	char w[300];
	if (l->down_logged)
		return;
	moat_log(LOG_WARNING, "%s %s unavailable: %s%s", l->kind, redis_link_where(l, w, sizeof(w)),
		 why, l->stats ? "; the store answers \"unknown\" until it is back" : "");
	l->down_logged = 1;
	if (l->stats)
		l->stats->outages++;
}

static void log_back(struct redis_link *l)
{
	char w[300];
	if (!l->down_logged || !l->up)
		return;
	moat_log(LOG_NOTICE, "%s %s is back", l->kind, redis_link_where(l, w, sizeof(w)));
	l->down_logged = 0;
}

void redis_link_stalled(struct redis_link *l, long ms)
{
	char why[64];
	snprintf(why, sizeof(why), "no answer within %ld ms", ms);
	log_down(l, why);
}

void redis_link_answering(struct redis_link *l)
{
	log_back(l);
}

int redis_link_down(const struct redis_link *l)
{
	return !l->up || l->down_logged;
}

int redis_link_up(const struct redis_link *l)
{
	return l->up && l->ac;
}

/* ---- the connection ------------------------------------------------- */

static void schedule(struct redis_link *l, long ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	evtimer_add(l->reconnect_ev, &tv);
}

static void set_state(struct redis_link *l, int up)
{
	if (l->state_cb)
		l->state_cb(l->owner, l, up);
}

/* The connection ended (hiredis frees the context). */
static void went_down(struct redis_link *l, const char *why)
{
	l->up = 0;
	l->ac = NULL;
	if (l->too_large) {
		l->too_large = 0;
		log_too_large(l);
		schedule(l, 0);
	} else if (!l->switching) {
		log_down(l, why);
		schedule(l, l->backoff_ms);
		l->backoff_ms = l->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : l->backoff_ms * 2;
	}
	set_state(l, 0);
}

/* Ends the connection from outside hiredis's callbacks: every command
 * in flight gets its NULL reply. */
static void drop(struct redis_link *l)
{
	redisAsyncContext *ac = l->ac;
	if (!ac)
		return;
	l->ac = NULL;
	l->up = 0;
	ac->data = NULL;	/* on_disconnect: not ours to handle */
	redisAsyncFree(ac);
}

struct glue {
	redisAsyncContext *ac;
	struct redis_link *l;
	struct event *rev, *wev;
};

static void glue_read(evutil_socket_t fd, short what, void *arg)
{
	struct glue *g = arg;
	struct redis_link *l = g->l;
	redisAsyncContext *ac = g->ac;
	(void)fd;
	(void)what;
	redisAsyncHandleRead(ac);
	if (l->ac != ac)
		return;		/* hiredis ended the connection (g is gone) */
	redisReader *rd = ac->c.reader;
	if (rd && rd->len - rd->pos > l->max_reply) {
		log_too_large(l);
		drop(l);
		set_state(l, 0);
		schedule(l, 0);
	}
}

static void glue_write(evutil_socket_t fd, short what, void *arg)
{
	struct glue *g = arg;
	(void)fd;
	(void)what;
	redisAsyncHandleWrite(g->ac);
}

static void glue_add_read(void *p)
{
	event_add(((struct glue *)p)->rev, NULL);
}

static void glue_del_read(void *p)
{
	event_del(((struct glue *)p)->rev);
}

static void glue_add_write(void *p)
{
	event_add(((struct glue *)p)->wev, NULL);
}

static void glue_del_write(void *p)
{
	event_del(((struct glue *)p)->wev);
}

static void glue_cleanup(void *p)
{
	struct glue *g = p;
	if (g->rev)
		event_free(g->rev);
	if (g->wev)
		event_free(g->wev);
	free(g);
}

static int glue_attach(struct redis_link *l, redisAsyncContext *ac)
{
	struct glue *g = calloc(1, sizeof(*g));
	if (!g)
		return -1;
	g->ac = ac;
	g->l = l;
	g->rev = event_new(l->eb, ac->c.fd, EV_READ, glue_read, g);
	g->wev = event_new(l->eb, ac->c.fd, EV_WRITE, glue_write, g);
	if (!g->rev || !g->wev) {
		glue_cleanup(g);
		return -1;
	}
	ac->ev.addRead = glue_add_read;
	ac->ev.delRead = glue_del_read;
	ac->ev.addWrite = glue_add_write;
	ac->ev.delWrite = glue_del_write;
	ac->ev.cleanup = glue_cleanup;
	ac->ev.data = g;
	event_add(g->rev, NULL);
	event_add(g->wev, NULL);
	return 0;
}

static void on_connect(const redisAsyncContext *ac, int status)
{
	struct redis_link *l = ac->data;
	if (!l)
		return;
	if (status != REDIS_OK) {
		went_down(l, ac->errstr);	/* hiredis frees ac */
		return;
	}
	l->up = 1;
	l->backoff_ms = BACKOFF_MIN_MS;
	log_back(l);
	set_state(l, 1);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
	struct redis_link *l = ac->data;
	if (!l)
		return;		/* dropped by us */
	went_down(l, status == REDIS_OK ? "connection closed" : ac->errstr);
}

static void on_setup_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
	redisReply *rr = reply;
	struct redis_link *l = ac->data;
	char w[300];
	if (l && rr && rr->type == REDIS_REPLY_ERROR)
		moat_log(LOG_ERR, "%s %s: %s refused: %s", l->kind, redis_link_where(l, w, sizeof(w)),
			 (const char *)privdata, rr->str);
}

static void connect_now(struct redis_link *l)
{
	if (!l->unix_path && !l->host)
		return;
	redisAsyncContext *ac = l->unix_path ? redisAsyncConnectUnix(l->unix_path)
					     : redisAsyncConnect(l->host, l->port);
	if (!ac || ac->err || glue_attach(l, ac) < 0) {
		if (ac)
			redisAsyncFree(ac);
		went_down(l, ac ? "cannot connect" : "out of memory");
		return;
	}
	if (!hiredis_fns)
		hiredis_fns = ac->c.reader->fn;
	ac->c.reader->fn = &capped_fns;
	ac->c.reader->privdata = l;
	ac->data = l;
	l->ac = ac;
	l->too_large = 0;
	redisAsyncSetConnectCallback(ac, on_connect);
	redisAsyncSetDisconnectCallback(ac, on_disconnect);
	if (l->password) {
		if (l->user)
			redisAsyncCommand(ac, on_setup_reply, "AUTH", "AUTH %s %s", l->user, l->password);
		else
			redisAsyncCommand(ac, on_setup_reply, "AUTH", "AUTH %s", l->password);
	}
	if (l->db > 0)
		redisAsyncCommand(ac, on_setup_reply, "SELECT", "SELECT %ld", l->db);
}

static void on_reconnect(evutil_socket_t fd, short what, void *arg)
{
	struct redis_link *l = arg;
	(void)fd;
	(void)what;
	if (l->switching) {
		int was_up = l->up;
		drop(l);
		l->switching = 0;
		l->down_logged = 0;	/* a new server: its own outages */
		l->backoff_ms = BACKOFF_MIN_MS;
		if (was_up)
			set_state(l, 0);
	}
	if (!l->ac)
		connect_now(l);
}

int redis_link_is_at(const struct redis_link *l, const char *host, int port)
{
	return l->host && host && strcmp(l->host, host) == 0 && l->port == port;
}

void redis_link_set_addr(struct redis_link *l, const char *host, int port)
{
	if (redis_link_is_at(l, host, port))
		return;
	char *h = strdup(host);
	if (!h)
		return;
	free(l->host);
	l->host = h;
	l->port = port;
	l->switching = 1;
	event_del(l->reconnect_ev);
	schedule(l, 0);		/* from the loop: this may run inside a reply callback */
}

int redis_link_command(struct redis_link *l, redisCallbackFn *cb, void *privdata, int argc,
		       const char **argv, const size_t *lens)
{
	if (!l->up || !l->ac || l->switching)
		return -1;
	return redisAsyncCommandArgv(l->ac, cb, privdata, argc, argv, lens) == REDIS_OK ? 0 : -1;
}

static char *dup_nonempty(const char *s)
{
	return s && *s ? strdup(s) : NULL;
}

void redis_link_free(struct redis_link *l)
{
	if (!l)
		return;
	drop(l);
	if (l->reconnect_ev)
		event_free(l->reconnect_ev);
	free(l->kind);
	free(l->user);
	free(l->password);
	free(l->host);
	free(l->unix_path);
	free(l);
}

struct redis_link *redis_link_new(struct event_base *base, const struct redis_link_conf *conf,
				  const char *host, int port, const char *unix_path,
				  redis_link_state_cb state_cb, void *owner)
{
	struct redis_link *l = calloc(1, sizeof(*l));
	if (!l)
		return NULL;
	l->eb = base;
	l->kind = strdup(conf->kind ? conf->kind : "redis");
	l->user = dup_nonempty(conf->user);
	l->password = dup_nonempty(conf->password);
	l->db = conf->db;
	l->max_reply = conf->max_reply ? conf->max_reply : DEFAULT_MAX_REPLY;
	l->stats = conf->stats;
	l->host = dup_nonempty(host);
	l->port = port;
	l->unix_path = dup_nonempty(unix_path);
	l->backoff_ms = BACKOFF_MIN_MS;
	l->state_cb = state_cb;
	l->owner = owner;
	l->reconnect_ev = evtimer_new(base, on_reconnect, l);
	if (!l->kind || !l->reconnect_ev || (conf->user && *conf->user && !l->user) ||
	    (conf->password && *conf->password && !l->password) || (host && *host && !l->host) ||
	    (unix_path && *unix_path && !l->unix_path)) {
		redis_link_free(l);
		return NULL;
	}
	connect_now(l);
	return l;
}
