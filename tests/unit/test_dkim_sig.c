/*
 * test_dkim_sig - unit tests for the DKIM tag-list parser
 * (filters/dkim_tags.c), the DKIM-Signature parser (filters/dkim_sig.c)
 * and the key record parser (filters/dkim_keyrec.c), with the examples
 * of RFC 6376 and RFC 8463.
 */
#include "dkim_keyrec.h"
#include "dkim_sig.h"
#include "dkim_tags.h"
#include "unit.h"

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <string.h>

#define S(lit) lit, sizeof(lit) - 1

static int tags(const char *s, struct dkim_tags *t, const char **why)
{
	return dkim_tags_parse(s, strlen(s), t, why);
}

static int tag_eq(const struct dkim_tags *t, const char *name, const char *value)
{
	const struct dkim_tag *g = dkim_tags_get(t, name);
	return g && g->value_len == strlen(value) && memcmp(g->value, value, g->value_len) == 0;
}

TEST(tags_basic)
{
	struct dkim_tags t;
	const char *why = NULL;
	CHECK(tags("v=1; a=rsa-sha256", &t, &why) == 0 && t.n == 2);
	CHECK(tag_eq(&t, "v", "1") && tag_eq(&t, "a", "rsa-sha256"));
	CHECK(dkim_tags_get(&t, "b") == NULL);
	/* FWS around everything, trailing ";" */
	CHECK(tags(" \r\n\tv = 1 ;\r\n a\t=\r\n x y \t;  ", &t, &why) == 0 && t.n == 2);
	CHECK(tag_eq(&t, "v", "1") && tag_eq(&t, "a", "x y"));
	CHECK(tags("a=;b=", &t, &why) == 0 && t.n == 2 && tag_eq(&t, "a", "") && tag_eq(&t, "b", ""));
	CHECK(tags("x_1=2;Ab9=3", &t, &why) == 0 && tag_eq(&t, "x_1", "2") && tag_eq(&t, "Ab9", "3"));
	/* names are case-sensitive: "V" is not "v" */
	CHECK(tags("V=1; v=2", &t, &why) == 0 && tag_eq(&t, "v", "2") && tag_eq(&t, "V", "1"));
	/* "=" inside a value is fine (base64 padding) */
	CHECK(tags("b=abc==; c=d", &t, &why) == 0 && tag_eq(&t, "b", "abc=="));
	/* raw: everything between "=" and ";" */
	CHECK(tags("b= ab\r\n cd ;x=1", &t, &why) == 0);
	const struct dkim_tag *b = dkim_tags_get(&t, "b");
	CHECK(b && b->raw_len == 9 && memcmp(b->raw, " ab\r\n cd ", 9) == 0);
	CHECK(b && b->value_len == 7 && memcmp(b->value, "ab\r\n cd", 7) == 0);
	/* octets >= 0x80 pass in values */
	CHECK(tags("z=\xc3\xa9", &t, &why) == 0);
}

TEST(tags_errors)
{
	struct dkim_tags t;
	const char *why = NULL;
	CHECK(tags("", &t, &why) == -1 && strcmp(why, "empty tag list") == 0);
	CHECK(tags("  ;", &t, &why) == -1);
	CHECK(tags("a=1; a=2", &t, &why) == -1 && strcmp(why, "duplicate tag") == 0);
	CHECK(tags("a=1;;b=2", &t, &why) == -1 && strcmp(why, "empty tag") == 0);
	CHECK(tags("a=1;b", &t, &why) == -1 && strcmp(why, "tag without \"=\"") == 0);
	CHECK(tags("a=1;b;", &t, &why) == -1);
	CHECK(tags("1a=2", &t, &why) == -1 && strcmp(why, "invalid tag name") == 0);
	CHECK(tags("_a=2", &t, &why) == -1);
	CHECK(tags("a-b=2", &t, &why) == -1 && strcmp(why, "invalid tag name") == 0);
	CHECK(tags("a b=2", &t, &why) == -1);
	CHECK(tags("=2", &t, &why) == -1);
	CHECK(tags("a=x\001y", &t, &why) == -1 && strcmp(why, "control character in tag value") == 0);
	CHECK(dkim_tags_parse("a=x\0y", 5, &t, &why) == -1);
	CHECK(tags("a=\x7f", &t, &why) == -1);
	/* too many */
	char big[DKIM_TAGS_MAX * 8 + 16];
	size_t o = 0;
	for (int i = 0; i <= DKIM_TAGS_MAX; i++)
		o += (size_t)snprintf(big + o, sizeof(big) - o, "t%d=1;", i);
	CHECK(tags(big, &t, &why) == -1 && strcmp(why, "too many tags") == 0);
}

TEST(tags_lists)
{
	const char *item;
	size_t n, pos = 0;
	const char *v = "from : To:subject\r\n :: x";
	size_t len = strlen(v);
	CHECK(dkim_tag_list_next(v, len, &pos, &item, &n) == 1 && n == 4 && !memcmp(item, "from", 4));
	CHECK(dkim_tag_list_next(v, len, &pos, &item, &n) == 1 && n == 2 && !memcmp(item, "To", 2));
	CHECK(dkim_tag_list_next(v, len, &pos, &item, &n) == 1 && n == 7);
	CHECK(dkim_tag_list_next(v, len, &pos, &item, &n) == 1 && n == 0);
	CHECK(dkim_tag_list_next(v, len, &pos, &item, &n) == 1 && n == 1 && item[0] == 'x');
	CHECK(dkim_tag_list_next(v, len, &pos, &item, &n) == 0);
	pos = 0;
	CHECK(dkim_tag_list_next("", 0, &pos, &item, &n) == 1 && n == 0);
	CHECK(dkim_tag_list_next("", 0, &pos, &item, &n) == 0);
}

TEST(base64_values)
{
	unsigned char *out;
	size_t n;
	const char *why;
	CHECK(dkim_tag_base64(S("aGVsbG8="), &out, &n, &why) == 0 && n == 5 && !memcmp(out, "hello", 5));
	free(out);
	CHECK(dkim_tag_base64(S(" aGVs\r\n\tbG8h "), &out, &n, &why) == 0 && n == 6);
	free(out);
	CHECK(dkim_tag_base64(S("aGk="), &out, &n, &why) == 0 && n == 2);
	free(out);
	CHECK(dkim_tag_base64(S("aA=="), &out, &n, &why) == 0 && n == 1 && out[0] == 'h');
	free(out);
	CHECK(dkim_tag_base64(S(""), &out, &n, &why) == 0 && n == 0 && out);
	free(out);
	CHECK(dkim_tag_base64(S("aGVsbG8"), &out, &n, &why) == -1 && !out);	/* no padding */
	CHECK(dkim_tag_base64(S("aGV=bG8="), &out, &n, &why) == -1);
	CHECK(dkim_tag_base64(S("aA==="), &out, &n, &why) == -1);
	CHECK(dkim_tag_base64(S("a==="), &out, &n, &why) == -1);
	CHECK(dkim_tag_base64(S("===="), &out, &n, &why) == -1);
	CHECK(dkim_tag_base64(S("aGVs!G8="), &out, &n, &why) == -1 && strcmp(why, "invalid base64") == 0);
	CHECK(dkim_tag_base64(S("aGVsbG8=aGk="), &out, &n, &why) == -1);
}

TEST(domains)
{
	CHECK(dkim_domain_ok(S("example.com")));
	CHECK(dkim_domain_ok(S("a")));
	CHECK(dkim_domain_ok(S("sel_1.sub-x.Example.ORG")));
	CHECK(!dkim_domain_ok(S("")));
	CHECK(!dkim_domain_ok(S("example.com.")));
	CHECK(!dkim_domain_ok(S(".example.com")));
	CHECK(!dkim_domain_ok(S("a..b")));
	CHECK(!dkim_domain_ok(S("a b")));
	CHECK(!dkim_domain_ok(S("a/b")));
	CHECK(!dkim_domain_ok(S("ex\xc3\xa9.com")));
	char lab[70];
	memset(lab, 'a', 64);
	CHECK(dkim_domain_ok(lab, 63));
	CHECK(!dkim_domain_ok(lab, 64));
}

/* RFC 6376 3.5's example signature (b= cut short there: still base64) */
static const char rfc6376_sig[] =
	"v=1; a=rsa-sha256; d=example.net; s=brisbane;\r\n"
	"      c=simple; q=dns/txt; i=@eng.example.net;\r\n"
	"      t=1117574938; x=1118006938;\r\n"
	"      h=from:to:subject:date;\r\n"
	"      z=From:foo@eng.example.net|To:joe@example.com|\r\n"
	"       Subject:demo=20run|Date:July=205,=202005=203:44:08=20PM=20-0700;\r\n"
	"      bh=MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTI=;\r\n"
	"      b=dzdVyOfAKCdLXdJOc9G2q8LoXSlEniSbav+yuU4zGeeruD00lszZVoG4ZHRNiYzR";

TEST(sig_rfc6376_example)
{
	struct dkim_sig s;
	const char *why = NULL;
	CHECK(dkim_sig_parse(S(rfc6376_sig), &s, &why) == 0);
	CHECK(s.alg == DKIM_ALG_RSA_SHA256);
	CHECK(s.hcanon == DKIM_CANON_SIMPLE && s.bcanon == DKIM_CANON_SIMPLE);
	CHECK(s.domain && strcmp(s.domain, "example.net") == 0);
	CHECK(s.selector && strcmp(s.selector, "brisbane") == 0);
	CHECK(s.identity && strcmp(s.identity, "@eng.example.net") == 0);
	CHECK(s.nheaders == 4 && strcmp(s.headers[0], "from") == 0 && strcmp(s.headers[3], "date") == 0);
	CHECK(s.bh_len == 32 && memcmp(s.bh, "12345678901234567890123456789012", 32) == 0);
	CHECK(s.b_len == 48);
	CHECK(s.b_text && strcmp(s.b_text, "dzdVyOfAKCdLXdJOc9G2q8LoXSlEniSbav+yuU4zGeeruD00lszZVoG4ZHRNiYzR") == 0);
	CHECK(s.t == 1117574938 && s.x == 1118006938 && s.l == -1);
	/* b= raw region: from after "b=" to the end */
	CHECK(s.b_raw_off + s.b_raw_len == sizeof(rfc6376_sig) - 1);
	CHECK(memcmp(rfc6376_sig + s.b_raw_off - 2, "b=dzdV", 6) == 0);
	dkim_sig_clear(&s);
	dkim_sig_clear(&s);	/* twice is harmless */
}

/* RFC 8463 A.3, the Ed25519 signature */
static const char rfc8463_sig[] =
	"v=1; a=ed25519-sha256; c=relaxed/relaxed;\r\n"
	" d=football.example.com; i=@football.example.com;\r\n"
	" q=dns/txt; s=brisbane; t=1528637909; h=from : to :\r\n"
	" subject : date : message-id : from : subject : date;\r\n"
	" bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n"
	" b=/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11Bus\r\n"
	" Fa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw==";

TEST(sig_rfc8463_example)
{
	struct dkim_sig s;
	const char *why = NULL;
	CHECK(dkim_sig_parse(S(rfc8463_sig), &s, &why) == 0);
	CHECK(s.alg == DKIM_ALG_ED25519_SHA256);
	CHECK(strcmp(dkim_alg_name(s.alg), "ed25519-sha256") == 0);
	CHECK(dkim_alg_hash(s.alg) == DKIM_HASH_SHA256);
	CHECK(s.hcanon == DKIM_CANON_RELAXED && s.bcanon == DKIM_CANON_RELAXED);
	CHECK(s.nheaders == 8 && strcmp(s.headers[4], "message-id") == 0);
	CHECK(s.b_len == 64);
	CHECK(s.t == 1528637909 && s.x == -1);
	CHECK(strcmp(s.b_text, "/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11BusFa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw==") == 0);
	dkim_sig_clear(&s);
}

/* the reason a signature is refused, or "OK" */
static const char *sig_why(const char *v)
{
	struct dkim_sig s;
	const char *why = NULL;
	if (dkim_sig_parse(v, strlen(v), &s, &why) == 0) {
		dkim_sig_clear(&s);
		return "OK";
	}
	CHECK(s.domain == NULL && s.headers == NULL && s.b == NULL);
	return why;
}

#define BH "bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;"
#define BOK "b=dGVzdA==;"
#define BASE "v=1; a=rsa-sha256; d=example.com; s=sel; h=from:to; " BH BOK

TEST(sig_required_tags)
{
	CHECK(strcmp(sig_why(BASE), "OK") == 0);
	CHECK(strcmp(sig_why("a=rsa-sha256; d=example.com; s=sel; h=from; " BH BOK),
		     "signature missing required tag v=") == 0);
	CHECK(strcmp(sig_why("v=1; d=example.com; s=sel; h=from; " BH BOK),
		     "signature missing required tag a=") == 0);
	CHECK(strcmp(sig_why("v=1; a=rsa-sha256; d=example.com; s=sel; h=from; " BH),
		     "signature missing required tag b=") == 0);
	CHECK(strcmp(sig_why("v=1; a=rsa-sha256; d=example.com; s=sel; h=from; " BOK),
		     "signature missing required tag bh=") == 0);
	CHECK(strcmp(sig_why("v=1; a=rsa-sha256; s=sel; h=from; " BH BOK),
		     "signature missing required tag d=") == 0);
	CHECK(strcmp(sig_why("v=1; a=rsa-sha256; d=example.com; s=sel; " BH BOK),
		     "signature missing required tag h=") == 0);
	CHECK(strcmp(sig_why("v=1; a=rsa-sha256; d=example.com; h=from; " BH BOK),
		     "signature missing required tag s=") == 0);
}

TEST(sig_values)
{
	struct dkim_sig s;
	const char *why;
	CHECK(strcmp(sig_why("v=2; a=rsa-sha256; d=example.com; s=sel; h=from; " BH BOK),
		     "unsupported signature version (v= is not 1)") == 0);
	CHECK(strcmp(sig_why("v=1; a=rsa-md5; d=example.com; s=sel; h=from; " BH BOK),
		     "unsupported signature algorithm") == 0);
	CHECK(strcmp(sig_why("v=1; a=RSA-SHA256; d=example.com; s=sel; h=From; " BH BOK), "OK") == 0);
	/* rsa-sha1 parses (the verifier refuses it), with a 20-octet bh= */
	CHECK(strcmp(sig_why("v=1; a=rsa-sha1; d=example.com; s=sel; h=from; "
			     "bh=uoq1oCgLlTqpdDX/iUbLy7J1Wic=; " BOK), "OK") == 0);
	CHECK(strcmp(sig_why("v=1; a=rsa-sha1; d=example.com; s=sel; h=from; " BH BOK),
		     "bh= has the wrong length for the algorithm") == 0);
	CHECK(strcmp(sig_why(BASE "bh=x"), "duplicate tag") == 0);
	CHECK(strcmp(sig_why("v=1; a=rsa-sha256; d=example.com; s=sel; h=to:subject; " BH BOK),
		     "h= does not include From") == 0);
	CHECK(strcmp(sig_why("v=1; a=rsa-sha256; d=example.com; s=sel; h=from::to; " BH BOK),
		     "invalid field name in h=") == 0);
	CHECK(strcmp(sig_why("v=1; a=rsa-sha256; d=example.com; s=sel; h=from:t o; " BH BOK),
		     "invalid field name in h=") == 0);
	CHECK(strcmp(sig_why("v=1; a=rsa-sha256; d=exa mple.com; s=sel; h=from; " BH BOK),
		     "invalid domain in d=") == 0);
	CHECK(strcmp(sig_why("v=1; a=rsa-sha256; d=example.com; s=se/l; h=from; " BH BOK),
		     "invalid selector in s=") == 0);
	CHECK(strcmp(sig_why(BASE "bh=!!!!"), "duplicate tag") == 0);
	CHECK(strcmp(sig_why("v=1; a=rsa-sha256; d=example.com; s=sel; h=from; bh=!!!!; " BOK),
		     "bh= is not valid base64") == 0);
	CHECK(strcmp(sig_why("v=1; a=rsa-sha256; d=example.com; s=sel; h=from; " BH "b=a"),
		     "b= is not valid base64") == 0);
	CHECK(strcmp(sig_why("v=1; a=rsa-sha256; d=example.com; s=sel; h=from; " BH "b="),
		     "b= is empty") == 0);
	/* c= */
	CHECK(dkim_sig_parse(S(BASE "c=relaxed"), &s, &why) == 0 &&
	      s.hcanon == DKIM_CANON_RELAXED && s.bcanon == DKIM_CANON_SIMPLE);
	dkim_sig_clear(&s);
	CHECK(dkim_sig_parse(S(BASE "c=simple/relaxed"), &s, &why) == 0 &&
	      s.hcanon == DKIM_CANON_SIMPLE && s.bcanon == DKIM_CANON_RELAXED);
	dkim_sig_clear(&s);
	CHECK(strcmp(sig_why(BASE "c=relaxed/"), "unsupported canonicalization in c=") == 0);
	CHECK(strcmp(sig_why(BASE "c=nofws"), "unsupported canonicalization in c=") == 0);
	/* defaults */
	CHECK(dkim_sig_parse(S(BASE), &s, &why) == 0 && s.hcanon == DKIM_CANON_SIMPLE &&
	      s.bcanon == DKIM_CANON_SIMPLE && strcmp(s.identity, "@example.com") == 0 &&
	      s.l == -1 && s.t == -1 && s.x == -1);
	dkim_sig_clear(&s);
}

TEST(sig_identity_times_length)
{
	struct dkim_sig s;
	const char *why;
	CHECK(strcmp(sig_why(BASE "i=user@example.com"), "OK") == 0);
	CHECK(strcmp(sig_why(BASE "i=@mail.Example.COM"), "OK") == 0);
	CHECK(strcmp(sig_why(BASE "i=@xexample.com"), "i= domain is not d= or a subdomain of it") == 0);
	CHECK(strcmp(sig_why(BASE "i=@example.org"), "i= domain is not d= or a subdomain of it") == 0);
	CHECK(strcmp(sig_why(BASE "i=@com"), "i= domain is not d= or a subdomain of it") == 0);
	CHECK(strcmp(sig_why(BASE "i=example.com"), "i= has no \"@\"") == 0);
	CHECK(strcmp(sig_why(BASE "i=a@"), "invalid domain in i=") == 0);
	CHECK(dkim_sig_parse(S(BASE "l=1234; t=100; x=200"), &s, &why) == 0 &&
	      s.l == 1234 && s.t == 100 && s.x == 200);
	dkim_sig_clear(&s);
	CHECK(strcmp(sig_why(BASE "t=100; x=100"), "OK") == 0);
	CHECK(strcmp(sig_why(BASE "t=200; x=100"), "x= is before t=") == 0);
	CHECK(strcmp(sig_why(BASE "l=12a"), "invalid l= value") == 0);
	CHECK(strcmp(sig_why(BASE "l="), "invalid l= value") == 0);
	CHECK(strcmp(sig_why(BASE "l=-1"), "invalid l= value") == 0);
	CHECK(strcmp(sig_why(BASE "l=1234567890123456789"), "invalid l= value") == 0);
	CHECK(strcmp(sig_why(BASE "t=x"), "invalid t= value") == 0);
	CHECK(strcmp(sig_why(BASE "x=1.5"), "invalid x= value") == 0);
	CHECK(strcmp(sig_why(BASE "q=dns/txt"), "OK") == 0);
	CHECK(strcmp(sig_why(BASE "q=other:DNS/TXT"), "OK") == 0);
	CHECK(strcmp(sig_why(BASE "q=dns"), "unsupported query method in q=") == 0);
	CHECK(strcmp(sig_why(BASE "z=anything|goes; foo=bar"), "OK") == 0);
}

TEST(sig_many_headers)
{
	char buf[4096];
	int o = snprintf(buf, sizeof(buf), "v=1; a=rsa-sha256; d=example.com; s=sel; " BH BOK "h=from");
	for (int i = 0; i < DKIM_SIG_MAX_HEADERS - 1; i++)
		o += snprintf(buf + o, sizeof(buf) - (size_t)o, ":x");
	CHECK(strcmp(sig_why(buf), "OK") == 0);
	snprintf(buf + o, sizeof(buf) - (size_t)o, ":y");
	CHECK(strcmp(sig_why(buf), "h= lists too many fields") == 0);
}

/* ------------------------------------------------------------ key records */

static const char rfc8463_ed_key[] = "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
static const char rfc8463_rsa_key[] =
	"v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWR"
	"iGs5V6NpP3idY6Wk08a5qhdR6wy5bdOKb2jLQiY/J16JYi0Qvx/byYzCNb3W91y3FutAC"
	"DfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqMKrM3rG4hstT5QjvHO9PzoxZyVYLzBfO2EeC3"
	"Ip3G+2kryOTIKT+l/K4w3QIDAQAB";

static const char *key_why(const char *txt, struct dkim_keyrec *k)
{
	const char *why = NULL;
	if (dkim_keyrec_parse(txt, strlen(txt), k, &why) == 0)
		return "OK";
	CHECK(k->pkey == NULL);
	return why;
}

TEST(keyrec_rfc8463)
{
	struct dkim_keyrec k;
	CHECK(strcmp(key_why(rfc8463_ed_key, &k), "OK") == 0);
	CHECK(k.type == DKIM_KEYTYPE_ED25519 && k.pkey && k.bits == 256);
	CHECK(EVP_PKEY_get_base_id(k.pkey) == EVP_PKEY_ED25519);
	CHECK(k.hashes == (DKIM_KEYREC_SHA256 | DKIM_KEYREC_SHA1) && k.email && !k.testing && !k.strict);
	dkim_keyrec_clear(&k);
	CHECK(strcmp(key_why(rfc8463_rsa_key, &k), "OK") == 0);
	CHECK(k.type == DKIM_KEYTYPE_RSA && k.pkey && k.bits == 1024);
	CHECK(strcmp(dkim_keytype_name(k.type), "rsa") == 0);
	dkim_keyrec_clear(&k);
	dkim_keyrec_clear(&k);
}

/* "p=" + base64 of der */
static char *p_value(const unsigned char *der, int n, const char *prefix)
{
	size_t pl = strlen(prefix);
	char *s = malloc(pl + (size_t)n * 2 + 8);
	memcpy(s, prefix, pl);
	EVP_EncodeBlock((unsigned char *)s + pl, der, n);
	return s;
}

TEST(keyrec_rsa_forms)
{
	struct dkim_keyrec k;
	EVP_PKEY *pk = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
	CHECK(pk != NULL);
	if (!pk)
		return;
	unsigned char *der = NULL;
	/* PKCS#1 RSAPublicKey */
	int n = i2d_PublicKey(pk, &der);
	char *rec = p_value(der, n, "k=rsa; p=");
	CHECK(strcmp(key_why(rec, &k), "OK") == 0 && k.bits == 1024);
	CHECK(k.pkey && EVP_PKEY_eq(k.pkey, pk) == 1);
	dkim_keyrec_clear(&k);
	free(rec);
	OPENSSL_free(der);
	/* SubjectPublicKeyInfo, no k= (rsa default), folded with spaces */
	der = NULL;
	n = i2d_PUBKEY(pk, &der);
	rec = p_value(der, n, "p=");
	char spaced[1024];
	snprintf(spaced, sizeof(spaced), "%.*s %s", 20, rec, rec + 20);
	CHECK(strcmp(key_why(spaced, &k), "OK") == 0 && k.bits == 1024 && EVP_PKEY_eq(k.pkey, pk) == 1);
	dkim_keyrec_clear(&k);
	/* trailing garbage after the DER */
	unsigned char *der2 = malloc((size_t)n + 3);
	memcpy(der2, der, (size_t)n);
	memcpy(der2 + n, "\0\0\0", 3);
	char *rec2 = p_value(der2, n + 3, "p=");
	CHECK(strcmp(key_why(rec2, &k), "p= is not an RSA public key") == 0);
	free(rec2);
	free(der2);
	/* an RSA key under k=ed25519 */
	rec2 = p_value(der, n, "k=ed25519; p=");
	CHECK(strcmp(key_why(rec2, &k), "p= is not an ed25519 public key (32 octets)") == 0);
	free(rec2);
	free(rec);
	OPENSSL_free(der);
	EVP_PKEY_free(pk);

	/* 512 bits: refused, with its size told */
	pk = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)512);
	der = NULL;
	n = i2d_PUBKEY(pk, &der);
	rec = p_value(der, n, "v=DKIM1; p=");
	CHECK(strcmp(key_why(rec, &k), "RSA key shorter than 1024 bits") == 0 && k.bits == 512);
	free(rec);
	OPENSSL_free(der);
	EVP_PKEY_free(pk);

	/* an ed25519 SPKI is not what RFC 8463 publishes */
	pk = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	der = NULL;
	n = i2d_PUBKEY(pk, &der);
	rec = p_value(der, n, "k=ed25519; p=");
	CHECK(strcmp(key_why(rec, &k), "p= is not an ed25519 public key (32 octets)") == 0);
	free(rec);
	/* ... nor an RSA key */
	rec = p_value(der, n, "k=rsa; p=");
	CHECK(strcmp(key_why(rec, &k), "p= is not an RSA public key") == 0);
	free(rec);
	OPENSSL_free(der);
	EVP_PKEY_free(pk);
}

TEST(keyrec_tags)
{
	struct dkim_keyrec k;
	const char *ed = "p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
	char rec[256];
	CHECK(strcmp(key_why("k=ed25519; p=", &k), "key revoked") == 0 && k.revoked);
	CHECK(strcmp(key_why("v=DKIM1; p= ", &k), "key revoked") == 0 && k.revoked);
	CHECK(strcmp(key_why("v=DKIM1; k=rsa", &k), "key record has no p=") == 0);
	CHECK(strcmp(key_why("k=rsa; v=DKIM1; p=", &k), "v= is not the first tag of the key record") == 0);
	CHECK(strcmp(key_why("v=DKIM2; p=", &k), "unsupported key record version (v= is not DKIM1)") == 0);
	CHECK(strcmp(key_why("v=DKIM1; k=dsa; p=", &k), "unsupported key type in k=") == 0);
	CHECK(strcmp(key_why("v=DKIM1; p=abc", &k), "p= is not valid base64") == 0);
	CHECK(strcmp(key_why("v=DKIM1; p=YWJj", &k), "p= is not an RSA public key") == 0);
	CHECK(strcmp(key_why("v=DKIM1; p=;p=", &k), "duplicate tag") == 0);
	CHECK(strcmp(key_why("", &k), "empty tag list") == 0);

	snprintf(rec, sizeof(rec), "k=ed25519; h=sha1:sha512; s=email:other; t=y:s:q; n=notes; %s", ed);
	CHECK(strcmp(key_why(rec, &k), "OK") == 0);
	CHECK(k.hashes == DKIM_KEYREC_SHA1 && k.email && k.testing && k.strict);
	dkim_keyrec_clear(&k);
	snprintf(rec, sizeof(rec), "k=ed25519; h=SHA256; s=*; t=s; %s", ed);
	CHECK(strcmp(key_why(rec, &k), "OK") == 0);
	CHECK(k.hashes == DKIM_KEYREC_SHA256 && k.email && !k.testing && k.strict);
	dkim_keyrec_clear(&k);
	snprintf(rec, sizeof(rec), "k=ed25519; s=tlsrpt; %s", ed);
	CHECK(strcmp(key_why(rec, &k), "OK") == 0 && !k.email);
	dkim_keyrec_clear(&k);
	/* a TXT record as strings joined with a break inside the base64 */
	CHECK(strcmp(key_why("v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7Ty  WQHOg7hcvPapiMlrwIaaPcHURo=", &k),
		     "OK") == 0);
	dkim_keyrec_clear(&k);
	/* 31 octets */
	CHECK(strcmp(key_why("k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHUQ==", &k),
		     "p= is not an ed25519 public key (32 octets)") == 0);
}

int main(void)
{
	RUN(tags_basic);
	RUN(tags_errors);
	RUN(tags_lists);
	RUN(base64_values);
	RUN(domains);
	RUN(sig_rfc6376_example);
	RUN(sig_rfc8463_example);
	RUN(sig_required_tags);
	RUN(sig_values);
	RUN(sig_identity_times_length);
	RUN(sig_many_headers);
	RUN(keyrec_rfc8463);
	RUN(keyrec_rsa_forms);
	RUN(keyrec_tags);
	return unit_done();
}
