/*
 * greylist.c - the greylist filter: at each RCPT, the triple of the
 * client's network (/24, /64), the sender and the recipient. On first
 * sight the recipient is tempfailed (451 4.7.1) and the time kept; a
 * retry after `delay` seconds, within `retry_window`, passes, and the
 * triple is then remembered for `pass_ttl` seconds (renewed by each
 * message), so it is not delayed again. Real MTAs retry; much spamware
 * does not.
 *
 * Not greylisted: authenticated sessions, sessions an access allow entry
 * exempted (the pipeline skips the filter), and, with
 * bypass_good_reputation, a client whose address or network has a good
 * reputation (reputation.c: its counts or a mark set by hand). A store
 * that does not answer means no greylisting: mail is never held for it.
 *
 * Keys and values: docs/redis-keys.md. Owns each check (struct gl_check)
 * until its last answer; no global state.
 */
#include "greylist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ascii.h"
#include "nelem.h"
#include "reputation.h"
#include "store.h"

#define KEY_MAX 700
#define PASS_VALUE "pass"

struct gl_conf {
	struct moat_filter_common common;
	long delay;
	long retry_window;
	long pass_ttl;
	int bypass_good_reputation;
	/* derived */
	const void *rep_conf;	/* the reputation section of the same configuration */
};

#define G(f) offsetof(struct gl_conf, f)
static const struct moat_opt gl_opts[] = {
	{"delay", MOAT_OPT_INT, G(delay), 300, NULL, 1, 86400, 0, NULL,
	 "Seconds a new (network, sender, recipient) triple is tempfailed before a retry "
	 "passes."},
	{"retry_window", MOAT_OPT_INT, G(retry_window), 172800, NULL, 60, 2592000, 0, NULL,
	 "Seconds after the delay within which the retry must come; a triple not retried in "
	 "time is forgotten and starts again."},
	{"pass_ttl", MOAT_OPT_INT, G(pass_ttl), 3024000, NULL, 60, 31536000, 0, NULL,
	 "Seconds a triple that passed is remembered (not delayed again), renewed by each "
	 "message."},
	{"bypass_good_reputation", MOAT_OPT_BOOL, G(bypass_good_reputation), 1, NULL, 0, 0, 0,
	 NULL,
	 "Do not greylist a client whose address or network has a good reputation (the "
	 "reputation filter's counts, or marked good with moat rep set) and neither is bad."},
};

static int gl_prepare(void *data, struct moat_section_ctx *ctx)
{
	struct gl_conf *c = data;
	c->rep_conf = moat_config_section(moat_section_config(ctx), "reputation");
	return 0;
}

/* ---- keys and values ------------------------------------------------------ */

/* Appends ":" and s lower-cased at out+*used; 0 or -1. */
static int append(char *out, size_t len, size_t *used, const char *s)
{
	size_t n = strlen(s);
	if (*used + 1 + n >= len)
		return -1;
	out[(*used)++] = ':';
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch <= ' ' || ch == 0x7f)
			return -1;
		out[(*used)++] = (char)ascii_lower(ch);
	}
	out[*used] = '\0';
	return 0;
}

int moat_greylist_key(const char *client_addr, const char *sender, const char *rcpt, char *out,
		      size_t len)
{
	char net[80];
	size_t used = 2;
	if (!client_addr || !sender || !rcpt || !*rcpt || len < 3 ||
	    moat_rep_net(client_addr, net, sizeof(net)) < 0)
		return -1;
	memcpy(out, "gl", 3);
	if (append(out, len, &used, net) < 0 || append(out, len, &used, *sender ? sender : "<>") < 0 ||
	    append(out, len, &used, rcpt) < 0)
		return -1;
	return 0;
}

enum moat_greylist_state moat_greylist_judge(const char *value, size_t len, long long now,
					     long delay, long *wait)
{
	char buf[32], *end;
	*wait = 0;
	if (!value || len == 0 || len >= sizeof(buf))
		return MOAT_GL_NEW;
	memcpy(buf, value, len);
	buf[len] = '\0';
	if (strcmp(buf, PASS_VALUE) == 0)
		return MOAT_GL_PASS;
	long long first = strtoll(buf, &end, 10);
	if (*end || first <= 0)
		return MOAT_GL_NEW;	/* not ours: start again */
	if (now - first >= delay)
		return MOAT_GL_PASS;
	*wait = (long)(first + delay - now);
	return MOAT_GL_EARLY;
}

/* ---- the filter ------------------------------------------------------------ */

struct gl_check {
	struct moat_filter_call *call;
	struct moat_store *store;
	long delay, retry_window, pass_ttl;
	enum moat_greylist_state state;
	long wait;
	char key[KEY_MAX];
};

static void finish(struct gl_check *g)
{
	moat_call_done(g->call, MOAT_FILTER_CONTINUE);
	free(g);
}

static void greylist(struct gl_check *g)
{
	char now[32];
	if (g->state == MOAT_GL_NEW) {
		int n = snprintf(now, sizeof(now), "%lld", (long long)time(NULL));
		moat_store_set(g->store, g->key, now, (size_t)n, g->delay + g->retry_window, NULL,
			       NULL);
		g->wait = g->delay;
	}
	moat_call_trace(g->call, "%s: %s, greylisted for %ld s more", g->key,
			g->state == MOAT_GL_NEW ? "first sight" : "retried too early", g->wait);
	moat_call_decide(g->call, MOAT_ACTION_TEMPFAIL, 451,
			 "4.7.1 Greylisted, please try again in %ld seconds", g->wait);
	finish(g);
}

static void on_reputation(void *arg, int good)
{
	struct gl_check *g = arg;
	if (!good) {
		greylist(g);
		return;
	}
	moat_call_trace(g->call, "%s: the client has a good reputation, not greylisted", g->key);
	finish(g);
}

static void on_get(void *arg, enum moat_store_status st, const char *value, size_t len,
		   long long number)
{
	struct gl_check *g = arg;
	const struct moat_msgctx *ctx = moat_call_ctx(g->call);
	const struct gl_conf *c = moat_call_conf(g->call);
	(void)number;
	if (st == MOAT_STORE_UNAVAILABLE) {
		moat_call_trace(g->call, "%s: the store did not answer", g->key);
		finish(g);
		return;
	}
	g->state = moat_greylist_judge(st == MOAT_STORE_OK ? value : NULL, len,
				       (long long)time(NULL), g->delay, &g->wait);
	if (g->state == MOAT_GL_PASS) {
		moat_call_trace(g->call, "%s: passes", g->key);
		moat_store_set(g->store, g->key, PASS_VALUE, strlen(PASS_VALUE), g->pass_ttl, NULL,
			       NULL);
		finish(g);
		return;
	}
	if (ctx && c && c->bypass_good_reputation &&
	    moat_rep_client_good(g->store, c->rep_conf, ctx->client_addr, on_reputation, g) == 0)
		return;
	greylist(g);
}

static enum moat_filter_status gl_rcpt(struct moat_filter_call *call)
{
	const struct moat_msgctx *ctx = moat_call_ctx(call);
	const struct gl_conf *c = moat_call_conf(call);
	struct gl_check *g;
	if (!ctx->store)
		return MOAT_FILTER_CONTINUE;
	if (ctx->auth_user) {
		moat_call_trace(call, "authenticated: not greylisted");
		return MOAT_FILTER_CONTINUE;
	}
	if (!(g = calloc(1, sizeof(*g)))) {
		moat_call_error(call, "out of memory");
		return MOAT_FILTER_ERROR;
	}
	if (moat_greylist_key(ctx->client_addr, ctx->mail_from, ctx->rcpt, g->key,
			      sizeof(g->key)) < 0) {
		moat_call_trace(call, "no triple to greylist (address, sender or recipient)");
		free(g);
		return MOAT_FILTER_CONTINUE;
	}
	g->call = call;
	g->store = ctx->store;
	g->delay = c->delay;
	g->retry_window = c->retry_window;
	g->pass_ttl = c->pass_ttl;
	if (!moat_store_get(ctx->store, g->key, on_get, g)) {
		free(g);
		return MOAT_FILTER_CONTINUE;
	}
	return MOAT_FILTER_WAIT;
}

const struct moat_filter moat_filter_greylist = {
	.name = "greylist",
	.doc = "Tempfails (451 4.7.1) a recipient from a (client network, sender, recipient) "
	       "triple seen for the first time until the client retries after a delay; "
	       "authenticated clients, access allow entries and clients of good reputation "
	       "are not greylisted.",
	.opts = gl_opts,
	.nopts = NELEM(gl_opts),
	.conf_size = sizeof(struct gl_conf),
	.prepare = gl_prepare,
	.stage = {
		[MOAT_STAGE_RCPT] = gl_rcpt,
	},
};
