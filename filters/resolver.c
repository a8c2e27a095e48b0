/*
 * resolver.c - DNS lookups on the event loop through libunbound.
 *
 * libunbound runs its own thread (ub_ctx_async(ctx, 1)) and signals
 * finished queries on a descriptor that the loop watches; its callbacks
 * then run on the loop thread from ub_process(). Each query gets a
 * deadline timer of moat's own; when it fires the query is cancelled in
 * libunbound and reported as a timeout. The answer is copied out of
 * libunbound's result into plain arrays for the caller.
 *
 * The shared cache (`shared_cache = yes`, with a Redis store): before a
 * query goes to libunbound, the store is asked for the answer another
 * moat instance (or this one, before a restart) already got; on a miss,
 * or when the store does not answer within its own deadline, the query
 * goes to DNS as usual, and its answer (positive or negative, never a
 * failure, never a DNSSEC-bogus one) is written to the store for its
 * TTL, capped. Answers travel as their raw records, so a cached answer
 * is parsed by the same code as a fresh one. The query's deadline
 * covers both steps.
 *
 * In front of both sits a small table of hot answers (HOT_SLOTS, by
 * name and type, each kept for its TTL, a newer answer replacing an
 * older one in its slot): libunbound answers even its own cache hits
 * through its thread, a wake-up of that thread and of the loop per
 * lookup, which for the handful of names every message of a busy
 * sender looks up (its DNS lists, SPF record, DKIM key, DMARC record)
 * cost more than the lookups themselves. A hot answer is delivered from
 * the loop, never from inside moat_resolver_query().
 *
 * Owns the libunbound context, the loop event, and each query (with its
 * store operation) until its callback ran or it was cancelled.
 */
#include "resolver.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unbound.h>

#include "ascii.h"
#include "fnv.h"
#include "log.h"
#include "store.h"
#include "store_conf.h"

struct moat_dns_query {
	struct moat_resolver *r;
	struct moat_dns_query *next, *prev;
	int async_id;
	int started;		/* libunbound knows it */
	int refused;		/* libunbound refused it: reported from the timer */
	struct moat_store *store;	/* asked for a cached answer: */
	struct moat_store_op *sop;	/* the pending GET */
	char *key;			/* cache_key(), or NULL: not kept */
	char *hot;			/* a hot answer to deliver (encoded) */
	size_t hotlen;
	long deadline_ms;		/* the query's own deadline */
	struct event *timer;
	moat_dns_cb cb;
	void *arg;
	char *name;
	int type;
	struct timespec start;
};

struct moat_resolver {
	struct event_base *base;
	struct ub_ctx *ub;
	struct event *ev;
	long timeout;
	int shared_cache;
	long shared_cache_max_ttl;
	int validating;			/* a trust anchor is configured */
	struct moat_dns_query *queries;
	struct moat_resolver_stats stats;
	int retired;
	struct hot_answer *hot;		/* HOT_SLOTS of them */
};

/* A recent answer, encoded as the shared cache keeps it. */
#define HOT_SLOTS 1024
#define HOT_MAX_TTL 604800	/* seconds; libunbound's cache-max-ttl is a day */
struct hot_answer {
	char *key;		/* cache_key() */
	char *value;
	size_t len;
	long long expires;	/* Unix time */
};

/* ---- the config section ---------------------------------------------- */

#define R(field) offsetof(struct moat_resolver_conf, field)
static const struct moat_opt resolver_opts[] = {
	{"nameservers", MOAT_OPT_STR_LIST, R(nameservers), 0, "{}", 0, 0, 0, NULL,
	 "Nameservers every lookup is sent to, as \"address\" or \"address:port\" (\"[v6]:port\"); "
	 "they must resolve recursively. Empty: those of /etc/resolv.conf."},
	{"timeout", MOAT_OPT_INT, R(timeout), 5, NULL, 1, 60, 0, NULL,
	 "Seconds one lookup may take, retries included; then it counts as a temporary failure, never as \"not listed\"."},
	{"cache_size", MOAT_OPT_INT, R(cache_size), 4194304, NULL, 65536, 1073741824, 0, NULL,
	 "Octets of memory for cached answers (negative answers included), kept for their TTL."},
	{"trust_anchor", MOAT_OPT_STR, R(trust_anchor), 0, "", 0, 0, 0, NULL,
	 "DNSSEC root trust anchor file (Debian: /usr/share/dns/root.key from dns-root-data); "
	 "answers are then validated and marked secure. Empty: no validation."},
	{"shared_cache", MOAT_OPT_BOOL, R(shared_cache), 0, NULL, 0, 0, 0, NULL,
	 "yes: keep DNS answers (DNS lists, SPF, DMARC, DKIM keys; negative ones too) in the "
	 "Redis store for their TTL as well, so every moat instance sharing that Redis reuses "
	 "them; asked before each lookup, within the store's deadline. No effect with the "
	 "memory store (the resolver's own cache does that job). Keys: docs/redis-keys.md."},
	{"shared_cache_max_ttl", MOAT_OPT_INT, R(shared_cache_max_ttl), 3600, NULL, 1, 604800, 0,
	 NULL, "Seconds an answer stays in the shared cache at most, whatever its DNS TTL."},
};

static int prepare(void *data, struct moat_section_ctx *ctx)
{
	struct moat_resolver_conf *c = data;
	int bad = 0;
	for (size_t i = 0; i < c->nameservers.n; i++) {
		char buf[300];
		const char *ns = c->nameservers.v[i];
		struct in6_addr a6;
		struct in_addr a4;
		/* address, address:port, [v6]:port, or a bare v6 address */
		if (ns[0] == '[') {
			const char *e = strchr(ns, ']');
			size_t n = e ? (size_t)(e - ns - 1) : 0;
			if (!e || n >= sizeof(buf) || (e[1] && e[1] != ':')) {
				bad = -1;
			} else {
				memcpy(buf, ns + 1, n);
				buf[n] = '\0';
				if (inet_pton(AF_INET6, buf, &a6) != 1)
					bad = -1;
			}
		} else if (inet_pton(AF_INET6, ns, &a6) != 1) {
			snprintf(buf, sizeof(buf), "%s", ns);
			char *colon = strchr(buf, ':');
			if (colon)
				*colon = '\0';
			if (inet_pton(AF_INET, buf, &a4) != 1 ||
			    (colon && (atoi(colon + 1) < 1 || atoi(colon + 1) > 65535)))
				bad = -1;
		}
		if (bad < 0) {
			moat_section_error(ctx, "nameservers", "expected an IP address with an optional "
					   ":port (\"[v6]:port\"), got \"%s\"", ns);
			return -1;
		}
	}
	return 0;
}

static const struct moat_section_def resolver_section = {
	.name = "resolver",
	.doc = "The DNS resolver every filter uses.",
	.opts = resolver_opts,
	.nopts = sizeof(resolver_opts) / sizeof(resolver_opts[0]),
	.size = sizeof(struct moat_resolver_conf),
	.prepare = prepare,
};

void moat_resolver_register(void)
{
	moat_config_register_section(&resolver_section);
}

/* ---- names ----------------------------------------------------------- */

static const char *const status_names[] = {"ok", "nxdomain", "nodata", "servfail", "timeout", "error"};

const char *moat_dns_status_name(enum moat_dns_status st)
{
	return (unsigned)st < sizeof(status_names) / sizeof(status_names[0]) ? status_names[st] : "?";
}

int moat_dns_temporary(enum moat_dns_status st)
{
	return st == MOAT_DNS_SERVFAIL || st == MOAT_DNS_TIMEOUT || st == MOAT_DNS_ERROR;
}

static const struct {
	const char *name;
	int type;
} types[] = {
	{"A", MOAT_DNS_A}, {"NS", MOAT_DNS_NS}, {"CNAME", MOAT_DNS_CNAME}, {"PTR", MOAT_DNS_PTR},
	{"MX", MOAT_DNS_MX}, {"TXT", MOAT_DNS_TXT}, {"AAAA", MOAT_DNS_AAAA},
};

const char *moat_dns_type_name(int type)
{
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if (types[i].type == type)
			return types[i].name;
	return "?";
}

int moat_dns_type_parse(const char *name, int *type)
{
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if (strcasecmp(types[i].name, name) == 0) {
			*type = types[i].type;
			return 0;
		}
	return -1;
}

/* ---- the context ------------------------------------------------------- */

static void on_ready(evutil_socket_t fd, short what, void *arg)
{
	struct moat_resolver *r = arg;
	(void)fd;
	(void)what;
	ub_process(r->ub);
}

static int set_opt(struct ub_ctx *ub, const char *opt, const char *val, char *err, size_t errlen)
{
	int rc = ub_ctx_set_option(ub, opt, val);
	if (rc != 0)
		snprintf(err, errlen, "resolver option %s %s: %s", opt, val, ub_strerror(rc));
	return rc ? -1 : 0;
}

struct moat_resolver *moat_resolver_new(struct event_base *base,
					const struct moat_resolver_conf *conf,
					char *err, size_t errlen)
{
	struct moat_resolver *r = calloc(1, sizeof(*r));
	char val[64];
	int rc;

	if (!r || !(r->ub = ub_ctx_create())) {
		snprintf(err, errlen, "cannot create the resolver");
		free(r);
		return NULL;
	}
	r->base = base;
	r->hot = calloc(HOT_SLOTS, sizeof(*r->hot));
	if (!r->hot) {
		snprintf(err, errlen, "resolver: out of memory");
		ub_ctx_delete(r->ub);
		free(r);
		return NULL;
	}
	r->timeout = conf->timeout > 0 ? conf->timeout : 5;
	r->shared_cache = conf->shared_cache;
	r->validating = conf->trust_anchor && *conf->trust_anchor;
	r->shared_cache_max_ttl = conf->shared_cache_max_ttl > 0 ? conf->shared_cache_max_ttl : 3600;
	snprintf(val, sizeof(val), "%ld", conf->cache_size > 0 ? conf->cache_size : 4194304);
	if (set_opt(r->ub, "msg-cache-size:", val, err, errlen) < 0 ||
	    set_opt(r->ub, "rrset-cache-size:", val, err, errlen) < 0 ||
	    set_opt(r->ub, "do-not-query-localhost:", "no", err, errlen) < 0)
		goto fail;
	if (conf->nameservers.n == 0) {
		if ((rc = ub_ctx_resolvconf(r->ub, NULL)) != 0) {
			snprintf(err, errlen, "resolver: reading /etc/resolv.conf: %s", ub_strerror(rc));
			goto fail;
		}
	}
	/*
	 * libunbound answers the RFC 6303 / AS112 reverse zones itself with
	 * NXDOMAIN and never asks a server (192.168/16, 10/8, 172.16/12,
	 * 192.0.2/24 and the other test nets, 169.254/16, 100.64/10,
	 * 2001:db8::/32, fd00::/8, fe80::/10, ...: unbound.conf(5), "local-zone",
	 * the default zones). With nameservers configured, those are the
	 * operator's own servers, where an internal reverse zone lives: ask
	 * them for everything. unblock-lan-zones drops all those defaults in
	 * one documented option and keeps only localhost and the loopback
	 * reverse zones (127.in-addr.arpa, ::1), plus the special-use names
	 * (test., invalid., onion., home.arpa.); insecure-lan-zones keeps a
	 * DNSSEC trust anchor from marking the now forwarded private reverse
	 * answers bogus (they are unsigned by design).
	 */
	if (conf->nameservers.n > 0 &&
	    (set_opt(r->ub, "unblock-lan-zones:", "yes", err, errlen) < 0 ||
	     set_opt(r->ub, "insecure-lan-zones:", "yes", err, errlen) < 0))
		goto fail;
	for (size_t i = 0; i < conf->nameservers.n; i++) {
		/* "a.b.c.d:53" / "[v6]:53" -> libunbound's "addr@53" */
		char fwd[300];
		const char *ns = conf->nameservers.v[i];
		if (ns[0] == '[') {
			const char *e = strchr(ns, ']');
			snprintf(fwd, sizeof(fwd), "%.*s%s%s", (int)(e - ns - 1), ns + 1,
				 e[1] == ':' ? "@" : "", e[1] == ':' ? e + 2 : "");
		} else if (strchr(ns, ':') && strchr(ns, ':') == strrchr(ns, ':')) {
			const char *c = strchr(ns, ':');
			snprintf(fwd, sizeof(fwd), "%.*s@%s", (int)(c - ns), ns, c + 1);
		} else {
			snprintf(fwd, sizeof(fwd), "%s", ns);
		}
		if ((rc = ub_ctx_set_fwd(r->ub, fwd)) != 0) {
			snprintf(err, errlen, "resolver: nameserver %s: %s", ns, ub_strerror(rc));
			goto fail;
		}
	}
	if (conf->trust_anchor && *conf->trust_anchor &&
	    (rc = ub_ctx_add_ta_file(r->ub, conf->trust_anchor)) != 0) {
		snprintf(err, errlen, "resolver: trust_anchor %s: %s", conf->trust_anchor,
			 ub_strerror(rc));
		goto fail;
	}
	if ((rc = ub_ctx_async(r->ub, 1)) != 0) {
		snprintf(err, errlen, "resolver: %s", ub_strerror(rc));
		goto fail;
	}
	r->ev = event_new(base, ub_fd(r->ub), EV_READ | EV_PERSIST, on_ready, r);
	if (!r->ev || event_add(r->ev, NULL) < 0) {
		snprintf(err, errlen, "resolver: cannot watch libunbound's descriptor");
		goto fail;
	}
	return r;
fail:
	moat_resolver_free(r);
	return NULL;
}

static void unlink_query(struct moat_dns_query *q)
{
	struct moat_resolver *r = q->r;
	if (q->prev)
		q->prev->next = q->next;
	else
		r->queries = q->next;
	if (q->next)
		q->next->prev = q->prev;
	r->stats.in_flight--;
}

static void query_free(struct moat_dns_query *q)
{
	if (q->sop)
		moat_store_cancel(q->store, q->sop);
	free(q->hot);
	free(q->key);
	if (q->timer)
		event_free(q->timer);
	free(q->name);
	free(q);
}

void moat_resolver_free(struct moat_resolver *r)
{
	if (!r)
		return;
	while (r->queries) {
		struct moat_dns_query *q = r->queries;
		if (q->started)
			ub_cancel(r->ub, q->async_id);
		unlink_query(q);
		query_free(q);
	}
	if (r->ev)
		event_free(r->ev);
	if (r->ub)
		ub_ctx_delete(r->ub);
	for (size_t i = 0; r->hot && i < HOT_SLOTS; i++) {
		free(r->hot[i].key);
		free(r->hot[i].value);
	}
	free(r->hot);
	free(r);
}

static void free_later(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	moat_resolver_free(arg);
}

/* After a query ended: a retired resolver goes once it is idle, from the
 * loop (not from inside libunbound's ub_process()). */
static void maybe_free(struct moat_resolver *r)
{
	struct timeval now = {0, 0};
	if (r->retired == 1 && r->stats.in_flight == 0) {
		r->retired = 2;
		event_base_once(r->base, -1, EV_TIMEOUT, free_later, r, &now);
	}
}

void moat_resolver_retire(struct moat_resolver *r)
{
	if (!r)
		return;
	r->retired = 1;
	maybe_free(r);
}

static int lists_equal(const struct moat_str_list *a, const struct moat_str_list *b)
{
	if (a->n != b->n)
		return 0;
	for (size_t i = 0; i < a->n; i++)
		if (strcmp(a->v[i], b->v[i]) != 0)
			return 0;
	return 1;
}

int moat_resolver_conf_equal(const struct moat_resolver_conf *a, const struct moat_resolver_conf *b)
{
	return lists_equal(&a->nameservers, &b->nameservers) && a->timeout == b->timeout &&
	       a->cache_size == b->cache_size && a->shared_cache == b->shared_cache &&
	       a->shared_cache_max_ttl == b->shared_cache_max_ttl &&
	       strcmp(a->trust_anchor ? a->trust_anchor : "", b->trust_anchor ? b->trust_anchor : "") == 0;
}

void moat_resolver_stats(const struct moat_resolver *r, struct moat_resolver_stats *out)
{
	*out = r->stats;
}

/* ---- answers ------------------------------------------------------------ */

/* A wire-format name at p (len octets) into text; 0 or -1. */
static int wire_name(const unsigned char *p, size_t len, char *out, size_t outlen)
{
	size_t i = 0, o = 0;
	while (i < len && p[i]) {
		size_t l = p[i++];
		if (l > 63 || i + l > len || o + l + 2 > outlen)
			return -1;
		if (o)
			out[o++] = '.';
		memcpy(out + o, p + i, l);
		o += l;
		i += l;
	}
	if (i >= len)
		return -1;
	out[o] = '\0';
	return 0;
}

static double ms_since(const struct timespec *start)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - start->tv_sec) * 1e3 +
	       (double)(now.tv_nsec - start->tv_nsec) / 1e6;
}

/* An answer before it is parsed for the caller: from libunbound or from
 * the shared cache. The records are borrowed from either. */
struct raw_answer {
	enum moat_dns_status status;
	int rcode, ttl, secure, bogus, cached;
	size_t n;
	const unsigned char **rd;
	size_t *rdlen;
};

/* Parses raw into the caller's arrays, calls back, frees q. */
static void deliver(struct moat_dns_query *q, const struct raw_answer *raw)
{
	struct moat_resolver *r = q->r;
	struct moat_dns_answer a;
	size_t n = raw->status == MOAT_DNS_OK ? raw->n : 0;

	memset(&a, 0, sizeof(a));
	a.status = raw->status;
	a.type = q->type;
	a.name = q->name;
	a.ms = ms_since(&q->start);
	a.rcode = raw->rcode;
	a.ttl = raw->ttl;
	a.secure = raw->secure;
	a.bogus = raw->bogus;
	a.cached = raw->cached;

	struct in_addr *a4 = NULL;
	struct in6_addr *a6 = NULL;
	char **strs = NULL;
	struct moat_dns_mx *mx = NULL;
	if (n) {
		a4 = calloc(n, sizeof(*a4));
		a6 = calloc(n, sizeof(*a6));
		strs = calloc(n + 1, sizeof(*strs));
		mx = calloc(n, sizeof(*mx));
	}
	if (n && (!a4 || !a6 || !strs || !mx)) {
		a.status = MOAT_DNS_ERROR;
		n = 0;
	}
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		const unsigned char *d = raw->rd[i];
		size_t len = raw->rdlen[i];
		switch (q->type) {
		case MOAT_DNS_A:
			if (len == 4)
				memcpy(&a4[k++], d, 4);
			break;
		case MOAT_DNS_AAAA:
			if (len == 16)
				memcpy(&a6[k++], d, 16);
			break;
		case MOAT_DNS_TXT: {
			/* character-strings joined into one (RFC 7208 3.3) */
			char *s = malloc(len + 1);
			size_t o = 0, j = 0;
			if (!s)
				break;
			while (j < len) {
				size_t l = d[j++];
				if (j + l > len)
					break;
				memcpy(s + o, d + j, l);
				o += l;
				j += l;
			}
			s[o] = '\0';
			strs[k++] = s;
			break;
		}
		case MOAT_DNS_MX:
			if (len > 2 && wire_name(d + 2, len - 2, mx[k].host, sizeof(mx[k].host)) == 0) {
				mx[k].preference = (d[0] << 8) | d[1];
				k++;
			}
			break;
		default: {	/* PTR, NS, CNAME */
			char *s = malloc(256);
			if (s && wire_name(d, len, s, 256) == 0)
				strs[k++] = s;
			else
				free(s);
			break;
		}
		}
	}
	a.n = k;
	a.a = a4;
	a.aaaa = a6;
	a.txt = (const char *const *)strs;
	a.names = (const char *const *)strs;
	a.mx = mx;
	a.nraw = n;
	a.raw = n ? raw->rd : NULL;
	a.rawlen = n ? raw->rdlen : NULL;
	if (a.status == MOAT_DNS_OK && k == 0)
		a.status = MOAT_DNS_NODATA;

	r->stats.answers++;
	if (a.status == MOAT_DNS_NXDOMAIN)
		r->stats.nxdomain++;
	else if (moat_dns_temporary(a.status))
		r->stats.failures++;
	if (a.cached)
		r->stats.cache_hits++;
	unlink_query(q);
	q->cb(q->arg, &a);
	for (size_t i = 0; strs && i < k; i++)
		free(strs[i]);
	free(strs);
	free(a4);
	free(a6);
	free(mx);
	query_free(q);
	maybe_free(r);
}

static void deliver_error(struct moat_dns_query *q)
{
	struct raw_answer raw;
	memset(&raw, 0, sizeof(raw));
	raw.status = MOAT_DNS_ERROR;
	deliver(q, &raw);
}

/* ---- the shared cache ---------------------------------------------------- */

#define CACHE_MAGIC "moat-dns 1"
#define CACHE_MAX_RECORDS 512

char *moat_dns_cache_encode(const struct moat_dns_cached *c, size_t nraw,
			    const unsigned char *const *raw, const size_t *rawlen, size_t *len)
{
	char head[128];
	int hl = snprintf(head, sizeof(head), CACHE_MAGIC " %s %d %d %lld\n",
			  moat_dns_status_name(c->status), c->rcode, c->secure ? 1 : 0, c->expires);
	size_t total = (size_t)hl;
	for (size_t i = 0; i < nraw; i++)
		total += 24 + rawlen[i];
	char *v = malloc(total + 1);
	if (!v)
		return NULL;
	memcpy(v, head, (size_t)hl);
	size_t o = (size_t)hl;
	for (size_t i = 0; i < nraw; i++) {
		o += (size_t)snprintf(v + o, 24, "%zu:", rawlen[i]);
		memcpy(v + o, raw[i], rawlen[i]);
		o += rawlen[i];
		v[o++] = '\n';
	}
	*len = o;
	return v;
}

/* A decimal number at *p, up to end, followed by stop; advances *p past
 * stop. -1 on anything else. */
static int read_num(const char **p, const char *end, char stop, long long *out)
{
	const char *s = *p;
	int neg = 0;
	long long v = 0;
	if (s < end && *s == '-') {
		neg = 1;
		s++;
	}
	if (s >= end || *s < '0' || *s > '9')
		return -1;
	while (s < end && *s >= '0' && *s <= '9') {
		if (v > 100000000000000LL)
			return -1;
		v = v * 10 + (*s++ - '0');
	}
	if (s >= end || *s != stop)
		return -1;
	*p = s + 1;
	*out = neg ? -v : v;
	return 0;
}

int moat_dns_cache_decode(const char *value, size_t len, struct moat_dns_cached *out,
			  const unsigned char **raw, size_t *rawlen, size_t max)
{
	const char *p = value, *end = value + len;
	size_t ml = strlen(CACHE_MAGIC " ");
	long long rcode, secure, expires;
	int st = -1;

	if (len < ml || memcmp(p, CACHE_MAGIC " ", ml) != 0)
		return -1;
	p += ml;
	for (int i = MOAT_DNS_OK; i <= MOAT_DNS_ERROR; i++) {
		const char *name = moat_dns_status_name((enum moat_dns_status)i);
		size_t nl = strlen(name);
		if ((size_t)(end - p) > nl && memcmp(p, name, nl) == 0 && p[nl] == ' ') {
			st = i;
			p += nl + 1;
			break;
		}
	}
	if (st < 0 || read_num(&p, end, ' ', &rcode) < 0 || read_num(&p, end, ' ', &secure) < 0 ||
	    read_num(&p, end, '\n', &expires) < 0 || rcode < 0 || rcode > 65535 ||
	    (secure != 0 && secure != 1))
		return -1;
	size_t n = 0;
	while (p < end) {
		long long l;
		if (n >= max || read_num(&p, end, ':', &l) < 0 || l < 0 || l > 65535 ||
		    (size_t)(end - p) < (size_t)l + 1 || p[l] != '\n')
			return -1;
		raw[n] = (const unsigned char *)p;
		rawlen[n] = (size_t)l;
		n++;
		p += l + 1;
	}
	/* only what a fresh answer can be: records exactly when OK */
	if ((st == MOAT_DNS_OK) != (n > 0) ||
	    (st != MOAT_DNS_OK && st != MOAT_DNS_NXDOMAIN && st != MOAT_DNS_NODATA))
		return -1;
	out->status = (enum moat_dns_status)st;
	out->rcode = (int)rcode;
	out->secure = (int)secure;
	out->expires = expires;
	return (int)n;
}

/* "dns:TYPE:name" (lower case, no final dot), malloc'ed; NULL if out of
 * memory. A validating resolver (trust_anchor) keeps its answers apart,
 * under "dnssec:": it must not take an answer a resolver that does not
 * validate let through. */
static char *cache_key(const struct moat_resolver *r, const char *name, int type)
{
	const char *ns = r->validating ? "dnssec" : "dns";
	const char *tname = moat_dns_type_name(type);
	size_t nl = strlen(name);
	if (nl > 1 && name[nl - 1] == '.')
		nl--;
	size_t len = strlen(ns) + strlen(tname) + nl + 3;
	char *k = malloc(len);
	if (!k)
		return NULL;
	snprintf(k, len, "%s:%s:%.*s", ns, tname, (int)nl, name);
	ascii_lower_str(k + strlen(ns) + 1 + strlen(tname) + 1);
	return k;
}

/* The store answers go to: a Redis store, when the cache is on. */
static struct moat_store *cache_store(const struct moat_resolver *r)
{
	struct moat_store *s = r->shared_cache ? moat_store_current() : NULL;
	return s && strcmp(s->ops->name, "memory") != 0 ? s : NULL;
}

/* 1 if an answer may be kept (hot or shared): a positive or negative
 * answer with a TTL, never a failure, never a DNSSEC-bogus one. */
static int cacheable(const struct raw_answer *raw)
{
	return !raw->bogus && raw->ttl > 0 && raw->n <= CACHE_MAX_RECORDS &&
	       (raw->status == MOAT_DNS_NXDOMAIN || raw->status == MOAT_DNS_NODATA ||
		(raw->status == MOAT_DNS_OK && raw->n > 0));
}

static char *encode(const struct raw_answer *raw, long long expires, size_t *len)
{
	struct moat_dns_cached c = {raw->status, raw->rcode, raw->secure, expires};
	return moat_dns_cache_encode(&c, raw->status == MOAT_DNS_OK ? raw->n : 0,
				     (const unsigned char *const *)raw->rd, raw->rdlen, len);
}

static struct hot_answer *hot_slot(struct moat_resolver *r, const char *key)
{
	return &r->hot[moat_fnv1a(key, strlen(key)) % HOT_SLOTS];
}

/* Keeps an encoded answer (value, len; copied) valid until expires. */
static void hot_put(struct moat_resolver *r, const char *key, const char *value, size_t len,
		    long long expires)
{
	struct hot_answer *h = hot_slot(r, key);
	char *k = strdup(key), *v = malloc(len);
	if (!k || !v) {
		free(k);
		free(v);
		return;
	}
	memcpy(v, value, len);
	free(h->key);
	free(h->value);
	h->key = k;
	h->value = v;
	h->len = len;
	h->expires = expires;
}

/* A copy of the hot answer for key, or NULL. */
static char *hot_get(struct moat_resolver *r, const char *key, size_t *len)
{
	struct hot_answer *h = hot_slot(r, key);
	if (!h->key || strcmp(h->key, key) != 0 || h->expires <= (long long)time(NULL))
		return NULL;
	char *v = malloc(h->len);
	if (v) {
		memcpy(v, h->value, h->len);
		*len = h->len;
	}
	return v;
}

/* Keeps a fresh answer: hot, and in the shared cache (fire and forget). */
static void cache_put(struct moat_dns_query *q, const struct raw_answer *raw)
{
	struct moat_resolver *r = q->r;
	struct moat_store *s = cache_store(r);
	long long now = (long long)time(NULL);	/* one reading for both */
	size_t len;
	if (!cacheable(raw) || !q->key)
		return;
	char *v = encode(raw, now + raw->ttl, &len);
	if (!v)
		return;
	hot_put(r, q->key, v, len, now + raw->ttl);
	if (s) {
		/* the same value unless the shared copy's life is capped */
		long ttl = raw->ttl < r->shared_cache_max_ttl ? raw->ttl : r->shared_cache_max_ttl;
		if (ttl != raw->ttl) {
			free(v);
			v = encode(raw, now + ttl, &len);
		}
		if (v && moat_store_set(s, q->key, v, len, ttl, NULL, NULL))
			r->stats.cache_stores++;
	}
	free(v);
}

/* ---- libunbound ------------------------------------------------------------ */

static void on_result(void *arg, int err, struct ub_result *res)
{
	struct moat_dns_query *q = arg;
	struct raw_answer raw;
	size_t n = 0;

	q->started = 0;
	memset(&raw, 0, sizeof(raw));
	if (err || !res) {
		raw.status = MOAT_DNS_ERROR;
	} else {
		raw.rcode = res->rcode;
		raw.secure = res->secure;
		raw.bogus = res->bogus;
		raw.ttl = res->ttl;
		if (res->bogus)
			raw.status = MOAT_DNS_ERROR;
		else if (res->nxdomain)
			raw.status = MOAT_DNS_NXDOMAIN;
		else if (res->rcode == 2)
			raw.status = MOAT_DNS_SERVFAIL;
		else if (res->rcode != 0)
			raw.status = MOAT_DNS_ERROR;
		else if (!res->havedata)
			raw.status = MOAT_DNS_NODATA;
		else
			raw.status = MOAT_DNS_OK;
		while (raw.status == MOAT_DNS_OK && res->data[n])
			n++;
	}
	if (n) {
		raw.rd = calloc(n, sizeof(*raw.rd));
		raw.rdlen = calloc(n, sizeof(*raw.rdlen));
		if (!raw.rd || !raw.rdlen) {
			raw.status = MOAT_DNS_ERROR;
			n = 0;
		}
		for (size_t i = 0; i < n; i++) {
			raw.rd[i] = (const unsigned char *)res->data[i];
			raw.rdlen[i] = res->len[i] > 0 ? (size_t)res->len[i] : 0;
		}
	}
	raw.n = n;
	cache_put(q, &raw);
	deliver(q, &raw);
	free(raw.rd);
	free(raw.rdlen);
	ub_resolve_free(res);
}

/* Hands q to libunbound (its deadline timer already runs). */
static void start_ub(struct moat_dns_query *q)
{
	struct moat_resolver *r = q->r;
	if (ub_resolve_async(r->ub, q->name, q->type, 1, q, on_result, &q->async_id) == 0) {
		q->started = 1;
	} else {
		struct timeval now = {0, 0};	/* report the failure from the loop */
		q->refused = 1;
		evtimer_add(q->timer, &now);
	}
}

/* Delivers an encoded answer (the shared cache's or a hot one); -1 if it
 * is not a valid entry or has expired. */
static int deliver_encoded(struct moat_dns_query *q, const char *value, size_t len, int shared)
{
	const unsigned char *rd[CACHE_MAX_RECORDS];
	size_t rdlen[CACHE_MAX_RECORDS];
	struct moat_dns_cached c;
	long long now = (long long)time(NULL);
	int n = moat_dns_cache_decode(value, len, &c, rd, rdlen, CACHE_MAX_RECORDS);
	if (n < 0 || c.expires <= now)
		return -1;
	/* another host's clock, or a value not of moat's: never longer than
	 * this resolver would keep it */
	long long max = now + (shared ? q->r->shared_cache_max_ttl : HOT_MAX_TTL);
	if (c.expires > max)
		c.expires = max;
	struct raw_answer raw;
	memset(&raw, 0, sizeof(raw));
	raw.status = c.status;
	raw.rcode = c.rcode;
	raw.secure = c.secure;
	raw.ttl = (int)(c.expires - now);
	raw.cached = shared;
	raw.n = (size_t)n;
	raw.rd = rd;
	raw.rdlen = rdlen;
	if (shared && q->key)
		hot_put(q->r, q->key, value, len, c.expires);
	deliver(q, &raw);
	return 0;
}

/* The shared cache's answer to a query's GET. */
static void on_cached(void *arg, enum moat_store_status st, const char *value, size_t len,
		      long long number)
{
	struct moat_dns_query *q = arg;
	(void)number;

	q->sop = NULL;
	if (st == MOAT_STORE_OK && deliver_encoded(q, value, len, 1) == 0)
		return;
	/* missing, unavailable, or not an entry of ours: ask DNS */
	start_ub(q);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct moat_dns_query *q = arg;
	struct moat_resolver *r = q->r;
	struct moat_dns_answer a;
	(void)fd;
	(void)what;
	if (q->refused) {	/* libunbound refused the query at once */
		deliver_error(q);
		return;
	}
	if (q->hot) {		/* a hot answer, delivered from the loop */
		char *v = q->hot;
		q->hot = NULL;
		if (deliver_encoded(q, v, q->hotlen, 0) < 0) {
			/* it expired meanwhile: a lookup after all, with its deadline */
			struct timeval tv = {q->deadline_ms / 1000, (q->deadline_ms % 1000) * 1000};
			evtimer_add(q->timer, &tv);
			start_ub(q);
		}
		free(v);
		return;
	}
	if (q->started)
		ub_cancel(r->ub, q->async_id);
	q->started = 0;
	if (q->sop) {
		moat_store_cancel(q->store, q->sop);
		q->sop = NULL;
	}
	memset(&a, 0, sizeof(a));
	a.status = MOAT_DNS_TIMEOUT;
	a.type = q->type;
	a.name = q->name;
	a.ms = ms_since(&q->start);
	r->stats.timeouts++;
	r->stats.failures++;
	unlink_query(q);
	q->cb(q->arg, &a);
	query_free(q);
	maybe_free(r);
}

struct moat_dns_query *moat_resolver_query(struct moat_resolver *r, const char *name,
					   int type, long timeout_ms, moat_dns_cb cb, void *arg)
{
	struct moat_dns_query *q = calloc(1, sizeof(*q));
	if (!q || !(q->name = strdup(name)) ||
	    !(q->timer = evtimer_new(r->base, on_timer, q))) {
		if (q)
			free(q->name);
		free(q);
		return NULL;
	}
	q->r = r;
	q->type = type;
	q->cb = cb;
	q->arg = arg;
	clock_gettime(CLOCK_MONOTONIC, &q->start);
	q->next = r->queries;
	if (q->next)
		q->next->prev = q;
	r->queries = q;
	r->stats.in_flight++;
	r->stats.queries++;
	long ms = timeout_ms > 0 ? timeout_ms : r->timeout * 1000;
	q->deadline_ms = ms;
	q->key = cache_key(r, name, type);
	if (q->key && (q->hot = hot_get(r, q->key, &q->hotlen))) {
		struct timeval now = {0, 0};
		evtimer_add(q->timer, &now);
		return q;
	}
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	evtimer_add(q->timer, &tv);
	struct moat_store *s = cache_store(r);
	if (s && q->key) {
		q->store = s;
		q->sop = moat_store_get(s, q->key, on_cached, q);
		if (q->sop)
			return q;
	}
	start_ub(q);
	return q;
}

void moat_dns_cancel(struct moat_dns_query *q)
{
	if (!q)
		return;
	struct moat_resolver *r = q->r;
	if (q->started)
		ub_cancel(r->ub, q->async_id);
	unlink_query(q);
	query_free(q);
	maybe_free(r);
}
