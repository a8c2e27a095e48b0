/*
 * client_limits.c - per-client connection, rate and error limits in a
 * bounded hash table (client_limits.h).
 *
 * Each entry counts the client's open connections and, per fixed window
 * (a minute), its new connections and the error replies it got. An
 * entry with no connection whose windows are over is idle and may be
 * freed: the chain being walked drops them on the way, and a full sweep
 * runs when the table reaches max_entries. Owns its entries.
 */
#include "client_limits.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "fnv.h"

#define NBUCKETS 4096

struct entry {
	struct entry *next;
	struct client_key key;
	long conns;
	time_t rate_start, err_start;
	long rate_count, err_count;
	long window;
};

struct client_limits {
	struct entry *b[NBUCKETS];
	size_t n;		/* entries */
	size_t max_entries;
};

int client_key_make(const struct sockaddr *sa, long v4_prefix, long v6_prefix,
		    struct client_key *out)
{
	const unsigned char *a;
	long prefix;
	size_t len;

	memset(out, 0, sizeof(*out));
	if (sa->sa_family == AF_INET) {
		a = (const unsigned char *)&((const struct sockaddr_in *)(const void *)sa)->sin_addr;
		len = 4;
	} else if (sa->sa_family == AF_INET6) {
		a = ((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr.s6_addr;
		len = 16;
		static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
		if (memcmp(a, mapped, 12) == 0) {
			a += 12;
			len = 4;
		}
	} else {
		return -1;
	}
	out->family = len == 4 ? 4 : 6;
	prefix = len == 4 ? v4_prefix : v6_prefix;
	memcpy(out->addr, a, len);
	for (size_t i = 0; i < len; i++) {
		long bits = prefix - (long)i * 8;
		if (bits >= 8)
			continue;
		out->addr[i] &= bits <= 0 ? 0 : (unsigned char)(0xff << (8 - bits));
	}
	return 0;
}

const char *client_key_format(const struct client_key *k, long v4_prefix, long v6_prefix,
			      char *buf, size_t len)
{
	char a[INET6_ADDRSTRLEN];
	long prefix = k->family == 4 ? v4_prefix : v6_prefix;
	if (!inet_ntop(k->family == 4 ? AF_INET : AF_INET6, k->addr, a, sizeof(a)))
		snprintf(a, sizeof(a), "?");
	if (prefix == (k->family == 4 ? 32 : 128))
		snprintf(buf, len, "%s", a);
	else
		snprintf(buf, len, "%s/%ld", a, prefix);
	return buf;
}

void client_limit_conf_from(const struct moat_config *c, struct client_limit_conf *out)
{
	out->max_concurrent = c->max_connections_per_client;
	out->max_rate = c->max_connection_rate;
	out->max_errors = c->max_client_errors;
	out->window = 60;
}

struct client_limits *client_limits_new(size_t max_entries)
{
	struct client_limits *cl = calloc(1, sizeof(*cl));
	if (cl)
		cl->max_entries = max_entries ? max_entries : 1;
	return cl;
}

void client_limits_free(struct client_limits *cl)
{
	if (!cl)
		return;
	for (size_t i = 0; i < NBUCKETS; i++)
		while (cl->b[i]) {
			struct entry *e = cl->b[i];
			cl->b[i] = e->next;
			free(e);
		}
	free(cl);
}

size_t client_limits_count(const struct client_limits *cl)
{
	return cl ? cl->n : 0;
}

static size_t hash(const struct client_key *k)
{
	return moat_fnv1a_add(MOAT_FNV1A_BASIS ^ (uint64_t)k->family, k->addr, sizeof(k->addr)) %
	       NBUCKETS;
}

static int idle(const struct entry *e, time_t now)
{
	return e->conns <= 0 && now - e->rate_start >= e->window && now - e->err_start >= e->window;
}

/* Frees the idle entries of one chain. */
static void sweep_chain(struct client_limits *cl, size_t bucket, time_t now)
{
	struct entry **pp = &cl->b[bucket];
	while (*pp) {
		struct entry *e = *pp;
		if (idle(e, now)) {
			*pp = e->next;
			free(e);
			cl->n--;
		} else {
			pp = &e->next;
		}
	}
}

static struct entry *find(struct client_limits *cl, const struct client_key *k, time_t now,
			  int create, long window)
{
	size_t h = hash(k);
	sweep_chain(cl, h, now);
	for (struct entry *e = cl->b[h]; e; e = e->next)
		if (memcmp(&e->key, k, sizeof(*k)) == 0)
			return e;
	if (!create)
		return NULL;
	if (cl->n >= cl->max_entries) {
		for (size_t i = 0; i < NBUCKETS; i++)
			sweep_chain(cl, i, now);
		if (cl->n >= cl->max_entries)
			return NULL;
	}
	struct entry *e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	e->key = *k;
	e->window = window > 0 ? window : 60;
	e->rate_start = e->err_start = now - e->window;
	e->next = cl->b[h];
	cl->b[h] = e;
	cl->n++;
	return e;
}

enum client_verdict client_limits_admit(struct client_limits *cl, const struct client_key *k,
					const struct client_limit_conf *lim, time_t now)
{
	struct entry *e = cl ? find(cl, k, now, 1, lim->window) : NULL;
	if (!e)
		return CLIENT_OK;	/* table full: let in untracked */
	e->window = lim->window > 0 ? lim->window : 60;
	if (lim->max_concurrent > 0 && e->conns >= lim->max_concurrent)
		return CLIENT_TOO_MANY;
	if (now - e->err_start < e->window && lim->max_errors > 0 &&
	    e->err_count >= lim->max_errors)
		return CLIENT_TOO_MANY_ERRORS;
	if (now - e->rate_start >= e->window) {
		e->rate_start = now;
		e->rate_count = 0;
	}
	if (lim->max_rate > 0 && e->rate_count >= lim->max_rate)
		return CLIENT_TOO_FAST;
	e->rate_count++;
	e->conns++;
	return CLIENT_OK;
}

void client_limits_release(struct client_limits *cl, const struct client_key *k, time_t now)
{
	struct entry *e = cl ? find(cl, k, now, 0, 0) : NULL;
	if (e && e->conns > 0)
		e->conns--;
}

void client_limits_error(struct client_limits *cl, const struct client_key *k,
			 const struct client_limit_conf *lim, time_t now)
{
	struct entry *e = cl ? find(cl, k, now, 0, lim->window) : NULL;
	if (!e)
		return;
	if (now - e->err_start >= e->window) {
		e->err_start = now;
		e->err_count = 0;
	}
	e->err_count++;
}
