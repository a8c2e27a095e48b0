/*
 * fuzz_dkim_sig - libFuzzer target for the DKIM tag-list parser
 * (filters/dkim_tags.c), the DKIM-Signature parser (filters/dkim_sig.c)
 * and the verifier's handling of a header block (filters/dkim_verify.c):
 * every DKIM-Signature value comes from the sender, untrusted.
 *
 * Checks, abort()ing on violation:
 *  - nothing reads outside the input (ASan; it is not NUL-terminated);
 *  - the tag parser returns 0 or -1; on 0 every tag's name, value and raw
 *    region lie inside the input, names are ALPHA *(ALPHA/DIGIT/"_")
 *    and pairwise distinct; on -1 the reason is non-empty printable text;
 *  - a parsed signature has d=, s=, i= (with "@"), h= listing From, a
 *    bh= of its digest's size, a non-empty b=, and its b= raw region
 *    inside the input; a refused one has a printable reason;
 *  - the input as a DKIM-Signature field of a message with an empty
 *    body, verified with a key supplied (Ed25519 or RSA by the input's
 *    length), gives a result per signature and never a pass.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dkim_sig.h"
#include "dkim_tags.h"
#include "dkim_verify.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_reason(const char *why)
{
	if (!why || !*why)
		abort();
	for (const char *p = why; *p; p++)
		if (*p < 0x20 || *p > 0x7e)
			abort();
}

static int inside(const char *p, size_t n, const char *buf, size_t size)
{
	return p >= buf && p + n <= buf + size;
}

static void tags(const char *in, size_t size)
{
	struct dkim_tags t;
	const char *why = NULL;
	int r = dkim_tags_parse(in, size, &t, &why);
	if (r == -1) {
		check_reason(why);
		return;
	}
	if (r != 0 || t.n == 0 || t.n > DKIM_TAGS_MAX)
		abort();
	for (size_t i = 0; i < t.n; i++) {
		const struct dkim_tag *g = &t.tag[i];
		if (!inside(g->name, g->name_len, in, size) || !inside(g->value, g->value_len, in, size) ||
		    !inside(g->raw, g->raw_len, in, size) || g->name_len == 0)
			abort();
		if (g->value < g->raw || g->value + g->value_len > g->raw + g->raw_len)
			abort();
		unsigned char c0 = (unsigned char)g->name[0];
		if (!((c0 | 0x20) >= 'a' && (c0 | 0x20) <= 'z'))
			abort();
		for (size_t k = 0; k < g->name_len; k++) {
			unsigned char c = (unsigned char)g->name[k];
			if (!(((c | 0x20) >= 'a' && (c | 0x20) <= 'z') || (c >= '0' && c <= '9') || c == '_'))
				abort();
		}
		for (size_t j = 0; j < i; j++)
			if (t.tag[j].name_len == g->name_len && !memcmp(t.tag[j].name, g->name, g->name_len))
				abort();
	}
}

static void sig(const char *in, size_t size)
{
	struct dkim_sig s;
	const char *why = NULL;
	if (dkim_sig_parse(in, size, &s, &why) < 0) {
		check_reason(why);
		if (s.domain || s.headers || s.b)
			abort();
		return;
	}
	if (!s.domain || !s.selector || !s.identity || !strchr(s.identity, '@') || !s.b_text)
		abort();
	int from = 0;
	for (size_t i = 0; i < s.nheaders; i++)
		from |= strcasecmp(s.headers[i], "from") == 0;
	if (!from || s.nheaders > DKIM_SIG_MAX_HEADERS)
		abort();
	if (s.bh_len != (dkim_alg_hash(s.alg) == DKIM_HASH_SHA1 ? 20u : 32u) || s.b_len == 0)
		abort();
	if (s.b_raw_off + s.b_raw_len > size)
		abort();
	if (s.t >= 0 && s.x >= 0 && s.x < s.t)
		abort();
	dkim_sig_clear(&s);
}

static void verify(const char *in, size_t size, int rsa)
{
	static const char *const keys[] = {
		"v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=",
		"v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWR"
		"iGs5V6NpP3idY6Wk08a5qhdR6wy5bdOKb2jLQiY/J16JYi0Qvx/byYzCNb3W91y3FutAC"
		"DfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqMKrM3rG4hstT5QjvHO9PzoxZyVYLzBfO2EeC3"
		"Ip3G+2kryOTIKT+l/K4w3QIDAQAB",
	};
	static const char pre[] = "From: a@example.com\r\nDKIM-Signature:";
	static const char post[] = "\r\nTo: b@example.org\r\nSubject: x\r\n\r\n";
	size_t n = sizeof(pre) - 1 + size + sizeof(post) - 1;
	char *m = malloc(n);
	if (!m)
		return;
	memcpy(m, pre, sizeof(pre) - 1);
	memcpy(m + sizeof(pre) - 1, in, size);
	memcpy(m + sizeof(pre) - 1 + size, post, sizeof(post) - 1);
	struct dkim_verifier *v = dkim_verifier_new(NULL);
	if (v && dkim_verifier_headers(v, m, n) == 0) {
		for (size_t i = 0; i < dkim_verifier_count(v); i++)
			if (dkim_verifier_key_name(v, i))
				dkim_verifier_key(v, i, DKIM_KEY_OK, &keys[rsa], 1);
		/* an empty body: its bh= is well known, so a signature whose
		 * bh= matches (seeds have them) reaches the header hash */
		dkim_verifier_finish(v);
		for (size_t i = 0; i < dkim_verifier_count(v); i++) {
			const struct dkim_result *r = dkim_verifier_result(v, i);
			if (!r || r->status == DKIM_PASS || !r->reason)
				abort();
			check_reason(r->reason);
		}
	}
	dkim_verifier_free(v);
	free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 8192)
		return 0;
	char *in = malloc(size ? size : 1);
	if (!in)
		return 0;
	memcpy(in, data, size);
	tags(in, size);
	sig(in, size);
	verify(in, size, size & 1);
	free(in);
	return 0;
}
