/*
 * ratelimit.c - the ratelimit filter: counts each message (at MAIL) per
 * client address, client network, sender and authenticated user, and
 * each recipient (at RCPT) per authenticated user or client address, in
 * fixed windows kept in the store, and acts when a count goes over its
 * limit: tempfail (451 4.7.28, RFC 7372's "mail flood detected"), reject
 * (550 5.7.28) or a scored symbol.
 *
 * A window is one key per name and period (unix time divided by the
 * window), incremented atomically with its expiry set when it is
 * created (the store's incr: INCRBY and EXPIRE on Redis), so several
 * moat instances on one Redis share their counts. Keys:
 * docs/redis-keys.md. A store that does not answer gives no opinion:
 * mail is never held by a rate limit the store cannot count.
 *
 * Owns the derived limits of its configuration and each check (struct
 * rl_check) until its last answer; no global state.
 */
#include "ratelimit.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ascii.h"
#include "nelem.h"
#include "reputation.h"
#include "store.h"

#define MAX_LIMITS 32
#define NAME_MAX_OCTETS 320
#define KEY_MAX 420

static const char *const kind_names[MOAT_RL__COUNT] = {"client", "net", "sender", "auth",
							"rcpt"};

const char *moat_ratelimit_kind_name(enum moat_ratelimit_kind k)
{
	return (unsigned)k < MOAT_RL__COUNT ? kind_names[k] : "?";
}

/* ---- parsing a limit ------------------------------------------------------ */

static int parse_window(const char *s, long *out)
{
	char *end;
	long n = 1;
	if (*s >= '0' && *s <= '9') {
		n = strtol(s, &end, 10);
		s = end;
	}
	long unit = 1;
	if (*s) {
		switch (*s++) {
		case 's': unit = 1; break;
		case 'm': unit = 60; break;
		case 'h': unit = 3600; break;
		case 'd': unit = 86400; break;
		default: return -1;
		}
		if (*s)
			return -1;
	}
	if (n < 1 || n > MOAT_RL_WINDOW_MAX / unit)
		return -1;
	*out = n * unit;
	return 0;
}

int moat_ratelimit_parse(const char *spec, struct moat_ratelimit *out, char *err,
			 size_t errlen)
{
	char buf[200], *words[5], *save = NULL;
	size_t n = 0;
	if (strlen(spec) >= sizeof(buf)) {
		snprintf(err, errlen, "too long");
		return -1;
	}
	strcpy(buf, spec);
	for (char *w = strtok_r(buf, " \t", &save); w; w = strtok_r(NULL, " \t", &save)) {
		if (n == NELEM(words)) {
			snprintf(err, errlen, "too many words (KIND LIMIT/WINDOW [ACTION])");
			return -1;
		}
		words[n++] = w;
	}
	if (n < 2) {
		snprintf(err, errlen, "not \"KIND LIMIT/WINDOW [ACTION]\"");
		return -1;
	}
	memset(out, 0, sizeof(*out));
	size_t k = 0;
	while (k < MOAT_RL__COUNT && strcmp(words[0], kind_names[k]) != 0)
		k++;
	if (k == MOAT_RL__COUNT) {
		snprintf(err, errlen, "\"%s\" is not client, net, sender, auth or rcpt", words[0]);
		return -1;
	}
	out->kind = (enum moat_ratelimit_kind)k;
	char *slash = strchr(words[1], '/'), *end = words[1];
	if (slash)
		*slash = '\0';
	if (slash && words[1][0] >= '0' && words[1][0] <= '9')
		out->limit = strtoll(words[1], &end, 10);
	if (!slash || *end || out->limit < 1 || out->limit > 1000000000 ||
	    parse_window(slash + 1, &out->window) < 0) {
		snprintf(err, errlen, "\"%s\" is not LIMIT/WINDOW (1 to 1000000000 per 1s to 30d: "
			 "100/1h, 10/90s, 500/d)", spec);
		return -1;
	}
	out->action = MOAT_ACTION_TEMPFAIL;
	if (n == 2)
		return 0;
	if (n == 3 && strcmp(words[2], "tempfail") == 0)
		return 0;
	if (n == 3 && strcmp(words[2], "reject") == 0) {
		out->action = MOAT_ACTION_REJECT;
		return 0;
	}
	if (n == 4 && strcmp(words[2], "score") == 0) {
		out->score = strtod(words[3], &end);
		if (*end == '\0' && end != words[3] && out->score >= -1000 && out->score <= 1000) {
			out->action = MOAT_ACTION_NONE;
			return 0;
		}
	}
	snprintf(err, errlen, "the action is tempfail (the default), reject or \"score N\"");
	return -1;
}

/* ---- configuration ----------------------------------------------------- */

struct rl_conf {
	struct moat_filter_common common;
	struct moat_str_list limits;
	/* derived */
	struct moat_ratelimit *v;
	size_t n;
};

#define O(f) offsetof(struct rl_conf, f)
static const struct moat_opt rl_opts[] = {
	{"limits", MOAT_OPT_STR_LIST, O(limits), 0, "{}", 0, 0, 0, NULL,
	 "The limits, each \"KIND LIMIT/WINDOW [ACTION]\": KIND client (messages per client "
	 "address), net (per its /24 or /64), sender (per MAIL FROM address), auth (per "
	 "authenticated user) or rcpt (recipients per authenticated user, else per client "
	 "address); WINDOW in seconds or with s, m, h, d; ACTION tempfail (451 4.7.28, the "
	 "default), reject (550 5.7.28) or \"score N\". Example: {\"client 100/1h\", "
	 "\"rcpt 200/1h\"}."},
};

static void rl_release(void *data)
{
	struct rl_conf *c = data;
	free(c->v);
	c->v = NULL;
	c->n = 0;
}

static int rl_prepare(void *data, struct moat_section_ctx *ctx)
{
	struct rl_conf *c = data;
	char err[300];
	int bad = 0;
	if (c->limits.n > MAX_LIMITS) {
		moat_section_error(ctx, "limits", "at most %d limits", MAX_LIMITS);
		return -1;
	}
	if (c->limits.n && !(c->v = calloc(c->limits.n, sizeof(*c->v)))) {
		moat_section_error(ctx, "limits", "out of memory");
		return -1;
	}
	for (size_t i = 0; i < c->limits.n; i++)
		if (moat_ratelimit_parse(c->limits.v[i], &c->v[c->n], err, sizeof(err)) < 0) {
			moat_section_error(ctx, "limits", "entry %zu \"%s\": %s", i + 1,
					   c->limits.v[i], err);
			bad++;
		} else {
			c->n++;
		}
	if (bad) {
		rl_release(c);
		return -1;
	}
	return 0;
}

/* ---- counting -------------------------------------------------------------- */

struct rl_check;
struct rl_slot {
	struct rl_check *chk;
	size_t limit;		/* index into conf->v */
	char name[NAME_MAX_OCTETS];
	long long count;
	int known;		/* the store answered */
};

struct rl_check {
	struct moat_filter_call *call;
	const struct rl_conf *conf;
	size_t n;
	int pending;
	struct rl_slot slots[MAX_LIMITS];
};

/* The canonical text of an address; 0 or -1. */
static int canon_ip(const char *ip, char *out, size_t len)
{
	unsigned char b[16];
	if (inet_pton(AF_INET, ip, b) == 1)
		return inet_ntop(AF_INET, b, out, (socklen_t)len) ? 0 : -1;
	if (inet_pton(AF_INET6, ip, b) != 1)
		return -1;
	if (IN6_IS_ADDR_V4MAPPED((struct in6_addr *)b))
		return inet_ntop(AF_INET, b + 12, out, (socklen_t)len) ? 0 : -1;
	return inet_ntop(AF_INET6, b, out, (socklen_t)len) ? 0 : -1;
}

/* Lower-cased copy of s (no spaces or controls); 0 or -1. */
static int canon_text(const char *s, char *out, size_t len)
{
	size_t n = strlen(s);
	if (n == 0 || n >= len)
		return -1;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch <= ' ' || ch == 0x7f)
			return -1;
		out[i] = (char)ascii_lower(ch);
	}
	out[n] = '\0';
	return 0;
}

/* The name a limit counts this call under; 0, or -1 when it does not
 * apply (no sender, not authenticated...). */
static int name_for(const struct moat_msgctx *ctx, enum moat_ratelimit_kind k, char *out,
		    size_t len)
{
	switch (k) {
	case MOAT_RL_CLIENT:
		return ctx->client_addr ? canon_ip(ctx->client_addr, out, len) : -1;
	case MOAT_RL_NET:
		return ctx->client_addr ? moat_rep_net(ctx->client_addr, out, len) : -1;
	case MOAT_RL_SENDER:
		return ctx->mail_from ? canon_text(ctx->mail_from, out, len) : -1;
	case MOAT_RL_AUTH:
		return ctx->auth_user ? canon_text(ctx->auth_user, out, len) : -1;
	case MOAT_RL_RCPT:
		if (ctx->auth_user && canon_text(ctx->auth_user, out, len) == 0)
			return 0;
		return ctx->client_addr ? canon_ip(ctx->client_addr, out, len) : -1;
	default:
		return -1;
	}
}

static void decide(struct rl_check *chk)
{
	const struct moat_ratelimit *hit = NULL;
	const struct rl_slot *hit_slot = NULL;
	for (size_t i = 0; i < chk->n; i++) {
		const struct rl_slot *sl = &chk->slots[i];
		const struct moat_ratelimit *l = &chk->conf->v[sl->limit];
		const char *kind = kind_names[l->kind];
		if (!sl->known) {
			moat_call_trace(chk->call, "%s %s: the store did not answer", kind, sl->name);
			continue;
		}
		moat_call_trace(chk->call, "%s %s: %lld of %lld in %lds", kind, sl->name, sl->count,
				l->limit, l->window);
		if (sl->count <= l->limit)
			continue;
		if (l->action == MOAT_ACTION_NONE) {
			char sym[32];
			snprintf(sym, sizeof(sym), "RATELIMIT_%s", kind);
			for (char *p = sym; *p; p++)
				*p = (char)ascii_upper((unsigned char)*p);
			moat_call_symbol(chk->call, sym, l->score, "%s %s: over %lld in %lds", kind,
					 sl->name, l->limit, l->window);
		} else if (!hit) {
			hit = l;
			hit_slot = sl;
		}
	}
	if (hit) {
		int reject = hit->action == MOAT_ACTION_REJECT;
		moat_call_decide(chk->call, hit->action, reject ? 550 : 451,
				 "%s Rate limit exceeded: %s %s over %lld %s in %lds%s",
				 reject ? "5.7.28" : "4.7.28", kind_names[hit->kind], hit_slot->name,
				 hit->limit, hit->kind == MOAT_RL_RCPT ? "recipients" : "messages",
				 hit->window, reject ? "" : ", try again later");
	}
	moat_call_done(chk->call, MOAT_FILTER_CONTINUE);
	free(chk);
}

static void on_count(void *arg, enum moat_store_status st, const char *value, size_t len,
		     long long number)
{
	struct rl_slot *sl = arg;
	struct rl_check *chk = sl->chk;
	(void)value;
	(void)len;
	if (st == MOAT_STORE_OK) {
		sl->known = 1;
		sl->count = number;
	}
	if (--chk->pending == 0)
		decide(chk);
}

/* Counts one event for each limit of the stage's kinds. */
static enum moat_filter_status count(struct moat_filter_call *call, int rcpt_stage)
{
	const struct moat_msgctx *ctx = moat_call_ctx(call);
	const struct rl_conf *c = moat_call_conf(call);
	struct rl_check *chk;
	char key[KEY_MAX];
	if (!ctx->store || c->n == 0)
		return MOAT_FILTER_CONTINUE;
	if (!(chk = calloc(1, sizeof(*chk)))) {
		moat_call_error(call, "out of memory");
		return MOAT_FILTER_ERROR;
	}
	chk->call = call;
	chk->conf = c;
	for (size_t i = 0; i < c->n; i++) {
		struct rl_slot *sl = &chk->slots[chk->n];
		if ((c->v[i].kind == MOAT_RL_RCPT) != rcpt_stage ||
		    name_for(ctx, c->v[i].kind, sl->name, sizeof(sl->name)) < 0)
			continue;
		sl->chk = chk;
		sl->limit = i;
		chk->n++;
	}
	long long now = (long long)time(NULL);
	chk->pending = 1;	/* held until every operation is started */
	for (size_t i = 0; i < chk->n; i++) {
		struct rl_slot *sl = &chk->slots[i];
		const struct moat_ratelimit *l = &c->v[sl->limit];
		int n = snprintf(key, sizeof(key), "rl:%s:%s:%ld:%lld", kind_names[l->kind],
				 sl->name, l->window, now / l->window);
		if (n < 0 || (size_t)n >= sizeof(key))
			continue;
		chk->pending++;
		if (!moat_store_incr(ctx->store, key, 1, l->window, on_count, sl))
			chk->pending--;
	}
	if (--chk->pending == 0) {
		free(chk);
		return MOAT_FILTER_CONTINUE;
	}
	return MOAT_FILTER_WAIT;
}

static enum moat_filter_status rl_mail(struct moat_filter_call *call)
{
	return count(call, 0);
}

static enum moat_filter_status rl_rcpt(struct moat_filter_call *call)
{
	return count(call, 1);
}

const struct moat_filter moat_filter_ratelimit = {
	.name = "ratelimit",
	.doc = "Limits messages per client address, network, sender and authenticated user, "
	       "and recipients, per time window, counted in the store (shared by every moat "
	       "instance on one Redis); over a limit: tempfail (451 4.7.28), reject or a score.",
	.opts = rl_opts,
	.nopts = NELEM(rl_opts),
	.conf_size = sizeof(struct rl_conf),
	.prepare = rl_prepare,
	.release = rl_release,
	.stage = {
		[MOAT_STAGE_MAIL] = rl_mail,
		[MOAT_STAGE_RCPT] = rl_rcpt,
	},
};
