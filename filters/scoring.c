/*
 * scoring.c - the last step at end of message: map the total score to an
 * action by the thresholds of the `scoring` section, and write the result
 * header.
 *
 * Owns the scoring section's declaration; its data belongs to the config.
 */
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "message.h"
#include "pipeline.h"

struct scoring_conf {
	double reject, tempfail, add_header, discard;
	char *result_header;
	char *spam_header;
	char *reject_text;
	char *tempfail_text;
};

#define S(field) offsetof(struct scoring_conf, field)
#define BIG 1e9
static const struct moat_opt scoring_opts[] = {
	{"reject", MOAT_OPT_FLOAT, S(reject), 0, NULL, -BIG, BIG, 15, NULL,
	 "A message scoring at least this much is rejected at the end of DATA (0 or less: never)."},
	{"tempfail", MOAT_OPT_FLOAT, S(tempfail), 0, NULL, -BIG, BIG, 0, NULL,
	 "A message scoring at least this much (but below reject) gets 451: greylisting by score (0 or less: never)."},
	{"add_header", MOAT_OPT_FLOAT, S(add_header), 0, NULL, -BIG, BIG, 6, NULL,
	 "A message scoring at least this much (but below tempfail and reject) is passed on with spam_header added (0 or less: never)."},
	{"discard", MOAT_OPT_FLOAT, S(discard), 0, NULL, -BIG, BIG, 0, NULL,
	 "A message scoring at least this much is accepted from the client and dropped: the one case where moat says 250 for a message the upstream never sees; logged and counted (0 or less: never, the default)."},
	{"result_header", MOAT_OPT_STR, S(result_header), 0, "X-Moat-Result", 0, 0, 0, NULL,
	 "Header added to every message passed on while any filter is enabled, with the score, the action and the symbols; empty for none."},
	{"spam_header", MOAT_OPT_STR, S(spam_header), 0, "X-Spam: Yes", 0, 0, 0, NULL,
	 "\"Name: value\" added to messages whose score reaches add_header."},
	{"reject_text", MOAT_OPT_STR, S(reject_text), 0, "5.7.1 Message rejected as spam", 0, 0, 0, NULL,
	 "Reply text (with its enhanced status code) for messages rejected by score."},
	{"tempfail_text", MOAT_OPT_STR, S(tempfail_text), 0, "4.7.1 Message deferred, try again later", 0, 0, 0, NULL,
	 "Reply text (with its enhanced status code) for messages tempfailed by score."},
};

static int prepare(void *data, struct moat_section_ctx *ctx)
{
	struct scoring_conf *c = data;
	int bad = 0;
	if (c->spam_header && *c->spam_header && !strchr(c->spam_header, ':')) {
		moat_section_error(ctx, "spam_header", "expected \"Name: value\", got \"%s\"",
				   c->spam_header);
		bad = -1;
	}
	if (c->reject_text && (c->reject_text[0] != '5' || c->reject_text[1] != '.')) {
		moat_section_error(ctx, "reject_text", "expected a text starting with a 5.x.x "
				   "enhanced status code, got \"%s\"", c->reject_text);
		bad = -1;
	}
	if (c->tempfail_text && (c->tempfail_text[0] != '4' || c->tempfail_text[1] != '.')) {
		moat_section_error(ctx, "tempfail_text", "expected a text starting with a 4.x.x "
				   "enhanced status code, got \"%s\"", c->tempfail_text);
		bad = -1;
	}
	return bad;
}

static const struct moat_section_def scoring_section = {
	.name = "scoring",
	.doc = "Score thresholds and the result header.",
	.opts = scoring_opts,
	.nopts = sizeof(scoring_opts) / sizeof(scoring_opts[0]),
	.size = sizeof(struct scoring_conf),
	.prepare = prepare,
};

void moat_scoring_register(void)
{
	moat_config_register_section(&scoring_section);
}

static int reached(double threshold, double score)
{
	return threshold > 0 && score >= threshold;
}

/* The action the thresholds give for score. */
static enum moat_action by_score(const struct scoring_conf *sc, double score)
{
	if (reached(sc->discard, score))
		return MOAT_ACTION_DISCARD;
	if (reached(sc->reject, score))
		return MOAT_ACTION_REJECT;
	if (reached(sc->tempfail, score))
		return MOAT_ACTION_TEMPFAIL;
	if (reached(sc->add_header, score))
		return MOAT_ACTION_ADD_HEADER;
	return MOAT_ACTION_ACCEPT;
}

static void fill(struct moat_decision *d, const struct scoring_conf *sc, enum moat_action a)
{
	memset(d, 0, sizeof(*d));
	d->action = a;
	d->filter = "scoring";
	d->stage = MOAT_STAGE_EOM;
	if (a == MOAT_ACTION_REJECT)
		snprintf(d->text, sizeof(d->text), "%s", sc->reject_text);
	else if (a == MOAT_ACTION_TEMPFAIL)
		snprintf(d->text, sizeof(d->text), "%s", sc->tempfail_text);
}

static int rank(enum moat_action a)
{
	static const int r[MOAT_ACTION__COUNT] = {0, 1, 2, 4, 5, 3};
	return a < MOAT_ACTION__COUNT ? r[a] : 0;
}

/* The authserv-id an Authentication-Results value starts with (after
 * CFWS, up to ';' or white space) equals id? */
static int claims_id(const struct moat_header *h, const char *id)
{
	const char *p = h->value, *end = h->value + h->value_len;
	size_t n = strlen(id);
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
		p++;
	if ((size_t)(end - p) < n || strncasecmp(p, id, n) != 0)
		return 0;
	p += n;
	return p == end || *p == ';' || *p == ' ' || *p == '\t' || *p == '\r';
}

/* Removes forged Authentication-Results (RFC 8601 5) and adds moat's. */
static void auth_results(const struct moat_config *c, const struct moat_message *m,
			 struct moat_verdict *v, int add)
{
	const char *id = c->authserv_id && *c->authserv_id ? c->authserv_id : c->hostname;
	int occurrence = 0;
	for (size_t i = 0; m && i < m->nheaders; i++) {	/* one pass */
		const struct moat_header *h = &m->headers[i];
		if (h->name_len != 22 || strncasecmp(h->name, "Authentication-Results", 22) != 0)
			continue;
		occurrence++;
		if (claims_id(h, id))
			moat_verdict_edit(v, "scoring", MOAT_HEADER_REMOVE, "Authentication-Results",
					  NULL, occurrence);
	}
	if (!add || v->nauth == 0)
		return;
	char val[4096];
	size_t off = (size_t)snprintf(val, sizeof(val), "%s", id);
	for (size_t i = 0; i < v->nauth && off < sizeof(val); i++) {
		const struct moat_auth_result *a = &v->auth[i];
		off += (size_t)snprintf(val + off, sizeof(val) - off, ";\r\n\t%s=%s%s%s%s%s%s",
					a->method, a->result, a->props[0] ? " " : "", a->props,
					a->comment[0] ? " (" : "", a->comment, a->comment[0] ? ")" : "");
	}
	if (off >= sizeof(val))
		return;	/* cannot happen with sane results; never send half */
	moat_verdict_edit(v, "scoring", MOAT_HEADER_ADD, "Authentication-Results", val, 0);
}

void moat_pipeline_score(const struct moat_config *c, const struct moat_message *m,
			 struct moat_verdict *v)
{
	const struct scoring_conf *sc = moat_config_section(c, "scoring");
	static const struct scoring_conf none = {0, 0, 0, 0, NULL, NULL, "", ""};
	if (!sc)
		sc = &none;
	moat_verdict_total(v);

	/* What the scores would do with every filter counted (dry-run too). */
	enum moat_action all = by_score(sc, v->score_all);
	enum moat_action eff = c->dry_run ? MOAT_ACTION_ACCEPT : by_score(sc, v->score);
	if (rank(all) > rank(eff) && rank(all) > rank(v->would.action)) {
		fill(&v->would, sc, all);
		v->would.dry_run = 1;
	}
	if (rank(eff) > rank(v->decision.action))
		fill(&v->decision, sc, eff);
	if (v->decision.action == MOAT_ACTION_NONE)
		fill(&v->decision, sc, MOAT_ACTION_ACCEPT);

	enum moat_action a = v->decision.action;
	if (a != MOAT_ACTION_ACCEPT && a != MOAT_ACTION_ADD_HEADER)
		return;
	if (c->filters.n > 0)
		auth_results(c, m, v, 1);
	if (a == MOAT_ACTION_ADD_HEADER && sc->spam_header && *sc->spam_header) {
		char name[128];
		const char *colon = strchr(sc->spam_header, ':');
		size_t n = (size_t)(colon - sc->spam_header);
		if (n < sizeof(name)) {
			memcpy(name, sc->spam_header, n);
			name[n] = '\0';
			const char *val = colon + 1;
			while (*val == ' ')
				val++;
			moat_verdict_edit(v, "scoring", MOAT_HEADER_ADD, name, val, 0);
		}
	}
	/* With no filter enabled moat is a plain relay: the message passes
	 * byte for byte, without a result header saying nothing. */
	if (sc->result_header && *sc->result_header && c->filters.n > 0) {
		char syms[700], val[900];
		moat_verdict_symbols_text(v, syms, sizeof(syms));
		snprintf(val, sizeof(val), "score=%.2f action=%s%s%s%s symbols=%s", v->score,
			 moat_action_name(a), v->would.action ? " would=" : "",
			 v->would.action ? moat_action_name(v->would.action) : "",
			 c->dry_run ? " dry_run=yes" : "", syms[0] ? syms : "none");
		moat_verdict_edit(v, "scoring", MOAT_HEADER_ADD, sc->result_header, val, 0);
	}
}
