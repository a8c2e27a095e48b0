/*
 * store_memory.c - the embedded store: a hash table in the daemon's
 * memory, bounded in keys (least recently used evicted first), with
 * expiry by TTL.
 *
 * Operations act on the table at once; their results are queued and
 * delivered from the loop (one deferred event), so callers see the same
 * asynchronous behaviour as with a remote store. Owns the table, its
 * entries and the queue of results.
 */
#include <errno.h>
#include <event2/event.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fnv.h"
#include "store.h"

struct entry {
	char *key;
	char *val;
	size_t len;
	time_t expires;		/* 0: never */
	struct entry *hnext;	/* bucket chain */
	struct entry *lprev, *lnext;	/* LRU list, most recent first */
};

struct moat_store_op {
	struct moat_store_op *next, *prev;
	moat_store_cb cb;
	void *arg;
	enum moat_store_status st;
	char *value;
	size_t len;
	long long number;
};

struct mem_store {
	struct moat_store base;
	struct event *deliver_ev;
	struct entry **buckets;
	size_t nbuckets, nkeys, max_keys;
	struct entry *lru_head, *lru_tail;
	struct moat_store_op *q_head, *q_tail;
};

static time_t now_sec(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

static uint64_t hash(const char *s)
{
	return moat_fnv1a(s, strlen(s));
}

static void lru_unlink(struct mem_store *m, struct entry *e)
{
	if (e->lprev)
		e->lprev->lnext = e->lnext;
	else
		m->lru_head = e->lnext;
	if (e->lnext)
		e->lnext->lprev = e->lprev;
	else
		m->lru_tail = e->lprev;
	e->lprev = e->lnext = NULL;
}

static void lru_front(struct mem_store *m, struct entry *e)
{
	e->lnext = m->lru_head;
	e->lprev = NULL;
	if (m->lru_head)
		m->lru_head->lprev = e;
	m->lru_head = e;
	if (!m->lru_tail)
		m->lru_tail = e;
}

static void entry_remove(struct mem_store *m, struct entry *e)
{
	struct entry **pp = &m->buckets[hash(e->key) % m->nbuckets];
	while (*pp && *pp != e)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = e->hnext;
	lru_unlink(m, e);
	m->nkeys--;
	free(e->key);
	free(e->val);
	free(e);
}

/* The live entry for key, or NULL (an expired one is removed). */
static struct entry *lookup(struct mem_store *m, const char *key)
{
	struct entry *e = m->buckets[hash(key) % m->nbuckets];
	while (e && strcmp(e->key, key) != 0)
		e = e->hnext;
	if (e && e->expires && e->expires <= now_sec()) {
		entry_remove(m, e);
		return NULL;
	}
	if (e) {
		lru_unlink(m, e);
		lru_front(m, e);
	}
	return e;
}

static struct entry *create(struct mem_store *m, const char *key)
{
	if (m->nkeys >= m->max_keys && m->lru_tail)
		entry_remove(m, m->lru_tail);
	struct entry *e = calloc(1, sizeof(*e));
	if (!e || !(e->key = strdup(key))) {
		free(e);
		return NULL;
	}
	size_t b = hash(key) % m->nbuckets;
	e->hnext = m->buckets[b];
	m->buckets[b] = e;
	lru_front(m, e);
	m->nkeys++;
	return e;
}

static void deliver(evutil_socket_t fd, short what, void *arg)
{
	struct mem_store *m = arg;
	(void)fd;
	(void)what;
	/* Take the queue as it is: callbacks may queue more (delivered on
	 * the next round of the loop). */
	struct moat_store_op *op = m->q_head;
	m->q_head = m->q_tail = NULL;
	while (op) {
		struct moat_store_op *next = op->next;
		if (op->cb)
			op->cb(op->arg, op->st, op->value, op->len, op->number);
		free(op->value);
		free(op);
		op = next;
	}
}

static struct moat_store_op *queue(struct mem_store *m, moat_store_cb cb, void *arg,
				   enum moat_store_status st, const char *value, size_t len,
				   long long number)
{
	struct moat_store_op *op = calloc(1, sizeof(*op));
	m->base.stats.ops++;
	if (st == MOAT_STORE_UNAVAILABLE)
		m->base.stats.unavailable++;
	if (!op)
		return NULL;
	op->cb = cb;
	op->arg = arg;
	op->st = st;
	op->number = number;
	if (value) {
		op->value = malloc(len + 1);
		if (!op->value) {
			free(op);
			return NULL;
		}
		memcpy(op->value, value, len);
		op->value[len] = '\0';
		op->len = len;
	}
	op->prev = m->q_tail;
	if (m->q_tail)
		m->q_tail->next = op;
	else
		m->q_head = op;
	m->q_tail = op;
	event_active(m->deliver_ev, EV_TIMEOUT, 0);
	return op;
}

static struct moat_store_op *mem_get(struct moat_store *s, const char *key, moat_store_cb cb,
				     void *arg)
{
	struct mem_store *m = (struct mem_store *)s;
	struct entry *e = lookup(m, key);
	if (!e)
		return queue(m, cb, arg, MOAT_STORE_MISSING, NULL, 0, 0);
	return queue(m, cb, arg, MOAT_STORE_OK, e->val ? e->val : "", e->len, 0);
}

static struct moat_store_op *mem_set(struct moat_store *s, const char *key, const char *value,
				     size_t len, long ttl, moat_store_cb cb, void *arg)
{
	struct mem_store *m = (struct mem_store *)s;
	struct entry *e = lookup(m, key);
	char *copy = malloc(len + 1);
	if (!copy || (!e && !(e = create(m, key)))) {
		free(copy);
		return queue(m, cb, arg, MOAT_STORE_UNAVAILABLE, NULL, 0, 0);
	}
	memcpy(copy, value, len);
	copy[len] = '\0';
	free(e->val);
	e->val = copy;
	e->len = len;
	e->expires = ttl > 0 ? now_sec() + ttl : 0;
	return queue(m, cb, arg, MOAT_STORE_OK, NULL, 0, 0);
}

static struct moat_store_op *mem_incr(struct moat_store *s, const char *key, long long by,
				      long ttl, moat_store_cb cb, void *arg)
{
	struct mem_store *m = (struct mem_store *)s;
	struct entry *e = lookup(m, key);
	long long v = 0;
	char buf[32];
	if (e && e->val) {
		char *end;
		errno = 0;
		v = strtoll(e->val, &end, 10);
		if (errno || *end)	/* not an integer: as Redis, an error */
			return queue(m, cb, arg, MOAT_STORE_UNAVAILABLE, NULL, 0, 0);
	}
	if (!e && !(e = create(m, key)))
		return queue(m, cb, arg, MOAT_STORE_UNAVAILABLE, NULL, 0, 0);
	v += by;
	int n = snprintf(buf, sizeof(buf), "%lld", v);
	char *copy = strdup(buf);
	if (!copy)
		return queue(m, cb, arg, MOAT_STORE_UNAVAILABLE, NULL, 0, 0);
	free(e->val);
	e->val = copy;
	e->len = (size_t)n;
	if (!e->expires && ttl > 0)
		e->expires = now_sec() + ttl;
	return queue(m, cb, arg, MOAT_STORE_OK, NULL, 0, v);
}

static struct moat_store_op *mem_del(struct moat_store *s, const char *key, moat_store_cb cb,
				     void *arg)
{
	struct mem_store *m = (struct mem_store *)s;
	struct entry *e = lookup(m, key);
	if (e)
		entry_remove(m, e);
	return queue(m, cb, arg, e ? MOAT_STORE_OK : MOAT_STORE_MISSING, NULL, 0, 0);
}

static void mem_cancel(struct moat_store *s, struct moat_store_op *op)
{
	struct mem_store *m = (struct mem_store *)s;
	if (!op)
		return;
	if (op->prev)
		op->prev->next = op->next;
	else
		m->q_head = op->next;
	if (op->next)
		op->next->prev = op->prev;
	else
		m->q_tail = op->prev;
	free(op->value);
	free(op);
}

static void mem_free(struct moat_store *s)
{
	struct mem_store *m = (struct mem_store *)s;
	while (m->q_head)
		mem_cancel(s, m->q_head);
	while (m->lru_head)
		entry_remove(m, m->lru_head);
	if (m->deliver_ev)
		event_free(m->deliver_ev);
	free(m->buckets);
	free(m);
}

static const struct moat_store_ops memory_ops = {
	.name = "memory",
	.get = mem_get,
	.set = mem_set,
	.incr = mem_incr,
	.del = mem_del,
	.cancel = mem_cancel,
	.free = mem_free,
};

struct moat_store *moat_store_memory_new(struct event_base *base, size_t max_keys)
{
	struct mem_store *m = calloc(1, sizeof(*m));
	if (!m)
		return NULL;
	m->base.ops = &memory_ops;
	m->max_keys = max_keys ? max_keys : 1;
	m->nbuckets = 1024;
	while (m->nbuckets < m->max_keys && m->nbuckets < (1u << 24))
		m->nbuckets *= 2;
	m->buckets = calloc(m->nbuckets, sizeof(*m->buckets));
	m->deliver_ev = event_new(base, -1, 0, deliver, m);
	if (!m->buckets || !m->deliver_ev) {
		mem_free(&m->base);
		return NULL;
	}
	return &m->base;
}
