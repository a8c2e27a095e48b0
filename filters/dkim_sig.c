/*
 * dkim_sig.c - parses and checks a DKIM-Signature field value into a
 * struct dkim_sig (RFC 6376 3.5; a= per RFC 8301 and RFC 8463).
 *
 * Owns the copies it makes into struct dkim_sig, until dkim_sig_clear().
 */
#include "dkim_sig.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dkim_tags.h"

static const struct {
	const char *name;
	enum dkim_alg alg;
} algs[] = {
	{"rsa-sha256", DKIM_ALG_RSA_SHA256},
	{"ed25519-sha256", DKIM_ALG_ED25519_SHA256},
	{"rsa-sha1", DKIM_ALG_RSA_SHA1},
};

const char *dkim_alg_name(enum dkim_alg a)
{
	for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++)
		if (algs[i].alg == a)
			return algs[i].name;
	return "unknown";
}

enum dkim_hash dkim_alg_hash(enum dkim_alg a)
{
	return a == DKIM_ALG_RSA_SHA1 ? DKIM_HASH_SHA1 : DKIM_HASH_SHA256;
}

static char *dup_n(const char *s, size_t n)
{
	char *d = malloc(n + 1);
	if (d) {
		memcpy(d, s, n);
		d[n] = '\0';
	}
	return d;
}

/* Decimal digits, at most max of them, into *out. 0 or -1. */
static int number(const struct dkim_tag *t, size_t max, long long *out)
{
	long long v = 0;
	if (t->value_len == 0 || t->value_len > max)
		return -1;
	for (size_t i = 0; i < t->value_len; i++) {
		if (t->value[i] < '0' || t->value[i] > '9')
			return -1;
		v = v * 10 + (t->value[i] - '0');
	}
	*out = v;
	return 0;
}

/* ftext: printable ASCII but ":" */
static int field_name_ok(const char *s, size_t n)
{
	if (n == 0)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (s[i] < 33 || s[i] > 126 || s[i] == ':')
			return 0;
	return 1;
}

static int parse_h(const struct dkim_tag *t, struct dkim_sig *out, const char **why)
{
	size_t pos = 0, n;
	const char *item;
	int from = 0;

	/* count first: one array */
	size_t count = 0;
	while (dkim_tag_list_next(t->value, t->value_len, &pos, &item, &n))
		count++;
	if (count > DKIM_SIG_MAX_HEADERS) {
		*why = "h= lists too many fields";
		return -1;
	}
	out->headers = calloc(count, sizeof(char *));
	if (!out->headers) {
		*why = "out of memory";
		return -1;
	}
	pos = 0;
	while (dkim_tag_list_next(t->value, t->value_len, &pos, &item, &n)) {
		if (!field_name_ok(item, n)) {
			*why = "invalid field name in h=";
			return -1;
		}
		if (n == 4 && strncasecmp(item, "from", 4) == 0)
			from = 1;
		if (!(out->headers[out->nheaders] = dup_n(item, n))) {
			*why = "out of memory";
			return -1;
		}
		out->nheaders++;
	}
	if (!from) {
		*why = "h= does not include From";
		return -1;
	}
	return 0;
}

static int parse_c(const struct dkim_tag *t, struct dkim_sig *out)
{
	const char *slash = memchr(t->value, '/', t->value_len);
	size_t hl = slash ? (size_t)(slash - t->value) : t->value_len;
	if (dkim_canon_parse(t->value, hl, &out->hcanon) < 0)
		return -1;
	out->bcanon = DKIM_CANON_SIMPLE;
	if (slash && dkim_canon_parse(slash + 1, t->value_len - hl - 1, &out->bcanon) < 0)
		return -1;
	return 0;
}

/* i= must be [local-part] "@" domain, the domain d= or below it */
static int parse_i(const struct dkim_tag *t, struct dkim_sig *out, const char **why)
{
	const char *at = memchr(t->value, '@', t->value_len);
	if (!at) {
		*why = "i= has no \"@\"";
		return -1;
	}
	const char *dom = at + 1;
	size_t dl = t->value_len - (size_t)(dom - t->value), dn = strlen(out->domain);
	if (!dkim_domain_ok(dom, dl)) {
		*why = "invalid domain in i=";
		return -1;
	}
	if (!(dl == dn || (dl > dn && dom[dl - dn - 1] == '.')) ||
	    strncasecmp(dom + dl - dn, out->domain, dn) != 0) {
		*why = "i= domain is not d= or a subdomain of it";
		return -1;
	}
	for (const char *p = t->value; p < at; p++)
		if ((unsigned char)*p <= ' ') {
			*why = "invalid local-part in i=";
			return -1;
		}
	if (!(out->identity = dup_n(t->value, t->value_len))) {
		*why = "out of memory";
		return -1;
	}
	return 0;
}

static int parse_q(const struct dkim_tag *t)
{
	size_t pos = 0, n;
	const char *item;
	while (dkim_tag_list_next(t->value, t->value_len, &pos, &item, &n))
		if (n == 7 && strncasecmp(item, "dns/txt", 7) == 0)
			return 0;
	return -1;
}

/* the tags every signature has, in the order they are reported missing */
static const char *const required[][2] = {
	{"v", "signature missing required tag v="},
	{"a", "signature missing required tag a="},
	{"b", "signature missing required tag b="},
	{"bh", "signature missing required tag bh="},
	{"d", "signature missing required tag d="},
	{"h", "signature missing required tag h="},
	{"s", "signature missing required tag s="},
};

static int parse(const char *value, size_t len, struct dkim_sig *out, const char **why)
{
	struct dkim_tags tags;
	const struct dkim_tag *t;
	unsigned char *dec;
	size_t dlen;
	size_t i;

	if (dkim_tags_parse(value, len, &tags, why) < 0)
		return -1;
	for (i = 0; i < sizeof(required) / sizeof(required[0]); i++)
		if (!dkim_tags_get(&tags, required[i][0])) {
			*why = required[i][1];
			return -1;
		}
	if (!dkim_tag_is(dkim_tags_get(&tags, "v"), "1")) {
		*why = "unsupported signature version (v= is not 1)";
		return -1;
	}
	t = dkim_tags_get(&tags, "a");
	for (i = 0; i < sizeof(algs) / sizeof(algs[0]); i++)
		if (dkim_tag_is_nocase(t, algs[i].name))
			break;
	if (i == sizeof(algs) / sizeof(algs[0])) {
		*why = "unsupported signature algorithm";
		return -1;
	}
	out->alg = algs[i].alg;

	t = dkim_tags_get(&tags, "d");
	if (!dkim_domain_ok(t->value, t->value_len)) {
		*why = "invalid domain in d=";
		return -1;
	}
	if (!(out->domain = dup_n(t->value, t->value_len)))
		goto nomem;
	t = dkim_tags_get(&tags, "s");
	if (!dkim_domain_ok(t->value, t->value_len)) {
		*why = "invalid selector in s=";
		return -1;
	}
	if (!(out->selector = dup_n(t->value, t->value_len)))
		goto nomem;

	if ((t = dkim_tags_get(&tags, "c")) && parse_c(t, out) < 0) {
		*why = "unsupported canonicalization in c=";
		return -1;
	}
	if (parse_h(dkim_tags_get(&tags, "h"), out, why) < 0)
		return -1;
	if ((t = dkim_tags_get(&tags, "i"))) {
		if (parse_i(t, out, why) < 0)
			return -1;
	} else {
		size_t dn = strlen(out->domain);
		if (!(out->identity = malloc(dn + 2)))
			goto nomem;
		out->identity[0] = '@';
		memcpy(out->identity + 1, out->domain, dn + 1);
	}
	if ((t = dkim_tags_get(&tags, "q")) && parse_q(t) < 0) {
		*why = "unsupported query method in q=";
		return -1;
	}
	if ((t = dkim_tags_get(&tags, "l")) && number(t, 18, &out->l) < 0) {
		*why = "invalid l= value";
		return -1;
	}
	if ((t = dkim_tags_get(&tags, "t")) && number(t, 18, &out->t) < 0) {
		*why = "invalid t= value";
		return -1;
	}
	if ((t = dkim_tags_get(&tags, "x")) && number(t, 18, &out->x) < 0) {
		*why = "invalid x= value";
		return -1;
	}
	if (out->t >= 0 && out->x >= 0 && out->x < out->t) {
		*why = "x= is before t=";
		return -1;
	}

	t = dkim_tags_get(&tags, "bh");
	if (dkim_tag_base64(t->value, t->value_len, &dec, &dlen, why) < 0) {
		if (!dec && strcmp(*why, "out of memory") != 0)
			*why = "bh= is not valid base64";
		return -1;
	}
	if (dlen != (dkim_alg_hash(out->alg) == DKIM_HASH_SHA1 ? 20u : 32u)) {
		free(dec);
		*why = "bh= has the wrong length for the algorithm";
		return -1;
	}
	memcpy(out->bh, dec, dlen);
	out->bh_len = dlen;
	free(dec);

	t = dkim_tags_get(&tags, "b");
	if (dkim_tag_base64(t->value, t->value_len, &out->b, &out->b_len, why) < 0) {
		if (strcmp(*why, "out of memory") != 0)
			*why = "b= is not valid base64";
		return -1;
	}
	if (out->b_len == 0) {
		*why = "b= is empty";
		return -1;
	}
	if (!(out->b_text = malloc(t->value_len + 1)))
		goto nomem;
	dlen = 0;
	for (i = 0; i < t->value_len; i++)
		if (t->value[i] != ' ' && t->value[i] != '\t' && t->value[i] != '\r' &&
		    t->value[i] != '\n')
			out->b_text[dlen++] = t->value[i];
	out->b_text[dlen] = '\0';
	out->b_raw_off = (size_t)(t->raw - value);
	out->b_raw_len = t->raw_len;
	return 0;
nomem:
	*why = "out of memory";
	return -1;
}

int dkim_sig_parse(const char *value, size_t len, struct dkim_sig *out, const char **why)
{
	memset(out, 0, sizeof(*out));
	out->l = out->t = out->x = -1;
	if (parse(value, len, out, why) < 0) {
		dkim_sig_clear(out);
		return -1;
	}
	return 0;
}

void dkim_sig_clear(struct dkim_sig *s)
{
	if (!s)
		return;
	free(s->domain);
	free(s->selector);
	free(s->identity);
	for (size_t i = 0; i < s->nheaders; i++)
		free(s->headers[i]);
	free(s->headers);
	free(s->b);
	free(s->b_text);
	memset(s, 0, sizeof(*s));
	s->l = s->t = s->x = -1;
}
