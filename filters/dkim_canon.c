/*
 * dkim_canon.c - DKIM canonicalization (RFC 6376 3.4): header fields in
 * the simple and relaxed forms, and the streaming body hash.
 *
 * The body is canonicalized by a byte-wise state machine whose state
 * (a CR waiting for its LF, whitespace waiting for the next character,
 * line ends held back because they may turn out to be trailing empty
 * lines) survives chunk boundaries, so the digest is the same for any
 * chunking. Canonical octets go through a small buffer into the digest,
 * cut at the l= limit.
 *
 * Owns: each struct dkim_body_hash and its digest context.
 */
#include "dkim_canon.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "ascii.h"

int dkim_canon_parse(const char *s, size_t len, enum dkim_canon *out)
{
	if (len == 6 && strncmp(s, "simple", 6) == 0) {
		*out = DKIM_CANON_SIMPLE;
		return 0;
	}
	if (len == 7 && strncmp(s, "relaxed", 7) == 0) {
		*out = DKIM_CANON_RELAXED;
		return 0;
	}
	return -1;
}

const char *dkim_canon_name(enum dkim_canon c)
{
	return c == DKIM_CANON_RELAXED ? "relaxed" : "simple";
}

/* ------------------------------------------------------------ header fields */

static int reserve(char **buf, size_t *len, size_t *cap, size_t more)
{
	if (*cap - *len >= more)
		return 0;
	size_t want = *cap ? *cap : 256;
	while (want - *len < more) {
		if (want > ((size_t)-1) / 2)
			return -1;
		want *= 2;
	}
	char *n = realloc(*buf, want);
	if (!n)
		return -1;
	*buf = n;
	*cap = want;
	return 0;
}

static int is_wsp(char c)
{
	return c == ' ' || c == '\t';
}

int dkim_canon_header(enum dkim_canon c, const char *field, size_t flen, int crlf,
		      char **buf, size_t *len, size_t *cap)
{
	if (flen >= 2 && field[flen - 2] == '\r' && field[flen - 1] == '\n')
		flen -= 2;
	/* relaxed output is never longer than the input */
	if (reserve(buf, len, cap, flen + 2) < 0)
		return -1;
	char *o = *buf + *len;
	if (c == DKIM_CANON_SIMPLE) {
		memcpy(o, field, flen);
		o += flen;
	} else {
		const char *colon = memchr(field, ':', flen);
		size_t nlen = colon ? (size_t)(colon - field) : flen;
		size_t i;
		/* name: lower case, whitespace before the colon dropped */
		while (nlen > 0 && (is_wsp(field[nlen - 1]) || field[nlen - 1] == '\r' ||
				    field[nlen - 1] == '\n'))
			nlen--;
		for (i = 0; i < nlen; i++)
			*o++ = (char)ascii_lower((unsigned char)field[i]);
		if (colon) {
			*o++ = ':';
			int space = 0, any = 0;
			for (i = (size_t)(colon - field) + 1; i < flen; i++) {
				char ch = field[i];
				if (ch == '\r' && i + 1 < flen && field[i + 1] == '\n') {
					i++;	/* unfold: CRLF removed */
					continue;
				}
				if (is_wsp(ch)) {
					space = 1;
					continue;
				}
				if (space && any)
					*o++ = ' ';
				space = 0;
				any = 1;
				*o++ = ch;
			}
		}
	}
	if (crlf) {
		*o++ = '\r';
		*o++ = '\n';
	}
	*len = (size_t)(o - *buf);
	return 0;
}

/* ------------------------------------------------------------ body hash */

#define OUTBUF 4096

struct dkim_body_hash {
	EVP_MD_CTX *md;
	enum dkim_canon canon;
	long long limit;		/* -1: no limit */
	unsigned long long total;	/* canonical octets produced */
	unsigned long long hashed;	/* of which fed to the digest */
	unsigned long long crlfs;	/* line ends held back */
	int cr;				/* a CR waiting for its LF */
	int space;			/* relaxed: whitespace waiting */
	int any;			/* some content was produced */
	int error;
	int finished;
	size_t olen;
	unsigned char out[OUTBUF];
};

struct dkim_body_hash *dkim_body_hash_new(enum dkim_canon c, enum dkim_hash h, long long limit)
{
	struct dkim_body_hash *bh = calloc(1, sizeof(*bh));
	if (!bh)
		return NULL;
	bh->md = EVP_MD_CTX_new();
	if (!bh->md ||
	    EVP_DigestInit_ex(bh->md, h == DKIM_HASH_SHA1 ? EVP_sha1() : EVP_sha256(), NULL) != 1) {
		EVP_MD_CTX_free(bh->md);
		free(bh);
		return NULL;
	}
	bh->canon = c;
	bh->limit = limit < 0 ? -1 : limit;
	return bh;
}

static void flush(struct dkim_body_hash *bh)
{
	size_t n = bh->olen;
	if (bh->limit >= 0) {
		unsigned long long room = (unsigned long long)bh->limit > bh->hashed
					  ? (unsigned long long)bh->limit - bh->hashed : 0;
		if (n > room)
			n = (size_t)room;
	}
	if (n > 0 && EVP_DigestUpdate(bh->md, bh->out, n) != 1)
		bh->error = 1;
	bh->hashed += n;
	bh->olen = 0;
}

static void emit(struct dkim_body_hash *bh, const char *p, size_t n)
{
	bh->total += n;
	while (n > 0) {
		size_t k = OUTBUF - bh->olen;
		if (k > n)
			k = n;
		memcpy(bh->out + bh->olen, p, k);
		bh->olen += k;
		p += k;
		n -= k;
		if (bh->olen == OUTBUF)
			flush(bh);
	}
}

/* Content octets (no line end, no whitespace to fold in relaxed): first
 * what was held back. */
static void content(struct dkim_body_hash *bh, const char *p, size_t n)
{
	for (; bh->crlfs > 0; bh->crlfs--)
		emit(bh, "\r\n", 2);
	if (bh->space) {
		emit(bh, " ", 1);
		bh->space = 0;
	}
	emit(bh, p, n);
	bh->any = 1;
}

static void line_end(struct dkim_body_hash *bh)
{
	bh->space = 0;		/* relaxed: whitespace at the end of a line */
	bh->crlfs++;
}

void dkim_body_hash_update(struct dkim_body_hash *bh, const char *buf, size_t len)
{
	if (!bh || bh->finished)
		return;
	int relaxed = bh->canon == DKIM_CANON_RELAXED;
	size_t i = 0;
	while (i < len) {
		char ch = buf[i];
		if (bh->cr) {
			bh->cr = 0;
			if (ch == '\n') {
				line_end(bh);
				i++;
				continue;
			}
			content(bh, "\r", 1);	/* a bare CR is content */
		}
		if (ch == '\r') {
			bh->cr = 1;
			i++;
		} else if (relaxed && is_wsp(ch)) {
			bh->space = 1;
			i++;
		} else {
			/* a run of ordinary octets goes out in one piece */
			size_t j = i + 1;
			while (j < len && buf[j] != '\r' && !(relaxed && is_wsp(buf[j])))
				j++;
			content(bh, buf + i, j - i);
			i = j;
		}
	}
}

int dkim_body_hash_final(struct dkim_body_hash *bh, unsigned char *out,
			 unsigned long long *canon_len)
{
	unsigned int n = 0;

	if (!bh || bh->finished)
		return -1;
	if (bh->cr) {
		bh->cr = 0;
		content(bh, "\r", 1);
	}
	/* The last non-empty line keeps (or gains) its CRLF; trailing empty
	 * lines are dropped. An empty body is "\r\n" in simple, "" in relaxed. */
	if (bh->any || bh->canon == DKIM_CANON_SIMPLE)
		emit(bh, "\r\n", 2);
	flush(bh);
	bh->finished = 1;
	if (canon_len)
		*canon_len = bh->total;
	if (bh->error || EVP_DigestFinal_ex(bh->md, out, &n) != 1)
		return -1;
	return (int)n;
}

void dkim_body_hash_free(struct dkim_body_hash *bh)
{
	if (!bh)
		return;
	EVP_MD_CTX_free(bh->md);
	free(bh);
}
