/*
 * dkim_signtable.c - the signing table: parsing its entries, finding the
 * entry for a sender, and the sender's address from the From: header.
 *
 * Owns the table's entries (see dkim_signtable.h).
 */
#include "dkim_signtable.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ascii.h"

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

/* ---- the From: address ---- */

/* Copies the field's value unfolded, comments and quoted strings kept. */
static int from_value(const char *head, size_t hlen, char *out, size_t outlen)
{
	int found = 0;
	size_t i = 0;
	while (i < hlen) {
		size_t eol = i;
		while (eol < hlen && head[eol] != '\n')
			eol++;
		if (eol - i >= 5 && word_eq(head + i, 5, "FROM:")) {
			if (found++)
				return -1;	/* several From: fields */
			size_t o = 0, j = i + 5;
			for (;;) {
				for (; j < eol; j++)
					if (head[j] != '\r' && o + 1 < outlen)
						out[o++] = head[j];
				if (eol + 1 < hlen && (head[eol + 1] == ' ' || head[eol + 1] == '\t')) {
					j = eol + 1;
					eol = j;
					while (eol < hlen && head[eol] != '\n')
						eol++;
					continue;
				}
				break;
			}
			out[o] = '\0';
		}
		i = eol + 1;
	}
	return found == 1 ? 0 : -1;
}

int dkim_from_address(const char *head, size_t hlen, char *out, size_t outlen)
{
	char v[2048], a[600];
	if (from_value(head, hlen, v, sizeof(v)) < 0)
		return -1;
	/* drop comments and quoted strings (display names may hold '@') */
	size_t o = 0;
	int depth = 0, quoted = 0;
	for (const char *c = v; *c && o + 1 < sizeof(a); c++) {
		if (quoted) {
			if (*c == '\\' && c[1])
				c++;
			else if (*c == '"')
				quoted = 0;
			continue;
		}
		if (depth) {
			if (*c == '\\' && c[1])
				c++;
			else if (*c == '(')
				depth++;
			else if (*c == ')')
				depth--;
			continue;
		}
		if (*c == '"')
			quoted = 1;
		else if (*c == '(')
			depth = 1;
		else
			a[o++] = *c;
	}
	a[o] = '\0';
	if (strchr(a, ','))
		return -1;	/* several addresses */
	char *start = a, *lt = strchr(a, '<');
	if (lt) {
		char *gt = strchr(lt, '>');
		if (!gt)
			return -1;
		*gt = '\0';
		start = lt + 1;
	}
	while (*start == ' ' || *start == '\t')
		start++;
	size_t n = strlen(start);
	while (n && (start[n - 1] == ' ' || start[n - 1] == '\t'))
		start[--n] = '\0';
	char *at = strrchr(start, '@');
	if (!at || at == start || !at[1] || strpbrk(start, " \t<>") || n >= outlen)
		return -1;
	memcpy(out, start, n + 1);
	ascii_lower_str(out);
	return 0;
}
