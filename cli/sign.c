/*
 * sign.c - `moat sign`: DKIM-sign one message file with the signer the
 * daemon uses (filters/dkim_sign.c, filters/dkim_canon.c) and print it.
 *
 *	moat sign -d DOMAIN -s SELECTOR -k KEYFILE [-c HCANON[/BCANON]]
 *		  [-a rsa-sha256|ed25519-sha256] [-x SECONDS] [-i IDENTITY] [FILE]
 *
 * Reads FILE (or standard input), with CRLF or bare LF line ends. The
 * message is signed as it would leave over SMTP (CRLF); the output is
 * the DKIM-Signature field, then the message unchanged, both in the
 * input's line-end style. -c defaults to relaxed/relaxed ("relaxed"
 * alone: relaxed/simple, as in c=); -a, when given, must be the key's
 * algorithm. The default header lists of the filter are signed and
 * oversigned.
 * Exit status: 0 signed, 1 the message cannot be signed (no From...),
 * 64 usage, 66 unreadable input, 78 key file or DOMAIN/SELECTOR refused.
 * Owns the message buffer, the key and the signature of the run.
 */
#include "sign.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dkim_canon.h"
#include "dkim_keyfile.h"
#include "dkim_sign.h"

#define EX_USAGE 64
#define EX_NOINPUT 66
#define EX_CONFIG 78
#define MAX_MESSAGE (64L * 1024 * 1024)

static int usage(void)
{
	fprintf(stderr, "usage: moat sign -d DOMAIN -s SELECTOR -k KEYFILE [-c HCANON[/BCANON]]\n"
			"                 [-a rsa-sha256|ed25519-sha256] [-x SECONDS] "
			"[-i IDENTITY] [FILE]\n");
	return EX_USAGE;
}

/* Reads all of f into *buf (malloc'd). Returns the length, or -1. */
static long read_all(FILE *f, char **buf)
{
	size_t cap = 65536, len = 0;
	char *b = malloc(cap);

	while (b) {
		size_t n = fread(b + len, 1, cap - len, f);
		len += n;
		if (n == 0)
			break;
		if (len == cap) {
			char *nb = cap < (size_t)MAX_MESSAGE ? realloc(b, cap * 2) : NULL;
			if (!nb) {
				errno = cap < (size_t)MAX_MESSAGE ? ENOMEM : EFBIG;
				free(b);
				return -1;
			}
			b = nb;
			cap *= 2;
		}
	}
	if (!b || ferror(f)) {
		free(b);
		return -1;
	}
	*buf = b;
	return (long)len;
}

/* The message with every bare LF made CRLF (malloc'd, *outlen set). */
static char *to_crlf(const char *m, size_t len, size_t *outlen)
{
	char *o = malloc(2 * len + 1);
	size_t n = 0;

	if (!o)
		return NULL;
	for (size_t i = 0; i < len; i++) {
		if (m[i] == '\n' && (i == 0 || m[i - 1] != '\r'))
			o[n++] = '\r';
		o[n++] = m[i];
	}
	*outlen = n;
	return o;
}

/* "relaxed/simple", "relaxed" (body simple), "simple". */
static int parse_canon(const char *s, enum dkim_canon *h, enum dkim_canon *b)
{
	const char *slash = strchr(s, '/');

	*b = DKIM_CANON_SIMPLE;
	if (dkim_canon_parse(s, slash ? (size_t)(slash - s) : strlen(s), h) < 0)
		return -1;
	return slash ? dkim_canon_parse(slash + 1, strlen(slash + 1), b) : 0;
}

/* Hashes the body in canon c: the 32 octets go to out. */
static int body_hash(enum dkim_canon c, const char *body, size_t len, unsigned char *out)
{
	unsigned long long canon_len;
	struct dkim_body_hash *bh = dkim_body_hash_new(c, DKIM_HASH_SHA256, -1);

	if (!bh)
		return -1;
	dkim_body_hash_update(bh, body, len);
	int n = dkim_body_hash_final(bh, out, &canon_len);
	dkim_body_hash_free(bh);
	return n;
}

/* Writes the signature field in the input's line-end style. */
static void print_field(const char *value, int lf)
{
	fputs("DKIM-Signature:", stdout);
	for (const char *p = value; *p; p++)
		if (!(lf && p[0] == '\r' && p[1] == '\n'))
			putchar(*p);
	fputs(lf ? "\n" : "\r\n", stdout);
}

int moat_cli_sign(const struct moat_config *c, int argc, char **argv)
{
	const char *domain = NULL, *selector = NULL, *keyfile = NULL, *canon = "relaxed/relaxed";
	const char *alg_name = NULL, *identity = NULL;
	long expire = 0;
	int opt;
	char err[512];

	(void)c;
	optind = 1;
	while ((opt = getopt(argc, argv, "d:s:k:c:a:x:i:")) != -1) {
		char *end;
		switch (opt) {
		case 'd': domain = optarg; break;
		case 's': selector = optarg; break;
		case 'k': keyfile = optarg; break;
		case 'c': canon = optarg; break;
		case 'a': alg_name = optarg; break;
		case 'i': identity = optarg; break;
		case 'x':
			expire = strtol(optarg, &end, 10);
			if (*end || expire <= 0)
				return usage();
			break;
		default: return usage();
		}
	}
	struct dkim_sign_params p = {
		.headers = dkim_sign_default_headers,
		.nheaders = dkim_sign_default_nheaders,
		.oversign = dkim_sign_default_oversign,
		.noversign = dkim_sign_default_noversign,
		.expire = expire,
		.identity = identity,
	};
	enum dkim_sign_alg want;
	if (!domain || !selector || !keyfile || argc - optind > 1 ||
	    parse_canon(canon, &p.hcanon, &p.bcanon) < 0 ||
	    (alg_name && dkim_sign_alg_parse(alg_name, &want) < 0))
		return usage();

	enum dkim_key_type type;
	int bits;
	EVP_PKEY *pkey = dkim_keyfile_load(keyfile, &type, &bits, err, sizeof(err));
	struct dkim_sign_key *key = pkey ? dkim_sign_key_new(domain, selector, pkey, err,
							     sizeof(err)) : NULL;
	if (key && alg_name && key->alg != want)
		snprintf(err, sizeof(err), "-a %s, but %s is an %s key", alg_name, keyfile,
			 dkim_key_type_name(type));
	if (!key || (alg_name && key->alg != want)) {
		fprintf(stderr, "moat sign: %s\n", err);
		dkim_sign_key_free(key);
		return EX_CONFIG;
	}

	const char *path = optind < argc ? argv[optind] : NULL;
	FILE *in = path && strcmp(path, "-") != 0 ? fopen(path, "rb") : stdin;
	char *raw = NULL;
	long rawlen = in ? read_all(in, &raw) : -1;
	if (rawlen < 0) {
		fprintf(stderr, "moat sign: cannot read %s: %s\n", path ? path : "standard input",
			strerror(errno));
		if (in && in != stdin)
			fclose(in);
		dkim_sign_key_free(key);
		return EX_NOINPUT;
	}
	if (in != stdin)
		fclose(in);

	/* LF input: the first line end tells */
	const char *nl = memchr(raw, '\n', (size_t)rawlen);
	int lf = nl && (nl == raw || nl[-1] != '\r');
	size_t mlen = (size_t)rawlen;
	char *msg = lf ? to_crlf(raw, (size_t)rawlen, &mlen) : raw;
	int rc = 1;
	char *value = NULL;
	unsigned char bh[DKIM_MAX_DIGEST];
	if (!msg) {
		fprintf(stderr, "moat sign: out of memory\n");
		goto out;
	}
	size_t hlen = mlen;
	const char *body = "";
	size_t blen = 0;
	if (mlen >= 2 && memcmp(msg, "\r\n", 2) == 0) {
		hlen = 0;	/* no header fields at all */
		body = msg + 2;
		blen = mlen - 2;
	} else {
		const char *sep = memmem(msg, mlen, "\r\n\r\n", 4);
		if (sep) {
			hlen = (size_t)(sep - msg) + 2;
			body = sep + 4;
			blen = mlen - hlen - 2;
		}
	}
	int n = body_hash(p.bcanon, body, blen, bh);
	if (n < 0) {
		fprintf(stderr, "moat sign: cannot hash the body\n");
		goto out;
	}
	if (dkim_sign(key, &p, msg, hlen, bh, (size_t)n, &value, err, sizeof(err)) < 0) {
		fprintf(stderr, "moat sign: %s\n", err);
		goto out;
	}
	print_field(value, lf);
	fwrite(raw, 1, (size_t)rawlen, stdout);
	rc = fflush(stdout) == 0 ? 0 : 1;
out:
	free(value);
	if (msg != raw)
		free(msg);
	free(raw);
	dkim_sign_key_free(key);
	return rc;
}
