/*
 * dkim_sig.h - a DKIM-Signature field value parsed and checked (RFC 6376
 * 3.5, RFC 8301, RFC 8463): what the signature claims, nothing verified.
 *
 * A struct dkim_sig owns its strings and buffers; dkim_sig_clear()
 * frees them. Checks needing the clock (t=, x= against now) or a key are
 * the verifier's (dkim_verify.c).
 */
#ifndef MOAT_DKIM_SIG_H
#define MOAT_DKIM_SIG_H

#include <stddef.h>

#include "dkim_canon.h"

enum dkim_alg {
	DKIM_ALG_RSA_SHA256 = 0,
	DKIM_ALG_ED25519_SHA256,
	DKIM_ALG_RSA_SHA1,	/* parsed, never accepted (RFC 8301) */
};

#define DKIM_SIG_MAX_HEADERS 256	/* h= entries */

struct dkim_sig {
	enum dkim_alg alg;
	enum dkim_canon hcanon, bcanon;	/* c=, default simple/simple */
	char *domain;		/* d=, as written */
	char *selector;		/* s= */
	char *identity;		/* i=, or "@" d= when absent */
	char **headers;		/* h= field names, as written; nheaders of them */
	size_t nheaders;
	unsigned char bh[DKIM_MAX_DIGEST];	/* bh= decoded, bh_len octets */
	size_t bh_len;
	unsigned char *b;	/* b= decoded, b_len octets */
	size_t b_len;
	char *b_text;		/* b= without whitespace (for header.b, RFC 6008) */
	long long l;		/* l=, -1 when absent */
	long long t, x;		/* t=, x= (seconds since the epoch), -1 when absent */
	size_t b_raw_off;	/* the b= value with the whitespace around it: */
	size_t b_raw_len;	/* offset and length in the parsed text */
};

/* Parses value (the field value after "DKIM-Signature:", folding
 * included, len octets) into *out. Required: v=1, a=, b=, bh=, d=, h=
 * (listing From), s=. Checked: a= known, c= known, d=/s= domain syntax,
 * i= within d=, l=/t=/x= numbers with x= not before t=, q= listing
 * dns/txt, bh= the size of the a= algorithm's digest. Unknown tags are ignored.
 * Returns 0, or -1 with *why a static reason (e.g. "signature missing
 * required tag h="); on -1, *out holds nothing to free. */
int dkim_sig_parse(const char *value, size_t len, struct dkim_sig *out, const char **why);
void dkim_sig_clear(struct dkim_sig *s);

/* "rsa-sha256", "ed25519-sha256", "rsa-sha1" */
const char *dkim_alg_name(enum dkim_alg a);
enum dkim_hash dkim_alg_hash(enum dkim_alg a);

#endif
