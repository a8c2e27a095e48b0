/*
 * dkim_keyrec.c - parses a DKIM key record into a struct dkim_keyrec:
 * the tag list, the flags, and p= turned into an OpenSSL public key.
 *
 * Owns the EVP_PKEY it makes, until dkim_keyrec_clear().
 */
#include "dkim_keyrec.h"

#include <openssl/err.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dkim_tags.h"

const char *dkim_keytype_name(enum dkim_keytype t)
{
	return t == DKIM_KEYTYPE_ED25519 ? "ed25519" : "rsa";
}

static int item_is(const char *item, size_t n, const char *s)
{
	return strlen(s) == n && strncasecmp(item, s, n) == 0;
}

/* p= for an RSA key: SubjectPublicKeyInfo, else PKCS#1 RSAPublicKey. */
static EVP_PKEY *rsa_key(const unsigned char *der, size_t len)
{
	const unsigned char *p = der;
	EVP_PKEY *k = d2i_PUBKEY(NULL, &p, (long)len);
	if (k && (p != der + len || EVP_PKEY_get_base_id(k) != EVP_PKEY_RSA)) {
		EVP_PKEY_free(k);
		return NULL;
	}
	if (!k) {
		p = der;
		k = d2i_PublicKey(EVP_PKEY_RSA, NULL, &p, (long)len);
		if (k && p != der + len) {
			EVP_PKEY_free(k);
			k = NULL;
		}
	}
	return k;
}

static int parse(const char *txt, size_t len, struct dkim_keyrec *out, const char **why)
{
	struct dkim_tags tags;
	const struct dkim_tag *t;
	size_t pos, n;
	const char *item;

	if (dkim_tags_parse(txt, len, &tags, why) < 0)
		return -1;
	if ((t = dkim_tags_get(&tags, "v"))) {
		if (t != &tags.tag[0]) {
			*why = "v= is not the first tag of the key record";
			return -1;
		}
		if (!dkim_tag_is(t, "DKIM1")) {
			*why = "unsupported key record version (v= is not DKIM1)";
			return -1;
		}
	}
	if ((t = dkim_tags_get(&tags, "k"))) {
		if (dkim_tag_is_nocase(t, "rsa"))
			out->type = DKIM_KEYTYPE_RSA;
		else if (dkim_tag_is_nocase(t, "ed25519"))
			out->type = DKIM_KEYTYPE_ED25519;
		else {
			*why = "unsupported key type in k=";
			return -1;
		}
	}
	out->hashes = DKIM_KEYREC_SHA256 | DKIM_KEYREC_SHA1;
	if ((t = dkim_tags_get(&tags, "h"))) {
		out->hashes = 0;
		pos = 0;
		while (dkim_tag_list_next(t->value, t->value_len, &pos, &item, &n)) {
			if (item_is(item, n, "sha256"))
				out->hashes |= DKIM_KEYREC_SHA256;
			else if (item_is(item, n, "sha1"))
				out->hashes |= DKIM_KEYREC_SHA1;
		}
	}
	out->email = 1;
	if ((t = dkim_tags_get(&tags, "s"))) {
		out->email = 0;
		pos = 0;
		while (dkim_tag_list_next(t->value, t->value_len, &pos, &item, &n))
			if (item_is(item, n, "*") || item_is(item, n, "email"))
				out->email = 1;
	}
	if ((t = dkim_tags_get(&tags, "t"))) {
		pos = 0;
		while (dkim_tag_list_next(t->value, t->value_len, &pos, &item, &n)) {
			if (item_is(item, n, "y"))
				out->testing = 1;
			else if (item_is(item, n, "s"))
				out->strict = 1;
		}
	}
	if (!(t = dkim_tags_get(&tags, "p"))) {
		*why = "key record has no p=";
		return -1;
	}
	unsigned char *der;
	size_t dlen;
	if (dkim_tag_base64(t->value, t->value_len, &der, &dlen, why) < 0) {
		if (strcmp(*why, "out of memory") != 0)
			*why = "p= is not valid base64";
		return -1;
	}
	if (dlen == 0) {
		free(der);
		out->revoked = 1;
		*why = "key revoked";
		return -1;
	}
	if (out->type == DKIM_KEYTYPE_ED25519) {
		if (dlen == 32)
			out->pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, der, dlen);
		free(der);
		if (!out->pkey) {
			*why = "p= is not an ed25519 public key (32 octets)";
			return -1;
		}
	} else {
		out->pkey = rsa_key(der, dlen);
		free(der);
		if (!out->pkey) {
			*why = "p= is not an RSA public key";
			return -1;
		}
	}
	out->bits = EVP_PKEY_get_bits(out->pkey);
	if (out->type == DKIM_KEYTYPE_RSA && out->bits < DKIM_RSA_MIN_BITS) {
		EVP_PKEY_free(out->pkey);
		out->pkey = NULL;
		*why = "RSA key shorter than 1024 bits";
		return -1;
	}
	return 0;
}

int dkim_keyrec_parse(const char *txt, size_t len, struct dkim_keyrec *out, const char **why)
{
	memset(out, 0, sizeof(*out));
	int r = parse(txt, len, out, why);
	ERR_clear_error();	/* failed DER attempts leave errors queued */
	if (r < 0) {
		EVP_PKEY_free(out->pkey);
		out->pkey = NULL;
	}
	return r;
}

void dkim_keyrec_clear(struct dkim_keyrec *k)
{
	if (!k)
		return;
	EVP_PKEY_free(k->pkey);
	memset(k, 0, sizeof(*k));
}
