/*
 * dkim_signtable.c - the signing table: parsing its entries, finding the
 * entry for a sender, and which sender a message is looked up by (its
 * From: address as from_header.c reads it, else the envelope sender).
 *
 * Owns the table's entries (see dkim_signtable.h).
 */
#include "dkim_signtable.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ascii.h"
#include "from_header.h"

static int pattern_ok(const char *p)
{
	if (strcmp(p, "*") == 0)
		return 1;
	const char *at = strchr(p, '@');
	const char *dom = at ? at + 1 : (strncmp(p, "*.", 2) == 0 ? p + 2 : p);
	if (at && (at == p || strchr(at + 1, '@') || strchr(p, '*')))
		return 0;
	if (!*dom || dom[0] == '.' || dom[strlen(dom) - 1] == '.' || strstr(dom, ".."))
		return 0;
	for (const char *c = dom; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '-' ||
		      *c == '.' || *c == '_'))
			return 0;
	return 1;
}

int dkim_signtable_parse(struct dkim_signtable *t, const char *const *entries, size_t n,
			 const char *const *key_names, size_t nkeys, char *err, size_t errlen)
{
	memset(t, 0, sizeof(*t));
	if (n == 0)
		return 0;
	t->v = calloc(n, sizeof(*t->v));
	if (!t->v) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		char *copy = strdup(entries[i]), *save = NULL;
		if (!copy) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		struct dkim_signtable_entry *e = &t->v[t->n];
		char *tok = strtok_r(copy, " \t,", &save);
		if (!tok) {
			snprintf(err, errlen, "entry %zu is empty; expected \"PATTERN KEY [KEY...]\"",
				 i + 1);
			free(copy);
			return -1;
		}
		e->pattern = strdup(tok);
		t->n++;
		if (!e->pattern) {
			free(copy);
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		ascii_lower_str(e->pattern);
		if (!pattern_ok(e->pattern)) {
			snprintf(err, errlen, "entry %zu \"%s\": pattern \"%s\": expected an address "
				 "(user@example.org), a domain (example.org), its subdomains "
				 "(*.example.org) or *", i + 1, entries[i], tok);
			free(copy);
			return -1;
		}
		while ((tok = strtok_r(NULL, " \t,", &save))) {
			size_t k = 0;
			while (k < nkeys && strcmp(key_names[k], tok) != 0)
				k++;
			if (k == nkeys) {
				snprintf(err, errlen, "entry %zu \"%s\": no key named \"%s\" (a key "
					 "is declared as key NAME { domain = ... selector = ... file = "
					 "... })", i + 1, entries[i], tok);
				free(copy);
				return -1;
			}
			if (e->nkeys == DKIM_SIGNTABLE_MAX_KEYS) {
				snprintf(err, errlen, "entry %zu \"%s\": at most %d keys", i + 1,
					 entries[i], DKIM_SIGNTABLE_MAX_KEYS);
				free(copy);
				return -1;
			}
			e->keys[e->nkeys++] = k;
		}
		free(copy);
		if (e->nkeys == 0) {
			snprintf(err, errlen, "entry %zu \"%s\": no key; expected \"PATTERN KEY "
				 "[KEY...]\"", i + 1, entries[i]);
			return -1;
		}
		for (size_t j = 0; j + 1 < t->n; j++)
			if (strcmp(t->v[j].pattern, e->pattern) == 0) {
				snprintf(err, errlen, "entry %zu: pattern \"%s\" is already in entry "
					 "%zu", i + 1, e->pattern, j + 1);
				return -1;
			}
	}
	return 0;
}

void dkim_signtable_free(struct dkim_signtable *t)
{
	for (size_t i = 0; i < t->n; i++)
		free(t->v[i].pattern);
	free(t->v);
	memset(t, 0, sizeof(*t));
}

static const struct dkim_signtable_entry *find(const struct dkim_signtable *t, const char *p)
{
	for (size_t i = 0; i < t->n; i++)
		if (strcmp(t->v[i].pattern, p) == 0)
			return &t->v[i];
	return NULL;
}

const struct dkim_signtable_entry *dkim_signtable_find(const struct dkim_signtable *t,
						       const char *sender)
{
	char s[512], w[520];
	const struct dkim_signtable_entry *e;

	if (!sender || !*sender || strlen(sender) >= sizeof(s))
		return find(t, "*");
	snprintf(s, sizeof(s), "%s", sender);
	ascii_lower_str(s);
	char *at = strrchr(s, '@');
	if (at && (e = find(t, s)))
		return e;
	const char *dom = at ? at + 1 : s;
	if (*dom && (e = find(t, dom)))
		return e;
	/* "*.example.org" covers a.example.org and below, not example.org */
	for (const char *p = strchr(dom, '.'); p && p[1]; p = strchr(p + 1, '.')) {
		snprintf(w, sizeof(w), "*.%s", p + 1);
		if ((e = find(t, w)))
			return e;
	}
	return find(t, "*");
}

/* ---- the sender ---- */

void dkim_signtable_sender(const char *head, size_t hlen, const char *mail_from, char *out,
			   size_t outlen)
{
	struct moat_from f;
	if (moat_from_block(head, hlen, &f) != MOAT_FROM_OK)
		snprintf(out, outlen, "%s", mail_from ? mail_from : "");
	else if (f.local[0])
		snprintf(out, outlen, "%s@%s", f.local, f.domain);
	else
		snprintf(out, outlen, "%s", f.domain);
}
