/*
 * store_redis.c - the store on Redis, through hiredis on the event loop.
 *
 * The keys live on one or more shards. A shard is a primary, where
 * every write goes, and optionally replicas that take the reads
 * (GET): round robin over the replicas that are up, the primary when
 * none is. With several servers configured each server is a shard and
 * a consistent-hash ring (redis_ring.c) picks the shard of a key; a
 * shard that is down makes its keys "unknown", they never move to
 * another server (counts would split, and come back wrong when it
 * returns). With Sentinel there is one shard whose primary (and, if
 * asked, replicas) the sentinels name (redis_sentinel.c); a lost
 * primary or a write refused with READONLY makes moat ask them again.
 *
 * hiredis 0.14 (Debian 12) has no timeout for asynchronous commands:
 * every operation here gets a deadline timer of its own, and answers
 * MOAT_STORE_UNAVAILABLE when it passes; the late reply is then
 * discarded. An operation whose server is not connected answers
 * UNAVAILABLE at once (from the loop). The connections themselves
 * (reconnects, outage logging, the reply-size cap) are redis_link.c's.
 * Every key gets the configured prefix. INCR with a TTL is one atomic
 * Lua script, so a counter never lives forever.
 *
 * Owns the links, the ring, the sentinel client, and each operation
 * until both its answer went out and hiredis is done with it.
 */
#include "store_redis.h"

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "redis_link.h"
#include "redis_ring.h"
#include "redis_sentinel.h"
#include "store.h"

struct redis_store;

struct moat_store_op {
	struct redis_store *r;
	struct moat_store_op *next, *prev;
	moat_store_cb cb;
	void *arg;
	struct event *timer;
	struct redis_link *link;	/* where it was sent */
	int answered;		/* the caller heard back (or cancelled) */
	int in_hiredis;		/* hiredis still holds it as privdata */
	int integer_reply;	/* INCR: the answer is a number */
};

struct shard {
	struct redis_link *primary;
	struct redis_link **replicas;
	size_t nreplicas;
	size_t next;		/* round robin over the replicas */
};

struct redis_store {
	struct moat_store base;
	struct event_base *eb;
	long timeout_ms;
	char *prefix;
	char *user, *password;
	long db;
	size_t max_reply;
	struct shard *shards;
	size_t nshards;
	struct redis_ring *ring;	/* several shards */
	struct redis_sentinel *sentinel;
	struct moat_store_op *ops;
};

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

/* The store is down while a primary is (lost, or stalled). */
static void refresh_down(struct redis_store *r)
{
	int down = 0;
	for (size_t i = 0; i < r->nshards; i++)
		down |= redis_link_down(r->shards[i].primary);
	r->base.stats.down = down;
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct moat_store_op *op = arg;
	(void)fd;
	(void)what;
	if (op->in_hiredis && !op->answered && op->link && redis_link_up(op->link)) {
		redis_link_stalled(op->link, op->r->timeout_ms);
		refresh_down(op->r);
	}
	answer(op, MOAT_STORE_UNAVAILABLE, NULL, 0, 0);
	op_maybe_free(op);
}

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct moat_store_op *op = privdata;
	struct redis_store *r = op->r;
	redisReply *rr = reply;
	(void)ac;
	op->in_hiredis = 0;
	if (rr && !op->answered) {
		redis_link_answering(op->link);
		refresh_down(r);
	}
	if (rr && rr->type == REDIS_REPLY_ERROR && r->sentinel && strncmp(rr->str, "READONLY", 8) == 0)
		redis_sentinel_ask(r->sentinel);	/* a demoted primary */
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

/* A new operation; NULL if out of memory. */
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
	return op;
}

/* Where key's operation goes: its shard's primary, or for a read an up
 * replica of it when there is one. */
static struct redis_link *route(struct redis_store *r, const char *key, int read)
{
	struct shard *sh = &r->shards[r->ring ? redis_ring_pick(r->ring, key) : 0];
	for (size_t i = 0; read && i < sh->nreplicas; i++) {
		struct redis_link *l = sh->replicas[sh->next++ % sh->nreplicas];
		if (redis_link_up(l) && !redis_link_down(l))
			return l;
	}
	return sh->primary;
}

/* Sends argv for key (the key as the caller named it, before the
 * prefix) on op; anything that cannot be sent answers UNAVAILABLE from
 * the loop at once. */
static struct moat_store_op *command(struct redis_store *r, struct moat_store_op *op,
				     const char *key, int read, int argc, const char **argv,
				     const size_t *lens)
{
	if (!op)
		return NULL;
	long ms = 0;
	if (key) {
		op->link = route(r, key, read);
		if (redis_link_command(op->link, on_reply, op, argc, argv, lens) == 0) {
			op->in_hiredis = 1;
			ms = r->timeout_ms;
		}
	}
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	evtimer_add(op->timer, &tv);
	return op;
}

#define KEY_MAX 1024

/* key with the prefix into buf; -1 if it does not fit (the operation
 * then answers UNAVAILABLE). */
static int full_key(const struct redis_store *r, const char *key, char *buf, size_t *len)
{
	int n = snprintf(buf, KEY_MAX, "%s%s", r->prefix ? r->prefix : "", key);
	if (n < 0 || n >= KEY_MAX)
		return -1;
	*len = (size_t)n;
	return 0;
}

static struct moat_store_op *r_get(struct moat_store *s, const char *key, moat_store_cb cb,
				   void *arg)
{
	struct redis_store *r = (struct redis_store *)s;
	char k[KEY_MAX];
	size_t klen = 0;
	int ok = full_key(r, key, k, &klen) == 0;
	const char *argv[] = {"GET", k};
	size_t lens[] = {3, klen};
	return command(r, op_new(r, cb, arg), ok ? key : NULL, 1, 2, argv, lens);
}

static struct moat_store_op *r_set(struct moat_store *s, const char *key, const char *value,
				   size_t len, long ttl, moat_store_cb cb, void *arg)
{
	struct redis_store *r = (struct redis_store *)s;
	char ttlbuf[32], k[KEY_MAX];
	size_t klen = 0;
	int ok = full_key(r, key, k, &klen) == 0;
	int n = snprintf(ttlbuf, sizeof(ttlbuf), "%ld", ttl);
	const char *argv[] = {"SET", k, value, "EX", ttlbuf};
	size_t lens[] = {3, klen, len, 2, (size_t)n};
	return command(r, op_new(r, cb, arg), ok ? key : NULL, 0, ttl > 0 ? 5 : 3, argv, lens);
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
	size_t klen = 0;
	int ok = full_key(r, key, k, &klen) == 0;
	int nb = snprintf(bybuf, sizeof(bybuf), "%lld", by);
	int nt = snprintf(ttlbuf, sizeof(ttlbuf), "%ld", ttl);
	const char *argv[] = {"EVAL", incr_script, "1", k, bybuf, ttlbuf};
	size_t lens[] = {4, sizeof(incr_script) - 1, 1, klen, (size_t)nb, (size_t)nt};
	struct moat_store_op *op = op_new(r, cb, arg);
	if (op)
		op->integer_reply = 1;
	return command(r, op, ok ? key : NULL, 0, 6, argv, lens);
}

static struct moat_store_op *r_del(struct moat_store *s, const char *key, moat_store_cb cb,
				   void *arg)
{
	struct redis_store *r = (struct redis_store *)s;
	char k[KEY_MAX];
	size_t klen = 0;
	int ok = full_key(r, key, k, &klen) == 0;
	const char *argv[] = {"DEL", k};
	size_t lens[] = {3, klen};
	return command(r, op_new(r, cb, arg), ok ? key : NULL, 0, 2, argv, lens);
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

/* ---- servers ---------------------------------------------------------- */

static void on_link_state(void *owner, struct redis_link *l, int up)
{
	struct redis_store *r = owner;
	if (!r->shards)
		return;		/* still being built */
	refresh_down(r);
	if (!up && r->sentinel && l == r->shards[0].primary)
		redis_sentinel_ask(r->sentinel);
}

static struct redis_link *link_new(struct redis_store *r, const char *kind, const char *host,
				   int port, const char *unix_path)
{
	struct redis_link_conf lc = {
		.kind = kind,
		.user = r->user,
		.password = r->password,
		.db = r->db,
		.max_reply = r->max_reply,
		.stats = strcmp(kind, "redis") == 0 ? &r->base.stats : NULL,
	};
	return redis_link_new(r->eb, &lc, host, port, unix_path, on_link_state, r);
}

static struct redis_link *link_to(struct redis_store *r, const char *kind, const char *spec)
{
	char host[256];
	int port;
	if (redis_addr_parse(spec, host, sizeof(host), &port) < 0) {
		moat_log(LOG_ERR, "redis: \"%s\" is not host:port", spec);
		return NULL;
	}
	return link_new(r, kind, host, port, NULL);
}

static void free_replicas(struct shard *sh)
{
	for (size_t i = 0; i < sh->nreplicas; i++)
		redis_link_free(sh->replicas[i]);
	free(sh->replicas);
	sh->replicas = NULL;
	sh->nreplicas = 0;
}

static int set_replicas(struct redis_store *r, struct shard *sh, const char *const *specs, size_t n)
{
	free_replicas(sh);
	if (n == 0)
		return 0;
	if (!(sh->replicas = calloc(n, sizeof(*sh->replicas))))
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (!(sh->replicas[i] = link_to(r, "redis replica", specs[i])))
			return -1;
		sh->nreplicas++;
	}
	return 0;
}

static void sentinel_master(void *owner, const char *host, int port)
{
	struct redis_store *r = owner;
	redis_link_set_addr(r->shards[0].primary, host, port);
}

static void sentinel_replicas(void *owner, const char *const *addrs, size_t n)
{
	struct redis_store *r = owner;
	if (set_replicas(r, &r->shards[0], addrs, n) < 0)
		free_replicas(&r->shards[0]);	/* reads go to the primary */
}

static void r_free(struct moat_store *s)
{
	struct redis_store *r = (struct redis_store *)s;
	redis_sentinel_free(r->sentinel);
	r->sentinel = NULL;
	for (size_t i = 0; r->shards && i < r->nshards; i++) {
		redis_link_free(r->shards[i].primary);	/* pending replies come back NULL */
		free_replicas(&r->shards[i]);
	}
	while (r->ops) {
		struct moat_store_op *op = r->ops;
		op->in_hiredis = 0;
		op->answered = 1;
		op_maybe_free(op);
	}
	free(r->shards);
	redis_ring_free(r->ring);
	free(r->prefix);
	free(r->user);
	free(r->password);
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

static int build_shards(struct redis_store *r, const struct moat_store_redis_conf *conf)
{
	size_t n = conf->nsentinels ? 1 : conf->nservers > 1 ? conf->nservers : 1;
	struct shard *shards = calloc(n, sizeof(*shards));
	if (!shards)
		return -1;
	int bad = 0;
	if (conf->nsentinels) {
		bad = !(shards[0].primary = link_new(r, "redis", NULL, 0, NULL));
	} else if (conf->nservers > 1) {
		for (size_t i = 0; i < n && !bad; i++)
			bad = !(shards[i].primary = link_to(r, "redis", conf->servers[i]));
		bad = bad || !(r->ring = redis_ring_new(conf->servers, n));
	} else if (conf->nservers == 1) {
		bad = !(shards[0].primary = link_to(r, "redis", conf->servers[0]));
	} else {
		bad = !(shards[0].primary = link_new(r, "redis", conf->host ? conf->host : "127.0.0.1",
						     conf->port, conf->unix_path));
	}
	r->shards = shards;
	r->nshards = n;
	if (!bad && !conf->nsentinels && n == 1)
		bad = set_replicas(r, &shards[0], conf->replicas, conf->nreplicas) < 0;
	for (size_t i = 0; bad && i < n; i++)
		if (!shards[i].primary)
			r->nshards = i;	/* free only what was made */
	refresh_down(r);
	return bad ? -1 : 0;
}

struct moat_store *moat_store_redis_new(struct event_base *base,
					const struct moat_store_redis_conf *conf)
{
	struct redis_store *r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	r->base.ops = &redis_ops;
	r->eb = base;
	r->timeout_ms = conf->timeout_ms > 0 ? conf->timeout_ms : 200;
	r->db = conf->db;
	r->max_reply = conf->max_reply;
	r->prefix = dup0(conf->prefix);
	r->user = dup0(conf->user);
	r->password = dup0(conf->password);
	if ((conf->prefix && !r->prefix) || (conf->user && !r->user) ||
	    (conf->password && !r->password) || build_shards(r, conf) < 0)
		goto fail;
	if (conf->nsentinels) {
		struct redis_sentinel_conf sc = {
			.addrs = conf->sentinels,
			.n = conf->nsentinels,
			.master = conf->sentinel_master,
			.timeout_ms = r->timeout_ms,
			.max_reply = conf->max_reply,
			.want_replicas = conf->sentinel_replica_reads,
		};
		if (!(r->sentinel = redis_sentinel_new(base, &sc, sentinel_master, sentinel_replicas, r)))
			goto fail;
	}
	return &r->base;
fail:
	r_free(&r->base);
	return NULL;
}
