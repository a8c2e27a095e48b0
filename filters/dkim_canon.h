/*
 * dkim_canon.h - DKIM canonicalization (RFC 6376 3.4): the simple and
 * relaxed forms of a header field, and the body hash computed as the
 * body streams in (no second pass, any chunking).
 *
 * Shared by verification (dkim_verify.c) and signing (dkim_sign.c).
 * A body hash owns its digest context; dkim_body_hash_free() frees it.
 */
#ifndef MOAT_DKIM_CANON_H
#define MOAT_DKIM_CANON_H

#include <stddef.h>

enum dkim_canon { DKIM_CANON_SIMPLE = 0, DKIM_CANON_RELAXED = 1 };
enum dkim_hash { DKIM_HASH_SHA256 = 0, DKIM_HASH_SHA1 = 1 };

#define DKIM_MAX_DIGEST 32	/* octets of the largest digest */

/* "simple" / "relaxed" -> canon; 0, or -1 for anything else. */
int dkim_canon_parse(const char *s, size_t len, enum dkim_canon *out);
const char *dkim_canon_name(enum dkim_canon c);

/* Appends the canonical form of one header field to *buf (realloc'd;
 * *len and *cap updated). field: the whole raw field, "Name: value"
 * with its folding, with or without the final CRLF. crlf: append CRLF
 * after it (every field but the DKIM-Signature being verified/signed).
 * Returns 0 or -1 (out of memory). */
int dkim_canon_header(enum dkim_canon c, const char *field, size_t flen, int crlf,
		      char **buf, size_t *len, size_t *cap);

struct dkim_body_hash;

/* A body hash in canon c with hash h; limit: octets of canonical body
 * that count (l=), or -1 for all. NULL when out of memory. */
struct dkim_body_hash *dkim_body_hash_new(enum dkim_canon c, enum dkim_hash h, long long limit);
/* Feeds body octets (CRLF line ends, as received; any chunking). */
void dkim_body_hash_update(struct dkim_body_hash *bh, const char *buf, size_t len);
/* Ends the body: writes the digest to out (DKIM_MAX_DIGEST octets room),
 * returns its length; *canon_len gets the octets of canonical body seen
 * in all (to compare with l=). -1 on a digest error. Once only. */
int dkim_body_hash_final(struct dkim_body_hash *bh, unsigned char *out,
			 unsigned long long *canon_len);
void dkim_body_hash_free(struct dkim_body_hash *bh);

#endif
