/*
 * client_limits.h - what one client (an IPv4 /32 or IPv6 /64 network by
 * default) may do at once and per minute, across its sessions:
 * concurrent connections, new connections, error replies.
 *
 * A hash table of small entries keyed by the client's network. An entry
 * lives while the client has a session or a window still open; idle ones
 * are swept, and the table never holds more than a fixed number of
 * entries (a client that finds it full is let in untracked). Owned by the server; one loop thread uses it.
 */
#ifndef MOAT_CLIENT_LIMITS_H
#define MOAT_CLIENT_LIMITS_H

#include <stddef.h>
#include <sys/socket.h>
#include <time.h>

/* A client's network: family (4 or 6) and the address with the bits
 * past the prefix cleared. */
struct client_key {
	unsigned char family;
	unsigned char addr[16];
};

struct client_limits;

enum client_verdict {
	CLIENT_OK = 0,
	CLIENT_TOO_MANY,	/* max_connections_per_client */
	CLIENT_TOO_FAST,	/* max_connection_rate */
	CLIENT_TOO_MANY_ERRORS,	/* max_client_errors */
};

/* The limits, from the configuration (0: none). */
struct client_limit_conf {
	long max_concurrent;
	long max_rate;		/* per window */
	long max_errors;	/* per window */
	long window;		/* seconds */
};

/* The network of sa (v4-mapped IPv6 counts as IPv4). -1 if sa is not
 * an IP address. */
int client_key_make(const struct sockaddr *sa, long v4_prefix, long v6_prefix,
		    struct client_key *out);
/* "192.0.2.0/24" or "2001:db8::/64" (the host itself for a full prefix). */
const char *client_key_format(const struct client_key *k, long v4_prefix, long v6_prefix,
			      char *buf, size_t len);

struct moat_config;
/* The limits a configuration sets. */
void client_limit_conf_from(const struct moat_config *c, struct client_limit_conf *out);

/* At most max_entries entries. */
struct client_limits *client_limits_new(size_t max_entries);
void client_limits_free(struct client_limits *cl);

/* A new connection from k at now: CLIENT_OK and the connection counted
 * (release it with client_limits_release()), or which limit it is over
 * (nothing counted). */
enum client_verdict client_limits_admit(struct client_limits *cl, const struct client_key *k,
					const struct client_limit_conf *lim, time_t now);
void client_limits_release(struct client_limits *cl, const struct client_key *k, time_t now);
/* Counts an error reply to k. */
void client_limits_error(struct client_limits *cl, const struct client_key *k,
			 const struct client_limit_conf *lim, time_t now);
/* Entries held, for tests and logs. */
size_t client_limits_count(const struct client_limits *cl);

#endif
