/*
 * store_redis.h - the store on a Redis server (store_redis.c).
 */
#ifndef MOAT_STORE_REDIS_H
#define MOAT_STORE_REDIS_H

#include "store.h"

struct moat_store_redis_conf {
	char *host;		/* TCP, with port */
	int port;
	char *unix_path;	/* or a unix socket: used when set */
	char *user;		/* ACL user (Redis 6+), or NULL */
	char *password;		/* AUTH, or NULL */
	long timeout_ms;	/* deadline of every operation */
	long db;		/* SELECT this database (0: the default) */
	char *prefix;		/* put before every key ("moat:"), or NULL */
};

/* Connects in the background; usable at once (operations answer
 * UNAVAILABLE until connected). The strings are copied. */
struct moat_store *moat_store_redis_new(struct event_base *base,
					const struct moat_store_redis_conf *conf);

#endif
