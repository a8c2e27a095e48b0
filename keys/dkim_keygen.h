/*
 * dkim_keygen.h - making a DKIM key pair: the key, the private key file
 * (PEM PKCS#8, created mode 0600 and never readable by others, not even
 * for a moment) and the DNS record stub in opendkim-genkey's layout.
 *
 * Owns nothing between calls; every string returned is malloc'd and
 * the caller's.
 */
#ifndef MOAT_DKIM_KEYGEN_H
#define MOAT_DKIM_KEYGEN_H

#include <stddef.h>

#include <openssl/evp.h>

#include "dkim_keyfile.h"

#define DKIM_KEYGEN_RSA_BITS 2048	/* default */
#define DKIM_KEYGEN_RSA_MAX_BITS 8192

/* A new key: RSA of bits (DKIM_KEY_RSA_MIN_BITS..DKIM_KEYGEN_RSA_MAX_BITS)
 * or Ed25519 (bits ignored). The caller's, or NULL with err set. */
EVP_PKEY *dkim_keygen_new(enum dkim_key_type type, int bits, char *err, size_t errlen);

/* The private key as PEM PKCS#8 ("BEGIN PRIVATE KEY"): malloc'd
 * (*len octets, NUL-terminated); the caller wipes (OPENSSL_cleanse) and
 * frees it. NULL with err set on failure. */
char *dkim_keygen_private_pem_new(EVP_PKEY *pkey, size_t *len, char *err, size_t errlen);

/* What the record says, besides the key. */
struct dkim_keygen_record {
	const char *selector;
	const char *domain;	/* for the comment, and the owner with append_domain */
	enum dkim_key_type type;	/* k= */
	const char *hashes;	/* h= ("sha256"), or NULL for none */
	int testing;		/* t=y */
	int no_subdomains;	/* t=s */
	int email_only;		/* s=email */
	int append_domain;	/* owner "SEL._domainkey.DOMAIN." instead of "SEL._domainkey" */
};

/* The zone file stub exactly as opendkim-genkey writes it:
 *	SEL._domainkey<TAB>IN<TAB>TXT<TAB>( "v=DKIM1; h=sha256; k=rsa; "
 *	<TAB>  "p=...250 characters of key..."
 *	<TAB>  "...the rest" )  ; ----- DKIM key SEL for DOMAIN
 * p64: the public key's p= value (dkim_key_public_b64_new). Malloc'd;
 * NULL when out of memory. */
char *dkim_keygen_txt_new(const struct dkim_keygen_record *r, const char *p64);

/* Writes dir/SELECTOR.private (mode 0600 from its creation) and
 * dir/SELECTOR.txt (0644). Neither may exist already: nothing is
 * overwritten, and on any failure nothing is left behind. The paths
 * written go to private_path and txt_path (pathlen octets each).
 * Returns 0, or -1 with err set. */
int dkim_keygen_write(const char *dir, const char *selector,
		      const char *pem, size_t pemlen, const char *txt,
		      char *private_path, char *txt_path, size_t pathlen,
		      char *err, size_t errlen);

#endif
