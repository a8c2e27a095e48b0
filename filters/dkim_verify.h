/*
 * dkim_verify.h - verifies the DKIM signatures of one message (RFC 6376
 * section 6, RFC 8301, RFC 8463), for the daemon's filter (body streamed,
 * keys looked up asynchronously) and the command line alike.
 *
 * Use:
 *	v = dkim_verifier_new(&opts);		(NULL opts: the defaults)
 *	dkim_verifier_headers(v, block, len);	once, the whole header block
 *	for each i < dkim_verifier_count(v):
 *		name = dkim_verifier_key_name(v, i);	NULL: needs no key
 *		... look up TXT at name, later:
 *		dkim_verifier_key(v, i, status, txt, ntxt);
 *	dkim_verifier_body(v, buf, len);	any number of times
 *	dkim_verifier_finish(v);		the end of the body
 *	dkim_verifier_result(v, i);
 *	dkim_verifier_free(v);
 * Keys may come in any order, before or after dkim_verifier_finish(); a
 * signature's result is final once both the body has ended and its key
 * (if it needs one) has come. Until then its result reads temperror
 * ("key not supplied").
 *
 * The verifier owns copies of everything it keeps (the header block,
 * the parsed signatures, the keys); the strings of a result are owned
 * by it and valid until dkim_verifier_free(). Nothing here does I/O,
 * and nothing is thread-safe: one verifier, one thread at a time.
 */
#ifndef MOAT_DKIM_VERIFY_H
#define MOAT_DKIM_VERIFY_H

#include <stddef.h>
#include <time.h>

enum dkim_status {
	DKIM_PASS = 0,
	DKIM_FAIL,		/* body hash or signature did not verify, t=s violated */
	DKIM_NEUTRAL,
	DKIM_POLICY,		/* acceptable, but refused by the options (l=, too many) */
	DKIM_TEMPERROR,		/* the key could not be fetched now */
	DKIM_PERMERROR,		/* the signature or its key is unusable */
	DKIM_NONE,
};

/* The RFC 8601 result token: "pass", "fail", "neutral", "policy",
 * "temperror", "permerror", "none". */
const char *dkim_status_name(enum dkim_status s);

/* What to do with a signature whose l= leaves part of the body unsigned. */
enum dkim_l_policy {
	DKIM_L_ACCEPT = 0,	/* verify the first l= octets; the result says
				 * body_truncated (a caller may score it) */
	DKIM_L_REFUSE,		/* such a signature is "policy" (it would pass) */
};

struct dkim_verify_opts {
	int max_signatures;	/* verify at most this many, from the top (default
				 * 10); the rest are "policy", not checked */
	enum dkim_l_policy l_policy;	/* default DKIM_L_ACCEPT */
	long clock_skew;	/* seconds allowed for t= in the future and x= in
				 * the past (default 300) */
	time_t now;		/* the verification time; 0: time() at _new */
};

/* Fills *o with the defaults above. */
void dkim_verify_opts_default(struct dkim_verify_opts *o);

struct dkim_result {
	enum dkim_status status;
	const char *reason;	/* static text: "body hash did not verify", ...;
				 * NULL on pass */
	const char *domain;	/* d= (NULL when the signature did not say) */
	const char *selector;	/* s= (NULL likewise) */
	const char *identity;	/* i=, or "@" d= (NULL if unparsed) */
	const char *b_prefix;	/* the start of b= for header.b (RFC 6008): 8
				 * characters or more, enough to tell it from the
				 * message's other signatures; NULL if unparsed */
	const char *algorithm;	/* "rsa-sha256", ...; NULL if unknown */
	int key_bits;		/* 0 until a key was parsed */
	int testing;		/* the key record says t=y */
	long long l;		/* l=, -1 when absent */
	int body_truncated;	/* l= present and the body went on past it */
};

enum dkim_key_status {
	DKIM_KEY_OK = 0,	/* txt: the TXT records found at the name */
	DKIM_KEY_NONE,		/* NXDOMAIN or no TXT: permerror "no key" */
	DKIM_KEY_TEMP,		/* SERVFAIL, timeout...: temperror */
};

struct dkim_verifier;

/* NULL when out of memory. o is copied. */
struct dkim_verifier *dkim_verifier_new(const struct dkim_verify_opts *o);

/* The message's header block as received: fields with CRLF line ends
 * (continuation lines start with SP or HT), with or without the empty
 * line that ends it. Copies it, finds every DKIM-Signature field, parses
 * it, and prepares the body hashes (shared by signatures with the same
 * body canonicalization, hash and l=). Once per verifier. Returns 0, or
 * -1 (out of memory, or called twice). */
int dkim_verifier_headers(struct dkim_verifier *v, const char *block, size_t len);

/* Body octets as they stream (CRLF line ends, after dot-unstuffing); any
 * chunking. Ignored before dkim_verifier_headers() and after _finish(). */
void dkim_verifier_body(struct dkim_verifier *v, const char *buf, size_t len);

/* The number of DKIM-Signature fields, top (0) to bottom. */
size_t dkim_verifier_count(const struct dkim_verifier *v);

/* The name to look the key of signature i up at ("s._domainkey.d",
 * TXT), or NULL when the signature needs no key (already decided, e.g.
 * a permerror while parsing, or its key came already). Borrowed. */
const char *dkim_verifier_key_name(const struct dkim_verifier *v, size_t i);

/* Supplies the key lookup's outcome for signature i: status and, for
 * DKIM_KEY_OK, the ntxt TXT records found (each with its strings
 * already joined; borrowed for the call). The first record that parses
 * as a DKIM key is used. Ignored for a signature that needs no key. */
void dkim_verifier_key(struct dkim_verifier *v, size_t i, enum dkim_key_status status,
		       const char *const *txt, size_t ntxt);

/* Ends the body and decides every signature whose key is known. */
void dkim_verifier_finish(struct dkim_verifier *v);

/* Result of signature i (i < count), or NULL. Borrowed. */
const struct dkim_result *dkim_verifier_result(const struct dkim_verifier *v, size_t i);

void dkim_verifier_free(struct dkim_verifier *v);

#endif
