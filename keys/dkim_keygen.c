/*
 * dkim_keygen.c - making a DKIM key pair: the key (OpenSSL), its PEM
 * text, the DNS record stub in opendkim-genkey's layout, and writing
 * both files without a moment where the private one is readable by
 * others or an existing file is replaced. See dkim_keygen.h.
 *
 * Owns nothing between calls.
 */
#include "dkim_keygen.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#define TXT_CHUNK 250	/* key characters per string, as opendkim-genkey cuts them */

EVP_PKEY *dkim_keygen_new(enum dkim_key_type type, int bits, char *err, size_t errlen)
{
	EVP_PKEY *pkey;

	if (type == DKIM_KEY_RSA &&
	    (bits < DKIM_KEY_RSA_MIN_BITS || bits > DKIM_KEYGEN_RSA_MAX_BITS)) {
		snprintf(err, errlen, "RSA key size %d: use %d to %d bits", bits,
			 DKIM_KEY_RSA_MIN_BITS, DKIM_KEYGEN_RSA_MAX_BITS);
		return NULL;
	}
	if (type == DKIM_KEY_RSA)
		pkey = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)bits);
	else
		pkey = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	if (!pkey) {
		unsigned long e = ERR_peek_last_error();
		char why[200] = "unknown error";
		if (e)
			ERR_error_string_n(e, why, sizeof(why));
		snprintf(err, errlen, "cannot generate the %s key: %s", dkim_key_type_name(type),
			 why);
	}
	ERR_clear_error();
	return pkey;
}

char *dkim_keygen_private_pem_new(EVP_PKEY *pkey, size_t *len, char *err, size_t errlen)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *data, *out = NULL;

	if (b && PEM_write_bio_PrivateKey(b, pkey, NULL, NULL, 0, NULL, NULL) == 1) {
		long n = BIO_get_mem_data(b, &data);
		out = n > 0 ? malloc((size_t)n + 1) : NULL;
		if (out) {
			memcpy(out, data, (size_t)n);
			out[n] = '\0';
			*len = (size_t)n;
		}
		OPENSSL_cleanse(data, n > 0 ? (size_t)n : 0);
	}
	if (!out)
		snprintf(err, errlen, "cannot write the private key as PEM");
	BIO_free(b);
	ERR_clear_error();
	return out;
}

struct buf {
	char *p;
	size_t len, cap;
	int oom;
};

static void add(struct buf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = 2 * (b->len + n + 1) + 256;
		char *p = realloc(b->p, cap);
		if (!p) {
			b->oom = 1;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void adds(struct buf *b, const char *s)
{
	add(b, s, strlen(s));
}

char *dkim_keygen_txt_new(const struct dkim_keygen_record *r, const char *p64)
{
	struct buf b = {0};
	char flags[32] = "";

	/* the flags as opendkim-genkey composes them: "t=y;", "t=y:s;",
	 * "t=s;", then " s=email;", then a space */
	if (r->testing && r->no_subdomains)
		strcpy(flags, "t=y:s;");
	else if (r->testing)
		strcpy(flags, "t=y;");
	else if (r->no_subdomains)
		strcpy(flags, "t=s;");
	if (r->email_only) {
		if (flags[0])
			strcat(flags, " ");
		strcat(flags, "s=email;");
	}
	if (flags[0])
		strcat(flags, " ");

	adds(&b, r->selector);
	adds(&b, "._domainkey");
	if (r->append_domain) {
		adds(&b, ".");
		adds(&b, r->domain);
		adds(&b, ".");
	}
	adds(&b, "\tIN\tTXT\t( \"v=DKIM1;");
	if (r->hashes) {
		adds(&b, " h=");
		adds(&b, r->hashes);
		adds(&b, ";");
	}
	adds(&b, " k=");
	adds(&b, dkim_key_type_name(r->type));
	adds(&b, "; ");
	adds(&b, flags);
	adds(&b, "\"\n\t  \"p=");
	size_t len = strlen(p64);
	for (size_t cur = 0; cur < len; cur += TXT_CHUNK) {
		if (cur)
			adds(&b, "\"\n\t  \"");
		add(&b, p64 + cur, len - cur < TXT_CHUNK ? len - cur : TXT_CHUNK);
	}
	adds(&b, "\" )  ; ----- DKIM key ");
	adds(&b, r->selector);
	adds(&b, " for ");
	adds(&b, r->domain);
	adds(&b, "\n");
	if (b.oom) {
		free(b.p);
		return NULL;
	}
	return b.p;
}

static int write_all(int fd, const char *s, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, s, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		s += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Creates path exclusively with mode; -1 with err set. */
static int create(const char *path, mode_t mode, char *err, size_t errlen)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);

	if (fd < 0 && errno == EEXIST)
		snprintf(err, errlen, "%s exists already: not overwritten", path);
	else if (fd < 0)
		snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
	return fd;
}

/* Writes and closes fd; -1 with err set. */
static int finish(int fd, const char *path, const char *s, size_t n, char *err, size_t errlen)
{
	if (write_all(fd, s, n) < 0 || fsync(fd) < 0) {
		snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	if (close(fd) < 0) {
		snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

int dkim_keygen_write(const char *dir, const char *selector,
		      const char *pem, size_t pemlen, const char *txt,
		      char *private_path, char *txt_path, size_t pathlen,
		      char *err, size_t errlen)
{
	if ((size_t)snprintf(private_path, pathlen, "%s/%s.private", dir, selector) >= pathlen ||
	    (size_t)snprintf(txt_path, pathlen, "%s/%s.txt", dir, selector) >= pathlen) {
		snprintf(err, errlen, "path too long");
		return -1;
	}
	/* 0600 from creation; the umask can only take bits away, and
	 * fchmod puts back what an odd umask (0200...) would remove */
	int pfd = create(private_path, 0600, err, errlen);
	if (pfd < 0)
		return -1;
	int tfd = create(txt_path, 0644, err, errlen);
	if (tfd < 0) {
		close(pfd);
		unlink(private_path);
		return -1;
	}
	if (fchmod(pfd, 0600) < 0) {
		snprintf(err, errlen, "cannot chmod %s: %s", private_path, strerror(errno));
		close(pfd);
		close(tfd);
		unlink(private_path);
		unlink(txt_path);
		return -1;
	}
	int rc = finish(pfd, private_path, pem, pemlen, err, errlen);
	if (rc == 0)
		rc = finish(tfd, txt_path, txt, strlen(txt), err, errlen);
	else
		close(tfd);
	if (rc < 0) {
		unlink(private_path);
		unlink(txt_path);
	}
	return rc;
}
