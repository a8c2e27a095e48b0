/*
 * store.h - the key/value store filters keep what moat learns in:
 * reputation counts, rate-limit windows, greylisting triples.
 *
 * One interface, several backends: the embedded in-memory store
 * (store_memory.c, the default) and Redis (store_redis.c); the `store`
 * section of moat.conf picks one (store_conf.c). Every operation is
 * asynchronous and completes through its callback on the loop, never
 * from inside the call that started it, so a filter treats all backends
 * alike. A store that cannot answer (down, slow, past the deadline)
 * answers MOAT_STORE_UNAVAILABLE: the caller goes on as if it knew
 * nothing; mail never waits for the store beyond the deadline.
 *
 * The store owns its data and each pending operation until its callback
 * ran or it was cancelled.
 */
#ifndef MOAT_STORE_H
#define MOAT_STORE_H

#include <stddef.h>

struct event_base;
struct moat_store;
struct moat_store_op;

enum moat_store_status {
	MOAT_STORE_OK = 0,
	MOAT_STORE_MISSING,	/* no such key (or it expired) */
	MOAT_STORE_UNAVAILABLE,	/* the store could not answer in time */
};

/* value: for get, the value (not NUL-terminated: len octets); for incr,
 * NULL and number holds the new value. Borrowed for the callback only. */
typedef void (*moat_store_cb)(void *arg, enum moat_store_status st, const char *value,
			      size_t len, long long number);

struct moat_store_ops {
	const char *name;
	struct moat_store_op *(*get)(struct moat_store *s, const char *key, moat_store_cb cb,
				     void *arg);
	/* ttl seconds; 0 = no expiry */
	struct moat_store_op *(*set)(struct moat_store *s, const char *key, const char *value,
				     size_t len, long ttl, moat_store_cb cb, void *arg);
	/* adds by to the integer at key (missing = 0); sets the expiry if
	 * the key had none */
	struct moat_store_op *(*incr)(struct moat_store *s, const char *key, long long by,
				      long ttl, moat_store_cb cb, void *arg);
	struct moat_store_op *(*del)(struct moat_store *s, const char *key, moat_store_cb cb,
				     void *arg);
	void (*cancel)(struct moat_store *s, struct moat_store_op *op);
	void (*free)(struct moat_store *s);
};

/* Counters a backend keeps, for `moat status` and the logs. */
struct moat_store_stats {
	unsigned long long ops;		/* operations started */
	unsigned long long unavailable;	/* answered MOAT_STORE_UNAVAILABLE */
	unsigned long long outages;	/* times the backend stopped answering */
	int down;			/* not answering now */
};

struct moat_store {
	const struct moat_store_ops *ops;
	struct moat_store_stats stats;	/* kept by the backend */
};

/* The embedded store: at most max_keys keys (the least recently used go
 * first), expiry by TTL. */
struct moat_store *moat_store_memory_new(struct event_base *base, size_t max_keys);

/* Convenience wrappers; cb may be NULL for fire-and-forget writes. NULL
 * is returned only when out of memory (cb then never runs). */
static inline struct moat_store_op *moat_store_get(struct moat_store *s, const char *key,
						   moat_store_cb cb, void *arg)
{
	return s->ops->get(s, key, cb, arg);
}
static inline struct moat_store_op *moat_store_set(struct moat_store *s, const char *key,
						   const char *value, size_t len, long ttl,
						   moat_store_cb cb, void *arg)
{
	return s->ops->set(s, key, value, len, ttl, cb, arg);
}
static inline struct moat_store_op *moat_store_incr(struct moat_store *s, const char *key,
						    long long by, long ttl, moat_store_cb cb,
						    void *arg)
{
	return s->ops->incr(s, key, by, ttl, cb, arg);
}
static inline struct moat_store_op *moat_store_del(struct moat_store *s, const char *key,
						   moat_store_cb cb, void *arg)
{
	return s->ops->del(s, key, cb, arg);
}
static inline void moat_store_cancel(struct moat_store *s, struct moat_store_op *op)
{
	s->ops->cancel(s, op);
}
static inline void moat_store_free(struct moat_store *s)
{
	if (s)
		s->ops->free(s);
}

#endif
