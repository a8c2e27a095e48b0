/*
 * dkim_signtable.h - which keys sign a message: the signing table of the
 * `dkim` section, mapping a sender (address, domain, subdomains, or the
 * catch-all "*") to key names, and the sender's address taken from the
 * From: header of the header block as it leaves.
 *
 * A table owns its entries (copies of patterns and key indexes);
 * dkim_signtable_free() releases them.
 */
#ifndef MOAT_DKIM_SIGNTABLE_H
#define MOAT_DKIM_SIGNTABLE_H

#include <stddef.h>

#define DKIM_SIGNTABLE_MAX_KEYS 8	/* keys one entry may name */

struct dkim_signtable_entry {
	char *pattern;		/* lower case: "alice@example.org", "example.org",
				 * "*.example.org" or "*" */
	size_t keys[DKIM_SIGNTABLE_MAX_KEYS];	/* indexes into the key list */
	size_t nkeys;
};

struct dkim_signtable {
	struct dkim_signtable_entry *v;
	size_t n;
};

/* Parses entries "PATTERN KEY [KEY...]" (keys separated by spaces or
 * commas) against the key names; on an error returns -1 with err naming
 * the entry and what was expected. */
int dkim_signtable_parse(struct dkim_signtable *t, const char *const *entries, size_t n,
			 const char *const *key_names, size_t nkeys, char *err, size_t errlen);
void dkim_signtable_free(struct dkim_signtable *t);

/* The entry for sender ("local@domain"; a bare domain is taken as such):
 * the exact address first, then its domain, then "*.parent" for each
 * parent domain, then "*". NULL: not signed. */
const struct dkim_signtable_entry *dkim_signtable_find(const struct dkim_signtable *t,
						       const char *sender);

/* The address of the one From: field of a header block ("Name: value"
 * fields, CRLF, folded), lower-cased into out ("local@domain"). Returns
 * 0; -1 when there is no From:, more than one, or no address with a
 * domain in it (the caller falls back to the envelope sender). */
int dkim_from_address(const char *head, size_t hlen, char *out, size_t outlen);

#endif
