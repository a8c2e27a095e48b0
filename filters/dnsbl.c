/*
 * dnsbl.c - the DNS list filter (RFC 5782): DNSBL lookups of the
 * client's address at CONNECT, RHSBL lookups of the HELO name, the MAIL
 * FROM domain and the From: header's domain, DNSWL by negative scores.
 *
 * A stage asks every zone of its kind in parallel through moat's
 * resolver (the A record, then for a hit the TXT record) and waits up
 * to `wait` ms on a timer of its own; it then scores what it has. An
 * answer that comes later is logged and scores nothing. A hit adds the
 * zone's symbol; a DNS failure adds DNSBL_TEMPFAIL (score 0), never
 * "not listed". A reject decision for client, helo and sender lists is
 * kept in the session's state and given at each RCPT (like Postfix's
 * reject_rbl_client, so an earlier allow entry for a recipient such as
 * postmaster exempts it); a from list rejects at end of message.
 *
 * Zone health (RFC 5782 section 5): the activate hook checks every
 * zone's test points at start and on reload, then every `recheck`
 * seconds; a zone that fails them, or answers outside 127.0.0.0/8, is
 * ignored until it passes again. A DNS failure during a check keeps the
 * previous state.
 *
 * Owns: each configuration's derived zone array (freed by release());
 * each stage's job and lookups (freed when the last answer is in, or at
 * session end); each session's state (its session_end frees it). The
 * one global mutable state is `health`, below: the health table (one
 * entry per zone name: state, counters, log rate limits, the check in
 * flight, copies of the zone's settings, never pointers into a
 * configuration), the recheck timer, and the jobs of ended sessions
 * still waiting for late answers (to log them). It lives on the loop
 * thread.
 */
#include "dnsbl.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <math.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "nelem.h"

#define FAIL_LOG_EVERY 60	/* seconds between failure lines per zone */
#define REFUSED_LOG_EVERY 3600	/* seconds between refused-code lines per zone */
#define HEALTH_MAX (2 * DNSBL_MAX_ZONES)

/* ---- small helpers --------------------------------------------------- */

static int lower(int c)
{
	return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

static int is_ldh(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '_';
}

static long now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long)ts.tv_sec;
}

static const char *const kind_names[DNSBL_KIND__COUNT] = {"client", "helo", "sender", "from"};

const char *dnsbl_kind_name(enum dnsbl_kind k)
{
	return (unsigned)k < DNSBL_KIND__COUNT ? kind_names[k] : "?";
}

int dnsbl_kind_parse(const char *s, enum dnsbl_kind *out)
{
	for (size_t i = 0; s && i < DNSBL_KIND__COUNT; i++)
		if (strcmp(s, kind_names[i]) == 0) {
			*out = (enum dnsbl_kind)i;
			return 0;
		}
	return -1;
}

const char *dnsbl_status_name(enum dnsbl_status st)
{
	static const char *const names[] = {"not listed", "listed", "dns failure", "refused code",
					    "answer outside 127.0.0.0/8"};
	return (unsigned)st < NELEM(names) ? names[st] : "?";
}

const char *dnsbl_health_name(enum dnsbl_health h)
{
	static const char *const names[] = {"unknown", "ok", "broken"};
	return (unsigned)h < NELEM(names) ? names[h] : "?";
}

/* ---- names ------------------------------------------------------------ */

/* Checks a host name of n octets (no trailing dot): LDH labels of 1..63
 * octets, 253 in all. Returns 0 or -1 with the reason in err. */
static int host_check(const char *d, size_t n, char *err, size_t errlen)
{
	size_t label = 0;
	if (n == 0 || n > DNSBL_NAME_MAX) {
		snprintf(err, errlen, "expected a domain name of 1 to 253 characters");
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)d[i];
		if (c == '.') {
			if (label == 0)
				break;
			label = 0;
			continue;
		}
		if (!is_ldh(c)) {
			snprintf(err, errlen, "\"%.*s\": unexpected character in a domain name "
				 "(letters, digits, '-', '_' and '.')", (int)n, d);
			return -1;
		}
		if (++label > 63) {
			snprintf(err, errlen, "\"%.*s\": a label is longer than 63 characters",
				 (int)n, d);
			return -1;
		}
	}
	if (label == 0) {
		snprintf(err, errlen, "\"%.*s\": empty label in a domain name", (int)n, d);
		return -1;
	}
	return 0;
}

int dnsbl_zone_name(const char *in, char *out, size_t outlen, char *err, size_t errlen)
{
	size_t n = in ? strlen(in) : 0;
	if (n > 1 && in[n - 1] == '.')
		n--;
	if (host_check(in ? in : "", n, err, errlen) < 0)
		return -1;
	if (n + 1 > outlen) {
		snprintf(err, errlen, "zone name too long");
		return -1;
	}
	for (size_t i = 0; i < n; i++)
		out[i] = (char)lower((unsigned char)in[i]);
	out[n] = '\0';
	return 0;
}

/* prefix "." zone into out; -1 when longer than a domain name may be. */
static int join(const char *prefix, size_t plen, const char *zone, char *out, size_t outlen)
{
	size_t zlen = strlen(zone);
	if (plen + 1 + zlen > DNSBL_NAME_MAX || plen + 1 + zlen + 1 > outlen)
		return -1;
	for (size_t i = 0; i < plen; i++)
		out[i] = (char)lower((unsigned char)prefix[i]);
	out[plen] = '.';
	memcpy(out + plen + 1, zone, zlen + 1);
	return 0;
}

int dnsbl_ip6_query(const unsigned char a[16], const char *zone, char *out, size_t outlen)
{
	static const char hex[] = "0123456789abcdef";
	char buf[64];
	size_t o = 0;
	for (int i = 15; i >= 0; i--) {
		buf[o++] = hex[a[i] & 0xf];
		buf[o++] = '.';
		buf[o++] = hex[a[i] >> 4];
		if (i)
			buf[o++] = '.';
	}
	return join(buf, o, zone, out, outlen);
}

int dnsbl_ip_query(const char *addr, const char *zone, char *out, size_t outlen)
{
	static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	unsigned char a[16];
	char buf[32];
	const unsigned char *v4 = NULL;

	if (!addr)
		return -1;
	if (inet_pton(AF_INET, addr, a) == 1)
		v4 = a;
	else if (inet_pton(AF_INET6, addr, a) != 1)
		return -1;
	else if (memcmp(a, mapped, sizeof(mapped)) == 0)
		v4 = a + 12;
	if (!v4)
		return dnsbl_ip6_query(a, zone, out, outlen) < 0 ? -1 : 6;
	int n = snprintf(buf, sizeof(buf), "%u.%u.%u.%u", v4[3], v4[2], v4[1], v4[0]);
	return join(buf, (size_t)n, zone, out, outlen) < 0 ? -1 : 4;
}

int dnsbl_name_query(const char *name, const char *zone, char *out, size_t outlen)
{
	char err[200];
	unsigned char a[16];
	if (!name || !*name || name[0] == '[')
		return -1;
	if (inet_pton(AF_INET, name, a) == 1 || inet_pton(AF_INET6, name, a) == 1)
		return -1;
	size_t n = strlen(name);
	if (n > 1 && name[n - 1] == '.')
		n--;
	if (host_check(name, n, err, sizeof(err)) < 0)
		return -1;
	return join(name, n, zone, out, outlen);
}

int dnsbl_addr_domain(const char *addr, char *out, size_t outlen)
{
	char err[200];
	const char *at = addr ? strrchr(addr, '@') : NULL;
	if (!at || !at[1] || at[1] == '[')
		return -1;
	const char *d = at + 1;
	size_t n = strlen(d);
	if (n > 1 && d[n - 1] == '.')
		n--;
	if (host_check(d, n, err, sizeof(err)) < 0 || n + 1 > outlen)
		return -1;
	for (size_t i = 0; i < n; i++)
		out[i] = (char)lower((unsigned char)d[i]);
	out[n] = '\0';
	return 0;
}

int dnsbl_from_domain(const char *value, size_t len, char *out, size_t outlen)
{
	char *clean = malloc(len + 1);
	char addr[DNSBL_NAME_MAX + 200];
	size_t o = 0;
	int depth = 0, rc = -1;

	if (!clean)
		return -1;
	/* comments and quoted strings out, folding and controls to spaces */
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)value[i];
		if (depth == 0 && c == '"') {
			for (i++; i < len && value[i] != '"'; i++)
				if (value[i] == '\\')
					i++;
			clean[o++] = ' ';
			continue;
		}
		if (c == '(') {
			depth++;
			continue;
		}
		if (c == ')' && depth > 0) {
			depth--;
			continue;
		}
		if (depth > 0) {
			if (c == '\\')
				i++;
			continue;
		}
		clean[o++] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
	}
	clean[o] = '\0';

	const char *s = NULL, *e = NULL;
	const char *lt = strchr(clean, '<');
	if (lt) {
		s = lt + 1;
		e = strchr(s, '>');
		if (!e)
			e = s + strlen(s);
	} else {
		/* the first token with an '@' (also inside "group: a@b, c@d;") */
		for (const char *p = clean; *p;) {
			while (*p && strchr(" \t,;:", *p))
				p++;
			const char *t = p;
			while (*p && !strchr(" \t,;:", *p))
				p++;
			if (memchr(t, '@', (size_t)(p - t))) {
				s = t;
				e = p;
				break;
			}
		}
	}
	if (s) {
		while (s < e && *s == ' ')
			s++;
		while (e > s && e[-1] == ' ')
			e--;
		size_t n = (size_t)(e - s);
		if (n < sizeof(addr)) {
			memcpy(addr, s, n);
			addr[n] = '\0';
			rc = dnsbl_addr_domain(addr, out, outlen);
		}
	}
	free(clean);
	return rc;
}

void dnsbl_default_symbol(const char *zone, char *out, size_t outlen)
{
	size_t o = (size_t)snprintf(out, outlen, "DNSBL_");
	for (const char *p = zone; *p && o + 1 < outlen; p++) {
		int c = (unsigned char)*p;
		out[o++] = (char)(c >= 'a' && c <= 'z' ? c - 'a' + 'A' :
				  (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ? c : '_');
	}
	if (outlen)
		out[o < outlen ? o : outlen - 1] = '\0';
}

/* ---- codes ------------------------------------------------------------- */

int dnsbl_refused_code(uint32_t a)
{
	return (a >> 8) == 0x7fffffu;
}

int dnsbl_in_loopback(uint32_t a)
{
	return (a >> 24) == 127;
}

static int parse_v4(const char *s, size_t n, uint32_t *out)
{
	char buf[20];
	struct in_addr a;
	if (n == 0 || n >= sizeof(buf))
		return -1;
	memcpy(buf, s, n);
	buf[n] = '\0';
	if (inet_pton(AF_INET, buf, &a) != 1)
		return -1;
	*out = ntohl(a.s_addr);
	return 0;
}

int dnsbl_code_parse(const char *text, struct dnsbl_code *out, char *err, size_t errlen)
{
	const char *p = text;
	memset(out, 0, sizeof(*out));
	while (*p == ' ' || *p == '\t')
		p++;
	const char *v = p;
	while (*p && *p != ' ' && *p != '\t')
		p++;
	size_t vlen = (size_t)(p - v);
	while (*p == ' ' || *p == '\t')
		p++;

	if (vlen > 1 && v[0] == '&') {
		unsigned long m = 0;
		size_t i;
		for (i = 1; i < vlen && v[i] >= '0' && v[i] <= '9' && m < 1000; i++)
			m = m * 10 + (unsigned long)(v[i] - '0');
		if (i < vlen || m < 1 || m > 255) {
			snprintf(err, errlen, "expected a bitmask &N of the last octet, N from 1 to 255");
			return -1;
		}
		out->is_mask = 1;
		out->mask = (unsigned)m;
	} else {
		const char *dash = memchr(v, '-', vlen);
		size_t l1 = dash ? (size_t)(dash - v) : vlen;
		if (parse_v4(v, l1, &out->lo) < 0 ||
		    (dash ? parse_v4(dash + 1, vlen - l1 - 1, &out->hi) : (out->hi = out->lo, 0)) < 0) {
			snprintf(err, errlen, "expected 127.0.0.N, a range 127.0.0.N-127.0.0.M or a "
				 "bitmask &N, then an optional score");
			return -1;
		}
		if (!dnsbl_in_loopback(out->lo) || !dnsbl_in_loopback(out->hi)) {
			snprintf(err, errlen, "expected an address in 127.0.0.0/8, where list answers are");
			return -1;
		}
		if (out->lo > out->hi) {
			snprintf(err, errlen, "the range ends before it starts");
			return -1;
		}
		if (dnsbl_refused_code(out->lo) || dnsbl_refused_code(out->hi)) {
			snprintf(err, errlen, "127.255.255.0/24 are refused codes (the list refuses "
				 "the query), never hits");
			return -1;
		}
	}
	if (*p) {
		char *end;
		double s = strtod(p, &end);
		while (*end == ' ' || *end == '\t')
			end++;
		if (end == p || *end || !isfinite(s) || s < -1000 || s > 1000) {
			snprintf(err, errlen, "expected VALUE [SCORE], the score a number from -1000 "
				 "to 1000");
			return -1;
		}
		out->has_score = 1;
		out->score = s;
	}
	if (vlen == 0) {
		snprintf(err, errlen, "empty entry: expected 127.0.0.N, 127.0.0.N-127.0.0.M or &N, "
			 "with an optional score");
		return -1;
	}
	return 0;
}

static int counts(uint32_t a)
{
	return dnsbl_in_loopback(a) && !dnsbl_refused_code(a);
}

static int code_matches(const struct dnsbl_code *c, uint32_t a)
{
	return c->is_mask ? ((a & 0xff) & c->mask) != 0 : a >= c->lo && a <= c->hi;
}

int dnsbl_codes_match(const struct dnsbl_zone *z, const uint32_t *a, size_t n, double *score)
{
	int hit = 0;
	double total = 0;
	if (z->ncodes == 0) {
		for (size_t i = 0; i < n; i++)
			if (counts(a[i])) {
				*score = z->score;
				return 1;
			}
		return 0;
	}
	for (size_t c = 0; c < z->ncodes; c++)
		for (size_t i = 0; i < n; i++)
			if (counts(a[i]) && code_matches(&z->codes[c], a[i])) {
				hit = 1;
				total += z->codes[c].has_score ? z->codes[c].score : z->score;
				break;
			}
	if (hit)
		*score = total;
	return hit;
}

/* ---- texts -------------------------------------------------------------- */

size_t dnsbl_txt_sanitize(const char *in, char *out, size_t outlen)
{
	size_t o = 0, max = outlen ? outlen - 1 : 0;
	if (max > DNSBL_TXT_MAX)
		max = DNSBL_TXT_MAX;
	for (const char *p = in; p && *p && o < max; p++) {
		unsigned char c = (unsigned char)*p;
		if (c < 0x20 || c == 0x7f || c == ' ') {
			if (o && out[o - 1] != ' ')
				out[o++] = ' ';
			continue;
		}
		out[o++] = c > 0x7e ? '?' : (char)c;
	}
	while (o && out[o - 1] == ' ')
		o--;
	if (outlen)
		out[o] = '\0';
	return o;
}

static const char *const text_vars[] = {"value", "zone", "txt"};

/* At p, a '$': the length of the identifier after it, and in *var the
 * index of the variable it names (or NELEM(text_vars)). */
static size_t text_var(const char *p, size_t *var)
{
	size_t l = 0;
	while (is_ldh((unsigned char)p[1 + l]) && p[1 + l] != '-')
		l++;
	*var = NELEM(text_vars);
	for (size_t i = 0; l && i < NELEM(text_vars); i++)
		if (strlen(text_vars[i]) == l && strncmp(p + 1, text_vars[i], l) == 0)
			*var = i;
	return l;
}

int dnsbl_reply_text_check(const char *t, char *err, size_t errlen)
{
	const char *p = t;
	int ok = p[0] == '5' && p[1] == '.';
	p += ok ? 2 : 0;
	for (int part = 0; ok && part < 2; part++) {
		int digits = 0;
		while (*p >= '0' && *p <= '9' && digits < 4) {
			p++;
			digits++;
		}
		if (digits < 1 || digits > 3 || *p++ != (part == 0 ? '.' : ' '))
			ok = 0;
	}
	if (!ok || !*p) {
		snprintf(err, errlen, "\"%s\": expected a 5.x.x enhanced status code and text, e.g. "
			 "\"5.7.1 Client host [$value] blocked using $zone; $txt\"", t);
		return -1;
	}
	if (strlen(t) > DNSBL_TEXT_MAX) {
		snprintf(err, errlen, "longer than %d characters", DNSBL_TEXT_MAX);
		return -1;
	}
	for (p = t; *p; p++) {
		size_t var;
		if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e) {
			snprintf(err, errlen, "only printable ASCII characters allowed");
			return -1;
		}
		if (*p == '$' && text_var(p, &var) && var == NELEM(text_vars)) {
			snprintf(err, errlen, "\"%s\": unknown variable; expected $value, $zone or "
				 "$txt", t);
			return -1;
		}
	}
	return 0;
}

void dnsbl_reply_text(const struct dnsbl_zone *z, const char *value, const char *txt,
		      char *out, size_t outlen)
{
	static const char *const what[DNSBL_KIND__COUNT] = {
		"Client host", "Helo command", "Sender address", "From address"};
	if (!outlen)
		return;
	if (!z->reject_text[0]) {
		snprintf(out, outlen, "5.7.1 Service unavailable; %s [%s] blocked using %s%s%s",
			 what[z->kind < DNSBL_KIND__COUNT ? z->kind : 0], value, z->name,
			 txt && *txt ? "; " : "", txt && *txt ? txt : "");
		return;
	}
	size_t o = 0;
	for (const char *p = z->reject_text; *p && o + 1 < outlen;) {
		size_t var, l = *p == '$' ? text_var(p, &var) : 0;
		if (!l || var == NELEM(text_vars)) {
			out[o++] = *p++;
			continue;
		}
		const char *vals[] = {value, z->name, txt ? txt : ""};
		for (const char *v = vals[var]; *v && o + 1 < outlen; v++)
			out[o++] = *v;
		p += 1 + l;
	}
	out[o] = '\0';
}

/* ---- classifying answers ------------------------------------------------ */

void dnsbl_classify(const struct dnsbl_zone *z, const struct moat_dns_answer *a,
		    struct dnsbl_result *r)
{
	uint32_t v[32];
	size_t n = 0, o = 0;
	int outside = 0, usable = 0;

	r->dns = a->status;
	r->ms = a->ms;
	r->codes[0] = '\0';
	r->score = 0;
	if (a->status == MOAT_DNS_NXDOMAIN || a->status == MOAT_DNS_NODATA) {
		r->status = DNSBL_NOT_LISTED;
		return;
	}
	if (a->status != MOAT_DNS_OK) {
		r->status = DNSBL_FAILED;
		return;
	}
	for (size_t i = 0; i < a->n && n < NELEM(v); i++) {
		char buf[INET_ADDRSTRLEN];
		v[n] = ntohl(a->a[i].s_addr);
		if (!dnsbl_in_loopback(v[n]))
			outside = 1;
		else if (!dnsbl_refused_code(v[n]))
			usable = 1;
		inet_ntop(AF_INET, &a->a[i], buf, sizeof(buf));
		if (o + strlen(buf) + 2 < sizeof(r->codes))
			o += (size_t)snprintf(r->codes + o, sizeof(r->codes) - o, "%s%s", n ? "," : "", buf);
		n++;
	}
	if (outside)
		r->status = DNSBL_OUT_OF_RANGE;
	else if (!usable)
		r->status = n ? DNSBL_REFUSED : DNSBL_NOT_LISTED;
	else
		r->status = dnsbl_codes_match(z, v, n, &r->score) ? DNSBL_LISTED : DNSBL_NOT_LISTED;
}

/* ---- one zone's lookup: A, then TXT for a hit --------------------------- */

struct dnsbl_lookup {
	struct dnsbl_zone z;
	struct moat_resolver *r;
	struct moat_dns_query *q;
	long timeout_ms;
	int have_a;
	struct dnsbl_result res;
	dnsbl_lookup_cb cb;
	void *arg;
};

static void lookup_deliver(struct dnsbl_lookup *l)
{
	l->cb(l->arg, &l->res);
	free(l);
}

static void on_txt(void *arg, const struct moat_dns_answer *a)
{
	struct dnsbl_lookup *l = arg;
	l->q = NULL;
	for (size_t i = 0; a->status == MOAT_DNS_OK && i < a->n; i++)
		if (dnsbl_txt_sanitize(a->txt[i], l->res.txt, sizeof(l->res.txt)) > 0)
			break;
	lookup_deliver(l);
}

static void on_a(void *arg, const struct moat_dns_answer *a)
{
	struct dnsbl_lookup *l = arg;
	l->q = NULL;
	dnsbl_classify(&l->z, a, &l->res);
	l->have_a = 1;
	if (l->res.status == DNSBL_LISTED && l->z.txt) {
		l->q = moat_resolver_query(l->r, l->res.qname, MOAT_DNS_TXT, l->timeout_ms, on_txt, l);
		if (l->q)
			return;
	}
	lookup_deliver(l);
}

struct dnsbl_lookup *dnsbl_lookup_start(struct moat_resolver *r, const struct dnsbl_zone *z,
					const char *qname, long timeout_ms, dnsbl_lookup_cb cb,
					void *arg)
{
	struct dnsbl_lookup *l = calloc(1, sizeof(*l));
	if (!l)
		return NULL;
	l->z = *z;
	l->r = r;
	l->timeout_ms = timeout_ms;
	l->cb = cb;
	l->arg = arg;
	snprintf(l->res.qname, sizeof(l->res.qname), "%s", qname);
	l->q = moat_resolver_query(r, qname, MOAT_DNS_A, timeout_ms, on_a, l);
	if (!l->q) {
		free(l);
		return NULL;
	}
	return l;
}

int dnsbl_lookup_partial(const struct dnsbl_lookup *l, struct dnsbl_result *out)
{
	if (!l->have_a)
		return 0;
	*out = l->res;
	return 1;
}

void dnsbl_lookup_cancel(struct dnsbl_lookup *l)
{
	if (!l)
		return;
	moat_dns_cancel(l->q);
	free(l);
}

/* ---- health: RFC 5782 section 5 test points ----------------------------- */

size_t dnsbl_test_points(const struct dnsbl_zone *z, char names[DNSBL_POINTS][DNSBL_NAME_MAX + 1])
{
	static const unsigned char v6[2][16] = {
		{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0x7f, 0, 0, 2},
		{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0x7f, 0, 0, 1},
	};
	if (z->kind != DNSBL_CLIENT) {
		if (join("test", 4, z->name, names[0], DNSBL_NAME_MAX + 1) < 0 ||
		    join("invalid", 7, z->name, names[1], DNSBL_NAME_MAX + 1) < 0)
			return 0;
		return 2;
	}
	if (dnsbl_ip_query("127.0.0.2", z->name, names[0], DNSBL_NAME_MAX + 1) < 0 ||
	    dnsbl_ip_query("127.0.0.1", z->name, names[1], DNSBL_NAME_MAX + 1) < 0)
		return 0;
	if (dnsbl_ip6_query(v6[0], z->name, names[2], DNSBL_NAME_MAX + 1) < 0 ||
	    dnsbl_ip6_query(v6[1], z->name, names[3], DNSBL_NAME_MAX + 1) < 0)
		return 2;
	return 4;
}

static int point_absent(const struct dnsbl_point *p)
{
	return p->dns == MOAT_DNS_NXDOMAIN || p->dns == MOAT_DNS_NODATA;
}

static int point_listed(const struct dnsbl_point *p)
{
	for (size_t i = 0; p->dns == MOAT_DNS_OK && i < p->n; i++)
		if (counts(p->a[i]))
			return 1;
	return 0;
}

static int point_refused(const struct dnsbl_point *p)
{
	return p->dns == MOAT_DNS_OK && p->n && !point_listed(p);
}

enum dnsbl_health dnsbl_health_eval(const struct dnsbl_zone *z,
				    const struct dnsbl_point p[DNSBL_POINTS], char *why,
				    size_t whylen)
{
	char names[DNSBL_POINTS][DNSBL_NAME_MAX + 1];
	size_t n = dnsbl_test_points(z, names);
	int unknown = 0;

	why[0] = '\0';
	if (n < 2) {
		snprintf(why, whylen, "zone name too long for its test points");
		return DNSBL_HEALTH_UNKNOWN;
	}
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; p[i].dns == MOAT_DNS_OK && j < p[i].n; j++)
			if (!dnsbl_in_loopback(p[i].a[j])) {
				struct in_addr a = {htonl(p[i].a[j])};
				char buf[INET_ADDRSTRLEN];
				snprintf(why, whylen, "it answers %s for %s, outside 127.0.0.0/8",
					 inet_ntop(AF_INET, &a, buf, sizeof(buf)), names[i]);
				return DNSBL_HEALTH_BROKEN;
			}
	/* listed test point [0], unlisted [1]; IPv6 pair only if [2] is listed */
	for (size_t i = 0; i < n; i += 2) {
		const struct dnsbl_point *yes = &p[i], *no = &p[i + 1];
		if (i == 2 && !point_listed(yes))
			break;
		if (point_absent(yes)) {
			snprintf(why, whylen, "test point %s is not listed", names[i]);
			return DNSBL_HEALTH_BROKEN;
		}
		if (point_listed(no)) {
			snprintf(why, whylen, "test point %s is listed: the zone lists everything",
				 names[i + 1]);
			return DNSBL_HEALTH_BROKEN;
		}
		if (moat_dns_temporary(yes->dns) || moat_dns_temporary(no->dns)) {
			if (!unknown)
				snprintf(why, whylen, "test point %s: dns failure (%s)",
					 names[moat_dns_temporary(yes->dns) ? i : i + 1],
					 moat_dns_status_name(moat_dns_temporary(yes->dns) ? yes->dns
											    : no->dns));
			unknown = 1;
		} else if (point_refused(yes) || point_refused(no)) {
			if (!unknown)
				snprintf(why, whylen, "test point %s: refused code (the list refuses "
					 "queries from this resolver)", names[point_refused(yes) ? i : i + 1]);
			unknown = 1;
		}
	}
	return unknown ? DNSBL_HEALTH_UNKNOWN : DNSBL_HEALTH_OK;
}

struct probe_slot {
	struct dnsbl_probe *p;
	size_t i;
};

struct dnsbl_probe {
	struct dnsbl_zone z;
	struct moat_dns_query *q[DNSBL_POINTS];
	struct probe_slot slot[DNSBL_POINTS];
	struct dnsbl_point pt[DNSBL_POINTS];
	size_t pending;
	dnsbl_probe_cb cb;
	void *arg;
};

static void on_point(void *arg, const struct moat_dns_answer *a)
{
	struct probe_slot *s = arg;
	struct dnsbl_probe *p = s->p;
	struct dnsbl_point *pt = &p->pt[s->i];
	char why[300];

	p->q[s->i] = NULL;
	pt->dns = a->status;
	pt->n = 0;
	for (size_t i = 0; a->status == MOAT_DNS_OK && i < a->n && pt->n < NELEM(pt->a); i++)
		pt->a[pt->n++] = ntohl(a->a[i].s_addr);
	if (--p->pending)
		return;
	enum dnsbl_health h = dnsbl_health_eval(&p->z, p->pt, why, sizeof(why));
	p->cb(p->arg, &p->z, h, why);
	free(p);
}

struct dnsbl_probe *dnsbl_probe_start(struct moat_resolver *r, const struct dnsbl_zone *z,
				      dnsbl_probe_cb cb, void *arg)
{
	char names[DNSBL_POINTS][DNSBL_NAME_MAX + 1];
	struct dnsbl_probe *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->z = *z;
	p->cb = cb;
	p->arg = arg;
	size_t n = dnsbl_test_points(z, names);
	for (size_t i = 0; i < DNSBL_POINTS; i++)
		p->pt[i].dns = MOAT_DNS_NXDOMAIN;	/* unused points: absent */
	for (size_t i = 0; i < n; i++) {
		p->slot[i].p = p;
		p->slot[i].i = i;
		p->q[i] = moat_resolver_query(r, names[i], MOAT_DNS_A, 0, on_point, &p->slot[i]);
		if (!p->q[i]) {
			dnsbl_probe_cancel(p);
			return NULL;
		}
		p->pending++;
	}
	if (!p->pending) {	/* a name too long for test points: nothing to ask */
		free(p);
		return NULL;
	}
	return p;
}

void dnsbl_probe_cancel(struct dnsbl_probe *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < DNSBL_POINTS; i++)
		moat_dns_cancel(p->q[i]);
	free(p);
}

/* ---- the health table (the filter's one global state) ------------------- */

struct health_zone {
	char name[DNSBL_NAME_MAX + 1];	/* "" = free slot */
	int configured;			/* in the last activate */
	struct dnsbl_zone zone;		/* copy, for the checks */
	enum dnsbl_health state;
	char why[300];
	struct dnsbl_probe *probe;	/* check in flight */
	long last_fail_log, last_refused_log, last_check_log;
	unsigned long hits, failures, refused, late;
};

struct dnsbl_job;

static struct {
	struct health_zone zones[HEALTH_MAX];
	struct dnsbl_job *orphans;	/* jobs of ended sessions awaiting late answers */
	struct event *timer;
	struct event_base *base;	/* the timer's */
	struct moat_resolver *resolver;	/* the last activate's */
} health;

static struct health_zone *health_find(const char *name)
{
	for (size_t i = 0; i < HEALTH_MAX; i++)
		if (health.zones[i].name[0] && strcmp(health.zones[i].name, name) == 0)
			return &health.zones[i];
	return NULL;
}

/* The zone's entry, added if new (NULL when the table is full). */
static struct health_zone *health_get(const struct dnsbl_zone *z)
{
	struct health_zone *h = health_find(z->name);
	for (size_t i = 0; !h && i < HEALTH_MAX; i++)
		if (!health.zones[i].name[0]) {
			h = &health.zones[i];
			memset(h, 0, sizeof(*h));
			snprintf(h->name, sizeof(h->name), "%s", z->name);
			h->zone = *z;
		}
	return h;
}

static int health_broken(const char *name)
{
	const struct health_zone *h = health_find(name);
	return h && h->state == DNSBL_HEALTH_BROKEN;
}

static void health_set(struct health_zone *h, enum dnsbl_health st, const char *why)
{
	if (st == DNSBL_HEALTH_BROKEN && (h->state != st || strcmp(h->why, why) != 0))
		moat_log(LOG_WARNING, "dnsbl: zone %s is broken: %s; it is ignored until it passes "
			 "its RFC 5782 test points", h->name, why);
	else if (st == DNSBL_HEALTH_OK && h->state == DNSBL_HEALTH_BROKEN)
		moat_log(LOG_NOTICE, "dnsbl: zone %s passes its test points again; in use", h->name);
	else if (st == DNSBL_HEALTH_OK && h->state == DNSBL_HEALTH_UNKNOWN)
		moat_log(LOG_INFO, "dnsbl: zone %s passes its test points", h->name);
	h->state = st;
	snprintf(h->why, sizeof(h->why), "%s", why);
}

static void on_probe(void *arg, const struct dnsbl_zone *z, enum dnsbl_health st, const char *why)
{
	struct health_zone *h = health_find(z->name);
	(void)arg;
	if (!h)
		return;
	h->probe = NULL;
	if (!h->configured) {		/* dropped by a reload meanwhile */
		memset(h, 0, sizeof(*h));
		return;
	}
	if (h->zone.kind != z->kind)	/* its kind changed: the next check counts */
		return;
	if (st != DNSBL_HEALTH_UNKNOWN) {
		health_set(h, st, why);
		return;
	}
	/* a failed check keeps the previous state */
	long now = now_s();
	if (!h->last_check_log || now - h->last_check_log >= FAIL_LOG_EVERY) {
		h->last_check_log = now;
		moat_log(LOG_WARNING, "dnsbl: zone %s: test points not checked: %s; it stays %s",
			 h->name, why, dnsbl_health_name(h->state));
	}
}

static void health_check_all(void)
{
	for (size_t i = 0; health.resolver && i < HEALTH_MAX; i++) {
		struct health_zone *h = &health.zones[i];
		if (h->name[0] && h->configured && !h->probe)
			h->probe = dnsbl_probe_start(health.resolver, &h->zone, on_probe, NULL);
	}
}

static void on_recheck(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	health_check_all();
}

/* The activate hook: copies the zones into the table, checks them now and
 * every `recheck` seconds. Keeps no pointer into conf. */
static void dnsbl_activate(const void *conf, struct event_base *base,
			   struct moat_resolver *resolver)
{
	const struct dnsbl_conf *c = conf;

	health.resolver = resolver;
	for (size_t i = 0; i < HEALTH_MAX; i++)
		health.zones[i].configured = 0;
	for (size_t i = 0; i < c->nzones; i++) {
		struct health_zone *h = health_get(&c->zones[i]);
		if (!h)
			continue;
		if (h->zone.kind != c->zones[i].kind)
			h->state = DNSBL_HEALTH_UNKNOWN;
		h->zone = c->zones[i];
		h->configured = 1;
	}
	for (size_t i = 0; i < HEALTH_MAX; i++) {
		struct health_zone *h = &health.zones[i];
		if (h->name[0] && !h->configured && !h->probe)
			memset(h, 0, sizeof(*h));
	}
	/* one timer; a timer of another (freed) base is not touched */
	if (health.timer && health.base == base)
		evtimer_del(health.timer);
	else
		health.timer = event_new(base, -1, EV_PERSIST, on_recheck, NULL);
	health.base = base;
	if (health.timer) {
		struct timeval tv = {c->recheck, 0};
		evtimer_add(health.timer, &tv);
	}
	health_check_all();
}

/* ---- the filter: per-session state and stage jobs ----------------------- */

/* What a session keeps: the reject decided by a client, helo or sender
 * list (given at RCPT), and its jobs not yet freed. */
struct dnsbl_session {
	struct dnsbl_job *jobs;
	int reject[DNSBL_KIND__COUNT];
	char text[DNSBL_KIND__COUNT][DNSBL_TEXT_MAX + 1];
};

struct job_zone {
	struct dnsbl_job *job;
	struct dnsbl_zone z;
	struct dnsbl_lookup *l;	/* NULL once it reported */
	int have;		/* res holds the answer used */
	int late;		/* the wait ended before the A answer */
	struct dnsbl_result res;
};

/* One stage's lookups. Lives until done() was called and every lookup
 * reported (late ones are logged), or until the session ends. */
struct dnsbl_job {
	struct dnsbl_job *next;		/* in the session's list, or the orphans */
	struct dnsbl_session *sess;	/* NULL: no session state, or it ended */
	int orphan;			/* in health.orphans */
	struct moat_filter_call *call;	/* NULL once done() */
	enum dnsbl_kind kind;
	long wait;
	char session_id[64];
	char value[DNSBL_NAME_MAX + 1];	/* the address or name looked up */
	struct event *timer;
	size_t n, pending;
	struct job_zone v[];
};

static void job_unlink(struct dnsbl_job *job)
{
	struct dnsbl_job **pp = job->sess ? &job->sess->jobs : job->orphan ? &health.orphans : NULL;
	for (; pp && *pp; pp = &(*pp)->next)
		if (*pp == job) {
			*pp = job->next;
			break;
		}
	job->sess = NULL;
	job->orphan = 0;
}

static void job_free(struct dnsbl_job *job)
{
	job_unlink(job);
	for (size_t i = 0; i < job->n; i++)
		dnsbl_lookup_cancel(job->v[i].l);
	if (job->timer)
		event_free(job->timer);
	free(job);
}

/* Frees the job once nothing refers to it any more. */
static void job_release(struct dnsbl_job *job)
{
	if (!job->call && !job->pending)
		job_free(job);
}

static void note_failure(const struct dnsbl_job *job, const struct job_zone *jz, const char *what)
{
	struct health_zone *h = health_get(&jz->z);
	long now = now_s();
	if (h)
		h->failures++;
	if (h && h->last_fail_log && now - h->last_fail_log < FAIL_LOG_EVERY)
		return;
	if (h)
		h->last_fail_log = now;
	moat_log(LOG_WARNING, "session=%s: dnsbl: zone %s: lookup of %s failed: %s (%lu failures "
		 "since start; logged at most once a minute); not counted as listed or unlisted",
		 job->session_id, jz->z.name, jz->res.qname, what, h ? h->failures : 1UL);
}

static void note_refused(const struct dnsbl_job *job, const struct job_zone *jz)
{
	struct health_zone *h = health_get(&jz->z);
	long now = now_s();
	if (h)
		h->refused++;
	if (h && h->last_refused_log && now - h->last_refused_log < REFUSED_LOG_EVERY)
		return;
	if (h)
		h->last_refused_log = now;
	moat_log(LOG_WARNING, "session=%s: dnsbl: zone %s answered %s for %s: a refused code (the "
		 "list refuses queries from this resolver; use your own resolver); not scored "
		 "(logged at most once an hour)", job->session_id, jz->z.name, jz->res.codes,
		 jz->res.qname);
}

static void note_out_of_range(const struct job_zone *jz)
{
	struct health_zone *h = health_get(&jz->z);
	char why[400];
	snprintf(why, sizeof(why), "it answers %s for %s, outside 127.0.0.0/8", jz->res.codes,
		 jz->res.qname);
	if (h)
		health_set(h, DNSBL_HEALTH_BROKEN, why);
	else
		moat_log(LOG_WARNING, "dnsbl: zone %s is broken: %s", jz->z.name, why);
}

/* Scores what the job has and completes its call. */
static void job_finish(struct dnsbl_job *job)
{
	struct moat_filter_call *call = job->call;
	char fails[512] = "", text[DNSBL_TEXT_MAX + 1];
	size_t fo = 0;
	int decided = 0;

	job->call = NULL;
	if (job->timer)
		evtimer_del(job->timer);
	for (size_t i = 0; i < job->n; i++) {
		struct job_zone *jz = &job->v[i];
		const struct dnsbl_result *r = &jz->res;
		const char *failure = NULL;
		moat_call_trace(call, "zone %s: %s A -> %s (%s%s%s)%s%s%s, %.0f ms", jz->z.name,
				r->qname, jz->late ? "no answer within wait" : dnsbl_status_name(r->status),
				moat_dns_status_name(r->dns), r->codes[0] ? " " : "", r->codes,
				r->txt[0] ? ", TXT \"" : "", r->txt, r->txt[0] ? "\"" : "", r->ms);
		if (jz->late)
			failure = "no answer within wait";
		else if (!jz->have)
			continue;
		else if (r->status == DNSBL_FAILED)
			failure = moat_dns_status_name(r->dns);
		if (failure) {
			note_failure(job, jz, failure);
			if (fo < sizeof(fails))
				fo += (size_t)snprintf(fails + fo, sizeof(fails) - fo, "%s%s (%s)",
						       fo ? ", " : "", jz->z.name, failure);
			continue;
		}
		switch (r->status) {
		case DNSBL_LISTED: {
			struct health_zone *h = health_get(&jz->z);
			if (h)
				h->hits++;
			moat_call_symbol(call, jz->z.symbol, r->score, "%s lists %s: %s%s%s%s",
					 jz->z.name, job->value, r->codes, r->txt[0] ? " (" : "",
					 r->txt, r->txt[0] ? ")" : "");
			if (!jz->z.reject)
				break;
			dnsbl_reply_text(&jz->z, job->value, r->txt, text, sizeof(text));
			if (job->kind == DNSBL_FROM || !job->sess) {
				if (!decided++)
					moat_call_decide(call, MOAT_ACTION_REJECT, 554, "%s", text);
			} else if (!job->sess->reject[job->kind]) {
				job->sess->reject[job->kind] = 1;
				snprintf(job->sess->text[job->kind], sizeof(job->sess->text[0]), "%s",
					 text);
			}
			break;
		}
		case DNSBL_REFUSED:
			note_refused(job, jz);
			break;
		case DNSBL_OUT_OF_RANGE:
			note_out_of_range(jz);
			break;
		default:
			break;
		}
	}
	if (fails[0])
		moat_call_symbol(call, "DNSBL_TEMPFAIL", 0, "dns failure, %s not known: %s",
				 job->value, fails);
	moat_call_done(call, MOAT_FILTER_CONTINUE);
}

static void on_lookup(void *arg, const struct dnsbl_result *r)
{
	struct job_zone *jz = arg;
	struct dnsbl_job *job = jz->job;

	jz->l = NULL;
	job->pending--;
	if (job->call) {
		jz->res = *r;
		jz->have = 1;
		if (!job->pending)
			job_finish(job);
	} else if (jz->late) {
		struct health_zone *h = health_get(&jz->z);
		if (h)
			h->late++;
		moat_log(LOG_INFO, "session=%s: dnsbl: late answer from %s ignored (%s for %s "
			 "after %.0f ms; wait = %ld ms)", job->session_id, jz->z.name,
			 dnsbl_status_name(r->status), r->qname, r->ms, job->wait);
	}
	job_release(job);
}

static void on_wait(evutil_socket_t fd, short what, void *arg)
{
	struct dnsbl_job *job = arg;
	(void)fd;
	(void)what;
	if (!job->call)
		return;
	for (size_t i = 0; i < job->n; i++) {
		struct job_zone *jz = &job->v[i];
		if (jz->have || !jz->l)
			continue;
		if (dnsbl_lookup_partial(jz->l, &jz->res))
			jz->have = 1;	/* the A answer is in; its TXT came too late */
		else
			jz->late = 1;
	}
	job_finish(job);
	job_release(job);
}

static struct dnsbl_session *session_state(struct moat_filter_call *call)
{
	void **slot = moat_call_session_state(call);
	if (!slot)
		return NULL;
	if (!*slot)
		*slot = calloc(1, sizeof(struct dnsbl_session));
	return *slot;
}

/* Starts the lookups of every usable zone of kind for value. */
static enum moat_filter_status start(struct moat_filter_call *call, enum dnsbl_kind kind,
				     const char *value)
{
	const struct dnsbl_conf *c = moat_call_conf(call);
	const struct moat_msgctx *ctx = moat_call_ctx(call);
	struct dnsbl_session *sess = session_state(call);
	size_t n = 0;

	if (sess)
		sess->reject[kind] = 0;	/* a new HELO or MAIL replaces the last one's */
	for (size_t i = 0; i < c->nzones; i++)
		n += c->zones[i].kind == kind;
	if (!n || !value || !*value)
		return MOAT_FILTER_CONTINUE;
	if (!ctx->resolver || !ctx->base) {
		moat_call_error(call, "no resolver");
		return MOAT_FILTER_ERROR;
	}
	if (moat_call_session_state(call) && !sess) {
		/* a job not linked to its session could outlive it */
		moat_call_error(call, "out of memory");
		return MOAT_FILTER_ERROR;
	}
	struct dnsbl_job *job = calloc(1, sizeof(*job) + n * sizeof(job->v[0]));
	if (!job) {
		moat_call_error(call, "out of memory");
		return MOAT_FILTER_ERROR;
	}
	job->call = call;
	job->kind = kind;
	job->wait = c->wait;
	snprintf(job->session_id, sizeof(job->session_id), "%s",
		 ctx->session_id ? ctx->session_id : "-");
	snprintf(job->value, sizeof(job->value), "%s", value);
	for (size_t i = 0; i < c->nzones; i++) {
		const struct dnsbl_zone *z = &c->zones[i];
		char qname[DNSBL_NAME_MAX + 1];
		int ok;
		if (z->kind != kind || health_broken(z->name))
			continue;
		ok = kind == DNSBL_CLIENT ? dnsbl_ip_query(value, z->name, qname, sizeof(qname)) > 0
					  : dnsbl_name_query(value, z->name, qname, sizeof(qname)) == 0;
		if (!ok)
			continue;
		struct job_zone *jz = &job->v[job->n];
		jz->job = job;
		jz->z = *z;
		snprintf(jz->res.qname, sizeof(jz->res.qname), "%s", qname);
		jz->l = dnsbl_lookup_start(ctx->resolver, z, qname, 0, on_lookup, jz);
		if (!jz->l)
			continue;
		job->n++;
		job->pending++;
	}
	if (!job->pending) {
		free(job);
		return MOAT_FILTER_CONTINUE;
	}
	job->timer = evtimer_new(ctx->base, on_wait, job);
	if (!job->timer) {
		job->call = NULL;
		job_free(job);
		moat_call_error(call, "out of memory");
		return MOAT_FILTER_ERROR;
	}
	struct timeval tv = {c->wait / 1000, (c->wait % 1000) * 1000};
	evtimer_add(job->timer, &tv);
	if (sess) {
		job->sess = sess;
		job->next = sess->jobs;
		sess->jobs = job;
	}
	return MOAT_FILTER_WAIT;
}

static enum moat_filter_status dnsbl_connect(struct moat_filter_call *call)
{
	return start(call, DNSBL_CLIENT, moat_call_ctx(call)->client_addr);
}

static enum moat_filter_status dnsbl_helo(struct moat_filter_call *call)
{
	return start(call, DNSBL_HELO, moat_call_ctx(call)->helo);
}

static enum moat_filter_status dnsbl_mail(struct moat_filter_call *call)
{
	char dom[DNSBL_NAME_MAX + 1];
	const char *from = moat_call_ctx(call)->mail_from;
	return start(call, DNSBL_SENDER, from && dnsbl_addr_domain(from, dom, sizeof(dom)) == 0
					       ? dom : NULL);
}

/* Gives the reject a client, helo or sender list decided. */
static enum moat_filter_status dnsbl_rcpt(struct moat_filter_call *call)
{
	void **slot = moat_call_session_state(call);
	const struct dnsbl_session *sess = slot ? *slot : NULL;
	for (int k = 0; sess && k < DNSBL_FROM; k++)
		if (sess->reject[k]) {
			moat_call_decide(call, MOAT_ACTION_REJECT, 554, "%s", sess->text[k]);
			break;
		}
	return MOAT_FILTER_CONTINUE;
}

static enum moat_filter_status dnsbl_eom(struct moat_filter_call *call)
{
	char dom[DNSBL_NAME_MAX + 1];
	const struct moat_message *m = moat_call_ctx(call)->message;
	const struct moat_header *h = m ? moat_message_header(m, "From", 1) : NULL;
	return start(call, DNSBL_FROM,
		     h && dnsbl_from_domain(h->value, h->value_len, dom, sizeof(dom)) == 0 ? dom
											   : NULL);
}

/* The session ended: a job still waiting completes its call (which the
 * pipeline has abandoned by then) and stops; a job whose stage is over
 * but whose late answers are on their way becomes an orphan, kept in
 * the health state (so that it stays reachable) until they are in. */
static void dnsbl_session_end(void *state)
{
	struct dnsbl_session *sess = state;
	while (sess->jobs) {
		struct dnsbl_job *job = sess->jobs;
		struct moat_filter_call *call = job->call;
		job_unlink(job);
		if (call) {
			job->call = NULL;
			moat_call_done(call, MOAT_FILTER_CONTINUE);
			job_free(job);
		} else {
			job->orphan = 1;
			job->next = health.orphans;
			health.orphans = job;
		}
	}
	free(sess);
}

/* ---- configuration ------------------------------------------------------ */

static const char *const lookup_choices[] = {"client", "helo", "sender", "from", NULL};
static const char *const action_choices[] = {"reject", "score", NULL};

#define Z(field) offsetof(struct dnsbl_zone_conf, field)
static const struct moat_opt zone_opts[] = {
	{"lookup", MOAT_OPT_STR, Z(lookup), 0, "client", 0, 0, 0, lookup_choices,
	 "What is looked up: \"client\" (the client's IP address at connect: IPv4 as "
	 "d.c.b.a.ZONE, IPv6 as 32 reversed nibbles, RFC 5782), \"helo\" (HELO-NAME.ZONE), "
	 "\"sender\" (the MAIL FROM domain) or \"from\" (the From: header's domain, at the "
	 "end of the message)."},
	{"action", MOAT_OPT_STR, Z(action), 0, "reject", 0, 0, 0, action_choices,
	 "On a hit: \"reject\" (554 5.7.1 at each RCPT for client, helo and sender lists, like "
	 "Postfix's reject_rbl_client, so an earlier allow entry for a recipient exempts it; "
	 "at the end of the message for from lists) or \"score\" (only the symbol and its "
	 "score)."},
	{"codes", MOAT_OPT_STR_LIST, Z(codes), 0, "{}", 0, 0, 0, NULL,
	 "Answers that count, each \"VALUE [SCORE]\": VALUE is 127.0.0.N, a range "
	 "127.0.0.N-127.0.0.M, or a bitmask &N of the last octet (RFC 5782 bitmask lists); "
	 "the hit's score is the sum over the entries some answer matches. Empty: any answer "
	 "in 127.0.0.0/8 counts. Answers in 127.255.255.0/24 (refused codes) never count."},
	{"score", MOAT_OPT_FLOAT, Z(score), 0, NULL, -1000, 1000, 5, NULL,
	 "Score of a hit when its code entry gives none; negative for allowlists (DNSWL)."},
	{"txt", MOAT_OPT_BOOL, Z(txt), 1, NULL, 0, 0, 0, NULL,
	 "Fetch the TXT record of a hit for the reject text and the reason (sanitised: no "
	 "control characters, at most 200 characters)."},
	{"reject_text", MOAT_OPT_STR, Z(reject_text), 0, "", 0, 0, 0, NULL,
	 "Reply text of a reject, starting with a 5.x.x enhanced status code; $value (the "
	 "address or name), $zone and $txt are replaced. Empty: \"5.7.1 Service "
	 "unavailable; Client host [ADDR] blocked using ZONE; TXT\" (Helo command, Sender "
	 "address, From address for name lists)."},
	{"symbol", MOAT_OPT_STR, Z(symbol), 0, "", 0, 0, 0, NULL,
	 "Symbol of a hit, [A-Z0-9_]. Empty: DNSBL_ and the zone name in upper case, with "
	 "'.' and '-' as '_'."},
};

#define D(field) offsetof(struct dnsbl_conf, field)
static const struct moat_opt dnsbl_opts[] = {
	{"wait", MOAT_OPT_INT, D(wait), 2000, NULL, 1, 60000, 0, NULL,
	 "Milliseconds a stage waits for all its zones (less than timeout); then it goes on "
	 "with what it has, and later answers are logged and score nothing."},
	{"recheck", MOAT_OPT_INT, D(recheck), 3600, NULL, 60, 86400, 0, NULL,
	 "Seconds between checks of each zone's RFC 5782 test points (also checked at start "
	 "and on reload); a zone failing them is ignored until it passes."},
};

static const struct moat_subsection_def zone_sub = {
	.name = "zone",
	.opts = zone_opts,
	.nopts = NELEM(zone_opts),
	.size = sizeof(struct dnsbl_zone_conf),
	.title_offset = offsetof(struct dnsbl_zone_conf, name),
	.items_offset = offsetof(struct dnsbl_conf, items),
};

static int symbol_check(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n >= sizeof(((struct dnsbl_zone *)0)->symbol))
		return -1;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
			return -1;
	return 0;
}

/* Derives one zone from its options; returns the number of errors. */
static int zone_prepare(const struct dnsbl_zone_conf *zc, struct dnsbl_zone *z,
			struct moat_section_ctx *ctx)
{
	char err[600];
	int bad = 0;

	if (dnsbl_zone_name(zc->name, z->name, sizeof(z->name), err, sizeof(err)) < 0) {
		moat_section_item_error(ctx, zc->name, "", "zone name: %s", err);
		bad++;
	}
	if (dnsbl_kind_parse(zc->lookup, &z->kind) < 0)
		bad++;		/* reported by the choices check */
	z->reject = zc->action && strcmp(zc->action, "reject") == 0;
	z->txt = zc->txt;
	z->score = zc->score;
	if (zc->codes.n > DNSBL_MAX_CODES) {
		moat_section_item_error(ctx, zc->name, "codes", "at most %d entries, got %zu",
					DNSBL_MAX_CODES, zc->codes.n);
		bad++;
	}
	for (size_t i = 0; i < zc->codes.n && i < DNSBL_MAX_CODES; i++) {
		if (dnsbl_code_parse(zc->codes.v[i], &z->codes[i], err, sizeof(err)) < 0) {
			moat_section_item_error(ctx, zc->name, "codes", "entry %zu \"%s\": %s", i + 1,
						zc->codes.v[i], err);
			bad++;
		}
		z->ncodes = i + 1;
	}
	if (zc->reject_text && *zc->reject_text) {
		if (dnsbl_reply_text_check(zc->reject_text, err, sizeof(err)) < 0) {
			moat_section_item_error(ctx, zc->name, "reject_text", "%s", err);
			bad++;
		} else {
			snprintf(z->reject_text, sizeof(z->reject_text), "%s", zc->reject_text);
		}
	}
	if (zc->symbol && *zc->symbol) {
		if (symbol_check(zc->symbol) < 0) {
			moat_section_item_error(ctx, zc->name, "symbol", "\"%s\": expected 1 to 63 "
						"characters A-Z, 0-9 and _", zc->symbol);
			bad++;
		} else {
			snprintf(z->symbol, sizeof(z->symbol), "%s", zc->symbol);
		}
	} else {
		dnsbl_default_symbol(z->name, z->symbol, sizeof(z->symbol));
	}
	return bad;
}

static void dnsbl_release(void *data)
{
	struct dnsbl_conf *c = data;
	free(c->zones);
	c->zones = NULL;
	c->nzones = 0;
}

static int dnsbl_prepare(void *data, struct moat_section_ctx *ctx)
{
	struct dnsbl_conf *c = data;
	const struct dnsbl_zone_conf *items = c->items.v;
	int bad = 0;

	c->nzones = 0;
	c->zones = calloc(c->items.n ? c->items.n : 1, sizeof(*c->zones));
	if (!c->zones) {
		moat_section_error(ctx, "", "out of memory");
		return -1;
	}
	if (c->wait >= c->common.timeout * 1000) {
		moat_section_error(ctx, "wait", "%ld ms: expected less than this filter's timeout "
				   "(%ld s), which would end the stage first", c->wait,
				   c->common.timeout);
		bad++;
	}
	if (c->items.n > DNSBL_MAX_ZONES) {
		moat_section_error(ctx, "", "at most %d zones, got %zu", DNSBL_MAX_ZONES, c->items.n);
		return -1;
	}
	for (size_t i = 0; i < c->items.n; i++) {
		bad += zone_prepare(&items[i], &c->zones[i], ctx);
		for (size_t j = 0; j < i; j++)
			if (c->zones[i].name[0] && strcmp(c->zones[i].name, c->zones[j].name) == 0) {
				moat_section_item_error(ctx, items[i].name, "", "zone %s is configured "
							"twice (names compare case-insensitively)",
							c->zones[i].name);
				bad++;
			}
	}
	c->nzones = c->items.n;
	return bad ? -1 : 0;
}

const struct moat_filter moat_filter_dnsbl = {
	.name = "dnsbl",
	.doc = "DNS lists (RFC 5782): the client's address (DNSBL), the HELO name, MAIL FROM and "
	       "From: domains (RHSBL) looked up in `zone NAME { }` lists, scored, rejected, or "
	       "allowed with negative scores (DNSWL); zones failing their test points are ignored.",
	.opts = dnsbl_opts,
	.nopts = NELEM(dnsbl_opts),
	.sub = &zone_sub,
	.conf_size = sizeof(struct dnsbl_conf),
	.prepare = dnsbl_prepare,
	.release = dnsbl_release,
	.stage = {
		[MOAT_STAGE_CONNECT] = dnsbl_connect,
		[MOAT_STAGE_HELO] = dnsbl_helo,
		[MOAT_STAGE_MAIL] = dnsbl_mail,
		[MOAT_STAGE_RCPT] = dnsbl_rcpt,
		[MOAT_STAGE_EOM] = dnsbl_eom,
	},
	.session_end = dnsbl_session_end,
	.activate = dnsbl_activate,
};

void dnsbl_register(void)
{
	moat_filter_register(&moat_filter_dnsbl);
}
