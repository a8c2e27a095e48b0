/*
 * test_dkim_sign - unit tests for the DKIM signer (filters/dkim_sign.c)
 * and key files (keys/dkim_keyfile.c): signatures checked with OpenSSL
 * over canonical text this file builds by hand, h= with repeated and
 * oversigned names, folding, key formats (PKCS#1, PKCS#8, dkimpy's raw
 * Ed25519 seed) and the permission check; and signatures round-tripped
 * through moat's own verifier (filters/dkim_verify.c); the signing table
 * and the sender a message is looked up by (filters/dkim_signtable.c).
 */
#include "dkim_keyfile.h"
#include "dkim_sign.h"
#include "dkim_signtable.h"
#include "dkim_verify.h"
#include "unit.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/x509.h>

static EVP_PKEY *rsa1024, *rsa2048, *ed;
static char dir[] = "/tmp/moat-test-dkim-sign.XXXXXX";

/* ---------------------------------------------------------------- helpers */

static char *path_of(const char *name)
{
	static char p[256];
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	return p;
}

static void write_file(const char *name, const char *text, size_t len, mode_t mode)
{
	char *p = path_of(name);
	unlink(p);
	int fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0600);
	if (fd < 0 || write(fd, text, len) != (ssize_t)len)
		abort();
	fchmod(fd, mode);
	close(fd);
}

/* Writes pkey as PEM: PKCS#8 ("PRIVATE KEY") or traditional (PKCS#1). */
static void write_pem(const char *name, EVP_PKEY *pkey, int traditional, mode_t mode)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *data;
	if (traditional)
		PEM_write_bio_PrivateKey_traditional(b, pkey, NULL, NULL, 0, NULL, NULL);
	else
		PEM_write_bio_PrivateKey(b, pkey, NULL, NULL, 0, NULL, NULL);
	long n = BIO_get_mem_data(b, &data);
	write_file(name, data, (size_t)n, mode);
	BIO_free(b);
}

static int pkey_same(EVP_PKEY *a, EVP_PKEY *b)
{
	return a && b && EVP_PKEY_eq(a, b) == 1;
}

static size_t b64_decode(const char *s, unsigned char *out)
{
	char clean[2048];
	size_t n = 0;
	for (; *s && n < sizeof(clean) - 1; s++)
		if (*s != ' ' && *s != '\t' && *s != '\r' && *s != '\n')
			clean[n++] = *s;
	clean[n] = '\0';
	int got = EVP_DecodeBlock(out, (unsigned char *)clean, (int)n);
	if (got < 0)
		return 0;
	while (n > 0 && clean[--n] == '=')
		got--;
	return (size_t)got;
}

/* The value of tag name in a DKIM-Signature value (malloc'd, whitespace
 * kept), or NULL. */
static char *tag_value(const char *value, const char *name)
{
	size_t nl = strlen(name);
	const char *p = value;
	while (*p) {
		while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n' || *p == ';')
			p++;
		const char *eq = strchr(p, '=');
		if (!eq)
			return NULL;
		const char *end = strchr(eq, ';');
		if (!end)
			end = eq + strlen(eq);
		if ((size_t)(eq - p) == nl && strncmp(p, name, nl) == 0) {
			char *v = strndup(eq + 1, (size_t)(end - eq - 1));
			return v;
		}
		p = end;
	}
	return NULL;
}

static char *strip_ws(char *s)
{
	char *o = s;
	for (char *i = s; *i; i++)
		if (*i != ' ' && *i != '\t' && *i != '\r' && *i != '\n')
			*o++ = *i;
	*o = '\0';
	return s;
}

/* Relaxed header canonicalization, written out here independently. */
static void relaxed(const char *field, int crlf, char *out, size_t cap)
{
	size_t n = 0;
	const char *colon = strchr(field, ':');
	const char *p;
	for (p = field; p < colon; p++)
		if (*p != ' ' && *p != '\t')
			out[n++] = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
	out[n++] = ':';
	p = colon + 1;
	int sp = 0;
	size_t start = n;
	for (; *p; p++) {
		if (*p == '\r' || *p == '\n')
			continue;
		if (*p == ' ' || *p == '\t') {
			sp = 1;
			continue;
		}
		if (sp && n > start)
			out[n++] = ' ';
		sp = 0;
		out[n++] = *p;
	}
	if (crlf) {
		out[n++] = '\r';
		out[n++] = '\n';
	}
	out[n] = '\0';
	if (n >= cap)
		abort();
}

/* Verifies value's b= over the given fields (in hash order, without
 * CRLF) and the signature field itself; canonical text built here. */
static int verify(EVP_PKEY *pkey, int ed25519, enum dkim_canon hc, const char *const *fields,
		  size_t nf, const char *value)
{
	static char data[16384];
	char tmp[4096];
	size_t n = 0;

	data[0] = '\0';
	for (size_t i = 0; i < nf; i++) {
		if (hc == DKIM_CANON_RELAXED)
			relaxed(fields[i], 1, tmp, sizeof(tmp));
		else
			snprintf(tmp, sizeof(tmp), "%s\r\n", fields[i]);
		n += (size_t)snprintf(data + n, sizeof(data) - n, "%s", tmp);
	}
	/* the signature field with b= emptied: b= is last */
	const char *b = strstr(value, "\tb=");
	if (!b)
		return 0;
	char sig[4096];
	snprintf(sig, sizeof(sig), "DKIM-Signature:%.*s", (int)(b + 3 - value), value);
	if (hc == DKIM_CANON_RELAXED)
		relaxed(sig, 0, tmp, sizeof(tmp));
	else
		snprintf(tmp, sizeof(tmp), "%s", sig);
	n += (size_t)snprintf(data + n, sizeof(data) - n, "%s", tmp);

	unsigned char raw[1024];
	char *bv = strdup(b + 3);
	size_t rawlen = b64_decode(bv, raw);
	free(bv);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int ok;
	if (ed25519) {
		unsigned char md[32];
		unsigned int mdlen;
		EVP_Digest(data, n, md, &mdlen, EVP_sha256(), NULL);
		ok = EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, pkey) == 1 &&
		     EVP_DigestVerify(ctx, raw, rawlen, md, mdlen) == 1;
	} else {
		ok = EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, pkey) == 1 &&
		     EVP_DigestVerify(ctx, raw, rawlen, (unsigned char *)data, n) == 1;
	}
	EVP_MD_CTX_free(ctx);
	return ok;
}

static void sha256(const char *s, unsigned char out[32])
{
	unsigned int n;
	EVP_Digest(s, strlen(s), out, &n, EVP_sha256(), NULL);
}

static struct dkim_sign_key *key_of(EVP_PKEY *pkey)
{
	char err[256];
	EVP_PKEY_up_ref(pkey);
	return dkim_sign_key_new("Example.ORG", "sel", pkey, err, sizeof(err));
}

static int lines_ok(const char *value, size_t max)
{
	size_t col = strlen("DKIM-Signature:");
	for (const char *p = value; *p; p++) {
		if (*p == '\r') {
			if (p[1] != '\n' || p[2] != '\t')
				return 0;
			if (col > max)
				return 0;
			col = 0;
			p++;
			continue;
		}
		col++;
	}
	return col <= max;
}

static const char MSG[] =
	"Received: from a\r\n"
	"From: Alice <alice@example.org>\r\n"
	"To: bob@example.net,\r\n"
	"   carol@example.net\r\n"
	"Subject:   Hello \t  world  \r\n"
	"Received: from b\r\n"
	"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
	"\r\n"
	"body is ignored\r\n";

/* ---------------------------------------------------------------- signer */

static void sign_and_verify(EVP_PKEY *pkey, int ed25519, enum dkim_canon hc)
{
	struct dkim_sign_key *k = key_of(pkey);
	const char *hdrs[] = {"from", "To", "Subject", "Date", "Cc"};
	struct dkim_sign_params p = {hc, DKIM_CANON_SIMPLE, hdrs, 5, NULL, 0, 0, NULL, 1700000000};
	unsigned char bh[32];
	char err[256], *value = NULL;

	sha256("body is ignored\r\n", bh);
	CHECK(k != NULL);
	if (!k)
		return;
	CHECK(dkim_sign(k, &p, MSG, sizeof(MSG) - 1, bh, 32, &value, err, sizeof(err)) == 0);
	if (!value) {
		dkim_sign_key_free(k);
		return;
	}
	const char *fields[] = {
		"From: Alice <alice@example.org>",
		"To: bob@example.net,\r\n   carol@example.net",
		"Subject:   Hello \t  world  ",
		"Date: Mon, 1 Jan 2024 00:00:00 +0000",
	};
	CHECK(verify(pkey, ed25519, hc, fields, 4, value));
	/* a changed field does not verify */
	const char *changed[] = {fields[0], fields[1], "Subject: Hello world!", fields[3]};
	CHECK(!verify(pkey, ed25519, hc, changed, 4, value));
	CHECK(strncmp(value, " v=1; a=", 8) == 0);
	char *a = tag_value(value, "a"), *c = tag_value(value, "c"), *d = tag_value(value, "d");
	char *h = tag_value(value, "h"), *t = tag_value(value, "t"), *bhv = tag_value(value, "bh");
	char *x = tag_value(value, "x");
	CHECK(a && strcmp(a, ed25519 ? "ed25519-sha256" : "rsa-sha256") == 0);
	CHECK(c && strcmp(c, hc == DKIM_CANON_RELAXED ? "relaxed/simple" : "simple/simple") == 0);
	CHECK(d && strcmp(d, "example.org") == 0);
	CHECK(h && strcmp(strip_ws(h), "from:to:subject:date") == 0);
	CHECK(t && strcmp(t, "1700000000") == 0);
	CHECK(x == NULL);
	unsigned char got[64];
	CHECK(bhv && b64_decode(bhv, got) == 32 && memcmp(got, bh, 32) == 0);
	CHECK(lines_ok(value, 78));
	free(a), free(c), free(d), free(h), free(t), free(bhv), free(x);
	free(value);
	dkim_sign_key_free(k);
}

TEST(sign_rsa_simple)
{
	sign_and_verify(rsa2048, 0, DKIM_CANON_SIMPLE);
}

TEST(sign_rsa_relaxed)
{
	sign_and_verify(rsa2048, 0, DKIM_CANON_RELAXED);
}

TEST(sign_ed25519_simple)
{
	sign_and_verify(ed, 1, DKIM_CANON_SIMPLE);
}

TEST(sign_ed25519_relaxed)
{
	sign_and_verify(ed, 1, DKIM_CANON_RELAXED);
}

TEST(oversign_and_repeats)
{
	struct dkim_sign_key *k = key_of(ed);
	const char *hdrs[] = {"From", "received", "Subject", "Cc", "Reply-To", "FROM"};
	const char *over[] = {"From", "Reply-To", "Message-ID"};
	struct dkim_sign_params p = {DKIM_CANON_RELAXED, DKIM_CANON_RELAXED, hdrs, 6, over, 3,
				     3600, NULL, 1700000000};
	unsigned char bh[32] = {0};
	char err[256], *value = NULL;

	CHECK(dkim_sign(k, &p, MSG, sizeof(MSG) - 1, bh, 32, &value, err, sizeof(err)) == 0);
	char *h = value ? tag_value(value, "h") : NULL;
	/* from twice (present + oversigned), both Received (bottom-up: the
	 * last one first), Cc absent and not oversigned: left out; Reply-To
	 * and Message-ID absent but oversigned: once each */
	CHECK(h && strcmp(strip_ws(h), "from:from:received:received:subject:reply-to:message-id") == 0);
	char *x = value ? tag_value(value, "x") : NULL;
	CHECK(x && strcmp(x, "1700003600") == 0);
	const char *fields[] = {
		"From: Alice <alice@example.org>",
		"Received: from b",
		"Received: from a",
		"Subject:   Hello \t  world  ",
	};
	CHECK(value && verify(ed, 1, DKIM_CANON_RELAXED, fields, 4, value));
	const char *wrong_order[] = {fields[0], fields[2], fields[1], fields[3]};
	CHECK(value && !verify(ed, 1, DKIM_CANON_RELAXED, wrong_order, 4, value));
	free(h), free(x), free(value);
	dkim_sign_key_free(k);
}

TEST(defaults)
{
	struct dkim_sign_key *k = key_of(rsa1024);
	struct dkim_sign_params p = {DKIM_CANON_RELAXED, DKIM_CANON_RELAXED,
				     dkim_sign_default_headers, dkim_sign_default_nheaders,
				     dkim_sign_default_oversign, dkim_sign_default_noversign,
				     0, NULL, 1700000000};
	unsigned char bh[32] = {0};
	char err[256], *value = NULL;

	CHECK(dkim_sign_default_nheaders == 24 && dkim_sign_default_noversign == 10);
	CHECK(dkim_sign(k, &p, MSG, sizeof(MSG) - 1, bh, 32, &value, err, sizeof(err)) == 0);
	char *h = value ? tag_value(value, "h") : NULL;
	CHECK(h && strcmp(strip_ws(h), "from:from:reply-to:subject:subject:date:date:to:to:cc:"
				      "message-id:mime-version:content-type:"
				      "content-transfer-encoding") == 0);
	CHECK(value && lines_ok(value, 78));
	free(h), free(value);
	dkim_sign_key_free(k);
}

TEST(folding)
{
	struct dkim_sign_key *k = key_of(rsa2048);
	char err[256], *value = NULL;
	struct dkim_sign_params p = {DKIM_CANON_SIMPLE, DKIM_CANON_SIMPLE,
				     dkim_sign_default_headers, dkim_sign_default_nheaders,
				     dkim_sign_default_oversign, dkim_sign_default_noversign,
				     86400, "alice@mail.example.org", 1700000000};
	unsigned char bh[32] = {1};

	CHECK(dkim_sign(k, &p, MSG, sizeof(MSG) - 1, bh, 32, &value, err, sizeof(err)) == 0);
	CHECK(value && lines_ok(value, 78));
	/* layout: v..s on the first line, t= starts the second, bh= and b=
	 * start their own lines, no line ends with white space */
	CHECK(value && strstr(value, ";\r\n\tt=1700000000; x=1700086400; h=from:from:"));
	CHECK(value && strstr(value, ";\r\n\tbh="));
	CHECK(value && strstr(value, ";\r\n\tb="));
	CHECK(value && !strstr(value, " \r\n") && value[strlen(value) - 1] != ' ');
	char *i = value ? tag_value(value, "i") : NULL;
	CHECK(i && strcmp(i, "alice@mail.example.org") == 0);
	char *b = value ? tag_value(value, "b") : NULL;
	unsigned char raw[512];
	CHECK(b && b64_decode(b, raw) == 256);
	free(i), free(b), free(value);
	dkim_sign_key_free(k);
}

TEST(errors)
{
	struct dkim_sign_key *k = key_of(ed);
	const char *hdrs[] = {"Subject"}, *bad[] = {"From", "Sub ject"};
	const char *from[] = {"From"};
	struct dkim_sign_params p = {DKIM_CANON_RELAXED, DKIM_CANON_RELAXED, hdrs, 1, NULL, 0,
				     0, NULL, 0};
	unsigned char bh[32] = {0};
	char err[256], *value = (char *)"x";

	CHECK(dkim_sign(k, &p, MSG, sizeof(MSG) - 1, bh, 32, &value, err, sizeof(err)) < 0);
	CHECK(value == NULL && strstr(err, "do not include From"));
	p.headers = from;
	static const char nofrom[] = "Subject: x\r\n\r\n";
	CHECK(dkim_sign(k, &p, nofrom, sizeof(nofrom) - 1, bh, 32, &value, err, sizeof(err)) < 0);
	CHECK(strstr(err, "no From"));
	CHECK(dkim_sign(k, &p, MSG, sizeof(MSG) - 1, bh, 20, &value, err, sizeof(err)) < 0);
	p.headers = bad;
	p.nheaders = 2;
	CHECK(dkim_sign(k, &p, MSG, sizeof(MSG) - 1, bh, 32, &value, err, sizeof(err)) < 0);
	CHECK(strstr(err, "not a header field name"));
	p.headers = from;
	p.nheaders = 1;
	p.identity = "alice@example.com";
	CHECK(dkim_sign(k, &p, MSG, sizeof(MSG) - 1, bh, 32, &value, err, sizeof(err)) < 0);
	CHECK(strstr(err, "not in the signing domain"));
	p.identity = "alice@badexample.org";
	CHECK(dkim_sign(k, &p, MSG, sizeof(MSG) - 1, bh, 32, &value, err, sizeof(err)) < 0);
	p.identity = "a;b=c@Sub.Example.org";
	CHECK(dkim_sign(k, &p, MSG, sizeof(MSG) - 1, bh, 32, &value, err, sizeof(err)) == 0);
	char *i = value ? tag_value(value, "i") : NULL;
	CHECK(i && strcmp(i, "a=3Bb=3Dc@Sub.Example.org") == 0);
	free(i), free(value);
	dkim_sign_key_free(k);

	EVP_PKEY_up_ref(ed);
	CHECK(dkim_sign_key_new("exa mple.org", "s", ed, err, sizeof(err)) == NULL);
	EVP_PKEY_up_ref(ed);
	CHECK(dkim_sign_key_new("example.org", "s..x", ed, err, sizeof(err)) == NULL);
	EVP_PKEY_up_ref(ed);
	CHECK(dkim_sign_key_new("example.org.", "s", ed, err, sizeof(err)) == NULL);
	EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	CHECK(dkim_sign_key_new("example.org", "s", ec, err, sizeof(err)) == NULL);
	CHECK(strstr(err, "cannot sign DKIM"));
}

TEST(header_block_without_blank_line)
{
	struct dkim_sign_key *k = key_of(ed);
	const char *hdrs[] = {"From", "Subject"};
	struct dkim_sign_params p = {DKIM_CANON_SIMPLE, DKIM_CANON_SIMPLE, hdrs, 2, NULL, 0, 0,
				     NULL, 1};
	static const char blk[] = "Subject: a\r\nFrom: x@example.org\r\n";
	unsigned char bh[32] = {0};
	char err[256], *value = NULL;

	CHECK(dkim_sign(k, &p, blk, sizeof(blk) - 1, bh, 32, &value, err, sizeof(err)) == 0);
	const char *fields[] = {"From: x@example.org", "Subject: a"};
	CHECK(value && verify(ed, 1, DKIM_CANON_SIMPLE, fields, 2, value));
	free(value);
	dkim_sign_key_free(k);
}

/* Signs msg (header block + body, CRLF) with pkey in canons hc/bc, puts
 * the field on top, and runs the whole through dkim_verify. Returns the
 * verifier's status (DKIM_PASS...), or -1 when signing failed. tamper:
 * an octet of the body to change after signing, or -1. */
static int round_trip(EVP_PKEY *pkey, enum dkim_canon hc, enum dkim_canon bc,
		      const char *msg, long tamper)
{
	struct dkim_sign_key *k = key_of(pkey);
	struct dkim_sign_params p = {hc, bc, dkim_sign_default_headers,
				     dkim_sign_default_nheaders, dkim_sign_default_oversign,
				     dkim_sign_default_noversign, 600, NULL, 0};
	const char *body = strstr(msg, "\r\n\r\n") + 4;
	size_t hlen = (size_t)(body - msg);
	unsigned char bh[DKIM_MAX_DIGEST];
	unsigned long long clen;
	char err[256], *value = NULL;

	struct dkim_body_hash *h = dkim_body_hash_new(bc, DKIM_HASH_SHA256, -1);
	dkim_body_hash_update(h, body, strlen(body));
	int n = dkim_body_hash_final(h, bh, &clen);
	dkim_body_hash_free(h);
	if (!k || n != 32 || dkim_sign(k, &p, msg, hlen, bh, 32, &value, err, sizeof(err)) < 0) {
		dkim_sign_key_free(k);
		return -1;
	}
	char *pub = dkim_key_public_b64_new(pkey, err, sizeof(err));
	char rec[2048];
	snprintf(rec, sizeof(rec), "v=DKIM1; k=%s; p=%s",
		 EVP_PKEY_get_base_id(pkey) == EVP_PKEY_ED25519 ? "ed25519" : "rsa", pub);
	free(pub);
	size_t flen = strlen("DKIM-Signature:") + strlen(value) + 2;
	char *full = malloc(flen + strlen(msg) + 1);
	snprintf(full, flen + strlen(msg) + 1, "DKIM-Signature:%s\r\n%s", value, msg);
	if (tamper >= 0)
		full[flen + hlen + (size_t)tamper] ^= 1;

	struct dkim_verifier *v = dkim_verifier_new(NULL);
	const char *txt[] = {rec};
	int st = -1;
	if (v && dkim_verifier_headers(v, full, flen + hlen) == 0 && dkim_verifier_count(v) == 1) {
		const char *name = dkim_verifier_key_name(v, 0);
		if (name && strcmp(name, "sel._domainkey.example.org") == 0)
			dkim_verifier_key(v, 0, DKIM_KEY_OK, txt, 1);
		dkim_verifier_body(v, full + flen + hlen, strlen(full + flen + hlen));
		dkim_verifier_finish(v);
		const struct dkim_result *r = dkim_verifier_result(v, 0);
		st = r ? (int)r->status : -1;
	}
	dkim_verifier_free(v);
	free(full);
	free(value);
	dkim_sign_key_free(k);
	return st;
}

TEST(round_trip_own_verifier)
{
	static const char msg[] =
		"From: Alice <alice@example.org>\r\n"
		"To: bob@example.net,\r\n\t carol@example.net\r\n"
		"Subject:  spaced   out \r\n"
		"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
		"\r\n"
		"Hello  there \r\n\r\nline\r\n\r\n\r\n";
	EVP_PKEY *keys[] = {rsa2048, ed};

	for (int k = 0; k < 2; k++) {
		for (int hc = 0; hc < 2; hc++) {
			for (int bc = 0; bc < 2; bc++) {
				CHECK(round_trip(keys[k], (enum dkim_canon)hc, (enum dkim_canon)bc,
						 msg, -1) == DKIM_PASS);
				CHECK(round_trip(keys[k], (enum dkim_canon)hc, (enum dkim_canon)bc,
						 msg, 2) == DKIM_FAIL);
			}
		}
	}
}

/* ---------------------------------------------------------------- key files */

TEST(keyfile_formats)
{
	enum dkim_key_type t;
	int bits;
	char err[256];
	EVP_PKEY *k;

	write_pem("pkcs1.pem", rsa2048, 1, 0600);
	k = dkim_keyfile_load(path_of("pkcs1.pem"), &t, &bits, err, sizeof(err));
	CHECK(pkey_same(k, rsa2048) && t == DKIM_KEY_RSA && bits == 2048);
	EVP_PKEY_free(k);

	write_pem("pkcs8.pem", rsa1024, 0, 0640);
	k = dkim_keyfile_load(path_of("pkcs8.pem"), &t, &bits, err, sizeof(err));
	CHECK(pkey_same(k, rsa1024) && t == DKIM_KEY_RSA && bits == 1024);
	EVP_PKEY_free(k);

	write_pem("ed.pem", ed, 0, 0400);
	k = dkim_keyfile_load(path_of("ed.pem"), &t, &bits, err, sizeof(err));
	CHECK(pkey_same(k, ed) && t == DKIM_KEY_ED25519 && bits == 256);
	EVP_PKEY_free(k);

	/* dkimpy's dknewkey: base64 of the seed, no newline */
	unsigned char seed[32];
	size_t sl = sizeof(seed);
	CHECK(EVP_PKEY_get_raw_private_key(ed, seed, &sl) == 1 && sl == 32);
	char *b64 = dkim_key_b64_new(seed, 32);
	CHECK(b64 && strlen(b64) == 44);
	write_file("ed.key", b64, strlen(b64), 0600);
	k = dkim_keyfile_load(path_of("ed.key"), &t, &bits, err, sizeof(err));
	CHECK(pkey_same(k, ed) && t == DKIM_KEY_ED25519);
	EVP_PKEY_free(k);
	/* with a newline and spaces around */
	char buf[80];
	snprintf(buf, sizeof(buf), "  %s\n\n", b64);
	write_file("ed2.key", buf, strlen(buf), 0600);
	k = dkim_keyfile_load(path_of("ed2.key"), &t, &bits, err, sizeof(err));
	CHECK(pkey_same(k, ed));
	EVP_PKEY_free(k);
	free(b64);
	/* seed + public key (libsodium's 64-octet secret key) */
	unsigned char sk[64];
	size_t pl = 32;
	memcpy(sk, seed, 32);
	EVP_PKEY_get_raw_public_key(ed, sk + 32, &pl);
	b64 = dkim_key_b64_new(sk, 64);
	write_file("ed64.key", b64, strlen(b64), 0600);
	k = dkim_keyfile_load(path_of("ed64.key"), &t, &bits, err, sizeof(err));
	CHECK(pkey_same(k, ed));
	EVP_PKEY_free(k);
	free(b64);
	sk[40] ^= 1;
	b64 = dkim_key_b64_new(sk, 64);
	write_file("ed64bad.key", b64, strlen(b64), 0600);
	k = dkim_keyfile_load(path_of("ed64bad.key"), &t, &bits, err, sizeof(err));
	CHECK(k == NULL && strstr(err, "does not match"));
	free(b64);
}

TEST(keyfile_refusals)
{
	enum dkim_key_type t;
	int bits;
	char err[256], want[512];

	write_pem("open.pem", ed, 0, 0644);
	CHECK(dkim_keyfile_load(path_of("open.pem"), &t, &bits, err, sizeof(err)) == NULL);
	snprintf(want, sizeof(want),
		 "key file %s is readable by others (mode 0644); chmod 600 or 640",
		 path_of("open.pem"));
	CHECK(strcmp(err, want) == 0);
	write_pem("w.pem", ed, 0, 0602);
	CHECK(dkim_keyfile_load(path_of("w.pem"), &t, &bits, err, sizeof(err)) == NULL);
	CHECK(strstr(err, "writable by others (mode 0602)"));
	CHECK(dkim_keyfile_load(path_of("none.pem"), &t, &bits, err, sizeof(err)) == NULL);
	CHECK(strstr(err, "No such file"));
	CHECK(dkim_keyfile_load(dir, &t, &bits, err, sizeof(err)) == NULL);
	CHECK(strstr(err, "not a regular file"));
	write_file("junk", "hello world\n", 12, 0600);
	CHECK(dkim_keyfile_load(path_of("junk"), &t, &bits, err, sizeof(err)) == NULL);
	CHECK(strstr(err, "not a private key"));
	write_file("short.key", "AAAA\n", 5, 0600);
	CHECK(dkim_keyfile_load(path_of("short.key"), &t, &bits, err, sizeof(err)) == NULL);
	CHECK(strstr(err, "not a 32-octet Ed25519 seed"));
	static const char trunc[] = "-----BEGIN PRIVATE KEY-----\nMIIEvAIBADANBg\n"
				    "-----END PRIVATE KEY-----\n";
	write_file("trunc.pem", trunc, sizeof(trunc) - 1, 0600);
	CHECK(dkim_keyfile_load(path_of("trunc.pem"), &t, &bits, err, sizeof(err)) == NULL);
	CHECK(strstr(err, "cannot read the PEM private key"));
	/* encrypted */
	BIO *b = BIO_new(BIO_s_mem());
	char *data;
	PEM_write_bio_PrivateKey(b, ed, EVP_aes_128_cbc(), (unsigned char *)"pw", 2, NULL, NULL);
	long n = BIO_get_mem_data(b, &data);
	write_file("enc.pem", data, (size_t)n, 0600);
	BIO_free(b);
	CHECK(dkim_keyfile_load(path_of("enc.pem"), &t, &bits, err, sizeof(err)) == NULL);
	CHECK(strstr(err, "encrypted"));
	/* too small an RSA key, another key type */
	EVP_PKEY *small = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)512);
	write_pem("small.pem", small, 0, 0600);
	CHECK(dkim_keyfile_load(path_of("small.pem"), &t, &bits, err, sizeof(err)) == NULL);
	CHECK(strstr(err, "512 bits"));
	EVP_PKEY_free(small);
	EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	write_pem("ec.pem", ec, 0, 0600);
	CHECK(dkim_keyfile_load(path_of("ec.pem"), &t, &bits, err, sizeof(err)) == NULL);
	CHECK(strstr(err, "cannot sign DKIM"));
	EVP_PKEY_free(ec);
	CHECK(dkim_keyfile_check_mode("x", 0100640, err, sizeof(err)) == 0);
	CHECK(dkim_keyfile_check_mode("x", 0100601, err, sizeof(err)) < 0);
}

TEST(public_key)
{
	char err[256];
	unsigned char raw[1024];

	char *p = dkim_key_public_b64_new(ed, err, sizeof(err));
	unsigned char pub[32];
	size_t pl = 32;
	EVP_PKEY_get_raw_public_key(ed, pub, &pl);
	CHECK(p && strlen(p) == 44 && b64_decode(p, raw) == 32 && memcmp(raw, pub, 32) == 0);
	free(p);

	p = dkim_key_public_b64_new(rsa2048, err, sizeof(err));
	CHECK(p && strncmp(p, "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA", 44) == 0);
	size_t n = p ? b64_decode(p, raw) : 0;
	const unsigned char *q = raw;
	EVP_PKEY *pk = d2i_PUBKEY(NULL, &q, (long)n);
	CHECK(pk && EVP_PKEY_eq(pk, rsa2048) == 1);
	EVP_PKEY_free(pk);
	free(p);

	enum dkim_key_type t;
	CHECK(dkim_key_type_parse("RSA", &t) == 0 && t == DKIM_KEY_RSA);
	CHECK(dkim_key_type_parse("ed25519", &t) == 0 && t == DKIM_KEY_ED25519);
	CHECK(dkim_key_type_parse("dsa", &t) < 0);
	CHECK(strcmp(dkim_key_type_name(DKIM_KEY_ED25519), "ed25519") == 0);
	enum dkim_sign_alg a;
	CHECK(dkim_sign_alg_parse("ed25519-sha256", &a) == 0 && a == DKIM_SIGN_ED25519_SHA256);
	CHECK(dkim_sign_alg_parse("rsa-sha1", &a) < 0);
}

/* ---------------------------------------------------------- signing table */

static const char *sender_of(const char *head, const char *mail_from)
{
	static char out[512];
	dkim_signtable_sender(head, strlen(head), mail_from, out, sizeof(out));
	return out;
}

/* The From: address when there is one, else the envelope sender. */
TEST(signing_sender)
{
	const char *env = "bounce@example.com";
	CHECK(strcmp(sender_of("From: Alice <Alice@Example.ORG>\r\n\r\n", env),
		     "alice@example.org") == 0);
	CHECK(strcmp(sender_of("Subject: x\r\n\r\n", env), env) == 0);
	CHECK(strcmp(sender_of("Subject: x\r\n\r\n", NULL), "") == 0);
	CHECK(strcmp(sender_of("From: a@example.org\r\nFrom: b@example.org\r\n", env), env) == 0);
	CHECK(strcmp(sender_of("From: a@example.org, b@example.net\r\n", env), env) == 0);
	CHECK(strcmp(sender_of("From: alice\r\n", env), env) == 0);
	/* a domain that is no DNS name: the envelope sender */
	CHECK(strcmp(sender_of("From: root@myhost\r\n", env), env) == 0);
	CHECK(strcmp(sender_of("From: a@[192.0.2.1]\r\n", env), env) == 0);
	/* read as DMARC reads it: groups, routes, IDNs, "From :" */
	CHECK(strcmp(sender_of("From: team: frank@example.org;\r\n", env),
		     "frank@example.org") == 0);
	CHECK(strcmp(sender_of("From: <@relay.example,@r2.example:eve@example.org>\r\n", env),
		     "eve@example.org") == 0);
	CHECK(strcmp(sender_of("From: joerg@b\xc3\xbc" "cher.example\r\n", env),
		     "joerg@xn--bcher-kva.example") == 0);
	CHECK(strcmp(sender_of("From : a@example.org\r\n", env), "a@example.org") == 0);
	/* a local part that is not a plain one: the domain alone */
	CHECK(strcmp(sender_of("From: \"john doe\"@example.org\r\n", env), "example.org") == 0);
}

TEST(signing_table_lookup)
{
	static const char *const keys[] = {"k1", "k2", "k3"};
	static const char *const entries[] = {"Alice@example.org k1", "example.org k2",
					      "*.example.org k3", "xn--bcher-kva.example k1,k2"};
	struct dkim_signtable t;
	char err[300];
	const struct dkim_signtable_entry *e;

	CHECK(dkim_signtable_parse(&t, entries, 4, keys, 3, err, sizeof(err)) == 0);
	e = dkim_signtable_find(&t, sender_of("From: <ALICE@example.org>\r\n", NULL));
	CHECK(e && e->nkeys == 1 && e->keys[0] == 0);
	e = dkim_signtable_find(&t, sender_of("From: \"Alice\"@example.org\r\n", NULL));
	CHECK(e && e->nkeys == 1 && e->keys[0] == 1);
	e = dkim_signtable_find(&t, sender_of("From: bob@mail.example.org\r\n", NULL));
	CHECK(e && e->keys[0] == 2);
	e = dkim_signtable_find(&t, sender_of("From: joerg@b\xc3\xbc" "cher.example\r\n", NULL));
	CHECK(e && e->nkeys == 2);
	e = dkim_signtable_find(&t, sender_of("From: root@myhost\r\n", "root@example.org"));
	CHECK(e && e->keys[0] == 1);
	CHECK(dkim_signtable_find(&t, sender_of("From: a@example.net\r\n", NULL)) == NULL);
	dkim_signtable_free(&t);
}

int main(void)
{
	if (!mkdtemp(dir))
		return 2;
	rsa1024 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
	rsa2048 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	if (!rsa1024 || !rsa2048 || !ed)
		return 2;
	RUN(sign_rsa_simple);
	RUN(sign_rsa_relaxed);
	RUN(sign_ed25519_simple);
	RUN(sign_ed25519_relaxed);
	RUN(oversign_and_repeats);
	RUN(defaults);
	RUN(folding);
	RUN(errors);
	RUN(header_block_without_blank_line);
	RUN(round_trip_own_verifier);
	RUN(keyfile_formats);
	RUN(keyfile_refusals);
	RUN(public_key);
	RUN(signing_sender);
	RUN(signing_table_lookup);
	EVP_PKEY_free(rsa1024);
	EVP_PKEY_free(rsa2048);
	EVP_PKEY_free(ed);
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		return 2;
	return unit_done();
}
