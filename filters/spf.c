/*
 * spf.c - the SPF filter (RFC 7208; what it does: spf.h). At MAIL it
 * prepares the identities (spf_input.h: bounded, A-labels), hands the
 * check to the process's SPF worker pool (spf_pool.h) and waits; the
 * result becomes a symbol SPF_<RESULT> with the configured score, the
 * spf part of Authentication-Results, a Received-SPF header (RFC 7208
 * 9.1), and, when configured, a reject for fail (550 5.7.23 with the
 * domain's explanation) or a tempfail for temperror (451 4.7.24), RFC
 * 7372 codes. A fail only scores by default (score_fail = 8), so a later
 * DMARC filter can still pass forwarded mail that DKIM vouches for.
 *
 * Skipped for authenticated sessions and clients in skip_networks.
 *
 * Owns: its section's derived data (skip_networks parsed into the conf
 * itself: no allocation), and one struct spf_call per check in flight,
 * kept in the session's state so that session_end can end it.
 */
#include "spf.h"

#include <arpa/inet.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nelem.h"
#include "spf_pool.h"


/* ---- preparing a check ---- */

static void header_safe(const char *in, char *out, size_t len)
{
	size_t o = 0;
	for (const unsigned char *p = (const unsigned char *)(in ? in : ""); *p && o + 1 < len; p++)
		if (*p > 0x20 && *p < 0x7f)
			out[o++] = (char)*p;
	out[o] = '\0';
}

/* The HELO as given, for Received-SPF's helo= (RFC 7208 9.1, quoted
 * there when it is no dot-atom): printable ASCII, spaces kept but runs
 * of them and the ends trimmed. */
static void helo_text(const char *in, char *out, size_t len)
{
	size_t o = 0;
	int space = 0;
	for (const unsigned char *p = (const unsigned char *)(in ? in : ""); *p && o + 1 < len; p++) {
		if (*p == ' ' || *p == '\t') {
			space = o > 0;
			continue;
		}
		if (*p <= 0x20 || *p >= 0x7f)
			continue;
		if (space && o + 2 < len)
			out[o++] = ' ';
		space = 0;
		out[o++] = (char)*p;
	}
	out[o] = '\0';
}

int spf_prepare(const char *ip, const char *sender, const char *helo, int check_helo,
		struct spf_prepared *out)
{
	char helo_a[SPF_DOMAIN_MAX + 1];
	int helo_ok;

	memset(out, 0, sizeof(*out));
	if (spf_ip_normalize(ip, out->check.ip, sizeof(out->check.ip)) < 0)
		return -1;
	helo_ok = spf_helo_prepare(helo, helo_a, sizeof(helo_a)) == 0;
	if (helo_ok) {
		snprintf(out->check.helo, sizeof(out->check.helo), "%s", helo_a);
	} else if (helo && *helo) {
		/* not checked as an identity, but %{h} expands to it (RFC 7208
		 * 7.3; a record may well test for a bad HELO): printable ASCII
		 * as given; dropped if that much cleaning made a domain of it
		 * (the worker would take it for a prepared name) */
		size_t o = 0;
		for (const unsigned char *p = (const unsigned char *)helo;
		     *p && o < sizeof(out->check.helo) - 1; p++)
			if (*p >= 0x20 && *p < 0x7f)
				out->check.helo[o++] = (char)*p;
		out->check.helo[o] = '\0';
		if (spf_helo_prepare(out->check.helo, helo_a, sizeof(helo_a)) == 0)
			out->check.helo[0] = '\0';
	}
	helo_text(helo, out->helo_text, sizeof(out->helo_text));
	out->null_sender = !sender || !*sender;
	if (out->null_sender) {
		/* RFC 7208 2.4: the HELO identity, as postmaster@HELO */
		out->identity = "helo";
		if (helo_ok) {
			out->check.flags = SPF_CHECK_HELO;
			snprintf(out->domain, sizeof(out->domain), "%s", helo_a);
			snprintf(out->envelope_from, sizeof(out->envelope_from), "postmaster@%s",
				 helo_a);
		} else {
			out->have_primary = 1;
			out->primary.done = 1;
			out->primary.result = SPF_RES_NONE;
			snprintf(out->primary.problem, sizeof(out->primary.problem),
				 "null sender and no usable HELO name");
		}
		return 0;
	}
	out->identity = "mailfrom";
	header_safe(sender, out->envelope_from, sizeof(out->envelope_from));
	for (const unsigned char *p = (const unsigned char *)sender; *p; p++)
		if (*p >= 0x80) {	/* SMTPUTF8: the form that was checked */
			out->envelope_from[0] = '\0';
			break;
		}
	switch (spf_sender_prepare(sender, out->check.sender, sizeof(out->check.sender),
				   out->domain, sizeof(out->domain))) {
	case SPF_INPUT_OK:
		out->check.flags = SPF_CHECK_MAILFROM;
		if (!out->envelope_from[0])
			snprintf(out->envelope_from, sizeof(out->envelope_from), "%s",
				 out->check.sender);
		break;
	case SPF_INPUT_PERMERROR:
		out->have_primary = 1;
		out->primary.done = 1;
		out->primary.result = SPF_RES_PERMERROR;
		snprintf(out->primary.problem, sizeof(out->primary.problem),
			 "local part longer than %d octets or with control characters",
			 SPF_LOCAL_MAX);
		break;
	default:
		out->have_primary = 1;
		out->primary.done = 1;
		out->primary.result = SPF_RES_NONE;
		snprintf(out->primary.problem, sizeof(out->primary.problem),
			 "no valid domain in the sender address");
		break;
	}
	if (check_helo && helo_ok) {
		out->check.flags |= SPF_CHECK_HELO;
		out->helo_checked = 1;
	}
	return 0;
}

const struct spf_proto_identity *spf_primary(const struct spf_prepared *pr,
					     const struct spf_proto_result *res)
{
	if (pr->have_primary || !res)
		return &pr->primary;
	return pr->null_sender ? &res->helo : &res->mailfrom;
}

/* ---- results ---- */

const char *spf_symbol(enum spf_result r, int helo)
{
	static const char *const plain[SPF_RES__COUNT] = {
		"SPF_PASS", "SPF_FAIL", "SPF_SOFTFAIL", "SPF_NEUTRAL", "SPF_NONE",
		"SPF_TEMPERROR", "SPF_PERMERROR",
	};
	static const char *const h[SPF_RES__COUNT] = {
		"SPF_HELO_PASS", "SPF_HELO_FAIL", "SPF_HELO_SOFTFAIL", "SPF_HELO_NEUTRAL",
		"SPF_HELO_NONE", "SPF_HELO_TEMPERROR", "SPF_HELO_PERMERROR",
	};
	return (unsigned)r < SPF_RES__COUNT ? (helo ? h : plain)[r] : "SPF_TEMPERROR";
}

void spf_action_for(const struct spf_conf *c, const struct spf_prepared *pr,
		    const struct spf_proto_identity *id, struct spf_action *out)
{
	memset(out, 0, sizeof(*out));
	enum spf_result r = id->result < SPF_RES__COUNT ? (enum spf_result)id->result
							: SPF_RES_TEMPERROR;
	out->score = c->score[r];
	if (r == SPF_RES_FAIL && c->reject_fail) {
		char exp[SPF_EXP_MAX + 1];
		out->action = MOAT_ACTION_REJECT;
		out->code = 550;
		if (spf_text_sanitize(id->explanation, exp, sizeof(exp)) == 0)
			snprintf(exp, sizeof(exp), "SPF validation failed for %.170s",
				 pr->domain[0] ? pr->domain : "the sender");
		snprintf(out->text, sizeof(out->text), "5.7.23 %s", exp);
	} else if (r == SPF_RES_TEMPERROR && c->temperror_tempfail) {
		out->action = MOAT_ACTION_TEMPFAIL;
		out->code = 451;
		snprintf(out->text, sizeof(out->text), "4.7.24 Temporary SPF validation error "
			 "for %.200s; try again later", pr->domain[0] ? pr->domain : "the sender");
	}
}

/* key=value: a dot-atom as is, anything else as a quoted-string. */
static size_t kv(char *out, size_t len, size_t o, const char *key, const char *v)
{
	static const char atext[] = "!#$%&'*+-/=?^_`{|}~";
	int atom = *v && v[0] != '.' && v[strlen(v) - 1] != '.' && !strstr(v, "..");
	for (const char *p = v; atom && *p; p++)
		atom = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		       (*p >= '0' && *p <= '9') || *p == '.' || strchr(atext, *p);
	if (o >= len)
		return o;
	o += (size_t)snprintf(out + o, len - o, " %s=%s", key, atom ? "" : "\"");
	for (const char *p = v; *p && o + 3 < len; p++) {
		if (!atom && (*p == '"' || *p == '\\'))
			out[o++] = '\\';
		out[o++] = *p;
	}
	if (o + 2 < len)
		o += (size_t)snprintf(out + o, len - o, "%s;", atom ? "" : "\"");
	if (o >= len)
		o = len - 1;
	out[o] = '\0';
	return o;
}

/* Text fit for a comment: no parentheses or backslashes. */
static void comment_safe(const char *in, char *out, size_t len)
{
	size_t o = 0;
	for (const unsigned char *p = (const unsigned char *)(in ? in : ""); *p && o + 1 < len; p++)
		if (*p >= 0x20 && *p < 0x7f && *p != '(' && *p != ')' && *p != '\\')
			out[o++] = (char)*p;
	out[o] = '\0';
}

size_t spf_received_spf(char *out, size_t len, const struct spf_prepared *pr,
			const struct spf_proto_identity *id, const char *receiver)
{
	char who[SPF_SENDER_MAX + 1], ip[SPF_IP_MAX + 1], rcv[SPF_DOMAIN_MAX + 1];
	char problem[SPF_PROBLEM_MAX + 1], comment[800];
	enum spf_result r = id->result < SPF_RES__COUNT ? (enum spf_result)id->result
							: SPF_RES_TEMPERROR;
	size_t o;

	if (!len)
		return 0;
	comment_safe(pr->envelope_from[0] ? pr->envelope_from : pr->helo_text, who, sizeof(who));
	comment_safe(pr->check.ip, ip, sizeof(ip));
	comment_safe(receiver && *receiver ? receiver : "moat", rcv, sizeof(rcv));
	comment_safe(id->problem, problem, sizeof(problem));
	switch (r) {
	case SPF_RES_PASS:
		snprintf(comment, sizeof(comment), "%s: domain of %s designates %s as permitted "
			 "sender", rcv, who, ip);
		break;
	case SPF_RES_FAIL:
		snprintf(comment, sizeof(comment), "%s: domain of %s does not designate %s as "
			 "permitted sender", rcv, who, ip);
		break;
	case SPF_RES_SOFTFAIL:
		snprintf(comment, sizeof(comment), "%s: domain of transitioning %s does not "
			 "designate %s as permitted sender", rcv, who, ip);
		break;
	case SPF_RES_NEUTRAL:
		snprintf(comment, sizeof(comment), "%s: %s is neither permitted nor denied by "
			 "domain of %s", rcv, ip, who);
		break;
	case SPF_RES_NONE:
		snprintf(comment, sizeof(comment), "%s: domain of %s does not designate permitted "
			 "sender hosts", rcv, who);
		break;
	case SPF_RES_TEMPERROR:
		snprintf(comment, sizeof(comment), "%s: temporary error while checking the "
			 "domain of %s", rcv, who);
		break;
	default:
		snprintf(comment, sizeof(comment), "%s: permanent error in the SPF record of the "
			 "domain of %s", rcv, who);
		break;
	}
	o = (size_t)snprintf(out, len, "%s (%s)", spf_result_name(r), comment);
	if (o >= len)
		o = len - 1;
	o = kv(out, len, o, "client-ip", pr->check.ip);
	if (pr->envelope_from[0])
		o = kv(out, len, o, "envelope-from", pr->envelope_from);
	if (pr->helo_text[0])
		o = kv(out, len, o, "helo", pr->helo_text);
	o = kv(out, len, o, "receiver", rcv);
	o = kv(out, len, o, "identity", pr->identity ? pr->identity : "mailfrom");
	if (id->mechanism[0])
		o = kv(out, len, o, "mechanism", id->mechanism);
	if (problem[0] && (r == SPF_RES_PERMERROR || r == SPF_RES_TEMPERROR))
		o = kv(out, len, o, "problem", problem);
	if (o && out[o - 1] == ';')
		out[--o] = '\0';
	return o;
}

void spf_auth_props(const struct spf_prepared *pr, char *out, size_t len)
{
	char h[SPF_DOMAIN_MAX + 1];

	if (pr->null_sender) {
		/* helo_text may hold spaces: none in a property value */
		header_safe(pr->domain[0] ? pr->domain : pr->helo_text, h, sizeof(h));
		snprintf(out, len, "smtp.helo=%.*s", (int)(len > 11 ? len - 11 : 0), h);
	} else {
		snprintf(out, len, "smtp.mailfrom=%.*s", (int)(len > 15 ? len - 15 : 0),
			 pr->domain[0] ? pr->domain : pr->envelope_from);
	}
}

/* ---- the filter ---- */

struct spf_session;

struct spf_call {
	struct moat_filter_call *call;
	struct spf_job *job;
	struct spf_session *sess;
	struct spf_call *next;
	struct spf_prepared pr;
	struct spf_pool *pool;
};

struct spf_session {
	struct spf_call *calls;
};

static void call_unlink(struct spf_call *sc)
{
	if (!sc->sess)
		return;
	for (struct spf_call **pp = &sc->sess->calls; *pp; pp = &(*pp)->next)
		if (*pp == sc) {
			*pp = sc->next;
			break;
		}
	sc->sess = NULL;
}

static void record(struct moat_filter_call *call, const struct spf_prepared *pr,
		   const struct spf_proto_result *res, const char *receiver)
{
	const struct spf_conf *c = moat_call_conf(call);
	const struct spf_proto_identity *id = spf_primary(pr, res);
	struct spf_action act;
	char props[SPF_SENDER_MAX + 32], hdr[2048];
	enum spf_result r = id->result < SPF_RES__COUNT ? (enum spf_result)id->result
							: SPF_RES_TEMPERROR;

	spf_action_for(c, pr, id, &act);
	spf_auth_props(pr, props, sizeof(props));
	moat_call_trace(call, "%s for client %s: %s, mechanism %s%s%s; score %.2f%s%s",
			props, pr->check.ip, spf_result_name(r), id->mechanism[0] ? id->mechanism
			: "none matched", id->problem[0] ? "; problem: " : "", id->problem, act.score,
			act.action != MOAT_ACTION_NONE ? ", then " : "",
			act.action != MOAT_ACTION_NONE ? moat_action_name(act.action) : "");
	moat_call_symbol(call, spf_symbol(r, 0), act.score, "spf=%s %s%s%s%s%s",
			 spf_result_name(r), props, id->mechanism[0] ? " mechanism=" : "",
			 id->mechanism, id->problem[0] ? " problem: " : "", id->problem);
	moat_call_auth_result(call, "spf", spf_result_name(r), props, NULL);
	if (c->received_spf) {
		spf_received_spf(hdr, sizeof(hdr), pr, id, receiver);
		moat_call_header_add(call, "Received-SPF", hdr);
	}
	if (pr->helo_checked && res && res->helo.done) {
		enum spf_result h = res->helo.result < SPF_RES__COUNT
					    ? (enum spf_result)res->helo.result : SPF_RES_TEMPERROR;
		moat_call_symbol(call, spf_symbol(h, 1), 0, "spf=%s smtp.helo=%s%s%s",
				 spf_result_name(h), pr->check.helo,
				 res->helo.mechanism[0] ? " mechanism=" : "", res->helo.mechanism);
	}
	if (act.action != MOAT_ACTION_NONE)
		moat_call_decide(call, act.action, act.code, "%s", act.text);
}

static void on_result(void *arg, const struct spf_proto_result *res)
{
	struct spf_call *sc = arg;
	struct moat_filter_call *call = sc->call;

	call_unlink(sc);
	record(call, &sc->pr, res, spf_pool_receiver(sc->pool));
	free(sc);
	moat_call_done(call, MOAT_FILTER_CONTINUE);
}

static enum moat_filter_status spf_mail(struct moat_filter_call *call)
{
	const struct spf_conf *c = moat_call_conf(call);
	const struct moat_msgctx *ctx = moat_call_ctx(call);
	struct spf_pool *pool = spf_pool_current();
	struct spf_prepared pr;

	if (ctx->auth_user || !ctx->client_addr ||
	    moat_net_match(c->nets, c->nnets, ctx->client_addr))
		return MOAT_FILTER_CONTINUE;
	if (spf_prepare(ctx->client_addr, ctx->mail_from ? ctx->mail_from : "", ctx->helo,
			c->check_helo, &pr) < 0)
		return MOAT_FILTER_CONTINUE;	/* not an IP client (a test harness) */
	if (!pr.check.flags) {
		record(call, &pr, NULL, pool ? spf_pool_receiver(pool) : NULL);
		return MOAT_FILTER_CONTINUE;
	}
	if (!pool) {
		moat_call_error(call, "no SPF worker pool is running");
		return MOAT_FILTER_ERROR;
	}
	struct spf_call *sc = calloc(1, sizeof(*sc));
	if (!sc) {
		moat_call_error(call, "out of memory");
		return MOAT_FILTER_ERROR;
	}
	sc->call = call;
	sc->pr = pr;
	sc->pool = pool;
	/* The session's state first: a check not linked to its session
	 * could outlive it. */
	void **slot = moat_call_session_state(call);
	if (slot && !*slot)
		*slot = calloc(1, sizeof(struct spf_session));
	if (slot && !*slot) {
		free(sc);
		moat_call_error(call, "out of memory");
		return MOAT_FILTER_ERROR;
	}
	sc->job = spf_pool_submit(pool, &pr.check, on_result, sc);
	if (!sc->job) {
		free(sc);
		moat_call_error(call, "out of memory");
		return MOAT_FILTER_ERROR;
	}
	if (slot) {
		sc->sess = *slot;
		sc->next = sc->sess->calls;
		sc->sess->calls = sc;
	}
	return MOAT_FILTER_WAIT;
}

/* The session ended: checks still running end now (their calls were
 * abandoned by the pipeline). */
static void spf_session_end(void *state)
{
	struct spf_session *sess = state;
	while (sess->calls) {
		struct spf_call *sc = sess->calls;
		sess->calls = sc->next;
		sc->sess = NULL;
		spf_pool_cancel(sc->job);
		moat_call_done(sc->call, MOAT_FILTER_CONTINUE);
		free(sc);
	}
	free(sess);
}

/* ---- configuration ---- */

static const char *const temperror_choices[] = {"score", "tempfail", NULL};

#define S(field) offsetof(struct spf_conf, field)
static const struct moat_opt spf_opts[] = {
	{"reject_fail", MOAT_OPT_BOOL, S(reject_fail), 0, NULL, 0, 0, 0, NULL,
	 "Reject MAIL FROM when SPF fails, with \"550 5.7.23\" and the domain's explanation "
	 "(printable ASCII, at most 200 characters). Default no: a fail only scores "
	 "(score_fail), so a later DMARC filter can still pass forwarded mail that DKIM vouches "
	 "for."},
	{"temperror", MOAT_OPT_STR, S(temperror), 0, "score", 0, 0, 0, temperror_choices,
	 "On an SPF temperror (DNS failure, time budget spent, a worker crashed): \"score\" "
	 "(score_temperror only) or \"tempfail\" (451 4.7.24 at MAIL)."},
	{"received_spf", MOAT_OPT_BOOL, S(received_spf), 1, NULL, 0, 0, 0, NULL,
	 "Add a Received-SPF: header (RFC 7208 9.1) with the result, client-ip, envelope-from, "
	 "helo, receiver, identity and the mechanism that matched."},
	{"workers", MOAT_OPT_INT, S(workers), 2, NULL, 1, SPF_MAX_WORKERS, 0, NULL,
	 "SPF worker processes (libspf2 runs in them, one check at a time each, so that a "
	 "crash or a slow lookup cannot hold up the daemon); checks beyond them wait."},
	{"skip_networks", MOAT_OPT_STR_LIST, S(skip_networks), 0, "{}", 0, 0, 0, NULL,
	 "Client networks not checked (internal relays), e.g. {\"10.0.0.0/8\", "
	 "\"2001:db8::/32\"}. Authenticated sessions are never checked."},
	{"check_helo", MOAT_OPT_BOOL, S(check_helo), 1, NULL, 0, 0, 0, NULL,
	 "Also check the HELO identity (RFC 7208 2.3) for a non-null sender: symbols "
	 "SPF_HELO_<RESULT> with score 0, for the log. For the null sender the HELO identity is "
	 "always the one checked (as postmaster@HELO) and scored as the sender's."},
	{"score_pass", MOAT_OPT_FLOAT, S(score[SPF_RES_PASS]), 0, NULL, -1000, 1000, -1, NULL,
	 "Score of SPF_PASS."},
	{"score_fail", MOAT_OPT_FLOAT, S(score[SPF_RES_FAIL]), 0, NULL, -1000, 1000, 8, NULL,
	 "Score of SPF_FAIL."},
	{"score_softfail", MOAT_OPT_FLOAT, S(score[SPF_RES_SOFTFAIL]), 0, NULL, -1000, 1000, 3,
	 NULL, "Score of SPF_SOFTFAIL."},
	{"score_neutral", MOAT_OPT_FLOAT, S(score[SPF_RES_NEUTRAL]), 0, NULL, -1000, 1000, 0, NULL,
	 "Score of SPF_NEUTRAL."},
	{"score_none", MOAT_OPT_FLOAT, S(score[SPF_RES_NONE]), 0, NULL, -1000, 1000, 0, NULL,
	 "Score of SPF_NONE (no SPF record, or no valid domain to check)."},
	{"score_temperror", MOAT_OPT_FLOAT, S(score[SPF_RES_TEMPERROR]), 0, NULL, -1000, 1000, 0,
	 NULL, "Score of SPF_TEMPERROR."},
	{"score_permerror", MOAT_OPT_FLOAT, S(score[SPF_RES_PERMERROR]), 0, NULL, -1000, 1000, 2,
	 NULL, "Score of SPF_PERMERROR (a broken record, or more than 10 DNS-querying terms or 2 "
	 "void lookups, RFC 7208 4.6.4)."},
};

static int spf_prepare_conf(void *data, struct moat_section_ctx *ctx)
{
	struct spf_conf *c = data;
	char err[300];
	int bad = 0;

	c->temperror_tempfail = c->temperror && strcmp(c->temperror, "tempfail") == 0;
	c->nnets = 0;
	if (c->skip_networks.n > SPF_MAX_NETS) {
		moat_section_error(ctx, "skip_networks", "at most %d entries, got %zu",
				   SPF_MAX_NETS, c->skip_networks.n);
		return -1;
	}
	for (size_t i = 0; i < c->skip_networks.n; i++) {
		if (moat_net_parse(c->skip_networks.v[i], &c->nets[c->nnets], err, sizeof(err)) < 0) {
			moat_section_error(ctx, "skip_networks", "%s", err);
			bad++;
			continue;
		}
		c->nnets++;
	}
	if (c->common.timeout * 1000 <= SPF_BUDGET_MS) {
		moat_section_error(ctx, "timeout", "%ld s: expected more than the %d s an SPF check "
				   "may take (RFC 7208 4.6.4)", c->common.timeout,
				   SPF_BUDGET_MS / 1000);
		bad++;
	}
	return bad ? -1 : 0;
}

const struct moat_filter moat_filter_spf = {
	.name = "spf",
	.doc = "SPF (RFC 7208): the MAIL FROM identity (the HELO identity for the null sender) "
	       "checked at MAIL by libspf2 in worker processes; results scored, in "
	       "Authentication-Results and Received-SPF, optionally rejected (fail) or "
	       "tempfailed (temperror).",
	.opts = spf_opts,
	.nopts = NELEM(spf_opts),
	.conf_size = sizeof(struct spf_conf),
	.prepare = spf_prepare_conf,
	.stage = {
		[MOAT_STAGE_MAIL] = spf_mail,
	},
	.session_end = spf_session_end,
	.default_timeout = 25,
};
