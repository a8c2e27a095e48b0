/*
 * dkim_keymatch.c - a DKIM key record compared with a private key's
 * public half (dkim_keymatch.h): its tags parsed (dkim_tags.h), p= with
 * whitespace removed against the key's p=, k= against its type, and the
 * flags that change what verifiers do. Owns nothing.
 */
#include "dkim_keymatch.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dkim_tags.h"

static void sayf(dkim_keymatch_say say, void *arg, const char *word, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void sayf(dkim_keymatch_say say, void *arg, const char *word, const char *fmt, ...)
{
	char text[1200];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	say(arg, word, text);
}

/* Value of a tag without any whitespace: malloc'd. */
static char *squeeze(const struct dkim_tag *t)
{
	char *s = malloc(t->value_len + 1);
	size_t n = 0;

	if (!s)
		return NULL;
	for (size_t i = 0; i < t->value_len; i++)
		if (t->value[i] != ' ' && t->value[i] != '\t' && t->value[i] != '\r' &&
		    t->value[i] != '\n')
			s[n++] = t->value[i];
	s[n] = '\0';
	return s;
}

/* 1 if the colon-separated list value holds item. */
static int list_has(const struct dkim_tag *t, const char *item)
{
	size_t pos = 0, n;
	const char *it;

	while (dkim_tag_list_next(t->value, t->value_len, &pos, &it, &n))
		if (n == strlen(item) && strncmp(it, item, n) == 0)
			return 1;
	return 0;
}

int dkim_keymatch_record(const struct dkim_keymatch *k, const char *rec, const char *label,
			 dkim_keymatch_say say, void *arg)
{
	struct dkim_tags tags;
	const char *why;

	if (dkim_tags_parse(rec, strlen(rec), &tags, &why) < 0) {
		sayf(say, arg, "mismatch", "%s%s is not a DKIM key record (%s)", k->name, label,
		     why);
		return 1;
	}
	const struct dkim_tag *v = dkim_tags_get(&tags, "v"), *kt = dkim_tags_get(&tags, "k");
	const struct dkim_tag *p = dkim_tags_get(&tags, "p"), *t = dkim_tags_get(&tags, "t");
	const struct dkim_tag *h = dkim_tags_get(&tags, "h"), *s = dkim_tags_get(&tags, "s");
	if (v && (!dkim_tag_is(v, "DKIM1") || v != &tags.tag[0])) {
		sayf(say, arg, "mismatch", "%s%s: v=%.*s (a key record has v=DKIM1 first, or no "
		     "v=)", k->name, label, (int)v->value_len, v->value);
		return 1;
	}
	if (!p) {
		sayf(say, arg, "mismatch", "%s%s has no p= tag", k->name, label);
		return 1;
	}
	int bad = 0;
	if (t && list_has(t, "y"))
		sayf(say, arg, "testing", "%s%s has t=y: verifiers treat its signatures as "
		     "unsigned mail", k->name, label);
	if (t && list_has(t, "s"))
		sayf(say, arg, "note", "%s%s has t=s: i= must be exactly d=, no subdomain",
		     k->name, label);
	if (s && !list_has(s, "*") && !list_has(s, "email")) {
		sayf(say, arg, "mismatch", "%s%s: s=%.*s does not allow email", k->name, label,
		     (int)s->value_len, s->value);
		bad = 1;
	}
	if (h && !list_has(h, "sha256")) {
		sayf(say, arg, "mismatch", "%s%s: h=%.*s does not allow sha256", k->name, label,
		     (int)h->value_len, h->value);
		bad = 1;
	}
	char *pub = squeeze(p);
	if (!pub) {
		sayf(say, arg, "error", "out of memory");
		return 1;
	}
	const char *want = dkim_key_type_name(k->type);
	if (!pub[0]) {
		sayf(say, arg, "revoked", "%s%s has an empty p=: the key is revoked", k->name,
		     label);
		bad = 1;
	} else if (kt ? !dkim_tag_is_nocase(kt, want) : k->type != DKIM_KEY_RSA) {
		sayf(say, arg, "mismatch", "%s%s has k=%.*s, %s is an %s key", k->name, label,
		     kt ? (int)kt->value_len : 3, kt ? kt->value : "rsa", k->keyfile, want);
		bad = 1;
	} else if (strcmp(pub, k->p64) != 0) {
		sayf(say, arg, "mismatch", "%s%s publishes another key than %s", k->name, label,
		     k->keyfile);
		bad = 1;
	} else if (!bad) {
		sayf(say, arg, "match", "%s%s publishes the public key of %s (%s)", k->name, label,
		     k->keyfile, want);
	}
	free(pub);
	return bad;
}

int dkim_keymatch_answer(const struct dkim_keymatch *k, const struct moat_dns_answer *a,
			 dkim_keymatch_say say, void *arg)
{
	int status = 0;

	if (a->status == MOAT_DNS_NXDOMAIN || a->status == MOAT_DNS_NODATA) {
		sayf(say, arg, "missing", "no TXT record at %s (%s)", k->name,
		     moat_dns_status_name(a->status));
		return 1;
	}
	if (a->status != MOAT_DNS_OK) {
		sayf(say, arg, "error", "looking up %s TXT failed: %s", k->name,
		     moat_dns_status_name(a->status));
		return moat_dns_temporary(a->status) ? 2 : 1;
	}
	if (a->n > 1) {
		sayf(say, arg, "several", "%s has %zu TXT records; verifiers may use any one of "
		     "them", k->name, a->n);
		status = 1;
	}
	for (size_t i = 0; i < a->n; i++) {
		char label[32] = "";
		if (a->n > 1)
			snprintf(label, sizeof(label), " (record %zu)", i + 1);
		if (dkim_keymatch_record(k, a->txt[i], label, say, arg))
			status = 1;
	}
	return status;
}
