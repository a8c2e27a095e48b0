/*
 * dkim_keyfile.c - loading DKIM private key files (PEM PKCS#1 or PKCS#8,
 * RSA or Ed25519, or dkimpy's base64 Ed25519 seed), the permission check
 * on them, and the p= value of their public half. See dkim_keyfile.h.
 *
 * Owns nothing beyond each call: the file's contents are read into a
 * local buffer that is wiped before it is freed.
 */
#include "dkim_keyfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "ascii.h"

#define ED25519_LEN 32

const char *dkim_key_type_name(enum dkim_key_type t)
{
	return t == DKIM_KEY_ED25519 ? "ed25519" : "rsa";
}

int dkim_key_type_parse(const char *s, enum dkim_key_type *out)
{
	if (word_eq(s, strlen(s), "RSA"))
		*out = DKIM_KEY_RSA;
	else if (word_eq(s, strlen(s), "ED25519"))
		*out = DKIM_KEY_ED25519;
	else
		return -1;
	return 0;
}

int dkim_keyfile_check_mode(const char *path, mode_t mode, char *err, size_t errlen)
{
	if ((mode & 007) == 0)
		return 0;
	snprintf(err, errlen, "key file %s is %s by others (mode %04o); chmod 600 or 640",
		 path, (mode & 004) ? "readable" : (mode & 002) ? "writable" : "usable",
		 (unsigned)(mode & 07777));
	return -1;
}

/* The last OpenSSL error as text (or what), clearing the queue. */
static const char *ossl_reason(char *buf, size_t len, const char *what)
{
	unsigned long e = ERR_peek_last_error();

	if (e == 0)
		snprintf(buf, len, "%s", what);
	else
		ERR_error_string_n(e, buf, len);
	ERR_clear_error();
	return buf;
}

int dkim_key_info(EVP_PKEY *pkey, enum dkim_key_type *type, int *bits, char *err, size_t errlen)
{
	switch (EVP_PKEY_get_base_id(pkey)) {
	case EVP_PKEY_RSA:
		*type = DKIM_KEY_RSA;
		*bits = EVP_PKEY_get_bits(pkey);
		if (*bits < DKIM_KEY_RSA_MIN_BITS) {
			snprintf(err, errlen, "RSA key of %d bits: DKIM needs at least %d",
				 *bits, DKIM_KEY_RSA_MIN_BITS);
			return -1;
		}
		return 0;
	case EVP_PKEY_ED25519:
		*type = DKIM_KEY_ED25519;
		*bits = EVP_PKEY_get_bits(pkey);
		return 0;
	default:
		snprintf(err, errlen, "key type %s cannot sign DKIM (rsa or ed25519)",
			 OBJ_nid2sn(EVP_PKEY_get_base_id(pkey)));
		return -1;
	}
}

/* PEM: never ask for a passphrase. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return -1;
}

static int is_b64(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '+' || c == '/' || c == '=';
}

/* dkimpy's format: base64 of the 32-octet seed (or of seed + public key,
 * libsodium's 64-octet secret key), whitespace around it. */
static EVP_PKEY *parse_raw_ed25519(const char *name, const char *text, size_t len,
				   char *err, size_t errlen)
{
	char b64[128];
	unsigned char raw[96];
	size_t n = 0;

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)text[i];
		if (c == ' ' || c == '\t' || c == '\r' || c == '\n')
			continue;
		if (!is_b64(c) || n + 1 >= sizeof(b64)) {
			snprintf(err, errlen, "%s: not a private key (no PEM block, not a base64 "
				 "Ed25519 seed)", name);
			return NULL;
		}
		b64[n++] = (char)c;
	}
	b64[n] = '\0';
	int got = n && n % 4 == 0 ? EVP_DecodeBlock(raw, (unsigned char *)b64, (int)n) : -1;
	if (got > 0) {
		for (size_t i = n; i > 0 && b64[i - 1] == '='; i--)
			got--;	/* EVP_DecodeBlock counts the padding */
	}
	EVP_PKEY *pkey = NULL;
	if (got == ED25519_LEN || got == 2 * ED25519_LEN)
		pkey = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, raw, ED25519_LEN);
	if (pkey && got == 2 * ED25519_LEN) {
		unsigned char pub[ED25519_LEN];
		size_t publen = sizeof(pub);
		if (EVP_PKEY_get_raw_public_key(pkey, pub, &publen) != 1 ||
		    memcmp(pub, raw + ED25519_LEN, ED25519_LEN) != 0) {
			EVP_PKEY_free(pkey);
			pkey = NULL;
			snprintf(err, errlen, "%s: Ed25519 secret key whose public half does not "
				 "match its seed", name);
			got = 0;
		}
	}
	OPENSSL_cleanse(raw, sizeof(raw));
	OPENSSL_cleanse(b64, sizeof(b64));
	if (!pkey && got != 0)
		snprintf(err, errlen, "%s: not a private key (no PEM block; base64 of %d octets, "
			 "not a 32-octet Ed25519 seed)", name, got < 0 ? 0 : got);
	ERR_clear_error();
	return pkey;
}

EVP_PKEY *dkim_key_parse(const char *name, const char *text, size_t len,
			 enum dkim_key_type *type, int *bits, char *err, size_t errlen)
{
	EVP_PKEY *pkey;
	char why[256];

	if (memmem(text, len, "-----BEGIN ", 11)) {
		if (memmem(text, len, "ENCRYPTED", 9)) {
			snprintf(err, errlen, "%s: encrypted private key (moat reads unencrypted "
				 "keys only)", name);
			return NULL;
		}
		BIO *bio = BIO_new_mem_buf(text, (int)len);
		pkey = bio ? PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL) : NULL;
		BIO_free(bio);
		if (!pkey) {
			snprintf(err, errlen, "%s: cannot read the PEM private key: %s", name,
				 ossl_reason(why, sizeof(why), "no private key"));
			return NULL;
		}
	} else {
		pkey = parse_raw_ed25519(name, text, len, err, errlen);
		if (!pkey)
			return NULL;
	}
	if (dkim_key_info(pkey, type, bits, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "%s: %s", name, why);
		EVP_PKEY_free(pkey);
		return NULL;
	}
	return pkey;
}

EVP_PKEY *dkim_keyfile_load(const char *path, enum dkim_key_type *type, int *bits,
			    char *err, size_t errlen)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);

	if (fd < 0) {
		snprintf(err, errlen, "key file %s: %s", path, strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) < 0) {
		snprintf(err, errlen, "key file %s: %s", path, strerror(errno));
		close(fd);
		return NULL;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "key file %s: not a regular file", path);
		close(fd);
		return NULL;
	}
	if (dkim_keyfile_check_mode(path, st.st_mode, err, errlen) < 0) {
		close(fd);
		return NULL;
	}
	if (st.st_size > DKIM_KEY_MAX_FILE) {
		snprintf(err, errlen, "key file %s: %lld octets, too large for a key", path,
			 (long long)st.st_size);
		close(fd);
		return NULL;
	}
	char *buf = malloc(DKIM_KEY_MAX_FILE + 1);
	size_t len = 0;
	int failed = 0;
	if (!buf) {
		snprintf(err, errlen, "key file %s: out of memory", path);
		close(fd);
		return NULL;
	}
	for (;;) {
		ssize_t r = read(fd, buf + len, DKIM_KEY_MAX_FILE + 1 - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			snprintf(err, errlen, "key file %s: %s", path, strerror(errno));
			failed = 1;
			break;
		}
		len += (size_t)r;
		if (r == 0 || len > DKIM_KEY_MAX_FILE)
			break;
	}
	close(fd);
	EVP_PKEY *pkey = NULL;
	if (!failed && len > DKIM_KEY_MAX_FILE)
		snprintf(err, errlen, "key file %s: too large for a key", path);
	else if (!failed)
		pkey = dkim_key_parse(path, buf, len, type, bits, err, errlen);
	OPENSSL_cleanse(buf, len);
	free(buf);
	return pkey;
}

char *dkim_key_b64_new(const unsigned char *data, size_t len)
{
	char *out = malloc(4 * ((len + 2) / 3) + 1);

	if (out)
		EVP_EncodeBlock((unsigned char *)out, data, (int)len);
	return out;
}

char *dkim_key_public_b64_new(EVP_PKEY *pkey, char *err, size_t errlen)
{
	unsigned char raw[ED25519_LEN], *der = NULL;
	char why[256];
	char *out;

	if (EVP_PKEY_get_base_id(pkey) == EVP_PKEY_ED25519) {
		size_t n = sizeof(raw);
		if (EVP_PKEY_get_raw_public_key(pkey, raw, &n) != 1 || n != ED25519_LEN) {
			snprintf(err, errlen, "cannot get the Ed25519 public key: %s",
				 ossl_reason(why, sizeof(why), "unknown error"));
			return NULL;
		}
		out = dkim_key_b64_new(raw, n);
	} else {
		int n = i2d_PUBKEY(pkey, &der);
		if (n <= 0) {
			snprintf(err, errlen, "cannot encode the public key: %s",
				 ossl_reason(why, sizeof(why), "unknown error"));
			return NULL;
		}
		out = dkim_key_b64_new(der, (size_t)n);
		OPENSSL_free(der);
	}
	if (!out)
		snprintf(err, errlen, "out of memory");
	return out;
}
