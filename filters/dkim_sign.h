/*
 * dkim_sign.h - the DKIM signer (RFC 6376 section 5; RFC 8463 for
 * Ed25519): one DKIM-Signature field for a message, from its header
 * block and a body hash computed beforehand (dkim_canon.h).
 *
 * The body hash is the caller's (dkim_body_hash_new() in the body canon
 * of the signature, SHA-256, no limit): one per body canon, shared by
 * every key that signs the message (an RSA and an Ed25519 signature of
 * one message need one body pass). dkim_sign() then does the header
 * part: selects the fields to sign, builds the tag list, hashes, signs.
 *
 * The value returned is what follows "DKIM-Signature:", folded with
 * CRLF TAB so that no line is longer than 78 characters where possible:
 *
 *	" v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.org; s=sel;\r\n"
 *	"\tt=1700000000; x=1700604800; h=from:from:to:subject:...;\r\n"
 *	"\tbh=...;\r\n"
 *	"\tb=...(75 characters)\r\n"
 *	"\t...(77 characters)..."
 *
 * (b= is broken across lines with FWS, which base64 values may contain.)
 * The signature covers the field exactly as returned, so the caller must
 * emit "DKIM-Signature:" + value + CRLF verbatim, above the header block
 * it passed (simple header canonicalization then verifies too).
 *
 * h= lists each name to sign once per occurrence in the header block
 * (a verifier takes instances bottom-up, so a name listed n times signs
 * the last n), plus once more for an oversigned name: that extra entry
 * matches no field, so nobody can add one without breaking the
 * signature. Names neither present nor oversigned are left out.
 *
 * Ownership: a struct dkim_sign_key belongs to whoever made it
 * (dkim_sign_key_new/_free); it is read-only once made and may sign
 * from several threads at once. dkim_sign() borrows everything it is
 * given and returns a malloc'd value. Nothing global.
 */
#ifndef MOAT_DKIM_SIGN_H
#define MOAT_DKIM_SIGN_H

#include <stddef.h>
#include <time.h>

#include <openssl/evp.h>

#include "dkim_canon.h"

enum dkim_sign_alg { DKIM_SIGN_RSA_SHA256 = 0, DKIM_SIGN_ED25519_SHA256 = 1 };

/* "rsa-sha256" / "ed25519-sha256" (the a= tag). */
const char *dkim_sign_alg_name(enum dkim_sign_alg a);
/* 0, or -1 for any other name (rsa-sha1 is never signed with). */
int dkim_sign_alg_parse(const char *s, enum dkim_sign_alg *out);

/* A signing key: the domain (d=) and selector (s=) it is published
 * under, and the private key. */
struct dkim_sign_key {
	char *domain;		/* lower case */
	char *selector;
	EVP_PKEY *pkey;
	enum dkim_sign_alg alg;	/* from the key: RSA or Ed25519 */
};

/* Makes a key; takes pkey (freed by dkim_sign_key_free, and on failure).
 * domain and selector are copied and must be DNS names (letters, digits,
 * '-', '_', dots between labels); pkey must be RSA (1024 bits or more)
 * or Ed25519. NULL with err set on failure. */
struct dkim_sign_key *dkim_sign_key_new(const char *domain, const char *selector,
					EVP_PKEY *pkey, char *err, size_t errlen);
void dkim_sign_key_free(struct dkim_sign_key *k);

/* The header fields signed by default, and those oversigned by default.
 * Read-only. */
extern const char *const dkim_sign_default_headers[];
extern const size_t dkim_sign_default_nheaders;
extern const char *const dkim_sign_default_oversign[];
extern const size_t dkim_sign_default_noversign;

struct dkim_sign_params {
	enum dkim_canon hcanon, bcanon;	/* c=; bcanon must be the body hash's */
	const char *const *headers;	/* names to sign, in h= order; must include
					 * From; duplicates (any case) are ignored */
	size_t nheaders;
	const char *const *oversign;	/* names signed once more than present; a
					 * name here but not in headers is signed too,
					 * after them */
	size_t noversign;
	long expire;		/* x= this many seconds after t=; 0: no x= */
	const char *identity;	/* i= ("user@sub.example.org": its domain must be d=
				 * or below it), or NULL for none */
	time_t now;		/* t=; 0: the current time */
};

/* Signs. header_block: the message's header fields exactly as they will
 * leave, CRLF line ends, with or without the empty line that ends them
 * (anything after it is ignored). body_hash: bhlen (32) octets of
 * SHA-256 from dkim_body_hash_final() in p->bcanon. On success returns
 * 0 and *value_out is the malloc'd field value (the caller frees it);
 * on failure -1 with err set (no From field, a bad identity or header
 * name, a signing error). */
int dkim_sign(const struct dkim_sign_key *key, const struct dkim_sign_params *p,
	      const char *header_block, size_t hlen,
	      const unsigned char *body_hash, size_t bhlen,
	      char **value_out, char *err, size_t errlen);

#endif
