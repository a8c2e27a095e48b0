/*
 * dkim_tags.c - the RFC 6376 3.2 tag=value list parser and helpers for
 * the colon-separated values some tags hold. Allocates nothing; owns
 * nothing.
 */
#include "dkim_tags.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "ascii.h"

static int is_ws(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static int is_alpha(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

int dkim_tags_parse(const char *text, size_t len, struct dkim_tags *out, const char **why)
{
	const unsigned char *s = (const unsigned char *)text;
	size_t i = 0;

	out->n = 0;
	for (;;) {
		while (i < len && is_ws(s[i]))
			i++;
		if (i == len) {
			if (out->n == 0) {
				*why = "empty tag list";
				return -1;
			}
			return 0;	/* after a trailing ";" */
		}
		/* tag-name */
		size_t n0 = i;
		if (!is_alpha(s[i])) {
			*why = s[i] == ';' ? "empty tag" : "invalid tag name";
			return -1;
		}
		while (i < len && (is_alpha(s[i]) || is_digit(s[i]) || s[i] == '_'))
			i++;
		size_t nlen = i - n0;
		while (i < len && is_ws(s[i]))
			i++;
		if (i == len || s[i] != '=') {
			*why = i == len || s[i] == ';' ? "tag without \"=\"" : "invalid tag name";
			return -1;
		}
		i++;
		/* tag-value: up to ";" or the end */
		size_t r0 = i;
		while (i < len && s[i] != ';') {
			if ((s[i] < 0x20 && !is_ws(s[i])) || s[i] == 0x7f) {
				*why = "control character in tag value";
				return -1;
			}
			i++;
		}
		size_t r1 = i;
		size_t v0 = r0, v1 = r1;
		while (v0 < v1 && is_ws(s[v0]))
			v0++;
		while (v1 > v0 && is_ws(s[v1 - 1]))
			v1--;
		for (size_t k = 0; k < out->n; k++)
			if (out->tag[k].name_len == nlen &&
			    memcmp(out->tag[k].name, text + n0, nlen) == 0) {
				*why = "duplicate tag";
				return -1;
			}
		if (out->n == DKIM_TAGS_MAX) {
			*why = "too many tags";
			return -1;
		}
		struct dkim_tag *t = &out->tag[out->n++];
		t->name = text + n0;
		t->name_len = nlen;
		t->value = text + v0;
		t->value_len = v1 - v0;
		t->raw = text + r0;
		t->raw_len = r1 - r0;
		if (i == len)
			return 0;
		i++;		/* ";" */
	}
}

const struct dkim_tag *dkim_tags_get(const struct dkim_tags *t, const char *name)
{
	size_t n = strlen(name);
	for (size_t i = 0; i < t->n; i++)
		if (t->tag[i].name_len == n && memcmp(t->tag[i].name, name, n) == 0)
			return &t->tag[i];
	return NULL;
}

int dkim_tag_is(const struct dkim_tag *tag, const char *s)
{
	size_t n = strlen(s);
	return tag && tag->value_len == n && memcmp(tag->value, s, n) == 0;
}

int dkim_tag_is_nocase(const struct dkim_tag *tag, const char *s)
{
	size_t n = strlen(s);
	if (!tag || tag->value_len != n)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (ascii_lower((unsigned char)tag->value[i]) != ascii_lower((unsigned char)s[i]))
			return 0;
	return 1;
}

int dkim_tag_list_next(const char *value, size_t len, size_t *pos, const char **item,
		       size_t *item_len)
{
	size_t i = *pos;
	if (i > len)
		return 0;
	const char *colon = memchr(value + i, ':', len - i);
	size_t end = colon ? (size_t)(colon - value) : len;
	size_t a = i, b = end;
	while (a < b && is_ws((unsigned char)value[a]))
		a++;
	while (b > a && is_ws((unsigned char)value[b - 1]))
		b--;
	*item = value + a;
	*item_len = b - a;
	*pos = end + 1;		/* past the end when there was no colon */
	return 1;
}

static int b64_char(unsigned char c)
{
	return is_alpha(c) || is_digit(c) || c == '+' || c == '/';
}

int dkim_tag_base64(const char *value, size_t len, unsigned char **out, size_t *out_len,
		    const char **why)
{
	char *clean = malloc(len + 1);
	size_t n = 0, pad = 0;

	*out = NULL;
	*out_len = 0;
	if (!clean) {
		*why = "out of memory";
		return -1;
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)value[i];
		if (is_ws(c))
			continue;
		if (c == '=' ) {
			pad++;
		} else if (!b64_char(c) || pad > 0) {
			free(clean);
			*why = "invalid base64";
			return -1;
		}
		clean[n++] = (char)c;
	}
	if (n % 4 != 0 || pad > 2) {
		free(clean);
		*why = "invalid base64";
		return -1;
	}
	/* EVP_DecodeBlock writes 3 octets per 4 characters, padding included */
	unsigned char *dec = malloc(n / 4 * 3 + 1);
	if (!dec) {
		free(clean);
		*why = "out of memory";
		return -1;
	}
	int r = n ? EVP_DecodeBlock(dec, (const unsigned char *)clean, (int)n) : 0;
	free(clean);
	if (r < 0 || (size_t)r < pad) {
		free(dec);
		*why = "invalid base64";
		return -1;
	}
	*out_len = (size_t)r - pad;
	dec[*out_len] = 0;
	*out = dec;
	return 0;
}

int dkim_domain_ok(const char *s, size_t len)
{
	size_t label = 0;

	if (len == 0 || len > 253)
		return 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '.') {
			if (label == 0)
				return 0;
			label = 0;
		} else if (is_alpha(c) || is_digit(c) || c == '-' || c == '_') {
			if (++label > 63)
				return 0;
		} else {
			return 0;
		}
	}
	return label > 0;
}
