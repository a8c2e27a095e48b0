/*
 * dmarc.c - the DMARC filter (what it does: dmarc.h). At the end of the
 * message: the From domain; SPF's and DKIM's results copied from the
 * verdict; the policy looked up (one or two TXT queries); then the
 * result, its symbol and score, the dmarc part of Authentication-Results,
 * the policy's action as configured, and a report row.
 *
 * Skipped for authenticated sessions and submission listeners (mail from
 * one's own users is signed, not judged).
 *
 * Owns: its section's derived data (the overrides), and per session one
 * struct dmarc_msg while its lookup is in flight, so that session_end
 * can end it.
 */
#include "dmarc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "dmarc_align.h"
#include "dmarc_lookup.h"
#include "dmarc_report.h"
#include "from_header.h"
#include "log.h"
#include "nelem.h"
#include "spf_input.h"

/* ---- the decision -------------------------------------------------------- */

const struct dmarc_override *dmarc_override_find(const struct dmarc_conf *c, const char *domain)
{
	for (const char *d = domain; d && *d;) {
		for (size_t i = 0; i < c->noverrides; i++)
			if (strcasecmp(c->ovr[i].domain, d) == 0)
				return &c->ovr[i];
		d = strchr(d, '.');
		if (d)
			d++;
	}
	return NULL;
}

void dmarc_decide(const struct dmarc_conf *c, enum dmarc_result res, const struct dmarc_record *r,
		  int subdomain, const char *from, unsigned roll, struct dmarc_decision *out)
{
	memset(out, 0, sizeof(*out));
	out->disposition = DMARC_POLICY_NONE;
	switch (res) {
	case DMARC_RES_PASS:
		out->symbol = "DMARC_PASS";
		out->score = c->score_pass;
		break;
	case DMARC_RES_NONE:
		out->symbol = "DMARC_NONE";
		out->score = c->score_none;
		break;
	case DMARC_RES_TEMPERROR:
		out->symbol = "DMARC_TEMPERROR";	/* never refused */
		out->score = c->score_temperror;
		break;
	case DMARC_RES_PERMERROR:
		out->symbol = "DMARC_PERMERROR";
		out->score = c->score_permerror;
		break;
	default:
		out->symbol = "DMARC_FAIL";
		break;
	}
	if (r)
		out->published = dmarc_record_policy(r, subdomain, 0);
	if (res != DMARC_RES_FAIL || !r)
		return;
	enum dmarc_policy p = out->published;
	const struct dmarc_override *o = dmarc_override_find(c, from);
	if (o) {
		out->overridden = p != o->action;
		p = o->action;
	} else if (roll >= (unsigned)r->pct && p != DMARC_POLICY_NONE) {
		/* RFC 7489 6.6.4: outside pct=, reject becomes quarantine and
		 * quarantine becomes none */
		out->sampled_out = 1;
		p = p == DMARC_POLICY_REJECT ? DMARC_POLICY_QUARANTINE : DMARC_POLICY_NONE;
	}
	out->score = p == DMARC_POLICY_REJECT ? c->score_fail_reject
		   : p == DMARC_POLICY_QUARANTINE ? c->score_fail_quarantine : c->score_fail_none;
	if (c->apply && p == DMARC_POLICY_REJECT)
		out->disposition = DMARC_POLICY_REJECT;
	else if (c->apply && p == DMARC_POLICY_QUARANTINE && c->quarantine_header)
		out->disposition = DMARC_POLICY_QUARANTINE;
}

/* ---- the filter ---------------------------------------------------------- */

struct dmarc_msg {
	struct moat_filter_call *call;
	struct dmarc_lookup *lookup;
	void **slot;			/* the session's slot pointing here */
	char from[MOAT_FROM_DOMAIN_MAX + 1], org[MOAT_FROM_DOMAIN_MAX + 1];
	char ip[48];
	struct dmarc_auth auth;
	int report;			/* keep report data in the store */
	long days;
};

static void msg_free(struct dmarc_msg *m)
{
	if (m->slot && *m->slot == m)
		*m->slot = NULL;
	free(m);
}

static void record_row(struct moat_store *store, const struct dmarc_msg *m, const struct dmarc_found *f,
		       const struct dmarc_eval *e, const struct dmarc_decision *d)
{
	struct dmarc_report_row row;
	memset(&row, 0, sizeof(row));
	row.when = (long long)time(NULL);
	snprintf(row.ip, sizeof(row.ip), "%s", m->ip);
	snprintf(row.header_from, sizeof(row.header_from), "%s", m->from);
	snprintf(row.envelope_from, sizeof(row.envelope_from), "%s", m->auth.spf_domain);
	snprintf(row.spf_result, sizeof(row.spf_result), "%s",
		 m->auth.spf_result[0] ? m->auth.spf_result : "none");
	row.spf_helo = m->auth.spf_helo;
	row.disposition = d->disposition;
	row.dkim_aligned = e->dkim_aligned;
	row.spf_aligned = e->spf_aligned;
	snprintf(row.reason, sizeof(row.reason), "%s", d->overridden ? "local_policy"
		 : d->sampled_out ? "sampled_out" : "");
	row.ndkim = m->auth.ndkim;
	memcpy(row.dkim, m->auth.dkim, sizeof(row.dkim));
	dmarc_report_add(store, m->days, f->domain, f->txt, &row);
}

/* The lookup answered: result, symbol, Authentication-Results, action. */
static void evaluate(struct moat_filter_call *call, struct dmarc_msg *m,
		     const struct dmarc_found *f)
{
	const struct dmarc_conf *c = moat_call_conf(call);
	struct dmarc_eval e;
	struct dmarc_decision d;
	enum dmarc_result res;
	char props[340];

	memset(&e, 0, sizeof(e));
	switch (f->status) {
	case DMARC_FOUND_RECORD:
		dmarc_evaluate(&m->auth, m->from, &f->rec, &e);
		res = e.result;
		break;
	case DMARC_FOUND_TEMPERROR:
		res = DMARC_RES_TEMPERROR;
		break;
	case DMARC_FOUND_PERMERROR:
		res = DMARC_RES_PERMERROR;
		break;
	default:
		res = DMARC_RES_NONE;
		break;
	}
	if (f->status == DMARC_FOUND_RECORD)
		moat_call_trace(call, "record of %s%s: p=%s sp=%s adkim=%s aspf=%s pct=%d",
				f->domain, f->org ? " (organizational domain)" : "",
				dmarc_policy_name(f->rec.p), dmarc_policy_name(f->rec.sp),
				f->rec.adkim == DMARC_STRICT ? "s" : "r",
				f->rec.aspf == DMARC_STRICT ? "s" : "r",
				f->rec.pct);
	else
		moat_call_trace(call, "_dmarc record for %s: %s", m->from, f->why);
	if (f->status == DMARC_FOUND_RECORD) {
		moat_call_trace(call, "spf: %s for %s: %s with From %s (%s)",
				m->auth.spf_result[0] ? m->auth.spf_result : "none",
				m->auth.spf_domain[0] ? m->auth.spf_domain : "-",
				m->auth.spf_domain[0] && dmarc_aligned(m->auth.spf_domain, m->from,
									f->rec.aspf)
					? "aligned" : "not aligned", m->from,
				f->rec.aspf == DMARC_STRICT ? "strict" : "relaxed");
		for (size_t i = 0; i < m->auth.ndkim; i++)
			moat_call_trace(call, "dkim: %s for d=%s: %s with From %s (%s)",
					m->auth.dkim[i].result, m->auth.dkim[i].domain,
					dmarc_aligned(m->auth.dkim[i].domain, m->from, f->rec.adkim)
						? "aligned" : "not aligned",
					m->from, f->rec.adkim == DMARC_STRICT ? "strict" : "relaxed");
		moat_call_trace(call, "result: dmarc=%s (%s)", dmarc_result_name(e.result), e.why);
	}
	int subdomain = strcasecmp(f->domain, m->from) != 0;
	dmarc_decide(c, res, f->status == DMARC_FOUND_RECORD ? &f->rec : NULL, subdomain, m->from,
		     arc4random_uniform(100), &d);
	/* "dmarc=pass (p=reject dis=none) header.from=example.org": the
	 * policy comment before the property, as receivers commonly write it */
	if (f->status == DMARC_FOUND_RECORD)
		snprintf(props, sizeof(props), "(p=%s dis=%s) header.from=%s",
			 dmarc_policy_name(d.published), dmarc_policy_name(d.disposition), m->from);
	else
		snprintf(props, sizeof(props), "header.from=%s", m->from);
	moat_call_auth_result(call, "dmarc", dmarc_result_name(res), props, NULL);
	if (f->status == DMARC_FOUND_RECORD)
		moat_call_symbol(call, d.symbol, d.score, "dmarc=%s header.from=%s p=%s%s dis=%s%s%s; "
				 "%s", dmarc_result_name(res), m->from,
				 dmarc_policy_name(d.published), f->org ? " (organizational domain)"
				 : "", dmarc_policy_name(d.disposition),
				 d.overridden ? " (override)" : "",
				 d.sampled_out ? " (pct)" : "", e.why);
	else
		moat_call_symbol(call, d.symbol, d.score, "dmarc=%s header.from=%s: %s",
				 dmarc_result_name(res), m->from, f->why);
	if (f->status == DMARC_FOUND_RECORD && f->why[0])
		moat_log(LOG_INFO, "session=%s: dmarc: _dmarc.%s: %s",
			 moat_call_ctx(call)->session_id ? moat_call_ctx(call)->session_id : "-",
			 f->domain, f->why);
	if (d.disposition == DMARC_POLICY_REJECT)
		moat_call_decide(call, MOAT_ACTION_REJECT, 550, "5.7.1 Rejected by the DMARC policy "
				 "of %.200s: the From domain is not aligned with a passing SPF or "
				 "DKIM identity", f->domain);
	else if (d.disposition == DMARC_POLICY_QUARANTINE)
		moat_call_decide(call, MOAT_ACTION_ADD_HEADER, 0, "DMARC policy of %.200s: "
				 "quarantine", f->domain);
	if (f->status == DMARC_FOUND_RECORD && m->report && moat_call_ctx(call)->store)
		record_row(moat_call_ctx(call)->store, m, f, &e, &d);
}

static void on_found(void *arg, const struct dmarc_found *f)
{
	struct dmarc_msg *m = arg;
	struct moat_filter_call *call = m->call;

	m->lookup = NULL;
	evaluate(call, m, f);
	msg_free(m);
	moat_call_done(call, MOAT_FILTER_CONTINUE);
}

static enum moat_filter_status dmarc_eom(struct moat_filter_call *call)
{
	const struct dmarc_conf *c = moat_call_conf(call);
	const struct moat_msgctx *ctx = moat_call_ctx(call);
	struct dmarc_msg *m;
	struct moat_from from;
	enum moat_from_status st;

	if (ctx->auth_user || ctx->role == MOAT_ROLE_SUBMISSION || !ctx->message)
		return MOAT_FILTER_CONTINUE;
	m = calloc(1, sizeof(*m));
	if (!m) {
		moat_call_error(call, "out of memory");
		return MOAT_FILTER_ERROR;
	}
	st = moat_from_message(ctx->message, &from);
	if (st != MOAT_FROM_OK) {
		const char *why = moat_from_problem(st);
		moat_call_symbol(call, "DMARC_BAD_FROM", c->score_bad_from, "%s", why);
		moat_call_auth_result(call, "dmarc", "permerror", "", why);
		if (c->bad_from_reject)
			moat_call_decide(call, MOAT_ACTION_REJECT, 550, "5.7.1 Message refused: %s "
					 "(RFC 5322 3.6, RFC 7489 6.6.1)", why);
		free(m);
		return MOAT_FILTER_CONTINUE;
	}
	memcpy(m->from, from.domain, sizeof(m->from));
	if (dmarc_org_domain(m->from, m->org, sizeof(m->org)) < 0) {
		free(m);
		moat_call_error(call, "no public suffix list could be loaded");
		return MOAT_FILTER_ERROR;
	}
	dmarc_auth_collect(moat_call_verdict(call), &m->auth);
	snprintf(m->ip, sizeof(m->ip), "%s", ctx->client_addr ? ctx->client_addr : "");
	m->report = c->report;
	m->days = c->report_days;
	m->call = call;
	void **slot = moat_call_session_state(call);
	if (slot && *slot) {
		/* a lookup of an earlier message still runs: it is ended */
		struct dmarc_msg *old = *slot;
		dmarc_lookup_cancel(old->lookup);
		moat_call_done(old->call, MOAT_FILTER_CONTINUE);
		msg_free(old);
	}
	m->lookup = dmarc_lookup_start(ctx->resolver, m->from, m->org, on_found, m);
	if (!m->lookup) {
		free(m);
		moat_call_error(call, "out of memory");
		return MOAT_FILTER_ERROR;
	}
	if (slot) {
		*slot = m;
		m->slot = slot;
	}
	return MOAT_FILTER_WAIT;
}

/* The session ended: a lookup still running ends now (its call was
 * abandoned by the pipeline). */
static void dmarc_session_end(void *state)
{
	struct dmarc_msg *m = state;
	struct moat_filter_call *call = m->call;
	m->slot = NULL;
	dmarc_lookup_cancel(m->lookup);
	free(m);
	moat_call_done(call, MOAT_FILTER_CONTINUE);
}

/* ---- configuration ------------------------------------------------------- */

static const char *const policy_choices[] = {"apply", "score", NULL};
static const char *const quarantine_choices[] = {"add_header", "score", NULL};
static const char *const bad_from_choices[] = {"reject", "score", NULL};

#define D(field) offsetof(struct dmarc_conf, field)
static const struct moat_opt dmarc_opts[] = {
	{"policy", MOAT_OPT_STR, D(policy), 0, "apply", 0, 0, 0, policy_choices,
	 "\"apply\": honour the domain's policy for a message that fails DMARC (p=reject: "
	 "550 5.7.1; p=quarantine: as the quarantine option says; p=none: the score only). "
	 "\"score\": never act, only score (score_fail_none, score_fail_quarantine, "
	 "score_fail_reject by the policy published)."},
	{"quarantine", MOAT_OPT_STR, D(quarantine), 0, "add_header", 0, 0, 0, quarantine_choices,
	 "What p=quarantine does to a failing message when the policy is applied: "
	 "\"add_header\" (the add_header action: the spam header, delivered) or \"score\" "
	 "(score_fail_quarantine only)."},
	{"bad_from", MOAT_OPT_STR, D(bad_from), 0, "reject", 0, 0, 0, bad_from_choices,
	 "A message DMARC cannot evaluate (no From field, several, a From with several "
	 "addresses or without a domain): \"reject\" (550 5.7.1 naming the problem) or "
	 "\"score\" (score_bad_from). Such From fields are a known way around DMARC."},
	{"overrides", MOAT_OPT_STR_LIST, D(overrides), 0, "{}", 0, 0, 0, NULL,
	 "Local policy for From domains, instead of the published one (pct= then does not "
	 "apply): entries \"DOMAIN ACTION\", ACTION one of reject, quarantine, none (score "
	 "only); an entry covers the domain and its subdomains, the most specific wins. "
	 "E.g. {\"lists.example.org none\"}."},
	{"score_pass", MOAT_OPT_FLOAT, D(score_pass), 0, NULL, -1000, 1000, -1, NULL,
	 "Score of DMARC_PASS: an aligned SPF or DKIM pass."},
	{"score_fail_none", MOAT_OPT_FLOAT, D(score_fail_none), 0, NULL, -1000, 1000, 1, NULL,
	 "Score of DMARC_FAIL when the policy in effect is none (p=none, pct= sampling, an "
	 "override)."},
	{"score_fail_quarantine", MOAT_OPT_FLOAT, D(score_fail_quarantine), 0, NULL, -1000, 1000,
	 4, NULL, "Score of DMARC_FAIL when the policy in effect is quarantine."},
	{"score_fail_reject", MOAT_OPT_FLOAT, D(score_fail_reject), 0, NULL, -1000, 1000, 6, NULL,
	 "Score of DMARC_FAIL when the policy in effect is reject (with policy \"score\", or "
	 "in dry-run)."},
	{"score_none", MOAT_OPT_FLOAT, D(score_none), 0, NULL, -1000, 1000, 0, NULL,
	 "Score of DMARC_NONE: the From domain publishes no DMARC policy."},
	{"score_temperror", MOAT_OPT_FLOAT, D(score_temperror), 0, NULL, -1000, 1000, 0, NULL,
	 "Score of DMARC_TEMPERROR: the policy could not be fetched (DNS failure), or SPF or "
	 "DKIM had a temporary error for an aligned domain. Never refused."},
	{"score_permerror", MOAT_OPT_FLOAT, D(score_permerror), 0, NULL, -1000, 1000, 0.5, NULL,
	 "Score of DMARC_PERMERROR: the domain's DMARC record is unusable (no valid p=)."},
	{"score_bad_from", MOAT_OPT_FLOAT, D(score_bad_from), 0, NULL, -1000, 1000, 10, NULL,
	 "Score of DMARC_BAD_FROM (see bad_from)."},
	{"report", MOAT_OPT_BOOL, D(report), 0, NULL, 0, 0, 0, NULL,
	 "Keep each evaluated message's result in the store (the store section) for "
	 "aggregate reports (moat dmarc report, which needs the redis backend: the memory "
	 "backend lives in the daemon and no other process can read it)."},
	{"report_days", MOAT_OPT_INT, D(report_days), 7, NULL, 1, 366, 0, NULL,
	 "Days report data is kept."},
	{"report_org_name", MOAT_OPT_STR, D(report_org_name), 0, "", 0, 0, 0, NULL,
	 "org_name of the reports moat dmarc report writes; \"\": the hostname."},
	{"report_email", MOAT_OPT_STR, D(report_email), 0, "", 0, 0, 0, NULL,
	 "email of the reports; \"\": postmaster@ the hostname."},
};

static void dmarc_release(void *data)
{
	struct dmarc_conf *c = data;
	for (size_t i = 0; i < c->noverrides; i++)
		free(c->ovr[i].domain);
	free(c->ovr);
	c->ovr = NULL;
	c->noverrides = 0;
}

/* dmarc reads what spf and dkim recorded: they run first. */
static int check_order(struct moat_section_ctx *ctx)
{
	const struct moat_config *cfg = moat_section_config(ctx);
	long at[3] = {-1, -1, -1};
	static const char *const names[3] = {"dmarc", "spf", "dkim"};
	int bad = 0;

	for (size_t i = 0; cfg && i < cfg->filters.n; i++)
		for (size_t k = 0; k < 3; k++)
			if (strcmp(cfg->filters.v[i], names[k]) == 0)
				at[k] = (long)i;
	if (at[0] < 0)
		return 0;
	for (size_t k = 1; k < 3; k++)
		if (at[k] < 0 || at[k] > at[0]) {
			moat_section_error(ctx, "", "filters: %s must be listed before dmarc (%s): "
					   "DMARC evaluates its results",
					   names[k], at[k] < 0 ? "it is not listed" : "it comes after");
			bad++;
		}
	return bad;
}

static int dmarc_prepare(void *data, struct moat_section_ctx *ctx)
{
	struct dmarc_conf *c = data;
	int bad = 0;

	c->apply = !c->policy || strcmp(c->policy, "apply") == 0;
	c->quarantine_header = !c->quarantine || strcmp(c->quarantine, "add_header") == 0;
	c->bad_from_reject = !c->bad_from || strcmp(c->bad_from, "reject") == 0;
	c->ovr = NULL;
	c->noverrides = 0;
	if (c->overrides.n > DMARC_MAX_OVERRIDES) {
		moat_section_error(ctx, "overrides", "at most %d entries, got %zu",
				   DMARC_MAX_OVERRIDES, c->overrides.n);
		return -1;
	}
	if (c->overrides.n && !(c->ovr = calloc(c->overrides.n, sizeof(*c->ovr)))) {
		moat_section_error(ctx, "overrides", "out of memory");
		return -1;
	}
	for (size_t i = 0; i < c->overrides.n; i++) {
		char dom[300], act[32], extra[8], alabel[SPF_DOMAIN_MAX + 1];
		enum dmarc_policy a = DMARC_POLICY_UNSET;
		int n = sscanf(c->overrides.v[i], "%299s %31s %7s", dom, act, extra);
		if (n == 2)
			a = strcmp(act, "reject") == 0 ? DMARC_POLICY_REJECT
			  : strcmp(act, "quarantine") == 0 ? DMARC_POLICY_QUARANTINE
			  : strcmp(act, "none") == 0 ? DMARC_POLICY_NONE : DMARC_POLICY_UNSET;
		if (n != 2 || a == DMARC_POLICY_UNSET) {
			moat_section_error(ctx, "overrides", "expected \"DOMAIN ACTION\" with ACTION "
					   "reject, quarantine or none, got \"%s\"", c->overrides.v[i]);
			bad++;
			continue;
		}
		if (spf_domain_alabel(dom, alabel, sizeof(alabel)) < 0) {
			moat_section_error(ctx, "overrides", "\"%s\": not a domain name", dom);
			bad++;
			continue;
		}
		if (!(c->ovr[c->noverrides].domain = strdup(alabel))) {
			moat_section_error(ctx, "overrides", "out of memory");
			bad++;
			break;
		}
		c->ovr[c->noverrides++].action = a;
	}
	if (!dmarc_psl_loaded(NULL)) {
		moat_section_error(ctx, "", "no public suffix list could be loaded (libpsl)");
		bad++;
	}
	bad += check_order(ctx);
	return bad ? -1 : 0;
}

const struct moat_filter moat_filter_dmarc = {
	.name = "dmarc",
	.doc = "DMARC (RFC 7489): the From: domain checked for alignment with the SPF and "
	       "DKIM results of the filters before it; the domain's policy (p=, sp=, pct=) "
	       "applied as configured: reject, quarantine, or a score; results in symbols, "
	       "Authentication-Results and, optionally, aggregate report data.",
	.opts = dmarc_opts,
	.nopts = NELEM(dmarc_opts),
	.conf_size = sizeof(struct dmarc_conf),
	.prepare = dmarc_prepare,
	.release = dmarc_release,
	.stage = {
		[MOAT_STAGE_EOM] = dmarc_eom,
	},
	.session_end = dmarc_session_end,
};

void dmarc_register(void)
{
	moat_filter_register(&moat_filter_dmarc);
}
