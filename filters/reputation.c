/*
 * reputation.c - the reputation filter: counts of ham and spam per
 * client address, per its network (/24, /64) and per authenticated
 * domain, kept in the store, turned into scored symbols at the end of
 * each message and updated once the message's verdict is final.
 *
 * Only identities that authenticated are counted for a domain: the
 * MAIL FROM domain when SPF passed, the d= of each DKIM signature that
 * passed (read from the verdict's authentication results), so mail that
 * forges a domain cannot change that domain's reputation.
 *
 * An operator may mark a name good, bad or neutral by hand (`moat rep
 * set`): the mark, kept in a key of its own, replaces what was learned
 * of that name (REP_*_MANUAL_GOOD/BAD; neutral: no opinion) until it
 * expires or is cleared.
 *
 * Counts decay by sliding window: each count lives in the key of the
 * period (`window` seconds) in which it was made, and what a name has
 * is this period's count plus the previous period's, weighted by the
 * part of the previous window still inside the last `window` seconds.
 * Keys and values: docs/redis-keys.md.
 *
 * The store may not answer (Redis down, slow): a name it did not answer
 * for has no opinion, and the message goes on. Owns each lookup
 * (struct rep_fetch) until its last answer; no global state.
 */
#include "reputation.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ascii.h"
#include "nelem.h"
#include "store.h"

#define MAX_NAMES 8		/* address, network, up to 6 domains */
#define KEY_MAX 400

struct rep_conf {
	struct moat_filter_common common;
	long window;
	long min_messages;
	double bad_ratio;
	double good_ratio;
	double ip_bad, ip_good, net_bad, net_good, domain_bad, domain_good;
	double manual_bad, manual_good;
};

#define R(f) offsetof(struct rep_conf, f)
static const struct moat_opt rep_opts[] = {
	{"window", MOAT_OPT_INT, R(window), 604800, NULL, 60, 31536000, 0, NULL,
	 "Seconds of history that count: older messages fade out (sliding window over two "
	 "periods of this length; each key lives two windows)."},
	{"min_messages", MOAT_OPT_INT, R(min_messages), 5, NULL, 1, 1000000, 0, NULL,
	 "Messages seen within the window below which a name has no reputation yet."},
	{"bad_ratio", MOAT_OPT_FLOAT, R(bad_ratio), 0, NULL, 0, 1, 0.5, NULL,
	 "Share of spam (add_header, reject, discard) at or above which a name is bad."},
	{"good_ratio", MOAT_OPT_FLOAT, R(good_ratio), 0, NULL, 0, 1, 0.05, NULL,
	 "Share of spam at or below which a name is good."},
	{"ip_bad_score", MOAT_OPT_FLOAT, R(ip_bad), 0, NULL, -1000, 1000, 3, NULL,
	 "Score of REP_IP_BAD: the client address sent mostly spam."},
	{"ip_good_score", MOAT_OPT_FLOAT, R(ip_good), 0, NULL, -1000, 1000, -1, NULL,
	 "Score of REP_IP_GOOD: the client address sent mostly ham."},
	{"net_bad_score", MOAT_OPT_FLOAT, R(net_bad), 0, NULL, -1000, 1000, 1.5, NULL,
	 "Score of REP_NET_BAD: the client's /24 (IPv4) or /64 (IPv6) sent mostly spam."},
	{"net_good_score", MOAT_OPT_FLOAT, R(net_good), 0, NULL, -1000, 1000, -0.5, NULL,
	 "Score of REP_NET_GOOD: the client's network sent mostly ham."},
	{"domain_bad_score", MOAT_OPT_FLOAT, R(domain_bad), 0, NULL, -1000, 1000, 2, NULL,
	 "Score of REP_DOMAIN_BAD: an authenticated domain (SPF pass, DKIM pass) sent mostly spam."},
	{"domain_good_score", MOAT_OPT_FLOAT, R(domain_good), 0, NULL, -1000, 1000, -1.5, NULL,
	 "Score of REP_DOMAIN_GOOD: an authenticated domain sent mostly ham."},
	{"manual_bad_score", MOAT_OPT_FLOAT, R(manual_bad), 0, NULL, -1000, 1000, 5, NULL,
	 "Score of REP_IP_MANUAL_BAD, REP_NET_MANUAL_BAD and REP_DOMAIN_MANUAL_BAD: an "
	 "operator marked the name bad (moat rep set)."},
	{"manual_good_score", MOAT_OPT_FLOAT, R(manual_good), 0, NULL, -1000, 1000, -5, NULL,
	 "Score of REP_IP_MANUAL_GOOD, REP_NET_MANUAL_GOOD and REP_DOMAIN_MANUAL_GOOD: an "
	 "operator marked the name good (moat rep set)."},
};

static int rep_prepare(void *data, struct moat_section_ctx *ctx)
{
	struct rep_conf *c = data;
	if (c->good_ratio >= c->bad_ratio) {
		moat_section_error(ctx, "good_ratio", "must be below bad_ratio (%g)", c->bad_ratio);
		return -1;
	}
	return 0;
}

/* ---- names and keys ---------------------------------------------------- */

enum kind { K_IP, K_NET, K_DOMAIN };
static const char *const kind_key[] = {"ip", "net", "dom"};
static const char *const kind_sym[] = {"IP", "NET", "DOMAIN"};
enum { HAM = 0, SPAM = 1 };
static const char *const class_name[] = {"ham", "spam"};

struct rep_name {
	enum kind kind;
	char name[MOAT_REP_NAME_MAX];
	long long n[2][2];	/* [ham/spam][this period, the previous one] */
	enum moat_rep_mark mark;	/* set by hand */
	long long mark_expires;	/* unix time; 0: never */
	int unknown;		/* the store did not answer for it */
	int cleared;		/* keys deleted */
};

/* The canonical text of an address; 0, or -1 if it is none. An IPv4
 * address mapped into IPv6 counts as IPv4. */
static int canon_ip(const char *ip, char *out, size_t len, int *family, unsigned char *bytes)
{
	struct in6_addr a6;
	struct in_addr a4;
	if (inet_pton(AF_INET, ip, &a4) == 1) {
		*family = AF_INET;
		memcpy(bytes, &a4, 4);
	} else if (inet_pton(AF_INET6, ip, &a6) == 1) {
		if (IN6_IS_ADDR_V4MAPPED(&a6)) {
			*family = AF_INET;
			memcpy(bytes, &a6.s6_addr[12], 4);
		} else {
			*family = AF_INET6;
			memcpy(bytes, &a6, 16);
		}
	} else {
		return -1;
	}
	return inet_ntop(*family, bytes, out, (socklen_t)len) ? 0 : -1;
}

int moat_rep_net(const char *ip, char *out, size_t len)
{
	unsigned char b[16];
	char txt[INET6_ADDRSTRLEN];
	int fam;
	if (canon_ip(ip, txt, sizeof(txt), &fam, b) < 0)
		return -1;
	if (fam == AF_INET)
		b[3] = 0;
	else
		memset(b + 8, 0, 8);
	if (!inet_ntop(fam, b, txt, sizeof(txt)))
		return -1;
	int n = snprintf(out, len, "%s/%d", txt, fam == AF_INET ? 24 : 64);
	return n > 0 && (size_t)n < len ? 0 : -1;
}

/* A domain name fit for a key: lower-cased into out; 0 or -1. */
static int canon_domain(const char *d, size_t dlen, char *out, size_t len)
{
	if (dlen == 0 || dlen > 253 || dlen >= len)
		return -1;
	for (size_t i = 0; i < dlen; i++) {
		unsigned char ch = ascii_lower((unsigned char)d[i]);
		if (!(ch >= 'a' && ch <= 'z') && !(ch >= '0' && ch <= '9') && ch != '.' &&
		    ch != '-' && ch != '_')
			return -1;
		out[i] = (char)ch;
	}
	out[dlen] = '\0';
	return out[0] == '.' ? -1 : 0;
}

/* The value of prop ("header.d=") in a properties string, up to a space. */
static const char *prop_value(const char *props, const char *prop, size_t *len)
{
	size_t pl = strlen(prop);
	for (const char *p = props; p && *p;) {
		if (strncmp(p, prop, pl) == 0) {
			*len = strcspn(p + pl, " ;");
			return p + pl;
		}
		p = strchr(p, ' ');
		if (p)
			p++;
	}
	return NULL;
}

size_t moat_rep_auth_domains(const struct moat_verdict *v, char (*out)[MOAT_REP_NAME_MAX],
			     size_t max)
{
	size_t n = 0;
	for (size_t i = 0; v && i < v->nauth && n < max; i++) {
		const struct moat_auth_result *a = &v->auth[i];
		const char *val = NULL;
		size_t len = 0;
		if (strcmp(a->result, "pass") != 0)
			continue;
		if (strcmp(a->method, "spf") == 0)
			val = prop_value(a->props, "smtp.mailfrom=", &len);
		else if (strcmp(a->method, "dkim") == 0)
			val = prop_value(a->props, "header.d=", &len);
		if (!val)
			continue;
		const char *at = memchr(val, '@', len);
		if (at) {
			len -= (size_t)(at + 1 - val);
			val = at + 1;
		}
		if (canon_domain(val, len, out[n], MOAT_REP_NAME_MAX) < 0)
			continue;
		size_t j = 0;
		while (j < n && strcmp(out[j], out[n]) != 0)
			j++;
		if (j == n)
			n++;
	}
	return n;
}

/* The names a message counts for: address, network, authenticated
 * domains. */
static size_t names_for(const struct moat_msgctx *ctx, const struct moat_verdict *v,
			struct rep_name *out)
{
	size_t n = 0;
	unsigned char b[16];
	int fam;
	memset(out, 0, sizeof(*out) * MAX_NAMES);
	if (ctx->client_addr &&
	    canon_ip(ctx->client_addr, out[0].name, sizeof(out[0].name), &fam, b) == 0 &&
	    moat_rep_net(ctx->client_addr, out[1].name, sizeof(out[1].name)) == 0) {
		out[0].kind = K_IP;
		out[1].kind = K_NET;
		n = 2;
	}
	char doms[MAX_NAMES - 2][MOAT_REP_NAME_MAX];
	size_t nd = moat_rep_auth_domains(v, doms, MAX_NAMES - 2);
	for (size_t i = 0; i < nd; i++) {
		out[n].kind = K_DOMAIN;
		memcpy(out[n].name, doms[i], sizeof(out[n].name));
		n++;
	}
	return n;
}

static long long period_now(long window, double *frac)
{
	time_t t = time(NULL);
	if (frac)
		*frac = (double)(t % window) / (double)window;
	return (long long)(t / window);
}

static int key_for(const struct rep_name *e, int cls, long long period, char *out, size_t len)
{
	int n = snprintf(out, len, "rep:%s:%s:%s:%lld", kind_key[e->kind], e->name,
			 class_name[cls], period);
	return n > 0 && (size_t)n < len ? 0 : -1;
}

/* The key of a name's mark set by hand. */
static int manual_key(const struct rep_name *e, char *out, size_t len)
{
	int n = snprintf(out, len, "rep:%s:%s:manual", kind_key[e->kind], e->name);
	return n > 0 && (size_t)n < len ? 0 : -1;
}

static const char *const mark_name[] = {"none", "good", "bad", "neutral"};

enum moat_rep_mark moat_rep_mark_parse(const char *v, size_t len, long long *expires)
{
	char buf[64];
	if (len >= sizeof(buf))
		return MOAT_REP_MARK_NONE;
	memcpy(buf, v, len);
	buf[len] = '\0';
	char *sp = strchr(buf, ' ');
	*expires = 0;
	if (sp) {
		char *end;
		*sp++ = '\0';
		long long t = strtoll(sp, &end, 10);
		if (*end || t < 0)
			return MOAT_REP_MARK_NONE;
		*expires = t;
	}
	for (int m = MOAT_REP_MARK_GOOD; m <= MOAT_REP_MARK_NEUTRAL; m++)
		if (strcmp(buf, mark_name[m]) == 0)
			return (enum moat_rep_mark)m;
	return MOAT_REP_MARK_NONE;
}

const char *moat_rep_mark_name(enum moat_rep_mark m)
{
	return (unsigned)m < NELEM(mark_name) ? mark_name[m] : "none";
}

/* ---- reading the counts ------------------------------------------------ */

struct rep_fetch;
struct rep_slot {
	struct rep_fetch *f;
	int name, cls, prev;
};

struct rep_fetch {
	size_t n;
	struct rep_name names[MAX_NAMES];
	struct rep_slot slots[MAX_NAMES * 5];	/* 4 counts and the mark per name */
	int pending;
	int clearing;		/* DEL instead of GET */
	long window;
	double frac;		/* how far into this period */
	const struct rep_conf *conf;
	struct rep_conf conf_copy;	/* show, clear: outlives a reload */
	void (*finish)(struct rep_fetch *f);
	struct moat_filter_call *call;	/* the filter's lookups */
	moat_rep_cb cb;			/* show, clear */
	void (*good_cb)(void *arg, int good);	/* moat_rep_client_good() */
	void *arg;
};

static void on_answer(void *arg, enum moat_store_status st, const char *value, size_t len,
		      long long number)
{
	struct rep_slot *sl = arg;
	struct rep_fetch *f = sl->f;
	struct rep_name *e = &f->names[sl->name];
	(void)number;
	if (st == MOAT_STORE_UNAVAILABLE) {
		e->unknown = 1;
	} else if (st == MOAT_STORE_OK && f->clearing) {
		e->cleared++;
	} else if (st == MOAT_STORE_OK && value && sl->cls < 0) {
		e->mark = moat_rep_mark_parse(value, len, &e->mark_expires);
	} else if (st == MOAT_STORE_OK && value) {
		char buf[32];
		size_t l = len < sizeof(buf) - 1 ? len : sizeof(buf) - 1;
		memcpy(buf, value, l);
		buf[l] = '\0';
		long long v = strtoll(buf, NULL, 10);
		e->n[sl->cls][sl->prev] = v > 0 ? v : 0;
	}
	if (--f->pending == 0)
		f->finish(f);
}

/* Starts a GET (or DEL) of every key of f's names. Returns how many
 * operations are under way (their answers end in f->finish). */
static int fetch_start(struct moat_store *s, struct rep_fetch *f)
{
	long long p = period_now(f->window, &f->frac);
	size_t k = 0;
	char key[KEY_MAX];
	f->pending = 1;		/* held until every operation is started */
	for (size_t i = 0; i < f->n; i++)
		for (int cls = 0; cls < 2; cls++)
			for (int prev = 0; prev < 2; prev++) {
				struct rep_slot *sl = &f->slots[k++];
				*sl = (struct rep_slot){f, (int)i, cls, prev};
				if (key_for(&f->names[i], cls, p - prev, key, sizeof(key)) < 0)
					continue;
				f->pending++;
				struct moat_store_op *op =
					f->clearing ? moat_store_del(s, key, on_answer, sl)
						    : moat_store_get(s, key, on_answer, sl);
				if (!op)
					f->pending--;	/* no memory: no answer comes */
			}
	for (size_t i = 0; i < f->n; i++) {
		struct rep_slot *sl = &f->slots[k++];
		*sl = (struct rep_slot){f, (int)i, -1, 0};
		if (manual_key(&f->names[i], key, sizeof(key)) < 0)
			continue;
		f->pending++;
		struct moat_store_op *op = f->clearing ? moat_store_del(s, key, on_answer, sl)
						       : moat_store_get(s, key, on_answer, sl);
		if (!op)
			f->pending--;
	}
	return --f->pending;
}

static double estimate(const struct rep_fetch *f, const struct rep_name *e, int cls)
{
	return (double)e->n[cls][0] + (double)e->n[cls][1] * (1.0 - f->frac);
}

enum rating { R_UNKNOWN, R_FEW, R_NEUTRAL, R_GOOD, R_BAD };
static const char *const rating_name[] = {"unknown", "few", "neutral", "good", "bad"};

static enum rating rate(const struct rep_fetch *f, const struct rep_name *e, double *ham,
			double *spam)
{
	*ham = estimate(f, e, HAM);
	*spam = estimate(f, e, SPAM);
	if (e->unknown)
		return R_UNKNOWN;
	double total = *ham + *spam;
	if (total < (double)f->conf->min_messages)
		return R_FEW;
	double ratio = *spam / total;
	if (ratio >= f->conf->bad_ratio)
		return R_BAD;
	return ratio <= f->conf->good_ratio ? R_GOOD : R_NEUTRAL;
}

/* ---- the filter ---------------------------------------------------------- */

static double score_of(const struct rep_conf *c, enum kind k, int bad)
{
	switch (k) {
	case K_IP: return bad ? c->ip_bad : c->ip_good;
	case K_NET: return bad ? c->net_bad : c->net_good;
	default: return bad ? c->domain_bad : c->domain_good;
	}
}

/* Marks set by hand, one symbol per kind (bad wins over good). */
static void manual_symbols(struct rep_fetch *f, int k)
{
	const struct rep_name *pick = NULL;
	for (size_t i = 0; i < f->n; i++) {
		const struct rep_name *e = &f->names[i];
		if ((int)e->kind != k || e->unknown)
			continue;
		if (e->mark == MOAT_REP_MARK_BAD ||
		    (e->mark == MOAT_REP_MARK_GOOD && !pick))
			pick = e;
	}
	if (!pick)
		return;
	int bad = pick->mark == MOAT_REP_MARK_BAD;
	char sym[40];
	snprintf(sym, sizeof(sym), "REP_%s_MANUAL_%s", kind_sym[k], bad ? "BAD" : "GOOD");
	moat_call_symbol(f->call, sym, bad ? f->conf->manual_bad : f->conf->manual_good,
			 "%s %s marked %s by hand", kind_key[k], pick->name, mark_name[pick->mark]);
}

static void stage_finish(struct rep_fetch *f)
{
	/* one symbol per kind: a bad name of the kind wins over a good one;
	 * a name marked by hand counts by its mark only */
	for (int k = K_IP; k <= K_DOMAIN; k++) {
		manual_symbols(f, k);
		const struct rep_name *pick = NULL;
		enum rating pr = R_UNKNOWN;
		double ph = 0, ps = 0;
		for (size_t i = 0; i < f->n; i++) {
			double ham, spam;
			const struct rep_name *e = &f->names[i];
			if ((int)e->kind != k || e->mark != MOAT_REP_MARK_NONE)
				continue;
			enum rating r = rate(f, e, &ham, &spam);
			if ((r == R_BAD && pr != R_BAD) || (r == R_GOOD && !pick)) {
				pick = e;
				pr = r;
				ph = ham;
				ps = spam;
			}
		}
		if (!pick)
			continue;
		char sym[32];
		snprintf(sym, sizeof(sym), "REP_%s_%s", kind_sym[k], pr == R_BAD ? "BAD" : "GOOD");
		moat_call_symbol(f->call, sym, score_of(f->conf, (enum kind)k, pr == R_BAD),
				 "%s %s: %.1f spam, %.1f ham in the last %lds", kind_key[k],
				 pick->name, ps, ph, f->window);
	}
	moat_call_done(f->call, MOAT_FILTER_CONTINUE);
	free(f);
}

static enum moat_filter_status rep_eom(struct moat_filter_call *call)
{
	const struct moat_msgctx *ctx = moat_call_ctx(call);
	const struct rep_conf *c = moat_call_conf(call);
	if (!ctx->store)
		return MOAT_FILTER_CONTINUE;
	struct rep_fetch *f = calloc(1, sizeof(*f));
	if (!f) {
		moat_call_error(call, "out of memory");
		return MOAT_FILTER_ERROR;
	}
	f->n = names_for(ctx, moat_call_verdict(call), f->names);
	f->window = c->window;
	f->conf = c;
	f->call = call;
	f->finish = stage_finish;
	if (f->n == 0 || fetch_start(ctx->store, f) == 0) {
		free(f);
		return MOAT_FILTER_CONTINUE;
	}
	return MOAT_FILTER_WAIT;
}

/* The message's class for learning: ham when moat passed it as is,
 * spam when it marked, refused or dropped it (or would have, in
 * dry-run); a tempfail teaches nothing. */
static int learn_class(const struct moat_verdict *v)
{
	enum moat_action a = v->decision.action;
	enum moat_action w = v->would.action;
	if (a == MOAT_ACTION_ACCEPT &&
	    (w == MOAT_ACTION_ADD_HEADER || w == MOAT_ACTION_REJECT || w == MOAT_ACTION_DISCARD))
		a = w;
	switch (a) {
	case MOAT_ACTION_ACCEPT: return HAM;
	case MOAT_ACTION_ADD_HEADER:
	case MOAT_ACTION_REJECT:
	case MOAT_ACTION_DISCARD: return SPAM;
	default: return -1;
	}
}

static void rep_done(const void *conf, const struct moat_msgctx *ctx, void **state,
		     const struct moat_verdict *v)
{
	const struct rep_conf *c = conf;
	struct rep_name names[MAX_NAMES];
	char key[KEY_MAX];
	(void)state;
	int cls = learn_class(v);
	if (!ctx->store || cls < 0 || v->exempt)
		return;
	size_t n = names_for(ctx, v, names);
	long long p = period_now(c->window, NULL);
	for (size_t i = 0; i < n; i++)
		if (key_for(&names[i], cls, p, key, sizeof(key)) == 0)
			moat_store_incr(ctx->store, key, 1, 2 * c->window, NULL, NULL);
}

const struct moat_filter moat_filter_reputation = {
	.name = "reputation",
	.doc = "Scores what earlier mail from the client address, its network and the "
	       "authenticated sender domains (SPF pass, DKIM pass) was: mostly ham or mostly "
	       "spam; learns from each message's final verdict.",
	.opts = rep_opts,
	.nopts = NELEM(rep_opts),
	.conf_size = sizeof(struct rep_conf),
	.prepare = rep_prepare,
	.stage = {
		[MOAT_STAGE_EOM] = rep_eom,
	},
	.done = rep_done,
};

/* ---- show and clear, for the control socket ------------------------------ */

/* The names `what` stands for: an address (and, to show, its network),
 * a network, or a domain. */
static size_t names_of(const char *what, int with_net, struct rep_name *out, char *err,
		       size_t errlen)
{
	unsigned char b[16];
	int fam;
	const char *slash = strchr(what, '/');
	memset(out, 0, sizeof(*out) * MAX_NAMES);
	if (slash) {
		char addr[INET6_ADDRSTRLEN], canon[INET6_ADDRSTRLEN];
		size_t al = (size_t)(slash - what);
		if (al >= sizeof(addr))
			goto bad;
		memcpy(addr, what, al);
		addr[al] = '\0';
		if (canon_ip(addr, canon, sizeof(canon), &fam, b) < 0 ||
		    strcmp(slash + 1, fam == AF_INET ? "24" : "64") != 0 ||
		    moat_rep_net(addr, out[0].name, sizeof(out[0].name)) < 0)
			goto bad;
		out[0].kind = K_NET;
		return 1;
	}
	if (canon_ip(what, out[0].name, sizeof(out[0].name), &fam, b) == 0) {
		out[0].kind = K_IP;
		if (!with_net)
			return 1;
		out[1].kind = K_NET;
		return moat_rep_net(what, out[1].name, sizeof(out[1].name)) == 0 ? 2 : 1;
	}
	if (canon_domain(what, strlen(what), out[0].name, sizeof(out[0].name)) == 0) {
		out[0].kind = K_DOMAIN;
		return 1;
	}
bad:
	snprintf(err, errlen, "\"%s\" is not an address, a network (ADDR/24, ADDR/64) or a domain",
		 what);
	return 0;
}

static void report(struct rep_fetch *f)
{
	char text[MAX_NAMES * 400];
	size_t used = 0;
	text[0] = '\0';
	for (size_t i = 0; i < f->n; i++) {
		const struct rep_name *e = &f->names[i];
		int w;
		if (f->clearing) {
			w = snprintf(text + used, sizeof(text) - used, "%s %s %s\n", kind_key[e->kind],
				     e->name, e->unknown ? "unknown (the store did not answer)"
							 : e->cleared ? "cleared" : "nothing to clear");
		} else {
			double ham, spam;
			enum rating r = rate(f, e, &ham, &spam);
			char until[40] = "";
			if (e->mark && e->mark_expires)
				snprintf(until, sizeof(until), " manual_expires=%lld", e->mark_expires);
			w = snprintf(text + used, sizeof(text) - used,
				     "%s %s ham=%.1f spam=%.1f ham_now=%lld spam_now=%lld "
				     "ham_prev=%lld spam_prev=%lld window=%ld manual=%s%s verdict=%s\n",
				     kind_key[e->kind], e->name, ham, spam, e->n[HAM][0], e->n[SPAM][0],
				     e->n[HAM][1], e->n[SPAM][1], f->window, mark_name[e->mark], until,
				     e->mark && !e->unknown ? mark_name[e->mark] : rating_name[r]);
		}
		if (w > 0 && (size_t)w < sizeof(text) - used)
			used += (size_t)w;
	}
	f->cb(f->arg, 1, text);
	free(f);
}

static int query(struct moat_store *s, const void *rconf, const char *what, int clearing,
		 moat_rep_cb cb, void *arg, char *err, size_t errlen)
{
	const struct rep_conf *c = rconf;
	struct rep_fetch *f;
	if (!s || !c) {
		snprintf(err, errlen, "no store");
		return -1;
	}
	if (!(f = calloc(1, sizeof(*f)))) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	f->n = names_of(what, !clearing, f->names, err, errlen);
	f->clearing = clearing;
	f->window = c->window;
	f->conf_copy = *c;
	f->conf = &f->conf_copy;
	f->finish = report;
	f->cb = cb;
	f->arg = arg;
	if (f->n == 0) {
		free(f);
		return -1;
	}
	if (fetch_start(s, f) == 0) {
		free(f);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

int moat_rep_show(struct moat_store *s, const void *rconf, const char *what, moat_rep_cb cb,
		  void *arg, char *err, size_t errlen)
{
	return query(s, rconf, what, 0, cb, arg, err, errlen);
}

int moat_rep_clear(struct moat_store *s, const void *rconf, const char *what, moat_rep_cb cb,
		   void *arg, char *err, size_t errlen)
{
	return query(s, rconf, what, 1, cb, arg, err, errlen);
}

/* ---- marks set by hand ------------------------------------------------- */

struct rep_set {
	moat_rep_cb cb;
	void *arg;
	char line[MOAT_REP_NAME_MAX + 80];	/* "ip 192.0.2.1 marked bad ..." */
};

static void set_answered(void *arg, enum moat_store_status st, const char *value, size_t len,
			 long long number)
{
	struct rep_set *rs = arg;
	char text[sizeof(rs->line) + 64];
	(void)value;
	(void)len;
	(void)number;
	int ok = st != MOAT_STORE_UNAVAILABLE;
	snprintf(text, sizeof(text), "%s%s\n", rs->line,
		 ok ? "" : ": not stored (the store did not answer)");
	rs->cb(rs->arg, ok, text);
	free(rs);
}

int moat_rep_set(struct moat_store *s, const char *what, enum moat_rep_mark mark, long ttl_days,
		 moat_rep_cb cb, void *arg, char *err, size_t errlen)
{
	struct rep_name e[MAX_NAMES];
	char key[KEY_MAX], val[64];
	if (!s) {
		snprintf(err, errlen, "no store");
		return -1;
	}
	if (mark < MOAT_REP_MARK_GOOD || mark > MOAT_REP_MARK_NEUTRAL || ttl_days < 0 ||
	    ttl_days > MOAT_REP_MARK_MAX_DAYS) {
		snprintf(err, errlen, "a mark is good, bad or neutral, for 0 (no expiry) to %d days",
			 MOAT_REP_MARK_MAX_DAYS);
		return -1;
	}
	if (names_of(what, 0, e, err, errlen) != 1)
		return -1;
	if (manual_key(&e[0], key, sizeof(key)) < 0) {
		snprintf(err, errlen, "name too long");
		return -1;
	}
	long ttl = ttl_days * 86400;
	long long expires = ttl ? (long long)time(NULL) + ttl : 0;
	if (expires)
		snprintf(val, sizeof(val), "%s %lld", mark_name[mark], expires);
	else
		snprintf(val, sizeof(val), "%s", mark_name[mark]);
	struct rep_set *rs = calloc(1, sizeof(*rs));
	if (!rs) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	rs->cb = cb;
	rs->arg = arg;
	if (ttl)
		snprintf(rs->line, sizeof(rs->line), "%s %s marked %s for %ld days (until %lld)",
			 kind_key[e[0].kind], e[0].name, mark_name[mark], ttl_days, expires);
	else
		snprintf(rs->line, sizeof(rs->line), "%s %s marked %s (no expiry)",
			 kind_key[e[0].kind], e[0].name, mark_name[mark]);
	if (!moat_store_set(s, key, val, strlen(val), ttl, set_answered, rs)) {
		free(rs);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

/* ---- the client's standing, for other filters --------------------------- */

static void good_finish(struct rep_fetch *f)
{
	int good = 0, bad = 0;
	for (size_t i = 0; i < f->n; i++) {
		const struct rep_name *e = &f->names[i];
		double ham, spam;
		enum rating r = rate(f, e, &ham, &spam);
		if (e->mark == MOAT_REP_MARK_GOOD)
			r = R_GOOD;
		else if (e->mark == MOAT_REP_MARK_BAD)
			r = R_BAD;
		else if (e->mark == MOAT_REP_MARK_NEUTRAL)
			r = R_NEUTRAL;
		if (e->unknown)
			r = R_UNKNOWN;
		good |= r == R_GOOD;
		bad |= r == R_BAD;
	}
	f->good_cb(f->arg, good && !bad);
	free(f);
}

int moat_rep_client_good(struct moat_store *s, const void *rconf, const char *ip,
			 void (*cb)(void *arg, int good), void *arg)
{
	const struct rep_conf *c = rconf;
	unsigned char b[16];
	int fam;
	struct rep_fetch *f;
	if (!s || !c || !ip || !(f = calloc(1, sizeof(*f))))
		return -1;
	if (canon_ip(ip, f->names[0].name, sizeof(f->names[0].name), &fam, b) < 0 ||
	    moat_rep_net(ip, f->names[1].name, sizeof(f->names[1].name)) < 0) {
		free(f);
		return -1;
	}
	f->names[0].kind = K_IP;
	f->names[1].kind = K_NET;
	f->n = 2;
	f->window = c->window;
	f->conf = c;
	f->finish = good_finish;
	f->good_cb = cb;
	f->arg = arg;
	if (fetch_start(s, f) == 0) {
		free(f);
		return -1;
	}
	return 0;
}
