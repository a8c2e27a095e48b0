/*
 * store_redis.h - the store on Redis (store_redis.c): one server, a
 * primary found through Sentinel, replicas for reads, or several
 * servers sharing the keys by consistent hashing.
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
	size_t max_reply;	/* octets one reply may take (0: 1 MiB) */
	/* Several servers, "host:port" each: keys spread over them by a
	 * consistent-hash ring (host, port and unix_path are then unused). */
	const char *const *servers;
	size_t nservers;
	/* Replicas of the one server, "host:port" each: reads go there. */
	const char *const *replicas;
	size_t nreplicas;
	/* Sentinels, "host:port" each: the primary is the master they name
	 * sentinel_master (host, port and unix_path are then unused). */
	const char *const *sentinels;
	size_t nsentinels;
	const char *sentinel_master;
	int sentinel_replica_reads;	/* reads go to replicas the sentinels list */
};

/* Connects in the background; usable at once (operations answer
 * UNAVAILABLE until connected). The strings are copied. NULL when out
 * of memory or an address in a list is not host:port. */
struct moat_store *moat_store_redis_new(struct event_base *base,
					const struct moat_store_redis_conf *conf);

#endif
