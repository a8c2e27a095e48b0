/*
 * test_dkim_canon - unit tests for DKIM canonicalization
 * (filters/dkim_canon.c): header fields, the body hash with every
 * chunking of each input, l= limits, empty bodies, RFC 6376 examples.
 */
#include "dkim_canon.h"
#include "unit.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#define S(lit) lit, sizeof(lit) - 1

/* The header canonical form of field as a NUL-terminated string (static). */
static const char *hdr(enum dkim_canon c, const char *field, int crlf)
{
	static char out[1024];
	char *buf = NULL;
	size_t len = 0, cap = 0;
	if (dkim_canon_header(c, field, strlen(field), crlf, &buf, &len, &cap) < 0 ||
	    len >= sizeof(out)) {
		free(buf);
		return "ERROR";
	}
	memcpy(out, buf, len);
	out[len] = '\0';
	free(buf);
	return out;
}

TEST(canon_names)
{
	enum dkim_canon c = DKIM_CANON_RELAXED;
	CHECK(dkim_canon_parse(S("simple"), &c) == 0 && c == DKIM_CANON_SIMPLE);
	CHECK(dkim_canon_parse(S("relaxed"), &c) == 0 && c == DKIM_CANON_RELAXED);
	CHECK(dkim_canon_parse(S("Relaxed"), &c) == -1);
	CHECK(dkim_canon_parse(S("relaxe"), &c) == -1);
	CHECK(dkim_canon_parse(S(""), &c) == -1);
	CHECK(strcmp(dkim_canon_name(DKIM_CANON_SIMPLE), "simple") == 0);
	CHECK(strcmp(dkim_canon_name(DKIM_CANON_RELAXED), "relaxed") == 0);
}

/* RFC 6376 3.4.5 */
TEST(header_rfc_example)
{
	CHECK(strcmp(hdr(DKIM_CANON_RELAXED, "A: X\r\n", 1), "a:X\r\n") == 0);
	CHECK(strcmp(hdr(DKIM_CANON_RELAXED, "B : Y\t\r\n\tZ  \r\n", 1), "b:Y Z\r\n") == 0);
	CHECK(strcmp(hdr(DKIM_CANON_SIMPLE, "A: X\r\n", 1), "A: X\r\n") == 0);
	CHECK(strcmp(hdr(DKIM_CANON_SIMPLE, "B : Y\t\r\n\tZ  \r\n", 1), "B : Y\t\r\n\tZ  \r\n") == 0);
}

TEST(header_forms)
{
	/* with or without the final CRLF; crlf=0 leaves it off */
	CHECK(strcmp(hdr(DKIM_CANON_SIMPLE, "Subject: hi", 1), "Subject: hi\r\n") == 0);
	CHECK(strcmp(hdr(DKIM_CANON_SIMPLE, "Subject: hi\r\n", 0), "Subject: hi") == 0);
	CHECK(strcmp(hdr(DKIM_CANON_RELAXED, "Subject: hi\r\n", 0), "subject:hi") == 0);
	CHECK(strcmp(hdr(DKIM_CANON_RELAXED, "SUBJECT:hi", 0), "subject:hi") == 0);
	/* empty value, only whitespace */
	CHECK(strcmp(hdr(DKIM_CANON_RELAXED, "X-Empty:", 1), "x-empty:\r\n") == 0);
	CHECK(strcmp(hdr(DKIM_CANON_RELAXED, "X-Empty: \t \r\n  ", 1), "x-empty:\r\n") == 0);
	/* inner whitespace runs and folds become one space */
	CHECK(strcmp(hdr(DKIM_CANON_RELAXED, "To:  a \t b\r\n\r\n c", 0), "to:a b c") == 0);
	CHECK(strcmp(hdr(DKIM_CANON_RELAXED, "To: a\r\n\tb", 0), "to:a b") == 0);
	/* the value's case and a second colon are untouched */
	CHECK(strcmp(hdr(DKIM_CANON_RELAXED, "X-A: B:C d", 0), "x-a:B:C d") == 0);
	/* the DKIM-Signature field with b= emptied */
	CHECK(strcmp(hdr(DKIM_CANON_RELAXED, "DKIM-Signature: v=1; a=rsa-sha256;\r\n\tb=", 0),
		     "dkim-signature:v=1; a=rsa-sha256; b=") == 0);
}

TEST(header_appends)
{
	char *buf = NULL;
	size_t len = 0, cap = 0;
	CHECK(dkim_canon_header(DKIM_CANON_RELAXED, S("A: 1\r\n"), 1, &buf, &len, &cap) == 0);
	CHECK(dkim_canon_header(DKIM_CANON_SIMPLE, S("B: 2"), 1, &buf, &len, &cap) == 0);
	for (int i = 0; i < 200; i++)
		CHECK(dkim_canon_header(DKIM_CANON_RELAXED, S("C: 3"), 1, &buf, &len, &cap) == 0);
	CHECK(len == 5 + 6 + 200 * 5);
	CHECK(buf && memcmp(buf, "a:1\r\nB: 2\r\nc:3\r\n", 16) == 0);
	free(buf);
}

/* sha256 of the first n octets of s */
static void sha256(const char *s, size_t n, unsigned char *out)
{
	unsigned int len;
	EVP_Digest(s, n, out, &len, EVP_sha256(), NULL);
}

/* The body hash of in fed in the pieces [0,a) [a,b) [b,n); 0 or -1. */
static int body3(enum dkim_canon c, long long limit, const char *in, size_t n, size_t a,
		 size_t b, unsigned char *dg, unsigned long long *clen)
{
	struct dkim_body_hash *bh = dkim_body_hash_new(c, DKIM_HASH_SHA256, limit);
	if (!bh)
		return -1;
	dkim_body_hash_update(bh, in, a);
	dkim_body_hash_update(bh, in + a, b - a);
	dkim_body_hash_update(bh, in + b, n - b);
	int r = dkim_body_hash_final(bh, dg, clen);
	dkim_body_hash_free(bh);
	return r == 32 ? 0 : -1;
}

/* Checks that in canonicalizes to want (every two-cut chunking and one
 * octet at a time), with and without limits. 1 if all agree. */
static int body_is(enum dkim_canon c, const char *in, const char *want)
{
	size_t n = strlen(in), wn = strlen(want);
	unsigned char exp[32], got[32];
	unsigned long long clen;
	long long limits[] = {-1, 0, 1, 2, 3, (long long)wn / 2, (long long)wn, (long long)wn + 5};

	for (size_t li = 0; li < sizeof(limits) / sizeof(limits[0]); li++) {
		long long lim = limits[li];
		sha256(want, lim < 0 || (size_t)lim > wn ? wn : (size_t)lim, exp);
		for (size_t a = 0; a <= n; a++)
			for (size_t b = a; b <= n; b++) {
				if (body3(c, lim, in, n, a, b, got, &clen) < 0)
					return 0;
				if (memcmp(got, exp, 32) != 0 || clen != wn)
					return 0;
			}
	}
	struct dkim_body_hash *bh = dkim_body_hash_new(c, DKIM_HASH_SHA256, -1);
	for (size_t i = 0; i < n; i++)
		dkim_body_hash_update(bh, in + i, 1);
	dkim_body_hash_update(bh, in, 0);
	int r = dkim_body_hash_final(bh, got, &clen);
	dkim_body_hash_free(bh);
	sha256(want, wn, exp);
	return r == 32 && memcmp(got, exp, 32) == 0 && clen == wn;
}

TEST(body_rfc_example)
{
	/* RFC 6376 3.4.5 */
	CHECK(body_is(DKIM_CANON_RELAXED, " C \r\nD \t E\r\n\r\n\r\n", " C\r\nD E\r\n"));
	CHECK(body_is(DKIM_CANON_SIMPLE, " C \r\nD \t E\r\n\r\n\r\n", " C \r\nD \t E\r\n"));
}

TEST(body_empty)
{
	CHECK(body_is(DKIM_CANON_SIMPLE, "", "\r\n"));
	CHECK(body_is(DKIM_CANON_SIMPLE, "\r\n", "\r\n"));
	CHECK(body_is(DKIM_CANON_SIMPLE, "\r\n\r\n\r\n", "\r\n"));
	CHECK(body_is(DKIM_CANON_RELAXED, "", ""));
	CHECK(body_is(DKIM_CANON_RELAXED, "\r\n", ""));
	CHECK(body_is(DKIM_CANON_RELAXED, "\r\n\r\n", ""));
	CHECK(body_is(DKIM_CANON_RELAXED, " \t\r\n  \r\n\t", ""));
	/* whitespace-only lines are content in simple */
	CHECK(body_is(DKIM_CANON_SIMPLE, " \r\n\r\n", " \r\n"));
}

TEST(body_known_digests)
{
	/* the well-known bh= of empty bodies */
	static const char simple_b64[] = "frcCV1k9oG9oKj3dpUqdJg1PxRT2RSN/XKdLCPjaYaY=";
	static const char relaxed_b64[] = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
	unsigned char dg[32], enc[64];
	struct dkim_body_hash *bh = dkim_body_hash_new(DKIM_CANON_SIMPLE, DKIM_HASH_SHA256, -1);
	CHECK(dkim_body_hash_final(bh, dg, NULL) == 32);
	dkim_body_hash_free(bh);
	EVP_EncodeBlock(enc, dg, 32);
	CHECK(strcmp((char *)enc, simple_b64) == 0);
	bh = dkim_body_hash_new(DKIM_CANON_RELAXED, DKIM_HASH_SHA256, -1);
	dkim_body_hash_update(bh, S("\r\n"));
	CHECK(dkim_body_hash_final(bh, dg, NULL) == 32);
	CHECK(dkim_body_hash_final(bh, dg, NULL) == -1);	/* once only */
	dkim_body_hash_free(bh);
	EVP_EncodeBlock(enc, dg, 32);
	CHECK(strcmp((char *)enc, relaxed_b64) == 0);
	/* sha1 */
	bh = dkim_body_hash_new(DKIM_CANON_SIMPLE, DKIM_HASH_SHA1, -1);
	CHECK(dkim_body_hash_final(bh, dg, NULL) == 20);
	dkim_body_hash_free(bh);
	EVP_EncodeBlock(enc, dg, 20);
	CHECK(strcmp((char *)enc, "uoq1oCgLlTqpdDX/iUbLy7J1Wic=") == 0);
}

TEST(body_missing_final_crlf)
{
	CHECK(body_is(DKIM_CANON_SIMPLE, "abc", "abc\r\n"));
	CHECK(body_is(DKIM_CANON_RELAXED, "abc", "abc\r\n"));
	CHECK(body_is(DKIM_CANON_RELAXED, "abc  ", "abc\r\n"));
	CHECK(body_is(DKIM_CANON_SIMPLE, "a\r\n\r\nb", "a\r\n\r\nb\r\n"));
	CHECK(body_is(DKIM_CANON_SIMPLE, "abc  ", "abc  \r\n"));
}

TEST(body_inner_lines)
{
	CHECK(body_is(DKIM_CANON_SIMPLE, "a\r\n\r\n\r\nb\r\n\r\n", "a\r\n\r\n\r\nb\r\n"));
	CHECK(body_is(DKIM_CANON_RELAXED, "a \r\n \r\n\t\r\nb\r\n \r\n", "a\r\n\r\n\r\nb\r\n"));
	CHECK(body_is(DKIM_CANON_RELAXED, "  lead\t \tin  out  \r\n", " lead in out\r\n"));
	CHECK(body_is(DKIM_CANON_RELAXED, "\r\n\r\nx\r\n", "\r\n\r\nx\r\n"));
	CHECK(body_is(DKIM_CANON_SIMPLE, "\r\n\r\nx\r\n", "\r\n\r\nx\r\n"));
}

TEST(body_bare_cr_lf)
{
	/* a CR not followed by LF, or an LF alone, is content */
	CHECK(body_is(DKIM_CANON_SIMPLE, "a\rb\r\n", "a\rb\r\n"));
	CHECK(body_is(DKIM_CANON_SIMPLE, "a\r\r\nb", "a\r\r\nb\r\n"));
	CHECK(body_is(DKIM_CANON_SIMPLE, "a\nb\r\n", "a\nb\r\n"));
	CHECK(body_is(DKIM_CANON_SIMPLE, "a\r", "a\r\r\n"));
	CHECK(body_is(DKIM_CANON_RELAXED, "a \r b\r\n", "a \r b\r\n"));
	CHECK(body_is(DKIM_CANON_RELAXED, "\r", "\r\r\n"));
}

TEST(body_limit_length)
{
	/* canon_len counts all canonical octets, past l= too */
	unsigned char dg[32], exp[32];
	unsigned long long clen = 0;
	struct dkim_body_hash *bh = dkim_body_hash_new(DKIM_CANON_SIMPLE, DKIM_HASH_SHA256, 5);
	dkim_body_hash_update(bh, S("hello world\r\n\r\n"));
	CHECK(dkim_body_hash_final(bh, dg, &clen) == 32);
	dkim_body_hash_free(bh);
	CHECK(clen == 13);
	sha256("hello", 5, exp);
	CHECK(memcmp(dg, exp, 32) == 0);
}

TEST(body_large)
{
	/* a body bigger than the internal buffer, against the one-shot digest */
	size_t n = 100000;
	char *in = malloc(n), *want = malloc(n + 2);
	size_t w = 0;
	for (size_t i = 0; i < n; i++)
		in[i] = (i % 77 == 75) ? '\r' : (i % 77 == 76) ? '\n' : (char)('a' + i % 26);
	memcpy(want, in, n);
	w = n;
	/* n = 100000, 100000 % 77 = 54: the last line lacks its CRLF */
	want[w++] = '\r';
	want[w++] = '\n';
	unsigned char exp[32], got[32];
	unsigned long long clen;
	sha256(want, w, exp);
	for (size_t step = 1; step < 9000; step = step * 3 + 1) {
		struct dkim_body_hash *bh = dkim_body_hash_new(DKIM_CANON_SIMPLE, DKIM_HASH_SHA256, -1);
		for (size_t o = 0; o < n; o += step)
			dkim_body_hash_update(bh, in + o, o + step > n ? n - o : step);
		CHECK(dkim_body_hash_final(bh, got, &clen) == 32);
		dkim_body_hash_free(bh);
		CHECK(memcmp(got, exp, 32) == 0 && clen == w);
	}
	sha256(want, 4097, exp);
	struct dkim_body_hash *bh = dkim_body_hash_new(DKIM_CANON_SIMPLE, DKIM_HASH_SHA256, 4097);
	dkim_body_hash_update(bh, in, n);
	CHECK(dkim_body_hash_final(bh, got, &clen) == 32);
	dkim_body_hash_free(bh);
	CHECK(memcmp(got, exp, 32) == 0);
	free(in);
	free(want);
}

TEST(body_relaxed_long_runs)
{
	/* runs of ordinary octets longer than the internal buffer, whitespace
	 * runs folded, trailing whitespace and empty lines dropped */
	size_t n = 30000;
	char *in = malloc(n + 16), *want = malloc(n + 16);
	size_t i = 0, w = 0;
	while (i < n) {
		size_t run = 5000 + i % 3;	/* 5000.. octets without whitespace */
		for (size_t k = 0; k < run && i < n; k++, i++)
			in[i] = want[w++] = (char)('a' + k % 26);
		in[i++] = ' ';
		in[i++] = '\t';
		in[i++] = ' ';
		want[w++] = ' ';
	}
	memcpy(in + i, "\t \r\n\r\n", 6);
	i += 6;
	w--;			/* the folded whitespace at the end of the line goes */
	memcpy(want + w, "\r\n", 2);
	w += 2;
	unsigned char exp[32], got[32];
	unsigned long long clen;
	sha256(want, w, exp);
	for (size_t step = 1; step < 40000; step = step * 7 + 3) {
		struct dkim_body_hash *bh = dkim_body_hash_new(DKIM_CANON_RELAXED, DKIM_HASH_SHA256, -1);
		for (size_t o = 0; o < i; o += step)
			dkim_body_hash_update(bh, in + o, o + step > i ? i - o : step);
		CHECK(dkim_body_hash_final(bh, got, &clen) == 32);
		dkim_body_hash_free(bh);
		CHECK(memcmp(got, exp, 32) == 0 && clen == w);
	}
	free(in);
	free(want);
}

TEST(body_null_safe)
{
	dkim_body_hash_update(NULL, "x", 1);
	dkim_body_hash_free(NULL);
	CHECK(dkim_body_hash_final(NULL, NULL, NULL) == -1);
}

int main(void)
{
	RUN(canon_names);
	RUN(header_rfc_example);
	RUN(header_forms);
	RUN(header_appends);
	RUN(body_rfc_example);
	RUN(body_empty);
	RUN(body_known_digests);
	RUN(body_missing_final_crlf);
	RUN(body_inner_lines);
	RUN(body_bare_cr_lf);
	RUN(body_limit_length);
	RUN(body_large);
	RUN(body_relaxed_long_runs);
	RUN(body_null_safe);
	return unit_done();
}
