/*
 * dkim_keyrec.h - a DKIM key record (RFC 6376 3.6.1, RFC 8301, RFC 8463)
 * parsed: the public key and what the record allows it for.
 *
 * The caller joins the character-strings of one TXT record (no
 * separator, RFC 6376 3.6.2.2) and passes the joined text. A struct
 * dkim_keyrec owns its EVP_PKEY; dkim_keyrec_clear() frees it.
 */
#ifndef MOAT_DKIM_KEYREC_H
#define MOAT_DKIM_KEYREC_H

#include <stddef.h>

#include <openssl/evp.h>

enum dkim_keytype { DKIM_KEYTYPE_RSA = 0, DKIM_KEYTYPE_ED25519 };

/* bits of struct dkim_keyrec.hashes */
#define DKIM_KEYREC_SHA256 1u
#define DKIM_KEYREC_SHA1 2u

#define DKIM_RSA_MIN_BITS 1024	/* RFC 8301 3.2 */

struct dkim_keyrec {
	enum dkim_keytype type;	/* k=, default rsa */
	unsigned hashes;	/* h=: DKIM_KEYREC_* bits; both when h= is absent */
	int email;		/* s= allows email (absent, "*" or "email") */
	int testing;		/* t=y */
	int strict;		/* t=s: i= must be in d= itself, no subdomain */
	int revoked;		/* p= empty */
	int bits;		/* key size (RSA modulus bits; 256 for ed25519) */
	EVP_PKEY *pkey;		/* owned; NULL unless parsing succeeded */
};

/* Parses one key record (txt, len octets) into *out. Checked: the tag
 * list, v= (if present, first and "DKIM1"), k= known, p= present and a
 * key of type k= (RSA: base64 SubjectPublicKeyInfo DER, or the PKCS#1
 * RSAPublicKey DER some publishers use; ed25519: the raw 32-octet key of
 * RFC 8463), RSA keys of at least DKIM_RSA_MIN_BITS. h=, s= and t= are
 * recorded, not judged (unknown values ignored).
 * Returns 0, or -1 with *why a static reason; on -1 out->pkey is NULL
 * and out->revoked / out->bits tell a revoked or a short key. */
int dkim_keyrec_parse(const char *txt, size_t len, struct dkim_keyrec *out, const char **why);
void dkim_keyrec_clear(struct dkim_keyrec *k);

const char *dkim_keytype_name(enum dkim_keytype t);	/* "rsa", "ed25519" */

#endif
