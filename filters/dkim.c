/*
 * dkim.c - the DKIM filter: per message, the choice between signing and
 * verifying; the message streamed into the verifier and the signing body
 * hash (data hook); the keys fetched at the end of the message and the
 * results scored (EOM stage); the signatures added last (seal hook).
 *
 * Owns: its section's derived data (keys loaded from their files, the
 * signing table, parsed networks), and per session one struct dkim_msg
 * (the message's verifier, body hash and key lookups in flight), freed by
 * session_end.
 */
#include "dkim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/rand.h>
#include <time.h>

#include "ascii.h"
#include "dkim_keyfile.h"
#include "log.h"
#include "nelem.h"
#include "privilege.h"
#include "resolver.h"

#define MAX_HEADER_BLOCK (1024 * 1024)	/* as the front ends refuse larger */

struct dkim_msg;

struct key_query {
	struct dkim_msg *m;
	size_t index;			/* the signature */
	struct moat_dns_query *q;	/* NULL once answered */
};

struct dkim_msg {
	int started;
	int sign, verify;
	/* the header block until its end is seen */
	char *hbuf;
	size_t hlen, hcap;
	int in_body, too_big, oom;
	struct dkim_verifier *ver;
	struct dkim_body_hash *sbh;	/* signing: the body in bcanon */
	unsigned char bh[DKIM_MAX_DIGEST];
	int bhlen;			/* 0 until final */
	/* key lookups at EOM */
	struct moat_filter_call *call;
	struct key_query *qs;
	size_t nqs, pending;
};

/* ---- per message state ---------------------------------------------------- */

static void msg_reset(struct dkim_msg *m)
{
	for (size_t i = 0; i < m->nqs; i++)
		if (m->qs[i].q)
			moat_dns_cancel(m->qs[i].q);
	free(m->qs);
	if (m->call)
		moat_call_done(m->call, MOAT_FILTER_CONTINUE);	/* nobody waits: freed */
	free(m->hbuf);
	dkim_verifier_free(m->ver);
	dkim_body_hash_free(m->sbh);
	memset(m, 0, sizeof(*m));
}

static void dkim_session_end(void *state)
{
	struct dkim_msg *m = state;
	msg_reset(m);
	free(m);
}

/* Why the message is one to sign, or NULL: it is to be verified. */
static const char *sign_wanted(const struct dkim_conf *c, const struct moat_msgctx *ctx)
{
	if (c->nkeys == 0 || c->table.n == 0)
		return NULL;
	if (ctx->role == MOAT_ROLE_SUBMISSION)
		return "submission listener";
	if (c->sign_authenticated && ctx->auth_user)
		return "authenticated client";
	return moat_net_match(c->nets, c->nnets, ctx->client_addr) ? "client in sign_networks"
								    : NULL;
}

/* The header block is complete (block: the fields, without the blank
 * line): the verifier reads it. */
static void headers_done(const struct dkim_conf *c, struct dkim_msg *m, const char *block,
			 size_t len)
{
	m->in_body = 1;
	if (!m->verify)
		return;
	struct dkim_verify_opts o;
	dkim_verify_opts_default(&o);
	o.max_signatures = (int)c->max_signatures;
	o.l_policy = c->l_policy;
	m->ver = dkim_verifier_new(&o);
	if (!m->ver || dkim_verifier_headers(m->ver, block, len) < 0)
		m->oom = 1;
}

static void body(struct dkim_msg *m, const char *buf, size_t len)
{
	if (m->ver)
		dkim_verifier_body(m->ver, buf, len);
	if (m->sbh)
		dkim_body_hash_update(m->sbh, buf, len);
}

/* Finds the blank line ending the header block in what was collected. */
static void header_feed(const struct dkim_conf *c, struct dkim_msg *m, const char *buf,
			size_t len)
{
	size_t old = m->hlen;
	if (m->hlen + len > MAX_HEADER_BLOCK + 4) {
		m->too_big = 1;		/* the front end refuses the message */
		return;
	}
	if (m->hlen + len + 1 > m->hcap) {
		size_t cap = m->hcap ? m->hcap : 8192;
		while (cap < m->hlen + len + 1)
			cap *= 2;
		char *n = realloc(m->hbuf, cap);
		if (!n) {
			m->oom = 1;
			return;
		}
		m->hbuf = n;
		m->hcap = cap;
	}
	memcpy(m->hbuf + m->hlen, buf, len);
	m->hlen += len;
	size_t end = 0, body_at = 0;
	int found = 0;
	if (m->hlen >= 2 && m->hbuf[0] == '\r' && m->hbuf[1] == '\n') {
		found = 1;	/* no header fields at all */
		body_at = 2;
	}
	for (size_t i = old >= 3 ? old - 3 : 0; !found && i + 4 <= m->hlen; i++)
		if (memcmp(m->hbuf + i, "\r\n\r\n", 4) == 0) {
			found = 1;
			end = i + 2;
			body_at = i + 4;
		}
	if (!found)
		return;
	headers_done(c, m, m->hbuf, end);
	if (body_at < m->hlen)
		body(m, m->hbuf + body_at, m->hlen - body_at);
	free(m->hbuf);
	m->hbuf = NULL;
	m->hlen = m->hcap = 0;
}

static void dkim_data(const void *conf, const struct moat_msgctx *ctx, void **state,
		      const char *buf, size_t len)
{
	const struct dkim_conf *c = conf;
	struct dkim_msg *m = *state;

	if (!m) {
		m = *state = calloc(1, sizeof(*m));
		if (!m)
			return;
	}
	if (!buf) {
		msg_reset(m);
		m->started = 1;
		m->sign = sign_wanted(c, ctx) != NULL;
		m->verify = c->verify && !m->sign;
		if (m->sign && !(m->sbh = dkim_body_hash_new(c->bcanon, DKIM_HASH_SHA256, -1)))
			m->oom = 1;
		return;
	}
	if (!m->started || m->oom || m->too_big)
		return;
	if (m->in_body)
		body(m, buf, len);
	else
		header_feed(c, m, buf, len);
}

/* At the end of the message: a header block that never ended is all
 * header (the message has no body). */
static void message_end(const struct dkim_conf *c, struct dkim_msg *m)
{
	if (m->started && !m->in_body && !m->oom && !m->too_big) {
		headers_done(c, m, m->hbuf ? m->hbuf : "", m->hlen);
		free(m->hbuf);
		m->hbuf = NULL;
		m->hlen = m->hcap = 0;
	}
}

/* ---- verification results -------------------------------------------------- */

struct tally {
	size_t n;
	char domains[300];
};

static void tally_add(struct tally *t, const char *d)
{
	size_t used = strlen(t->domains);
	t->n++;
	if (used < sizeof(t->domains) - 1)
		snprintf(t->domains + used, sizeof(t->domains) - used, "%s%s", used ? ", " : "",
			 d ? d : "?");
}

static void results(struct moat_filter_call *call, const struct dkim_conf *c,
		    struct dkim_msg *m)
{
	size_t n = dkim_verifier_count(m->ver);
	struct tally by[DKIM_NONE + 1], weak = {0, ""}, trunc = {0, ""}, testing = {0, ""};
	memset(by, 0, sizeof(by));

	dkim_verifier_finish(m->ver);
	if (n == 0) {
		moat_call_symbol(call, "DKIM_NONE", c->score_none, "no DKIM-Signature");
		moat_call_auth_result(call, "dkim", "none", "", NULL);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		const struct dkim_result *r = dkim_verifier_result(m->ver, i);
		char props[400], comment[200];
		snprintf(props, sizeof(props), "header.d=%s header.s=%s%s%s",
			 r->domain ? r->domain : "unknown", r->selector ? r->selector : "unknown",
			 r->b_prefix ? " header.b=" : "", r->b_prefix ? r->b_prefix : "");
		if (r->status == DKIM_PASS)
			snprintf(comment, sizeof(comment), "%s, %d-bit key%s",
				 r->algorithm ? r->algorithm : "?", r->key_bits,
				 r->body_truncated ? ", body only partly signed (l=)" : "");
		else
			snprintf(comment, sizeof(comment), "%s", r->reason ? r->reason : "");
		moat_call_auth_result(call, "dkim", dkim_status_name(r->status), props,
				      comment[0] ? comment : NULL);
		moat_call_trace(call, "signature %zu: %s: %s%s%s%s", i + 1, props,
				dkim_status_name(r->status), comment[0] ? " (" : "", comment,
				comment[0] ? ")" : "");
		if (r->testing && r->status != DKIM_PASS) {
			tally_add(&testing, r->domain);	/* RFC 6376 3.6.1: t=y, not scored */
			continue;
		}
		if (r->status <= DKIM_NONE)
			tally_add(&by[r->status], r->domain);
		if (r->status == DKIM_PASS && r->body_truncated)
			tally_add(&trunc, r->domain);
		if (r->status == DKIM_PASS && r->algorithm && strncmp(r->algorithm, "rsa", 3) == 0 &&
		    r->key_bits > 0 && r->key_bits < c->weak_key_bits)
			tally_add(&weak, r->domain);
	}
	static const struct {
		enum dkim_status st;
		const char *sym;
		size_t off;
	} map[] = {
		{DKIM_PASS, "DKIM_PASS", offsetof(struct dkim_conf, score_pass)},
		{DKIM_FAIL, "DKIM_FAIL", offsetof(struct dkim_conf, score_fail)},
		{DKIM_NEUTRAL, "DKIM_NEUTRAL", offsetof(struct dkim_conf, score_neutral)},
		{DKIM_POLICY, "DKIM_POLICY", offsetof(struct dkim_conf, score_policy)},
		{DKIM_TEMPERROR, "DKIM_TEMPERROR", offsetof(struct dkim_conf, score_temperror)},
		{DKIM_PERMERROR, "DKIM_PERMERROR", offsetof(struct dkim_conf, score_permerror)},
	};
	for (size_t k = 0; k < NELEM(map); k++) {
		const struct tally *t = &by[map[k].st];
		if (t->n)
			moat_call_symbol(call, map[k].sym,
					 *(const double *)(const void *)((const char *)c + map[k].off),
					 "%s %s", dkim_status_name(map[k].st), t->domains);
	}
	if (trunc.n)
		moat_call_symbol(call, "DKIM_BODY_LENGTH", c->score_body_length,
				 "content past l= not signed: %s", trunc.domains);
	if (weak.n)
		moat_call_symbol(call, "DKIM_WEAK_KEY", c->score_weak_key,
				 "RSA key under %ld bits: %s", c->weak_key_bits, weak.domains);
	if (testing.n)
		moat_call_symbol(call, "DKIM_TESTING", 0, "testing keys (t=y), not scored: %s",
				 testing.domains);
}

static void key_answer(void *arg, const struct moat_dns_answer *a)
{
	struct key_query *kq = arg;
	struct dkim_msg *m = kq->m;
	enum dkim_key_status st = DKIM_KEY_OK;

	kq->q = NULL;
	moat_call_trace(m->call, "key of signature %zu: %s TXT -> %s (%zu record%s, %.0f ms)",
			kq->index + 1, a->name, moat_dns_status_name(a->status), a->n,
			a->n == 1 ? "" : "s", a->ms);
	if (a->status == MOAT_DNS_NXDOMAIN || a->status == MOAT_DNS_NODATA)
		st = DKIM_KEY_NONE;
	else if (a->status != MOAT_DNS_OK)
		st = DKIM_KEY_TEMP;
	dkim_verifier_key(m->ver, kq->index, st, st == DKIM_KEY_OK ? a->txt : NULL,
			  st == DKIM_KEY_OK ? a->n : 0);
	if (--m->pending > 0)
		return;
	struct moat_filter_call *call = m->call;
	m->call = NULL;
	results(call, moat_call_conf(call), m);
	moat_call_done(call, MOAT_FILTER_CONTINUE);
}

static enum moat_filter_status dkim_eom(struct moat_filter_call *call)
{
	const struct dkim_conf *c = moat_call_conf(call);
	const struct moat_msgctx *ctx = moat_call_ctx(call);
	void **slot = moat_call_session_state(call);
	struct dkim_msg *m = slot ? *slot : NULL;

	if (!m || !m->started) {
		moat_call_error(call, "the message was not passed to the filter as it streamed");
		return MOAT_FILTER_ERROR;
	}
	message_end(c, m);
	if (m->oom) {
		moat_call_error(call, "out of memory");
		return MOAT_FILTER_ERROR;
	}
	moat_call_trace(call, "%s%s", m->sign ? "signing candidate: " : m->verify ? "verifying "
			: "neither signed nor verified (verify = no)", m->sign ? sign_wanted(c, ctx)
			: m->ver ? "the DKIM-Signature fields" : "");
	if (!m->verify || !m->ver)
		return MOAT_FILTER_CONTINUE;
	size_t n = dkim_verifier_count(m->ver);
	m->qs = calloc(n ? n : 1, sizeof(*m->qs));
	if (!m->qs) {
		moat_call_error(call, "out of memory");
		return MOAT_FILTER_ERROR;
	}
	m->nqs = n;
	for (size_t i = 0; i < n; i++) {
		const char *name = dkim_verifier_key_name(m->ver, i);
		m->qs[i].m = m;
		m->qs[i].index = i;
		if (name)
			m->pending++;
	}
	if (m->pending == 0) {
		results(call, c, m);
		return MOAT_FILTER_CONTINUE;
	}
	m->call = call;
	for (size_t i = 0; i < n; i++) {
		const char *name = dkim_verifier_key_name(m->ver, i);
		if (!name)
			continue;
		m->qs[i].q = moat_resolver_query(ctx->resolver, name, MOAT_DNS_TXT, 0, key_answer,
						 &m->qs[i]);
		if (!m->qs[i].q) {
			/* out of memory: no key for it (temperror), answered now */
			dkim_verifier_key(m->ver, i, DKIM_KEY_TEMP, NULL, 0);
			if (--m->pending == 0) {
				m->call = NULL;
				results(call, c, m);
				return MOAT_FILTER_CONTINUE;
			}
		}
	}
	return MOAT_FILTER_WAIT;
}

/* ---- signing ------------------------------------------------------------- */

/* 1 if the header block has a field whose "NAME:" (upper case) is name. */
static int header_present(const char *head, size_t hlen, const char *name)
{
	size_t n = strlen(name);
	for (size_t i = 0; i < hlen;) {
		if (hlen - i >= n && word_eq(head + i, n, name))
			return 1;
		const char *nl = memchr(head + i, '\n', hlen - i);
		if (!nl)
			break;
		i = (size_t)(nl - head) + 1;
	}
	return 0;
}

static int dkim_seal(const void *conf, const struct moat_msgctx *ctx, void **state,
		     const char *head, size_t hlen, struct moat_verdict *v, char *err,
		     size_t errlen)
{
	const struct dkim_conf *c = conf;
	struct dkim_msg *m = *state;
	char sender[512];

	if (!m || !m->started || !m->sign)
		return 0;
	dkim_signtable_sender(head, hlen, ctx->mail_from, sender, sizeof(sender));
	const struct dkim_signtable_entry *e = dkim_signtable_find(&c->table, sender);
	if (!e) {	/* to be signed, but not ours to sign: say why once */
		moat_log(LOG_INFO, "session=%s: dkim: not signed: no signing_table entry matches "
			 "%s (signing candidate: %s)", ctx->session_id ? ctx->session_id : "-",
			 sender[0] ? sender : "<>", sign_wanted(c, ctx));
		moat_ctx_trace(ctx, moat_filter_dkim.name, MOAT_STAGE_EOM, "not signed: no "
			       "signing_table entry matches %s", sender[0] ? sender : "<>");
		return 0;
	}
	if (m->oom) {
		snprintf(err, errlen, "out of memory; not signed");
		return -1;
	}
	/* Date: and Message-ID: the upstream would add after signing, which
	 * breaks an oversigned signature: added here first (RFC 6409 8.3) */
	char *aug = NULL;
	if (c->add_missing_headers) {
		char extra[512];
		size_t xlen = 0;
		extra[0] = '\0';
		if (!header_present(head, hlen, "DATE:")) {
			char date[80];
			time_t now = time(NULL);
			struct tm tm;
			gmtime_r(&now, &tm);
			strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
			if (moat_verdict_edit(v, moat_filter_dkim.name, MOAT_HEADER_ADD, "Date", date,
					      0) < 0)
				goto oom;
			xlen += (size_t)snprintf(extra + xlen, sizeof(extra) - xlen, "Date: %s\r\n",
						 date);
		}
		if (!header_present(head, hlen, "MESSAGE-ID:")) {
			char id[300];
			unsigned char rnd[8];
			if (RAND_bytes(rnd, sizeof(rnd)) != 1)
				memset(rnd, 0, sizeof(rnd));
			snprintf(id, sizeof(id), "<%lld.%02x%02x%02x%02x%02x%02x%02x%02x@%s>",
				 (long long)time(NULL), rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5],
				 rnd[6], rnd[7], c->keys[e->keys[0]]->domain);
			if (moat_verdict_edit(v, moat_filter_dkim.name, MOAT_HEADER_ADD, "Message-ID",
					      id, 0) < 0)
				goto oom;
			xlen += (size_t)snprintf(extra + xlen, sizeof(extra) - xlen,
						 "Message-ID: %s\r\n", id);
		}
		if (xlen) {
			aug = malloc(xlen + hlen);
			if (!aug)
				goto oom;
			memcpy(aug, extra, xlen);
			memcpy(aug + xlen, head, hlen);
			head = aug;
			hlen += xlen;
		}
	}
	if (!m->bhlen) {
		unsigned long long blen;
		m->bhlen = dkim_body_hash_final(m->sbh, m->bh, &blen);
		if (m->bhlen <= 0) {
			m->bhlen = 0;
			snprintf(err, errlen, "body hash failed; not signed");
			free(aug);
			return -1;
		}
	}
	struct dkim_sign_params p = {
		.hcanon = c->hcanon,
		.bcanon = c->bcanon,
		.headers = c->headers,
		.nheaders = c->nheaders,
		.oversign = c->oversign,
		.noversign = c->noversign,
		.expire = c->signature_ttl,
	};
	for (size_t k = 0; k < e->nkeys; k++) {
		const struct dkim_sign_key *key = c->keys[e->keys[k]];
		char *value = NULL, why[256];
		if (dkim_sign(key, &p, head, hlen, m->bh, (size_t)m->bhlen, &value, why,
			      sizeof(why)) < 0) {
			snprintf(err, errlen, "not signed: signing with d=%s s=%s failed: %s", key->domain,
				 key->selector, why);
			free(aug);
			return -1;
		}
		/* front ends write "Name: " + value: the signed field is
		 * "DKIM-Signature:" + value, value starting with its space */
		int rc = moat_verdict_edit(v, moat_filter_dkim.name, MOAT_HEADER_ADD,
					   "DKIM-Signature", value[0] == ' ' ? value + 1 : value,
					   0);
		free(value);
		if (rc < 0)
			goto oom;
		moat_ctx_trace(ctx, moat_filter_dkim.name, MOAT_STAGE_EOM, "signed for %s with d=%s "
			       "s=%s (%s)", sender[0] ? sender : "<>", key->domain, key->selector,
			       dkim_sign_alg_name(key->alg));
		moat_log(LOG_INFO, "session=%s: signed for %s with d=%s s=%s (%s)",
			 ctx->session_id ? ctx->session_id : "-", sender[0] ? sender : "<>",
			 key->domain, key->selector, dkim_sign_alg_name(key->alg));
	}
	free(aug);
	return 0;
oom:
	free(aug);
	snprintf(err, errlen, "out of memory; not signed");
	return -1;
}

/* ---- configuration --------------------------------------------------------- */

static const char *const body_length_choices[] = {"score", "refuse", NULL};
static const char *const canon_choices[] = {"relaxed/relaxed", "relaxed/simple", "simple/relaxed",
					    "simple/simple", "relaxed", "simple", NULL};

#define K(field) offsetof(struct dkim_key_conf, field)
static const struct moat_opt key_opts[] = {
	{"domain", MOAT_OPT_STR, K(domain), 0, NULL, 0, 0, 0, NULL,
	 "The signing domain (d=) of this key."},
	{"selector", MOAT_OPT_STR, K(selector), 0, NULL, 0, 0, 0, NULL,
	 "The selector (s=): the key is published at SELECTOR._domainkey.DOMAIN."},
	{"file", MOAT_OPT_STR, K(file), 0, NULL, 0, 0, 0, NULL,
	 "The private key file (PEM, RSA of 1024 bits or more or Ed25519, as moat keygen or "
	 "opendkim-genkey write it). It must not be readable by others (mode 0600, or 0640 "
	 "with moat's group); it is read again on every reload."},
};

#define D(field) offsetof(struct dkim_conf, field)
static const struct moat_opt dkim_opts[] = {
	{"verify", MOAT_OPT_BOOL, D(verify), 1, NULL, 0, 0, 0, NULL,
	 "Verify the signatures of mail that is not signed here (mail that is signed is "
	 "outbound and not verified)."},
	{"max_signatures", MOAT_OPT_INT, D(max_signatures), 10, NULL, 1, 50, 0, NULL,
	 "Signatures verified per message, from the top; more are reported as policy, not "
	 "checked."},
	{"body_length", MOAT_OPT_STR, D(body_length), 0, "score", 0, 0, 0, body_length_choices,
	 "Signatures with l= (a signed body length): \"score\" (verify the signed part; when "
	 "content follows it, the DKIM_BODY_LENGTH symbol scores score_body_length) or "
	 "\"refuse\" (such signatures count as policy, never pass)."},
	{"score_pass", MOAT_OPT_FLOAT, D(score_pass), 0, NULL, -1000, 1000, -0.5, NULL,
	 "Score of DKIM_PASS: at least one signature verified."},
	{"score_fail", MOAT_OPT_FLOAT, D(score_fail), 0, NULL, -1000, 1000, 3, NULL,
	 "Score of DKIM_FAIL: a signature did not verify (body or header changed)."},
	{"score_neutral", MOAT_OPT_FLOAT, D(score_neutral), 0, NULL, -1000, 1000, 0, NULL,
	 "Score of DKIM_NEUTRAL."},
	{"score_policy", MOAT_OPT_FLOAT, D(score_policy), 0, NULL, -1000, 1000, 0.5, NULL,
	 "Score of DKIM_POLICY: signatures refused by these options (l= with body_length "
	 "\"refuse\", over max_signatures)."},
	{"score_temperror", MOAT_OPT_FLOAT, D(score_temperror), 0, NULL, -1000, 1000, 0, NULL,
	 "Score of DKIM_TEMPERROR: the key could not be fetched now (DNS failure); never a "
	 "fail."},
	{"score_permerror", MOAT_OPT_FLOAT, D(score_permerror), 0, NULL, -1000, 1000, 1, NULL,
	 "Score of DKIM_PERMERROR: a broken signature, no key, a revoked key, rsa-sha1 or an "
	 "RSA key under 1024 bits (RFC 8301)."},
	{"score_none", MOAT_OPT_FLOAT, D(score_none), 0, NULL, -1000, 1000, 0, NULL,
	 "Score of DKIM_NONE: the message has no signature."},
	{"score_body_length", MOAT_OPT_FLOAT, D(score_body_length), 0, NULL, -1000, 1000, 1,
	 NULL, "Score of DKIM_BODY_LENGTH: a passing signature with l= and content after it."},
	{"weak_key_bits", MOAT_OPT_INT, D(weak_key_bits), 2048, NULL, 1024, 16384, 0, NULL,
	 "RSA keys under this size (and at least 1024 bits) pass but add DKIM_WEAK_KEY."},
	{"score_weak_key", MOAT_OPT_FLOAT, D(score_weak_key), 0, NULL, -1000, 1000, 0.5, NULL,
	 "Score of DKIM_WEAK_KEY."},
	{"sign_authenticated", MOAT_OPT_BOOL, D(sign_authenticated), 1, NULL, 0, 0, 0, NULL,
	 "Sign mail of authenticated sessions (SMTP AUTH; in milter mode the MTA's "
	 "{auth_authen}). Mail from submission listeners is always signed."},
	{"sign_networks", MOAT_OPT_STR_LIST, D(sign_networks), 0, "{}", 0, 0, 0, NULL,
	 "Client networks whose mail is signed (internal hosts), e.g. {\"10.0.0.0/8\", "
	 "\"2001:db8::/32\"}."},
	{"signing_table", MOAT_OPT_STR_LIST, D(signing_table), 0, "{}", 0, 0, 0, NULL,
	 "Which keys sign mail to be signed, by its From: address (the envelope sender unless "
	 "the message has one From: with one address in a valid domain): entries \"PATTERN "
	 "KEY [KEY...]\" with PATTERN an address (alice@example.org), a domain (example.org), "
	 "its subdomains (*.example.org) or * (checked in that order), and KEY the names of "
	 "key subsections; several keys give several signatures (e.g. RSA and Ed25519). A "
	 "sender no entry matches is not signed."},
	{"sign_headers", MOAT_OPT_STR_LIST, D(sign_headers), 0, "{}", 0, 0, 0, NULL,
	 "Header fields signed (each occurrence present). Empty: From, Reply-To, Subject, "
	 "Date, To, Cc, Resent-*, In-Reply-To, References, List-*, Message-ID, MIME-Version, "
	 "Content-Type, Content-Transfer-Encoding, Content-Disposition."},
	{"oversign_headers", MOAT_OPT_STR_LIST, D(oversign_headers), 0, "{}", 0, 0, 0, NULL,
	 "Header fields signed once more than present, so that none can be added without "
	 "breaking the signature. Empty: From, To, Cc, Subject, Date, Reply-To, Message-ID, "
	 "MIME-Version, Content-Type, Content-Transfer-Encoding."},
	{"canonicalization", MOAT_OPT_STR, D(canonicalization), 0, "relaxed/relaxed", 0, 0, 0,
	 canon_choices, "Canonicalization of signatures made here, header/body (c=)."},
	{"add_missing_headers", MOAT_OPT_BOOL, D(add_missing_headers), 1, NULL, 0, 0, 0, NULL,
	 "Before signing a message that has no Date: or Message-ID:, add them (RFC 6409 8.3): "
	 "an MTA after moat would add them and break the signature."},
	{"signature_ttl", MOAT_OPT_INT, D(signature_ttl), 0, NULL, 0, 31536000, 0, NULL,
	 "Seconds a signature made here stays valid (x=); 0: no expiry."},
};

static const struct moat_subsection_def key_sub = {
	.name = "key",
	.opts = key_opts,
	.nopts = NELEM(key_opts),
	.size = sizeof(struct dkim_key_conf),
	.title_offset = offsetof(struct dkim_key_conf, name),
	.items_offset = offsetof(struct dkim_conf, items),
};

static void dkim_release(void *data)
{
	struct dkim_conf *c = data;
	for (size_t i = 0; i < c->nkeys; i++)
		dkim_sign_key_free(c->keys[i]);
	c->nkeys = 0;
	dkim_signtable_free(&c->table);
	free(c->headers);
	free(c->oversign);
	c->headers = c->oversign = NULL;
}

static const char **list_or_default(const struct moat_str_list *l, const char *const *def,
				    size_t ndef, size_t *n)
{
	const char *const *src = l->n ? (const char *const *)l->v : def;
	*n = l->n ? l->n : ndef;
	const char **out = calloc(*n ? *n : 1, sizeof(*out));
	for (size_t i = 0; out && i < *n; i++)
		out[i] = src[i];
	return out;
}

static int dkim_prepare(void *data, struct moat_section_ctx *ctx)
{
	struct dkim_conf *c = data;
	const struct dkim_key_conf *items = c->items.v;
	const struct moat_config *run = moat_section_config(ctx);
	const char *names[DKIM_MAX_KEYS];
	char err[600];
	int bad = 0;

	c->l_policy = c->body_length && strcmp(c->body_length, "refuse") == 0 ? DKIM_L_REFUSE
									      : DKIM_L_ACCEPT;
	const char *cn = c->canonicalization ? c->canonicalization : "relaxed/relaxed";
	const char *slash = strchr(cn, '/');
	c->hcanon = strncmp(cn, "simple", 6) == 0 ? DKIM_CANON_SIMPLE : DKIM_CANON_RELAXED;
	c->bcanon = slash ? (strcmp(slash + 1, "simple") == 0 ? DKIM_CANON_SIMPLE
							       : DKIM_CANON_RELAXED)
			  : DKIM_CANON_SIMPLE;	/* RFC 6376 3.5: "relaxed" is relaxed/simple */
	if (c->sign_networks.n > DKIM_MAX_NETS) {
		moat_section_error(ctx, "sign_networks", "at most %d entries, got %zu",
				   DKIM_MAX_NETS, c->sign_networks.n);
		return -1;
	}
	c->nnets = 0;
	for (size_t i = 0; i < c->sign_networks.n; i++) {
		if (moat_net_parse(c->sign_networks.v[i], &c->nets[c->nnets], err, sizeof(err)) < 0) {
			moat_section_error(ctx, "sign_networks", "%s", err);
			bad++;
		} else {
			c->nnets++;
		}
	}
	if (c->items.n > DKIM_MAX_KEYS) {
		moat_section_error(ctx, "", "at most %d keys, got %zu", DKIM_MAX_KEYS, c->items.n);
		return -1;
	}
	c->nkeys = 0;
	for (size_t i = 0; i < c->items.n; i++) {
		const struct dkim_key_conf *kc = &items[i];
		int kbad = 0;
		if (!kc->domain || !*kc->domain) {
			moat_section_item_error(ctx, kc->name, "domain", "missing; expected the "
						"signing domain, e.g. domain = \"example.org\"");
			kbad++;
		}
		if (!kc->selector || !*kc->selector) {
			moat_section_item_error(ctx, kc->name, "selector", "missing; expected the "
						"selector, e.g. selector = \"2026a\"");
			kbad++;
		}
		if (!kc->file || !*kc->file) {
			moat_section_item_error(ctx, kc->name, "file", "missing; expected the private "
						"key file, e.g. file = \"/etc/moat/keys/2026a.private\"");
			kbad++;
		}
		for (size_t j = 0; j < i; j++)
			if (strcmp(items[j].name, kc->name) == 0) {
				moat_section_item_error(ctx, kc->name, "", "key %s is declared twice",
							kc->name);
				kbad++;
			}
		if (kbad) {
			bad += kbad;
			continue;
		}
		enum dkim_key_type type;
		int bits;
		EVP_PKEY *pk = dkim_keyfile_load(kc->file, &type, &bits, err, sizeof(err));
		struct dkim_sign_key *k = NULL;
		if (pk)
			k = dkim_sign_key_new(kc->domain, kc->selector, pk, err, sizeof(err));
		if (!k) {
			moat_section_item_error(ctx, kc->name, "file", "%s", err);
			bad++;
			continue;
		}
		/* moatd -t as root: the key is read again after the drop */
		if (moat_privilege_check_read(run->user, run->group, kc->file, err,
					      sizeof(err)) < 0) {
			moat_section_item_error(ctx, kc->name, "file", "%s", err);
			bad++;
		}
		names[c->nkeys] = kc->name;
		c->keys[c->nkeys++] = k;
	}
	if (!bad && dkim_signtable_parse(&c->table, (const char *const *)c->signing_table.v,
					 c->signing_table.n, names, c->nkeys, err,
					 sizeof(err)) < 0) {
		moat_section_error(ctx, "signing_table", "%s", err);
		bad++;
	}
	c->headers = list_or_default(&c->sign_headers, dkim_sign_default_headers,
				     dkim_sign_default_nheaders, &c->nheaders);
	c->oversign = list_or_default(&c->oversign_headers, dkim_sign_default_oversign,
				      dkim_sign_default_noversign, &c->noversign);
	if (!c->headers || !c->oversign) {
		moat_section_error(ctx, "", "out of memory");
		bad++;
	}
	int has_from = 0;
	for (size_t i = 0; c->headers && i < c->nheaders; i++)
		has_from |= strcasecmp(c->headers[i], "From") == 0;
	if (c->headers && !has_from) {
		moat_section_error(ctx, "sign_headers", "must include From (RFC 6376 5.4)");
		bad++;
	}
	return bad ? -1 : 0;
}

const struct moat_filter moat_filter_dkim = {
	.name = "dkim",
	.doc = "DKIM (RFC 6376): verifies every signature of inbound mail (rsa-sha256, "
	       "ed25519-sha256; keys through moat's resolver) into symbols and "
	       "Authentication-Results, and signs outbound mail (submission listeners, "
	       "authenticated sessions, sign_networks) with the keys of `key NAME { }` "
	       "subsections the signing_table gives for its From: address.",
	.opts = dkim_opts,
	.nopts = NELEM(dkim_opts),
	.sub = &key_sub,
	.conf_size = sizeof(struct dkim_conf),
	.prepare = dkim_prepare,
	.release = dkim_release,
	.stage = {
		[MOAT_STAGE_EOM] = dkim_eom,
	},
	.session_end = dkim_session_end,
	.data = dkim_data,
	.seal = dkim_seal,
};

void dkim_register(void)
{
	moat_filter_register(&moat_filter_dkim);
}
