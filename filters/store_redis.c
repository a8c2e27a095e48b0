/*
 * store_redis.c - the store on a Redis server, through hiredis on the
 * event loop (its libevent adapter).
 *
 * hiredis 0.14 (Debian 12) has no timeout for asynchronous commands:
 * every operation here gets a deadline timer of its own, and answers
 * MOAT_STORE_UNAVAILABLE when it passes; the late reply is then
 * discarded. While the server is down, operations answer UNAVAILABLE at
 * once (from the loop) and the connection is retried with a growing
 * backoff; the outage and the recovery are logged once each, and so is
 * a server that stays connected but stops answering within the deadline
 * (stalled, overloaded). Every key gets the configured prefix; SELECT
 * picks the database after each connect. INCR with a TTL is one atomic
 * Lua script, so a counter never lives forever.
 *
 * Owns the hiredis context and each operation until both its answer
 * went out and hiredis is done with it.
 */
#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "store.h"
#include "store_redis.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 10000

struct redis_store;

struct moat_store_op {
	struct redis_store *r;
	struct moat_store_op *next, *prev;
	moat_store_cb cb;
	void *arg;
	struct event *timer;
	int answered;		/* the caller heard back (or cancelled) */
	int in_hiredis;		/* hiredis still holds it as privdata */
	int integer_reply;	/* INCR: the answer is a number */
};

struct redis_store {
	struct moat_store base;
	struct event_base *eb;
	struct moat_store_redis_conf conf;
	redisAsyncContext *ac;
	int up;			/* connected (and authenticated if asked) */
	int down_logged;
	long backoff_ms;
	struct event *reconnect_ev;
	struct moat_store_op *ops;
};

static void connect_now(struct redis_store *r);

static void op_unlink(struct moat_store_op *op)
{
	struct redis_store *r = op->r;
	if (op->prev)
		op->prev->next = op->next;
	else if (r->ops == op)
		r->ops = op->next;
	if (op->next)
		op->next->prev = op->prev;
	op->next = op->prev = NULL;
}

static void op_maybe_free(struct moat_store_op *op)
{
	if (!op->answered || op->in_hiredis)
		return;
	op_unlink(op);
	if (op->timer)
		event_free(op->timer);
	free(op);
}

static void answer(struct moat_store_op *op, enum moat_store_status st, const char *v,
		   size_t len, long long n)
{
	if (op->answered)
		return;
	op->answered = 1;
	if (op->timer)
		evtimer_del(op->timer);
	if (st == MOAT_STORE_UNAVAILABLE)
		op->r->base.stats.unavailable++;
	if (op->cb)
		op->cb(op->arg, st, v, len, n);
}

static const char *where(const struct redis_store *r, char *buf, size_t len);

/* The server is connected but did not answer in time: one line per
 * outage, as for a lost connection. */
static void stalled(struct redis_store *r)
{
	char w[300];
	if (r->down_logged)
		return;
	moat_log(LOG_WARNING, "redis %s unavailable: no answer within %ld ms; the store answers "
		 "\"unknown\" until it is back", where(r, w, sizeof(w)), r->conf.timeout_ms);
	r->down_logged = 1;
	r->base.stats.outages++;
	r->base.stats.down = 1;
}

static void answering(struct redis_store *r)
{
	char w[300];
	if (!r->down_logged || !r->up)
		return;
	moat_log(LOG_NOTICE, "redis %s is back", where(r, w, sizeof(w)));
	r->down_logged = 0;
	r->base.stats.down = 0;
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct moat_store_op *op = arg;
	(void)fd;
	(void)what;
	if (op->r->up && op->in_hiredis && !op->answered)
		stalled(op->r);
	answer(op, MOAT_STORE_UNAVAILABLE, NULL, 0, 0);
	op_maybe_free(op);
}

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct moat_store_op *op = privdata;
	redisReply *rr = reply;
	(void)ac;
	op->in_hiredis = 0;
	if (rr && !op->answered)
		answering(op->r);
	if (!rr || rr->type == REDIS_REPLY_ERROR)
		answer(op, MOAT_STORE_UNAVAILABLE, NULL, 0, 0);
	else if (rr->type == REDIS_REPLY_NIL)
		answer(op, MOAT_STORE_MISSING, NULL, 0, 0);
	else if (rr->type == REDIS_REPLY_STRING)
		answer(op, MOAT_STORE_OK, rr->str, rr->len, 0);
	else if (rr->type == REDIS_REPLY_INTEGER)
		answer(op, op->integer_reply || rr->integer > 0 ? MOAT_STORE_OK : MOAT_STORE_MISSING,
		       NULL, 0, rr->integer);
	else
		answer(op, MOAT_STORE_OK, NULL, 0, 0);
	op_maybe_free(op);
}

/* A new operation with its deadline armed; NULL if out of memory. */
static struct moat_store_op *op_new(struct redis_store *r, moat_store_cb cb, void *arg)
{
	struct moat_store_op *op = calloc(1, sizeof(*op));
	if (!op || !(op->timer = evtimer_new(r->eb, on_deadline, op))) {
		free(op);
		return NULL;
	}
	r->base.stats.ops++;
	op->r = r;
	op->cb = cb;
	op->arg = arg;
	op->next = r->ops;
	if (r->ops)
		r->ops->prev = op;
	r->ops = op;
	long ms = r->up ? r->conf.timeout_ms : 0;	/* down: answer at once, from the loop */
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	evtimer_add(op->timer, &tv);
	return op;
}

/* Sends argv to the server for op; when down, the deadline (0) answers. */
static struct moat_store_op *command(struct redis_store *r, struct moat_store_op *op, int argc,
				     const char **argv, const size_t *lens)
{
	if (!op)
		return NULL;
	if (r->up && r->ac &&
	    redisAsyncCommandArgv(r->ac, on_reply, op, argc, argv, lens) == REDIS_OK)
		op->in_hiredis = 1;
	else if (r->up) {
		struct timeval now = {0, 0};
		evtimer_add(op->timer, &now);
	}
	return op;
}

#define KEY_MAX 1024

/* key with the prefix into buf; -1 if it does not fit (the operation
 * then answers UNAVAILABLE). */
static int full_key(const struct redis_store *r, const char *key, char *buf, size_t *len)
{
	int n = snprintf(buf, KEY_MAX, "%s%s", r->conf.prefix ? r->conf.prefix : "", key);
	if (n < 0 || n >= KEY_MAX)
		return -1;
	*len = (size_t)n;
	return 0;
}

/* An operation that cannot be sent: answered UNAVAILABLE from the loop. */
static struct moat_store_op *refuse(struct moat_store_op *op)
{
	struct timeval now = {0, 0};
	if (op)
		evtimer_add(op->timer, &now);
	return op;
}

static struct moat_store_op *r_get(struct moat_store *s, const char *key, moat_store_cb cb,
				   void *arg)
{
	struct redis_store *r = (struct redis_store *)s;
	char k[KEY_MAX];
	size_t klen;
	if (full_key(r, key, k, &klen) < 0)
		return refuse(op_new(r, cb, arg));
	const char *argv[] = {"GET", k};
	size_t lens[] = {3, klen};
	return command(r, op_new(r, cb, arg), 2, argv, lens);
}

static struct moat_store_op *r_set(struct moat_store *s, const char *key, const char *value,
				   size_t len, long ttl, moat_store_cb cb, void *arg)
{
	struct redis_store *r = (struct redis_store *)s;
	char ttlbuf[32], k[KEY_MAX];
	size_t klen;
	if (full_key(r, key, k, &klen) < 0)
		return refuse(op_new(r, cb, arg));
	int n = snprintf(ttlbuf, sizeof(ttlbuf), "%ld", ttl);
	const char *argv[] = {"SET", k, value, "EX", ttlbuf};
	size_t lens[] = {3, klen, len, 2, (size_t)n};
	return command(r, op_new(r, cb, arg), ttl > 0 ? 5 : 3, argv, lens);
}

/* INCRBY, and EXPIRE when the key has no expiry yet, atomically. */
static const char incr_script[] =
	"local v = redis.call('INCRBY', KEYS[1], ARGV[1]) "
	"if tonumber(ARGV[2]) > 0 and redis.call('TTL', KEYS[1]) < 0 then "
	"redis.call('EXPIRE', KEYS[1], ARGV[2]) end return v";

static struct moat_store_op *r_incr(struct moat_store *s, const char *key, long long by,
				    long ttl, moat_store_cb cb, void *arg)
{
	struct redis_store *r = (struct redis_store *)s;
	char bybuf[32], ttlbuf[32], k[KEY_MAX];
	size_t klen;
	if (full_key(r, key, k, &klen) < 0)
		return refuse(op_new(r, cb, arg));
	int nb = snprintf(bybuf, sizeof(bybuf), "%lld", by);
	int nt = snprintf(ttlbuf, sizeof(ttlbuf), "%ld", ttl);
	const char *argv[] = {"EVAL", incr_script, "1", k, bybuf, ttlbuf};
	size_t lens[] = {4, sizeof(incr_script) - 1, 1, klen, (size_t)nb, (size_t)nt};
	struct moat_store_op *op = op_new(r, cb, arg);
	if (op)
		op->integer_reply = 1;
	return command(r, op, 6, argv, lens);
}

static struct moat_store_op *r_del(struct moat_store *s, const char *key, moat_store_cb cb,
				   void *arg)
{
	struct redis_store *r = (struct redis_store *)s;
	char k[KEY_MAX];
	size_t klen;
	if (full_key(r, key, k, &klen) < 0)
		return refuse(op_new(r, cb, arg));
	const char *argv[] = {"DEL", k};
	size_t lens[] = {3, klen};
	return command(r, op_new(r, cb, arg), 2, argv, lens);
}

static void r_cancel(struct moat_store *s, struct moat_store_op *op)
{
	(void)s;
	if (!op)
		return;
	op->answered = 1;
	op->cb = NULL;
	if (op->timer)
		evtimer_del(op->timer);
	op_maybe_free(op);
}

/* ---- the connection ----------------------------------------------------- */

static const char *where(const struct redis_store *r, char *buf, size_t len)
{
	if (r->conf.unix_path && *r->conf.unix_path)
		snprintf(buf, len, "unix:%s", r->conf.unix_path);
	else
		snprintf(buf, len, "%s:%d", r->conf.host, r->conf.port);
	return buf;
}

static void went_down(struct redis_store *r, const char *why)
{
	char w[300];
	r->up = 0;
	r->ac = NULL;
	if (!r->down_logged) {
		moat_log(LOG_WARNING, "redis %s unavailable: %s; the store answers \"unknown\" "
			 "until it is back", where(r, w, sizeof(w)), why);
		r->down_logged = 1;
		r->base.stats.outages++;
		r->base.stats.down = 1;
	}
	struct timeval tv = {r->backoff_ms / 1000, (r->backoff_ms % 1000) * 1000};
	evtimer_add(r->reconnect_ev, &tv);
	r->backoff_ms = r->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : r->backoff_ms * 2;
}

static void on_connect(const redisAsyncContext *ac, int status)
{
	struct redis_store *r = ac->data;
	char w[300];
	if (status != REDIS_OK) {
		went_down(r, ac->errstr);	/* hiredis frees ac */
		return;
	}
	r->up = 1;
	r->backoff_ms = BACKOFF_MIN_MS;
	if (r->down_logged) {
		moat_log(LOG_NOTICE, "redis %s is back", where(r, w, sizeof(w)));
		r->down_logged = 0;
		r->base.stats.down = 0;
	}
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
	struct redis_store *r = ac->data;
	if (!r)
		return;		/* our own redisAsyncFree at the end */
	went_down(r, status == REDIS_OK ? "connection closed" : ac->errstr);
}

static void on_auth(redisAsyncContext *ac, void *reply, void *privdata)
{
	redisReply *rr = reply;
	(void)privdata;
	if (rr && rr->type == REDIS_REPLY_ERROR)
		moat_log(LOG_ERR, "redis: AUTH refused: %s", rr->str);
	(void)ac;
}

static void on_select(redisAsyncContext *ac, void *reply, void *privdata)
{
	redisReply *rr = reply;
	(void)privdata;
	(void)ac;
	if (rr && rr->type == REDIS_REPLY_ERROR)
		moat_log(LOG_ERR, "redis: SELECT refused: %s", rr->str);
}

static void connect_now(struct redis_store *r)
{
	redisAsyncContext *ac = r->conf.unix_path && *r->conf.unix_path
					? redisAsyncConnectUnix(r->conf.unix_path)
					: redisAsyncConnect(r->conf.host, r->conf.port);
	if (!ac || ac->err) {
		if (ac)
			redisAsyncFree(ac);
		went_down(r, ac ? "cannot connect" : "out of memory");
		return;
	}
	ac->data = r;
	r->ac = ac;
	redisLibeventAttach(ac, r->eb);
	redisAsyncSetConnectCallback(ac, on_connect);
	redisAsyncSetDisconnectCallback(ac, on_disconnect);
	if (r->conf.password && *r->conf.password) {
		if (r->conf.user && *r->conf.user)
			redisAsyncCommand(ac, on_auth, NULL, "AUTH %s %s", r->conf.user,
					  r->conf.password);
		else
			redisAsyncCommand(ac, on_auth, NULL, "AUTH %s", r->conf.password);
	}
	if (r->conf.db > 0)
		redisAsyncCommand(ac, on_select, NULL, "SELECT %ld", r->conf.db);
}

static void on_reconnect(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	connect_now(arg);
}

static void r_free(struct moat_store *s)
{
	struct redis_store *r = (struct redis_store *)s;
	if (r->ac) {
		r->ac->data = NULL;
		redisAsyncFree(r->ac);	/* calls pending callbacks with NULL */
	}
	while (r->ops) {
		struct moat_store_op *op = r->ops;
		op->in_hiredis = 0;
		op->answered = 1;
		op_maybe_free(op);
	}
	if (r->reconnect_ev)
		event_free(r->reconnect_ev);
	free(r->conf.host);
	free(r->conf.unix_path);
	free(r->conf.user);
	free(r->conf.password);
	free(r->conf.prefix);
	free(r);
}

static const struct moat_store_ops redis_ops = {
	.name = "redis",
	.get = r_get,
	.set = r_set,
	.incr = r_incr,
	.del = r_del,
	.cancel = r_cancel,
	.free = r_free,
};

static char *dup0(const char *s)
{
	return s ? strdup(s) : NULL;
}

struct moat_store *moat_store_redis_new(struct event_base *base,
					const struct moat_store_redis_conf *conf)
{
	struct redis_store *r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	r->base.ops = &redis_ops;
	r->eb = base;
	r->conf = *conf;
	r->conf.host = dup0(conf->host ? conf->host : "127.0.0.1");
	r->conf.unix_path = dup0(conf->unix_path);
	r->conf.user = dup0(conf->user);
	r->conf.password = dup0(conf->password);
	r->conf.prefix = dup0(conf->prefix);
	if (r->conf.timeout_ms <= 0)
		r->conf.timeout_ms = 200;
	r->backoff_ms = BACKOFF_MIN_MS;
	r->reconnect_ev = evtimer_new(base, on_reconnect, r);
	if (!r->conf.host || !r->reconnect_ev) {
		r_free(&r->base);
		return NULL;
	}
	connect_now(r);
	return &r->base;
}
