/*
 * redis_sentinel.h - finding the Redis primary through Redis Sentinel
 * (redis_sentinel.c).
 *
 * Asks the configured sentinels, one at a time, for the address of the
 * named master (SENTINEL get-master-addr-by-name), and optionally for
 * its healthy replicas (SENTINEL replicas), on the event loop. It asks
 * at start, every few seconds, and at once, then often, after
 * redis_sentinel_ask() (the primary's connection was lost, a write was
 * refused with READONLY), until the answer changes. A changed answer is
 * reported through the callbacks.
 *
 * Owns a link to each sentinel and the last answers.
 */
#ifndef MOAT_REDIS_SENTINEL_H
#define MOAT_REDIS_SENTINEL_H

#include <stddef.h>

struct event_base;
struct redis_sentinel;

struct redis_sentinel_conf {
	const char *const *addrs;	/* "host:port" of each sentinel */
	size_t n;
	const char *master;		/* the master's name in the sentinels */
	long timeout_ms;		/* for one question to one sentinel */
	size_t max_reply;		/* octets one reply may take */
	int want_replicas;		/* also ask for the healthy replicas */
};

/* The master is (now) at host:port. */
typedef void (*redis_sentinel_master_cb)(void *owner, const char *host, int port);
/* The healthy replicas are (now) these, as "host:port". */
typedef void (*redis_sentinel_replicas_cb)(void *owner, const char *const *addrs, size_t n);

struct redis_sentinel *redis_sentinel_new(struct event_base *base,
					  const struct redis_sentinel_conf *conf,
					  redis_sentinel_master_cb master_cb,
					  redis_sentinel_replicas_cb replicas_cb, void *owner);
void redis_sentinel_free(struct redis_sentinel *s);

/* Ask now, and often for a while: the primary looks gone. */
void redis_sentinel_ask(struct redis_sentinel *s);

#endif
