/*
 * dkim_keymatch.h - is the key published in DNS the public half of a
 * private key? The comparison `moat keycheck` and `moatd -t -D` make,
 * over the answer to SELECTOR._domainkey.DOMAIN TXT.
 *
 * Each finding is handed to a callback as a word and a sentence:
 *	match	the record publishes this key
 *	mismatch	another key, another k=, a record that does not parse,
 *		s= without email, h= without sha256
 *	revoked	p= is empty
 *	missing	no record (NXDOMAIN, or no TXT record)
 *	several	more than one TXT record: verifiers may take any
 *	testing	t=y: verifiers treat the signatures as absent
 *	note	other flags (t=s)
 *	error	the lookup failed
 * Owns nothing.
 */
#ifndef MOAT_DKIM_KEYMATCH_H
#define MOAT_DKIM_KEYMATCH_H

#include "dkim_keyfile.h"
#include "resolver.h"

/* What a record is compared with. */
struct dkim_keymatch {
	const char *name;	/* SELECTOR._domainkey.DOMAIN */
	const char *keyfile;	/* named in the sentences */
	enum dkim_key_type type;
	const char *p64;	/* the key's public half as p= (dkim_key_public_b64_new) */
};

typedef void (*dkim_keymatch_say)(void *arg, const char *word, const char *text);

/* Checks one TXT record (label: "" or " (record 2)", for the sentences).
 * Returns 0 when it publishes the key, 1 when not. */
int dkim_keymatch_record(const struct dkim_keymatch *k, const char *rec, const char *label,
			 dkim_keymatch_say say, void *arg);

/* Checks the answer to the TXT lookup of k->name. Returns 0 when there
 * is exactly one record and it publishes the key, 1 when not (missing,
 * several, a mismatch, revoked), 2 when the lookup failed for now. */
int dkim_keymatch_answer(const struct dkim_keymatch *k, const struct moat_dns_answer *a,
			 dkim_keymatch_say say, void *arg);

#endif
