/*
 * keygen.c - `moat keygen`: make a DKIM key pair, as opendkim-genkey
 * does, RSA or Ed25519.
 *
 *	moat keygen -d DOMAIN -s SELECTOR [-k rsa|ed25519] [-b BITS] [-t] [-r]
 *		    [-S] [-a] [-h HASHES] [-D DIR]
 *
 * Writes DIR/SELECTOR.private (PEM PKCS#8, mode 0600, never overwritten)
 * and DIR/SELECTOR.txt, the TXT record in opendkim-genkey's layout.
 * Options as opendkim-genkey's: -b bits (RSA, default 2048, 1024..8192),
 * -t testing (t=y), -r email only (s=email), -S no subdomains (t=s),
 * -a the owner name with the domain, -h the record's h= (default sha256),
 * -D the directory (default .); -k the key type (default rsa).
 * Prints one line per file written. Exit status: 0 written, 1 could not
 * (a file exists, a write failed), 64 usage.
 * Owns the key and texts of the run.
 */
#include "keygen.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "dkim_keyfile.h"
#include "dkim_keygen.h"

#define EX_USAGE 64

static int usage(void)
{
	fprintf(stderr, "usage: moat keygen -d DOMAIN -s SELECTOR [-k rsa|ed25519] [-b BITS] "
			"[-t] [-r] [-S] [-a]\n"
			"                   [-h HASHES] [-D DIR]\n");
	return EX_USAGE;
}

/* A DNS name of letters, digits, '-', '_' and inner dots: safe as a
 * file name too (no '/', no leading dot). */
static int name_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 253 || s[0] == '.' || s[n - 1] == '.' || strstr(s, ".."))
		return 0;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '-' || *s == '_' || *s == '.'))
			return 0;
	return 1;
}

/* h= of a key record: hash names separated by ':'. */
static int hashes_ok(const char *s)
{
	if (!*s)
		return 0;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == ':'))
			return 0;
	return 1;
}

int moat_cli_keygen(const struct moat_config *c, int argc, char **argv)
{
	struct dkim_keygen_record r = {.type = DKIM_KEY_RSA, .hashes = "sha256"};
	const char *dir = ".";
	int bits = DKIM_KEYGEN_RSA_BITS, opt, bits_given = 0;
	char err[512], ppath[4096], tpath[4096];

	(void)c;
	optind = 1;
	while ((opt = getopt(argc, argv, "d:s:k:b:tD:rh:Sa")) != -1) {
		char *end;
		switch (opt) {
		case 'd': r.domain = optarg; break;
		case 's': r.selector = optarg; break;
		case 'k':
			if (dkim_key_type_parse(optarg, &r.type) < 0)
				return usage();
			break;
		case 'b':
			bits = (int)strtol(optarg, &end, 10);
			if (*end || end == optarg)
				return usage();
			bits_given = 1;
			break;
		case 't': r.testing = 1; break;
		case 'D': dir = optarg; break;
		case 'r': r.email_only = 1; break;
		case 'h': r.hashes = optarg; break;
		case 'S': r.no_subdomains = 1; break;
		case 'a': r.append_domain = 1; break;
		default: return usage();
		}
	}
	if (optind != argc || !r.domain || !r.selector)
		return usage();
	if (!name_ok(r.domain) || !name_ok(r.selector)) {
		fprintf(stderr, "moat keygen: %s is not a DNS name\n",
			name_ok(r.domain) ? r.selector : r.domain);
		return EX_USAGE;
	}
	if (!hashes_ok(r.hashes)) {
		fprintf(stderr, "moat keygen: -h %s: hash names separated by ':' (sha256)\n",
			r.hashes);
		return EX_USAGE;
	}
	if (bits_given && r.type == DKIM_KEY_ED25519) {
		fprintf(stderr, "moat keygen: -b is for RSA keys (Ed25519 keys have one size)\n");
		return EX_USAGE;
	}
	if (r.type == DKIM_KEY_RSA &&
	    (bits < DKIM_KEY_RSA_MIN_BITS || bits > DKIM_KEYGEN_RSA_MAX_BITS)) {
		fprintf(stderr, "moat keygen: -b %d: RSA keys of %d to %d bits\n", bits,
			DKIM_KEY_RSA_MIN_BITS, DKIM_KEYGEN_RSA_MAX_BITS);
		return EX_USAGE;
	}

	int rc = 1;
	size_t pemlen = 0;
	char *pem = NULL, *p64 = NULL, *txt = NULL;
	EVP_PKEY *pkey = dkim_keygen_new(r.type, bits, err, sizeof(err));
	if (pkey)
		pem = dkim_keygen_private_pem_new(pkey, &pemlen, err, sizeof(err));
	if (pem)
		p64 = dkim_key_public_b64_new(pkey, err, sizeof(err));
	if (p64 && !(txt = dkim_keygen_txt_new(&r, p64)))
		snprintf(err, sizeof(err), "out of memory");
	if (txt && dkim_keygen_write(dir, r.selector, pem, pemlen, txt, ppath, tpath,
				     sizeof(ppath), err, sizeof(err)) == 0) {
		if (r.type == DKIM_KEY_RSA)
			printf("wrote %s: %d-bit RSA private key, mode 0600\n", ppath, bits);
		else
			printf("wrote %s: Ed25519 private key, mode 0600\n", ppath);
		printf("wrote %s: publish it as the TXT record %s._domainkey.%s\n", tpath,
		       r.selector, r.domain);
		rc = 0;
	} else {
		fprintf(stderr, "moat keygen: %s\n", err);
	}
	if (pem) {
		OPENSSL_cleanse(pem, pemlen);
		free(pem);
	}
	free(p64);
	free(txt);
	EVP_PKEY_free(pkey);
	return rc;
}
