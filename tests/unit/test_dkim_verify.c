/*
 * test_dkim_verify - unit tests for the DKIM verifier
 * (filters/dkim_verify.c): messages signed here with OpenSSL (RSA and
 * Ed25519, both canonicalizations, l=, oversigning), verified with keys
 * supplied in either order, then tampered with; key record problems,
 * times, limits, and the RFC 8463 appendix A message.
 */
#include "dkim_canon.h"
#include "dkim_verify.h"
#include "unit.h"

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static EVP_PKEY *rsa2048, *rsa1024, *ed;
static char rsa2048_txt[1024], rsa1024_txt[512], ed_txt[128];

static void b64(const unsigned char *in, size_t n, char *out)
{
	EVP_EncodeBlock((unsigned char *)out, in, (int)n);
}

static void key_txt(EVP_PKEY *k, char *out, size_t size)
{
	char enc[1024];
	if (EVP_PKEY_get_base_id(k) == EVP_PKEY_ED25519) {
		unsigned char raw[32];
		size_t n = sizeof(raw);
		EVP_PKEY_get_raw_public_key(k, raw, &n);
		b64(raw, n, enc);
		snprintf(out, size, "v=DKIM1; k=ed25519; p=%s", enc);
	} else {
		unsigned char *der = NULL;
		int n = i2d_PUBKEY(k, &der);
		b64(der, (size_t)n, enc);
		OPENSSL_free(der);
		snprintf(out, size, "v=DKIM1; k=rsa; p=%s", enc);
	}
}

static void setup_keys(void)
{
	rsa2048 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	rsa1024 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
	ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	key_txt(rsa2048, rsa2048_txt, sizeof(rsa2048_txt));
	key_txt(rsa1024, rsa1024_txt, sizeof(rsa1024_txt));
	key_txt(ed, ed_txt, sizeof(ed_txt));
}

/* ------------------------------------------------------------ a signer */

struct sign_spec {
	const char *a;		/* "rsa-sha256" (default), "ed25519-sha256" */
	const char *c;		/* "simple/simple" (default) ... */
	const char *d, *s;	/* default example.com, sel */
	const char *h;		/* h= value, default "from:to:subject" */
	const char *extra;	/* more tags, "l=5; t=1; " */
	long long l;		/* l= for the body hash (also put in extra) */
	EVP_PKEY *key;		/* default rsa2048 */
	const char *fold;	/* put before the b= value, e.g. "\r\n\t" */
};

static void append(char **buf, size_t *len, const char *s, size_t n)
{
	*buf = realloc(*buf, *len + n + 1);
	memcpy(*buf + *len, s, n);
	*len += n;
	(*buf)[*len] = '\0';
}

/* The DKIM-Signature field (with CRLF, malloc'd) over the fields given
 * (in h= order, as the signer selected them) and body. */
static char *sign(const struct sign_spec *sp, const char *const *fields, size_t nf, const char *body)
{
	const char *a = sp->a ? sp->a : "rsa-sha256", *c = sp->c ? sp->c : "simple/simple";
	enum dkim_canon hc, bc;
	const char *slash = strchr(c, '/');
	dkim_canon_parse(c, (size_t)(slash - c), &hc);
	dkim_canon_parse(slash + 1, strlen(slash + 1), &bc);
	EVP_PKEY *key = sp->key ? sp->key : rsa2048;

	unsigned char bh[32], sig[512];
	char bh64[64], sig64[1024];
	struct dkim_body_hash *h = dkim_body_hash_new(bc, DKIM_HASH_SHA256, sp->l ? sp->l : -1);
	dkim_body_hash_update(h, body, strlen(body));
	dkim_body_hash_final(h, bh, NULL);
	dkim_body_hash_free(h);
	b64(bh, 32, bh64);

	char value[2048];
	snprintf(value, sizeof(value), "DKIM-Signature: v=1; a=%s; c=%s; d=%s; s=%s;\r\n\t%sh=%s;\r\n\tbh=%s;\r\n\tb=",
		 a, c, sp->d ? sp->d : "example.com", sp->s ? sp->s : "sel", sp->extra ? sp->extra : "",
		 sp->h ? sp->h : "from:to:subject", bh64);

	char *data = NULL;
	size_t dlen = 0, cap = 0;
	for (size_t i = 0; i < nf; i++)
		dkim_canon_header(hc, fields[i], strlen(fields[i]), 1, &data, &dlen, &cap);
	dkim_canon_header(hc, value, strlen(value), 0, &data, &dlen, &cap);

	size_t slen = sizeof(sig);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (EVP_PKEY_get_base_id(key) == EVP_PKEY_ED25519) {
		unsigned char dg[32];
		unsigned int dn;
		EVP_Digest(data, dlen, dg, &dn, EVP_sha256(), NULL);
		EVP_DigestSignInit(ctx, NULL, NULL, NULL, key);
		EVP_DigestSign(ctx, sig, &slen, dg, dn);
	} else {
		EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, key);
		EVP_DigestSign(ctx, sig, &slen, (unsigned char *)data, dlen);
	}
	EVP_MD_CTX_free(ctx);
	free(data);
	b64(sig, slen, sig64);

	char *out = NULL;
	size_t olen = 0;
	append(&out, &olen, value, strlen(value));
	if (sp->fold)
		append(&out, &olen, sp->fold, strlen(sp->fold));
	/* folded every 60 characters, as signers do */
	for (size_t i = 0, n = strlen(sig64); i < n; i += 60) {
		append(&out, &olen, sig64 + i, n - i < 60 ? n - i : 60);
		if (i + 60 < n)
			append(&out, &olen, "\r\n ", 3);
	}
	append(&out, &olen, "\r\n", 2);
	return out;
}

/* ------------------------------------------------------------ a verifier run */

struct keydb {
	const char *name;
	const char *txt[3];	/* NULL-terminated */
	enum dkim_key_status st;
};

static const struct keydb *db;	/* the current key table */

static void give_key(struct dkim_verifier *v, size_t i)
{
	const char *name = dkim_verifier_key_name(v, i);
	if (!name)
		return;
	for (const struct keydb *k = db; k && k->name; k++)
		if (strcmp(k->name, name) == 0) {
			size_t n = 0;
			while (n < 3 && k->txt[n])
				n++;
			dkim_verifier_key(v, i, k->st, k->txt, n);
			return;
		}
	dkim_verifier_key(v, i, DKIM_KEY_NONE, NULL, 0);
}

/* Verifies header block + body. keys_late: keys after finish; chunk: body
 * chunk size (0: at once). Returns the verifier (caller frees). */
static struct dkim_verifier *run(const struct dkim_verify_opts *o, const char *hdrs, const char *body,
				 int keys_late, size_t chunk)
{
	struct dkim_verifier *v = dkim_verifier_new(o);
	CHECK(dkim_verifier_headers(v, hdrs, strlen(hdrs)) == 0);
	if (!keys_late)
		for (size_t i = dkim_verifier_count(v); i-- > 0;)	/* any order */
			give_key(v, i);
	size_t n = strlen(body);
	if (!chunk)
		chunk = n ? n : 1;
	for (size_t i = 0; i < n; i += chunk)
		dkim_verifier_body(v, body + i, n - i < chunk ? n - i : chunk);
	dkim_verifier_finish(v);
	if (keys_late)
		for (size_t i = 0; i < dkim_verifier_count(v); i++)
			give_key(v, i);
	return v;
}

/* status of signature i, with reason checked (NULL: any) */
static int result_is(struct dkim_verifier *v, size_t i, enum dkim_status st, const char *reason)
{
	const struct dkim_result *r = dkim_verifier_result(v, i);
	if (!r) {
		printf("# no result %zu\n", i);
		return 0;
	}
	if (r->status != st || (reason && (!r->reason || strcmp(r->reason, reason) != 0))) {
		printf("# sig %zu: %s (%s)\n", i, dkim_status_name(r->status), r->reason ? r->reason : "-");
		return 0;
	}
	return 1;
}

/* one signature, verified all four ways (keys early/late, chunked or not) */
static int verifies(const char *hdrs, const char *body, enum dkim_status st, const char *reason)
{
	int ok = 1;
	for (int late = 0; late < 2; late++)
		for (size_t chunk = 0; chunk < 8; chunk += 3) {
			struct dkim_verifier *v = run(NULL, hdrs, body, late, chunk);
			ok &= dkim_verifier_count(v) == 1 && result_is(v, 0, st, reason);
			dkim_verifier_free(v);
		}
	return ok;
}

static const struct keydb keys_main[] = {
	{"sel._domainkey.example.com", {rsa2048_txt}, DKIM_KEY_OK},
	{"ed._domainkey.example.com", {ed_txt}, DKIM_KEY_OK},
	{"k1024._domainkey.example.com", {rsa1024_txt}, DKIM_KEY_OK},
	{"temp._domainkey.example.com", {NULL}, DKIM_KEY_TEMP},
	{"revoked._domainkey.example.com", {"v=DKIM1; k=rsa; p="}, DKIM_KEY_OK},
	{"two._domainkey.example.com", {"v=spf1 -all", rsa2048_txt}, DKIM_KEY_OK},
	{NULL, {NULL}, 0},
};

#define FROM "From: Alice <alice@example.com>\r\n"
#define TO "To: bob@example.org\r\n"
#define SUBJ "Subject: hello\r\n"
#define BODY "Hi Bob,\r\n\r\nsee you  at\t8.  \r\n\r\n\r\n"

/* A message: sig field + From, To, Subject (+ extra), a blank line. */
static char *message(const char *sig, const char *above, const char *below)
{
	char *m = NULL;
	size_t n = 0;
	if (above)
		append(&m, &n, above, strlen(above));
	append(&m, &n, sig, strlen(sig));
	append(&m, &n, FROM TO SUBJ, strlen(FROM TO SUBJ));
	if (below)
		append(&m, &n, below, strlen(below));
	append(&m, &n, "\r\n", 2);
	return m;
}

static const char *const fts[] = {FROM, TO, SUBJ};

TEST(pass_rsa_and_ed25519)
{
	static const char *const canons[] = {"simple/simple", "relaxed/relaxed", "relaxed/simple", "simple/relaxed"};
	db = keys_main;
	for (size_t c = 0; c < 4; c++) {
		struct sign_spec sp = {.c = canons[c]};
		char *sig = sign(&sp, fts, 3, BODY);
		char *m = message(sig, NULL, NULL);
		CHECK(verifies(m, BODY, DKIM_PASS, NULL));
		/* the header block without its empty line */
		m[strlen(m) - 2] = '\0';
		CHECK(verifies(m, BODY, DKIM_PASS, NULL));
		free(m);
		free(sig);
		struct sign_spec se = {.c = canons[c], .a = "ed25519-sha256", .s = "ed", .key = ed};
		sig = sign(&se, fts, 3, BODY);
		m = message(sig, NULL, NULL);
		CHECK(verifies(m, BODY, DKIM_PASS, NULL));
		free(m);
		free(sig);
	}
}

TEST(result_fields)
{
	db = keys_main;
	struct sign_spec sp = {.c = "relaxed/relaxed", .extra = "i=joe@mail.example.com; "};
	char *sig = sign(&sp, fts, 3, BODY);
	char *m = message(sig, NULL, NULL);
	struct dkim_verifier *v = run(NULL, m, BODY, 0, 0);
	const struct dkim_result *r = dkim_verifier_result(v, 0);
	CHECK(r && r->status == DKIM_PASS && r->reason == NULL);
	CHECK(r && strcmp(r->domain, "example.com") == 0 && strcmp(r->selector, "sel") == 0);
	CHECK(r && strcmp(r->identity, "joe@mail.example.com") == 0);
	CHECK(r && strcmp(r->algorithm, "rsa-sha256") == 0 && r->key_bits == 2048);
	CHECK(r && r->b_prefix && strlen(r->b_prefix) == 8 && strstr(sig, r->b_prefix));
	CHECK(r && r->l == -1 && !r->body_truncated && !r->testing);
	CHECK(dkim_verifier_result(v, 1) == NULL);
	CHECK(dkim_verifier_key_name(v, 0) == NULL);	/* decided */
	dkim_verifier_free(v);
	free(m);
	free(sig);
	CHECK(strcmp(dkim_status_name(DKIM_PASS), "pass") == 0);
	CHECK(strcmp(dkim_status_name(DKIM_TEMPERROR), "temperror") == 0);
	CHECK(strcmp(dkim_status_name(DKIM_PERMERROR), "permerror") == 0);
	CHECK(strcmp(dkim_status_name(DKIM_POLICY), "policy") == 0);
	CHECK(strcmp(dkim_status_name(DKIM_NONE), "none") == 0);
	CHECK(strcmp(dkim_status_name(DKIM_NEUTRAL), "neutral") == 0);
	CHECK(strcmp(dkim_status_name(DKIM_FAIL), "fail") == 0);
}

TEST(tampering)
{
	db = keys_main;
	struct sign_spec sp = {.c = "relaxed/relaxed"};
	char *sig = sign(&sp, fts, 3, BODY);
	char *m = message(sig, NULL, NULL);
	CHECK(verifies(m, "Hi Bob,\r\n\r\nsee you  at\t9.\r\n", DKIM_FAIL, "body hash did not verify"));
	/* relaxed: whitespace changes and trailing lines do not matter */
	CHECK(verifies(m, "Hi  Bob,\r\n\r\nsee you at 8.\r\n", DKIM_PASS, NULL));
	char *t = strstr(m, "hello");
	t[0] = 'j';
	CHECK(verifies(m, BODY, DKIM_FAIL, "signature did not verify"));
	t[0] = 'h';
	/* relaxed header: case of the name and folding do not matter */
	free(m);
	m = message(sig, NULL, NULL);
	char *s2 = strstr(m, "Subject: hello");
	memcpy(s2, "SUBJECT", 7);
	CHECK(verifies(m, BODY, DKIM_PASS, NULL));
	free(m);
	/* an unsigned field may be added anywhere */
	m = message(sig, "Received: from x\r\n", "X-Mailer: y\r\n");
	CHECK(verifies(m, BODY, DKIM_PASS, NULL));
	free(m);
	/* a second From below the signed one (h= names one From): the bottom one counts */
	m = message(sig, NULL, "From: mallory@example.net\r\n");
	CHECK(verifies(m, BODY, DKIM_FAIL, "signature did not verify"));
	free(m);
	/* the b= value changed */
	m = message(sig, NULL, NULL);
	char *b = strstr(m, "\tb=") + 3;
	b[5] = b[5] == 'A' ? 'B' : 'A';
	CHECK(verifies(m, BODY, DKIM_FAIL, "signature did not verify"));
	free(m);
	free(sig);

	/* simple: any change in whitespace breaks it */
	struct sign_spec ss = {.c = "simple/simple"};
	sig = sign(&ss, fts, 3, BODY);
	m = message(sig, NULL, NULL);
	CHECK(verifies(m, "Hi Bob,\r\n\r\nsee you  at\t8. \r\n", DKIM_FAIL, "body hash did not verify"));
	CHECK(verifies(m, "Hi Bob,\r\n\r\nsee you  at\t8.  \r\n", DKIM_PASS, NULL));
	s2 = strstr(m, "Subject: hello");
	memcpy(s2, "SUBJECT", 7);
	CHECK(verifies(m, BODY, DKIM_FAIL, "signature did not verify"));
	free(m);
	free(sig);
}

TEST(oversigning_and_repeats)
{
	db = keys_main;
	/* h=from:from: the second From is the null string */
	struct sign_spec sp = {.h = "from:to:subject:from", .c = "relaxed/relaxed"};
	char *sig = sign(&sp, fts, 3, BODY);
	char *m = message(sig, NULL, NULL);
	CHECK(verifies(m, BODY, DKIM_PASS, NULL));
	free(m);
	/* a From added above the signed one now fills the null slot: fail */
	m = message(sig, "From: mallory@example.net\r\n", NULL);
	CHECK(verifies(m, BODY, DKIM_FAIL, "signature did not verify"));
	free(m);
	free(sig);

	/* two X-A fields, h=x-a signs the bottom one */
	const char *xa[] = {FROM, "X-A: bottom\r\n"};
	struct sign_spec sx = {.h = "from:x-a"};
	sig = sign(&sx, xa, 2, BODY);
	m = message(sig, NULL, "X-A: top\r\nX-A: bottom\r\n");
	CHECK(verifies(m, BODY, DKIM_PASS, NULL));
	free(m);
	m = message(sig, NULL, "X-A: bottom\r\nX-A: top\r\n");
	CHECK(verifies(m, BODY, DKIM_FAIL, "signature did not verify"));
	free(m);
	free(sig);
	/* h=x-a:x-a signs bottom then the one above it */
	const char *xa2[] = {FROM, "X-A: bottom\r\n", "X-A: top\r\n"};
	struct sign_spec sx2 = {.h = "from:X-A:x-a"};
	sig = sign(&sx2, xa2, 3, BODY);
	m = message(sig, "X-A: top\r\n", "X-A: bottom\r\n");
	CHECK(verifies(m, BODY, DKIM_PASS, NULL));
	free(m);
	free(sig);
	/* a signature never selects its own field (h= names DKIM-Signature) */
	struct sign_spec sd = {.h = "from:dkim-signature"};
	const char *fo[] = {FROM};
	sig = sign(&sd, fo, 1, BODY);
	m = message(sig, NULL, NULL);
	CHECK(verifies(m, BODY, DKIM_PASS, NULL));
	free(m);
	free(sig);
}

TEST(folded_b_value)
{
	db = keys_main;
	/* whitespace around the b= value is not part of what was signed */
	struct sign_spec sp = {.c = "relaxed/relaxed", .fold = "\r\n\t "};
	char *sig = sign(&sp, fts, 3, BODY);
	char *m = message(sig, NULL, NULL);
	CHECK(verifies(m, BODY, DKIM_PASS, NULL));
	free(m);
	free(sig);
	struct sign_spec ss = {.c = "simple/simple", .fold = " "};
	sig = sign(&ss, fts, 3, BODY);
	m = message(sig, NULL, NULL);
	CHECK(verifies(m, BODY, DKIM_PASS, NULL));
	free(m);
	free(sig);
}

TEST(body_length_limit)
{
	db = keys_main;
	struct dkim_verify_opts o;
	struct sign_spec sp = {.c = "relaxed/relaxed", .extra = "l=11; ", .l = 11};
	char *sig = sign(&sp, fts, 3, BODY);
	char *m = message(sig, NULL, NULL);
	CHECK(verifies(m, BODY, DKIM_PASS, NULL));
	CHECK(verifies(m, "Hi Bob,\r\n\r\nanything else\r\n", DKIM_PASS, NULL));
	/* trailing empty lines are not canonical body: 9 octets < l= */
	CHECK(verifies(m, "Hi Bob,\r\n\r\n", DKIM_PERMERROR, "l= exceeds the body length"));
	CHECK(verifies(m, "Hi Bob,\r\n", DKIM_PERMERROR, "l= exceeds the body length"));
	CHECK(verifies(m, "Hi Bob!\r\n\r\nx\r\n", DKIM_FAIL, "body hash did not verify"));
	struct dkim_verifier *v = run(NULL, m, BODY, 0, 0);
	const struct dkim_result *r = dkim_verifier_result(v, 0);
	CHECK(r->status == DKIM_PASS && r->l == 11 && r->body_truncated == 1);
	dkim_verifier_free(v);
	dkim_verify_opts_default(&o);
	o.l_policy = DKIM_L_REFUSE;
	v = run(&o, m, BODY, 0, 0);
	CHECK(result_is(v, 0, DKIM_POLICY, "body extends past l="));
	dkim_verifier_free(v);
	free(m);
	free(sig);
	/* l= covering the whole body: not truncated, passes either way */
	struct sign_spec s9 = {.c = "relaxed/relaxed", .extra = "l=9; ", .l = 9};
	sig = sign(&s9, fts, 3, "Hi Bob,\r\n");
	m = message(sig, NULL, NULL);
	v = run(&o, m, "Hi  Bob,\r\n\r\n\r\n", 0, 0);
	r = dkim_verifier_result(v, 0);
	CHECK(result_is(v, 0, DKIM_PASS, NULL) && r->l == 9 && r->body_truncated == 0);
	dkim_verifier_free(v);
	free(m);
	free(sig);
}

TEST(key_problems)
{
	db = keys_main;
	struct {
		const char *sel;
		EVP_PKEY **key;
		const char *a;
		enum dkim_status st;
		const char *reason;
	} cases[] = {
		{"nokey", &rsa2048, NULL, DKIM_PERMERROR, "no key for signature"},
		{"temp", &rsa2048, NULL, DKIM_TEMPERROR, "key lookup failed"},
		{"revoked", &rsa2048, NULL, DKIM_PERMERROR, "key revoked"},
		{"ed", &rsa2048, NULL, DKIM_PERMERROR, "key type does not match a="},
		{"sel", &ed, "ed25519-sha256", DKIM_PERMERROR, "key type does not match a="},
		{"sel", &rsa1024, NULL, DKIM_FAIL, "signature did not verify"},
		{"k1024", &rsa1024, NULL, DKIM_PASS, NULL},
		{"two", &rsa2048, NULL, DKIM_PASS, NULL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sign_spec sp = {.s = cases[i].sel, .key = *cases[i].key, .a = cases[i].a};
		char *sig = sign(&sp, fts, 3, BODY);
		char *m = message(sig, NULL, NULL);
		CHECK(verifies(m, BODY, cases[i].st, cases[i].reason));
		free(m);
		free(sig);
	}
}

TEST(key_record_flags)
{
	static char k_sha1[1100], k_email[1100], k_strict[1100], k_test[1100], k_short[512];
	const char *p = strstr(rsa2048_txt, "p=");
	snprintf(k_sha1, sizeof(k_sha1), "v=DKIM1; h=sha1; %s", p);
	snprintf(k_email, sizeof(k_email), "v=DKIM1; s=other; %s", p);
	snprintf(k_strict, sizeof(k_strict), "v=DKIM1; t=s; %s", p);
	snprintf(k_test, sizeof(k_test), "v=DKIM1; t=y; %s", p);
	EVP_PKEY *k512 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)512);
	key_txt(k512, k_short, sizeof(k_short));
	const struct keydb keys[] = {
		{"sha1._domainkey.example.com", {k_sha1}, DKIM_KEY_OK},
		{"email._domainkey.example.com", {k_email}, DKIM_KEY_OK},
		{"strict._domainkey.example.com", {k_strict}, DKIM_KEY_OK},
		{"test._domainkey.example.com", {k_test}, DKIM_KEY_OK},
		{"short._domainkey.example.com", {k_short}, DKIM_KEY_OK},
		{NULL, {NULL}, 0},
	};
	db = keys;
	struct {
		const char *sel, *extra;
		EVP_PKEY *key;
		enum dkim_status st;
		const char *reason;
	} cases[] = {
		{"sha1", NULL, rsa2048, DKIM_PERMERROR, "key record h= does not allow sha256"},
		{"email", NULL, rsa2048, DKIM_PERMERROR, "key record s= does not allow email"},
		{"strict", NULL, rsa2048, DKIM_PASS, NULL},
		{"strict", "i=a@example.com; ", rsa2048, DKIM_PASS, NULL},
		{"strict", "i=a@sub.example.com; ", rsa2048, DKIM_FAIL, "key t=s requires i= in d= itself"},
		{"test", NULL, rsa2048, DKIM_PASS, NULL},
		{"short", NULL, k512, DKIM_PERMERROR, "RSA key shorter than 1024 bits"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sign_spec sp = {.s = cases[i].sel, .key = cases[i].key, .extra = cases[i].extra};
		char *sig = sign(&sp, fts, 3, BODY);
		char *m = message(sig, NULL, NULL);
		CHECK(verifies(m, BODY, cases[i].st, cases[i].reason));
		struct dkim_verifier *v = run(NULL, m, BODY, 0, 0);
		const struct dkim_result *r = dkim_verifier_result(v, 0);
		CHECK(r->testing == (strcmp(cases[i].sel, "test") == 0));
		if (strcmp(cases[i].sel, "short") == 0)
			CHECK(r->key_bits == 512);
		dkim_verifier_free(v);
		free(m);
		free(sig);
	}
	EVP_PKEY_free(k512);
}

TEST(signature_problems)
{
	db = keys_main;
	struct dkim_verify_opts o;
	dkim_verify_opts_default(&o);
	o.now = 1700000000;
	char tags[128];

	/* rsa-sha1 is refused without a key lookup */
	const char *sha1 = "DKIM-Signature: v=1; a=rsa-sha1; d=example.com; s=sel; h=from;\r\n"
			   " bh=uoq1oCgLlTqpdDX/iUbLy7J1Wic=; b=dGVzdA==\r\n" FROM "\r\n";
	struct dkim_verifier *v = dkim_verifier_new(&o);
	CHECK(dkim_verifier_headers(v, sha1, strlen(sha1)) == 0);
	CHECK(dkim_verifier_count(v) == 1 && dkim_verifier_key_name(v, 0) == NULL);
	dkim_verifier_finish(v);
	CHECK(result_is(v, 0, DKIM_PERMERROR, "rsa-sha1 is not accepted (RFC 8301)"));
	CHECK(strcmp(dkim_verifier_result(v, 0)->algorithm, "rsa-sha1") == 0);
	dkim_verifier_free(v);

	/* syntax errors: permerror, still with d= and s= for the report */
	const char *bad = "DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=sel;\r\n"
			  " bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=dGVzdA==\r\n" FROM "\r\n";
	v = dkim_verifier_new(&o);
	CHECK(dkim_verifier_headers(v, bad, strlen(bad)) == 0);
	CHECK(dkim_verifier_key_name(v, 0) == NULL);
	dkim_verifier_finish(v);
	CHECK(result_is(v, 0, DKIM_PERMERROR, "signature missing required tag h="));
	const struct dkim_result *r = dkim_verifier_result(v, 0);
	CHECK(r->domain && strcmp(r->domain, "example.com") == 0 && strcmp(r->selector, "sel") == 0);
	CHECK(r->b_prefix && strcmp(r->b_prefix, "dGVzdA==") == 0);
	dkim_verifier_free(v);

	/* times */
	struct {
		long long t, x;
		enum dkim_status st;
		const char *reason;
	} cases[] = {
		{1700000000, -1, DKIM_PASS, NULL},
		{1700000200, -1, DKIM_PASS, NULL},	/* within the skew */
		{1700000400, -1, DKIM_PERMERROR, "signature timestamp in the future"},
		{1600000000, 1700000100, DKIM_PASS, NULL},
		{1600000000, 1699999800, DKIM_PASS, NULL},
		{1600000000, 1699999000, DKIM_PERMERROR, "signature expired"},
		{-1, 1699999000, DKIM_PERMERROR, "signature expired"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int n = 0;
		if (cases[i].t >= 0)
			n += snprintf(tags + n, sizeof(tags) - (size_t)n, "t=%lld; ", cases[i].t);
		if (cases[i].x >= 0)
			snprintf(tags + n, sizeof(tags) - (size_t)n, "x=%lld; ", cases[i].x);
		struct sign_spec sp = {.extra = tags};
		char *sig = sign(&sp, fts, 3, BODY);
		char *m = message(sig, NULL, NULL);
		v = run(&o, m, BODY, 0, 0);
		CHECK(result_is(v, 0, cases[i].st, cases[i].reason));
		dkim_verifier_free(v);
		free(m);
		free(sig);
	}
}

TEST(several_signatures)
{
	db = keys_main;
	struct sign_spec s1 = {.c = "relaxed/relaxed"};
	struct sign_spec s2 = {.a = "ed25519-sha256", .s = "ed", .key = ed, .c = "relaxed/relaxed"};
	struct sign_spec s3 = {.s = "k1024", .key = rsa1024, .c = "simple/simple"};
	char *g1 = sign(&s1, fts, 3, BODY), *g2 = sign(&s2, fts, 3, BODY), *g3 = sign(&s3, fts, 3, BODY);
	char above[4096];
	snprintf(above, sizeof(above), "%s%s", g1, g2);
	char *m = message(g3, above, NULL);
	struct dkim_verifier *v = run(NULL, m, BODY, 0, 5);
	CHECK(dkim_verifier_count(v) == 3);
	CHECK(result_is(v, 0, DKIM_PASS, NULL) && result_is(v, 1, DKIM_PASS, NULL) &&
	      result_is(v, 2, DKIM_PASS, NULL));
	CHECK(strcmp(dkim_verifier_result(v, 1)->algorithm, "ed25519-sha256") == 0);
	dkim_verifier_free(v);
	/* only the first two are checked */
	struct dkim_verify_opts o;
	dkim_verify_opts_default(&o);
	o.max_signatures = 2;
	v = dkim_verifier_new(&o);
	CHECK(dkim_verifier_headers(v, m, strlen(m)) == 0);
	CHECK(dkim_verifier_key_name(v, 0) && dkim_verifier_key_name(v, 1) && !dkim_verifier_key_name(v, 2));
	CHECK(strcmp(dkim_verifier_key_name(v, 1), "ed._domainkey.example.com") == 0);
	/* keys before, between and after */
	give_key(v, 1);
	dkim_verifier_body(v, BODY, strlen(BODY));
	CHECK(result_is(v, 0, DKIM_TEMPERROR, "key not supplied"));
	dkim_verifier_finish(v);
	dkim_verifier_body(v, "ignored", 7);
	CHECK(result_is(v, 1, DKIM_PASS, NULL));
	CHECK(result_is(v, 0, DKIM_TEMPERROR, "key not supplied"));
	give_key(v, 0);
	give_key(v, 0);	/* again: ignored */
	CHECK(result_is(v, 0, DKIM_PASS, NULL));
	CHECK(result_is(v, 2, DKIM_POLICY, "not checked: too many signatures"));
	CHECK(dkim_verifier_result(v, 2)->domain && strcmp(dkim_verifier_result(v, 2)->domain, "example.com") == 0);
	dkim_verifier_free(v);
	free(m);
	free(g1);
	free(g2);
	free(g3);
}

TEST(b_prefixes)
{
	/* unparsable signatures still get a header.b, long enough to differ */
	const char *h = "DKIM-Signature: v=1; d=example.com; b=AAAAAAAAAAAAAB==\r\n"
			"DKIM-Signature: v=1; d=example.com; b=AAAAAAAAAAAAAC==\r\n"
			"DKIM-Signature: v=1; d=example.com; b=ZZZZ\r\n"
			"DKIM-Signature: v=1; d=example.com; b=AAAAAAAAAAAAAC==\r\n" FROM;
	struct dkim_verifier *v = dkim_verifier_new(NULL);
	CHECK(dkim_verifier_headers(v, h, strlen(h)) == 0);
	dkim_verifier_finish(v);
	CHECK(dkim_verifier_count(v) == 4);
	CHECK(strcmp(dkim_verifier_result(v, 0)->b_prefix, "AAAAAAAAAAAAAB") == 0);
	CHECK(strcmp(dkim_verifier_result(v, 1)->b_prefix, "AAAAAAAAAAAAAC==") == 0);
	CHECK(strcmp(dkim_verifier_result(v, 2)->b_prefix, "ZZZZ") == 0);
	dkim_verifier_free(v);
}

TEST(no_signatures_and_odd_blocks)
{
	struct dkim_verifier *v = dkim_verifier_new(NULL);
	const char *h = FROM TO "\r\n";
	CHECK(dkim_verifier_headers(v, h, strlen(h)) == 0);
	CHECK(dkim_verifier_headers(v, h, strlen(h)) == -1);	/* once */
	dkim_verifier_body(v, BODY, strlen(BODY));
	dkim_verifier_finish(v);
	dkim_verifier_finish(v);
	CHECK(dkim_verifier_count(v) == 0 && dkim_verifier_result(v, 0) == NULL);
	CHECK(dkim_verifier_key_name(v, 0) == NULL);
	dkim_verifier_key(v, 0, DKIM_KEY_NONE, NULL, 0);
	dkim_verifier_free(v);
	/* garbage: lines without a colon, a continuation first, bare LF, empty */
	const char *odd[] = {"", "\r\n", " leading\r\nno colon\r\nDKIM-Signature\r\n",
			     "DKIM-Signature:\r\n", "dkim-signature : v=1\nFrom: x\n\n",
			     "DKIM-Signature: ;;;\r\n\tb=\r\n", "X: y"};
	for (size_t i = 0; i < sizeof(odd) / sizeof(odd[0]); i++) {
		v = dkim_verifier_new(NULL);
		CHECK(dkim_verifier_headers(v, odd[i], strlen(odd[i])) == 0);
		dkim_verifier_finish(v);
		for (size_t k = 0; k < dkim_verifier_count(v); k++)
			CHECK(dkim_verifier_result(v, k)->status == DKIM_PERMERROR);
		dkim_verifier_free(v);
	}
	dkim_verifier_free(NULL);
	dkim_verifier_body(NULL, "x", 1);
	dkim_verifier_finish(NULL);
	CHECK(dkim_verifier_count(NULL) == 0);
}

/* RFC 8463 appendix A: the message and both keys (the RSA key as in the
 * errata-corrected text) */
static const char rfc8463_hdrs[] =
	"DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;\r\n"
	" d=football.example.com; i=@football.example.com;\r\n"
	" q=dns/txt; s=brisbane; t=1528637909; h=from : to :\r\n"
	" subject : date : message-id : from : subject : date;\r\n"
	" bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n"
	" b=/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11Bus\r\n"
	" Fa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw==\r\n"
	"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;\r\n"
	" d=football.example.com; i=@football.example.com;\r\n"
	" q=dns/txt; s=test; t=1528637909; h=from : to : subject :\r\n"
	" date : message-id : from : subject : date;\r\n"
	" bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n"
	" b=F45dVWDfMbQDGHJFlXUNB2HKfbCeLRyhDXgFpEL8GwpsRe0IeIixNTe3\r\n"
	" DhCVlUrSjV4BwcVcOF6+FF3Zo9Rpo1tFOeS9mPYQTnGdaSGsgeefOsk2Jz\r\n"
	" dA+L10TeYt9BgDfQNZtKdN1WO//KgIqXP7OdEFE4LjFYNcUxZQ4FADY+8=\r\n"
	"From: Joe SixPack <joe@football.example.com>\r\n"
	"To: Suzie Q <suzie@shopping.example.net>\r\n"
	"Subject: Is dinner ready?\r\n"
	"Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\r\n"
	"Message-ID: <20030712040037.46341.5F8J@football.example.com>\r\n"
	"\r\n";
static const char rfc8463_body[] =
	"Hi.\r\n\r\nWe lost the game.  Are you hungry yet?\r\n\r\nJoe.\r\n\r\n";

static const struct keydb keys_rfc8463[] = {
	{"brisbane._domainkey.football.example.com",
	 {"v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="}, DKIM_KEY_OK},
	{"test._domainkey.football.example.com",
	 {"v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWR"
	  "iGs5V6NpP3idY6Wk08a5qhdR6wy5bdOKb2jLQiY/J16JYi0Qvx/byYzCNb3W91y3FutAC"
	  "DfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqMKrM3rG4hstT5QjvHO9PzoxZyVYLzBfO2EeC3"
	  "Ip3G+2kryOTIKT+l/K4w3QIDAQAB"}, DKIM_KEY_OK},
	{NULL, {NULL}, 0},
};

TEST(rfc8463_example)
{
	db = keys_rfc8463;
	for (size_t chunk = 0; chunk < 5; chunk++) {
		struct dkim_verifier *v = run(NULL, rfc8463_hdrs, rfc8463_body, (int)(chunk & 1), chunk);
		CHECK(dkim_verifier_count(v) == 2);
		CHECK(result_is(v, 0, DKIM_PASS, NULL));
		CHECK(result_is(v, 1, DKIM_PASS, NULL));
		CHECK(dkim_verifier_result(v, 0)->key_bits == 256);
		CHECK(dkim_verifier_result(v, 1)->key_bits == 1024);
		CHECK(strcmp(dkim_verifier_result(v, 0)->b_prefix, "/gCrinpc") == 0);
		CHECK(strcmp(dkim_verifier_result(v, 0)->identity, "@football.example.com") == 0);
		dkim_verifier_free(v);
	}
	/* one changed octet in the Date field breaks both */
	char *h = strdup(rfc8463_hdrs);
	strstr(h, "21:00:37")[7] = '8';
	struct dkim_verifier *v = run(NULL, h, rfc8463_body, 0, 0);
	CHECK(result_is(v, 0, DKIM_FAIL, "signature did not verify"));
	CHECK(result_is(v, 1, DKIM_FAIL, "signature did not verify"));
	dkim_verifier_free(v);
	free(h);
}

int main(void)
{
	setup_keys();
	RUN(pass_rsa_and_ed25519);
	RUN(result_fields);
	RUN(tampering);
	RUN(oversigning_and_repeats);
	RUN(folded_b_value);
	RUN(body_length_limit);
	RUN(key_problems);
	RUN(key_record_flags);
	RUN(signature_problems);
	RUN(several_signatures);
	RUN(b_prefixes);
	RUN(no_signatures_and_odd_blocks);
	RUN(rfc8463_example);
	EVP_PKEY_free(rsa2048);
	EVP_PKEY_free(rsa1024);
	EVP_PKEY_free(ed);
	return unit_done();
}
