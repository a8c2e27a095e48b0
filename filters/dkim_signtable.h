/*
 * dkim_signtable.h - which keys sign a message: the signing table of the
 * `dkim` section, mapping a sender (address, domain, subdomains, or the
 * catch-all "*") to key names, and the sender a message is looked up
 * by: its From: address, else the envelope sender.
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

/* The sender a message to be signed is looked up by, into out (>= 320
 * octets to hold any From: address): the address of the one From: field
 * of the header block as it leaves (from_header.h: "local@domain" in
 * lower case with an A-label domain, or only the domain when the local
 * part is not a plain one); when the message has no such address (no
 * From:, several, several addresses, no valid domain), the envelope
 * sender mail_from (NULL or "" for the null sender). */
void dkim_signtable_sender(const char *head, size_t hlen, const char *mail_from, char *out,
			   size_t outlen);

#endif
