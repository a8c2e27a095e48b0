/*
 * dkim_keyfile.h - DKIM private key files: loading one (with a check of
 * its permissions), and the public key as a DKIM record's p= value.
 *
 * Formats read:
 *	PEM "RSA PRIVATE KEY" (PKCS#1), as older openssl genrsa and
 *	    opendkim-genkey wrote it;
 *	PEM "PRIVATE KEY" (PKCS#8), RSA or Ed25519, as openssl 3 and
 *	    opendkim-genkey on Debian 12 write it, and as moat keygen does;
 *	the base64 of a raw 32-octet Ed25519 seed, alone in the file, as
 *	    dkimpy's dknewkey writes it.
 * Encrypted PEM keys are refused (nothing prompts for a passphrase).
 *
 * A key file must not be readable or writable by others (mode & 007):
 * loading one is an error. Group-readable is fine (0640 with the
 * daemon's group).
 *
 * The returned EVP_PKEY belongs to the caller (EVP_PKEY_free). OpenSSL 3
 * allows one EVP_PKEY to sign from several threads at once.
 */
#ifndef MOAT_DKIM_KEYFILE_H
#define MOAT_DKIM_KEYFILE_H

#include <stddef.h>
#include <sys/types.h>

#include <openssl/evp.h>

enum dkim_key_type { DKIM_KEY_RSA = 0, DKIM_KEY_ED25519 = 1 };

#define DKIM_KEY_RSA_MIN_BITS 1024	/* RFC 8301: smaller keys are not signed with */
#define DKIM_KEY_MAX_FILE 65536	/* octets: a larger "key file" is something else */

/* "rsa" / "ed25519": the names of a DKIM record's k= tag. */
const char *dkim_key_type_name(enum dkim_key_type t);
/* 0, or -1 for anything but "rsa" / "ed25519" (ASCII case-insensitive). */
int dkim_key_type_parse(const char *s, enum dkim_key_type *out);

/* 0 when a key file of this mode may be used; -1 with err set
 * ("key file PATH is readable by others (mode 0644); chmod 600 or 640")
 * when others may read or write it. */
int dkim_keyfile_check_mode(const char *path, mode_t mode, char *err, size_t errlen);

/* Loads the private key in the file at path (a symlink to it is fine):
 * it must be a regular file, its mode is checked as above. On success
 * returns the key (the caller's) and sets *type and *bits (RSA
 * modulus size; 256 for Ed25519); on failure NULL with err set to a
 * reason naming the file. An RSA key smaller than
 * DKIM_KEY_RSA_MIN_BITS is refused. */
EVP_PKEY *dkim_keyfile_load(const char *path, enum dkim_key_type *type, int *bits,
			    char *err, size_t errlen);

/* The same from a buffer (no permission check): what the file holds.
 * name is used in error messages only. */
EVP_PKEY *dkim_key_parse(const char *name, const char *text, size_t len,
			 enum dkim_key_type *type, int *bits, char *err, size_t errlen);

/* The key's type and size: 0, or -1 (err set) for a key DKIM cannot use. */
int dkim_key_info(EVP_PKEY *pkey, enum dkim_key_type *type, int *bits,
		  char *err, size_t errlen);

/* The public key as published in p=: RSA, the base64 of the
 * SubjectPublicKeyInfo DER (what opendkim-genkey publishes); Ed25519,
 * the base64 of the raw 32-octet public key (RFC 8463, not SPKI).
 * Returns a malloc'd NUL-terminated string (the caller frees it), or
 * NULL with err set. */
char *dkim_key_public_b64_new(EVP_PKEY *pkey, char *err, size_t errlen);

/* The base64 (no line breaks) of len octets: malloc'd, NULL when out of
 * memory. */
char *dkim_key_b64_new(const unsigned char *data, size_t len);

#endif
