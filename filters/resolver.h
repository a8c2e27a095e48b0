/*
 * resolver.h - moat's one DNS resolver: every filter's lookups (DNS
 * lists, SPF, DKIM keys, DMARC) go through it, on the event loop.
 *
 * libunbound does the work: the configured nameservers as forwarders
 * (or /etc/resolv.conf), many queries in flight, answers and negative
 * answers cached by TTL in a bounded cache, TCP when an answer is
 * truncated, DNSSEC validation when a trust anchor is configured. moat
 * adds a deadline per query. A failed lookup (timeout, SERVFAIL,
 * REFUSED...) is reported as such and never as "no such name".
 *
 * The resolver owns its libunbound context and each query record until
 * the query's callback has run or it was cancelled.
 */
#ifndef MOAT_RESOLVER_H
#define MOAT_RESOLVER_H

#include <netinet/in.h>
#include <stddef.h>

#include "config.h"

struct event_base;
struct moat_resolver;
struct moat_dns_query;

enum moat_dns_type {
	MOAT_DNS_A = 1,
	MOAT_DNS_NS = 2,
	MOAT_DNS_CNAME = 5,
	MOAT_DNS_PTR = 12,
	MOAT_DNS_MX = 15,
	MOAT_DNS_TXT = 16,
	MOAT_DNS_AAAA = 28,
};

enum moat_dns_status {
	MOAT_DNS_OK = 0,	/* records of the type asked for */
	MOAT_DNS_NXDOMAIN,	/* the name does not exist (authoritative) */
	MOAT_DNS_NODATA,	/* the name exists, no records of that type */
	MOAT_DNS_SERVFAIL,	/* the servers failed (also: a dead nameserver) */
	MOAT_DNS_TIMEOUT,	/* no answer before the deadline */
	MOAT_DNS_ERROR,		/* refused, malformed, out of memory... */
};

const char *moat_dns_status_name(enum moat_dns_status st);
/* 1 for the statuses that mean "try again later" (SERVFAIL, TIMEOUT, ERROR). */
int moat_dns_temporary(enum moat_dns_status st);
/* "A", "TXT"...; moat_dns_type_parse() returns 0 or -1. */
const char *moat_dns_type_name(int type);
int moat_dns_type_parse(const char *name, int *type);

struct moat_dns_mx {
	int preference;
	char host[256];
};

/* One answer. Arrays hold n entries of the asked type (only one of them
 * is used); strings are NUL-terminated; TXT records have their strings
 * joined (RFC 7208 3.3) into one. raw holds the nraw records as they
 * came (RDATA, names uncompressed), for callers that read the wire
 * format themselves. All borrowed for the callback only. */
struct moat_dns_answer {
	enum moat_dns_status status;
	int type;
	const char *name;	/* as asked */
	int rcode;		/* DNS rcode (0 NOERROR, 2 SERVFAIL, 3 NXDOMAIN, 5 REFUSED) */
	int ttl;
	int secure;		/* DNSSEC-validated */
	int bogus;		/* DNSSEC validation failed (status is then ERROR) */
	size_t n;
	const struct in_addr *a;
	const struct in6_addr *aaaa;
	const char *const *txt;
	const char *const *names;	/* PTR, CNAME, NS */
	const struct moat_dns_mx *mx;
	size_t nraw;
	const unsigned char *const *raw;
	const size_t *rawlen;
	int cached;		/* came from the shared cache (the store) */
	double ms;		/* time the lookup took */
};

typedef void (*moat_dns_cb)(void *arg, const struct moat_dns_answer *ans);

/* The resolver's configuration: section "resolver" of moat.conf. */
struct moat_resolver_conf {
	struct moat_str_list nameservers;	/* "127.0.0.1", "127.0.0.1:5353", "[::1]:53" */
	long timeout;		/* seconds per query (the deadline) */
	long cache_size;	/* octets of answer cache */
	char *trust_anchor;	/* DNSSEC root key file, "" = no validation */
	int shared_cache;	/* keep answers in the store (Redis) as well */
	long shared_cache_max_ttl;	/* seconds an answer stays there, at most */
};

/* Registers the "resolver" config section (at start). */
void moat_resolver_register(void);

struct moat_resolver *moat_resolver_new(struct event_base *base,
					const struct moat_resolver_conf *conf,
					char *err, size_t errlen);
/* Cancels every query (their callbacks do not run) and frees. */
void moat_resolver_free(struct moat_resolver *r);
/* Frees r once the queries in flight have been answered (a reload
 * replaced it); new queries must not be started on it. */
void moat_resolver_retire(struct moat_resolver *r);
/* 1 if a and b configure the same resolver. */
int moat_resolver_conf_equal(const struct moat_resolver_conf *a, const struct moat_resolver_conf *b);

/* Starts a lookup. cb runs later on the loop, exactly once, unless the
 * query is cancelled first; never from inside this call. timeout_ms 0:
 * the configured timeout. Returns NULL only when out of memory. */
struct moat_dns_query *moat_resolver_query(struct moat_resolver *r, const char *name,
					   int type, long timeout_ms, moat_dns_cb cb, void *arg);
void moat_dns_cancel(struct moat_dns_query *q);

/* Queries in flight, and counters since start. cache_hits: answers
 * taken from the shared cache; cache_stores: answers written to it. */
struct moat_resolver_stats {
	unsigned long long queries, answers, nxdomain, failures, timeouts;
	unsigned long long cache_hits, cache_stores;
	size_t in_flight;
};

/*
 * The shared cache's value format (docs/redis-keys.md), exposed for the
 * unit test: moat_dns_cache_encode() returns a malloc'ed value (owned by
 * the caller) of *len octets; moat_dns_cache_decode() fills out and
 * records from value (records point into value; at most max of them)
 * and returns their number, or -1 when value is not a well-formed entry.
 */
struct moat_dns_cached {
	enum moat_dns_status status;
	int rcode, secure;
	long long expires;	/* Unix time */
};
char *moat_dns_cache_encode(const struct moat_dns_cached *c, size_t nraw,
			    const unsigned char *const *raw, const size_t *rawlen, size_t *len);
int moat_dns_cache_decode(const char *value, size_t len, struct moat_dns_cached *out,
			  const unsigned char **raw, size_t *rawlen, size_t max);
void moat_resolver_stats(const struct moat_resolver *r, struct moat_resolver_stats *out);

#endif
