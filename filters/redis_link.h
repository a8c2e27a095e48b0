/*
 * redis_link.h - one connection to one Redis server (or Sentinel), on
 * the event loop (redis_link.c).
 *
 * A link connects in the background, sends AUTH and SELECT after each
 * connect, reconnects with a growing backoff after a loss, logs an
 * outage and the recovery once each, and bounds the size of every
 * reply. Its address can change (a Sentinel names a new primary): the
 * connection in use is dropped and commands in flight get no reply.
 *
 * The link owns its hiredis context; the caller owns what it passes as
 * privdata to redis_link_command() (hiredis calls back exactly once,
 * with a NULL reply if the connection ended first).
 */
#ifndef MOAT_REDIS_LINK_H
#define MOAT_REDIS_LINK_H

#include <hiredis/async.h>
#include <stddef.h>

struct event_base;
struct moat_store_stats;
struct redis_link;

struct redis_link_conf {
	const char *kind;	/* in log lines: "redis", "redis replica", "redis sentinel" */
	const char *user;	/* ACL user, or NULL */
	const char *password;	/* AUTH after each connect, or NULL */
	long db;		/* SELECT after each connect when > 0 */
	size_t max_reply;	/* octets one reply may take; 0: 1 MiB */
	struct moat_store_stats *stats;	/* outages counted here, or NULL */
};

/* Called when the link comes up (up 1) or goes down (up 0). */
typedef void (*redis_link_state_cb)(void *owner, struct redis_link *l, int up);

/* A link to host:port, or to unix_path when that is set, or to nothing
 * yet (both NULL: redis_link_set_addr() later). Strings are copied.
 * NULL when out of memory. */
struct redis_link *redis_link_new(struct event_base *base, const struct redis_link_conf *conf,
				  const char *host, int port, const char *unix_path,
				  redis_link_state_cb state_cb, void *owner);
void redis_link_free(struct redis_link *l);

/* Points the link at host:port; a no-op when it is there already. */
void redis_link_set_addr(struct redis_link *l, const char *host, int port);
/* 1 if the link currently points at host:port. */
int redis_link_is_at(const struct redis_link *l, const char *host, int port);

/* Connected now. */
int redis_link_up(const struct redis_link *l);

/* Sends a command; 0 if it went to hiredis (cb will run exactly once),
 * -1 if the link is not up or hiredis refused (cb will not run). */
int redis_link_command(struct redis_link *l, redisCallbackFn *cb, void *privdata, int argc,
		       const char **argv, const size_t *lens);

/* A command timed out while connected: logged once per outage. An
 * answer after an outage: the recovery is logged. */
void redis_link_stalled(struct redis_link *l, long ms);
void redis_link_answering(struct redis_link *l);
/* Not answering (lost, or stalled) since the last outage was logged. */
int redis_link_down(const struct redis_link *l);

/* "127.0.0.1:6379", "[::1]:6379", "unix:/run/redis.sock", "(unknown)". */
const char *redis_link_where(const struct redis_link *l, char *buf, size_t len);

/* "host:port" or "[v6]:port" into host (hostlen octets) and port; 0 or
 * -1. */
int redis_addr_parse(const char *spec, char *host, size_t hostlen, int *port);

#endif
