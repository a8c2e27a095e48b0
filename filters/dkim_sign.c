/*
 * dkim_sign.c - the DKIM signer: selecting the header fields to sign,
 * the folded tag list, the header hash and the RSA-SHA256 or
 * Ed25519-SHA256 signature. See dkim_sign.h.
 *
 * Owns, per call, the parsed field list and the canonical text it
 * hashes; both are freed before it returns.
 */
#include "dkim_sign.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/objects.h>

#include "ascii.h"

#define LINE_MAX_CHARS 78	/* RFC 5322 2.1.1: SHOULD be no more than 78 */
#define FIELD_NAME "DKIM-Signature:"
#define SHA256_LEN 32
#define MAX_SIGNED_NAMES 1000	/* h= entries: a header block with more is refused */

const char *const dkim_sign_default_headers[] = {
	"From", "Reply-To", "Subject", "Date", "To", "Cc",
	"Resent-Date", "Resent-From", "Resent-To", "Resent-Cc",
	"In-Reply-To", "References",
	"List-Id", "List-Help", "List-Unsubscribe", "List-Subscribe", "List-Post",
	"List-Owner", "List-Archive",
	"Message-ID", "MIME-Version", "Content-Type", "Content-Transfer-Encoding",
	"Content-Disposition",
};
const size_t dkim_sign_default_nheaders =
	sizeof(dkim_sign_default_headers) / sizeof(dkim_sign_default_headers[0]);

const char *const dkim_sign_default_oversign[] = {
	"From", "To", "Cc", "Subject", "Date", "Reply-To", "Message-ID", "MIME-Version",
	"Content-Type", "Content-Transfer-Encoding",
};
const size_t dkim_sign_default_noversign =
	sizeof(dkim_sign_default_oversign) / sizeof(dkim_sign_default_oversign[0]);

const char *dkim_sign_alg_name(enum dkim_sign_alg a)
{
	return a == DKIM_SIGN_ED25519_SHA256 ? "ed25519-sha256" : "rsa-sha256";
}

int dkim_sign_alg_parse(const char *s, enum dkim_sign_alg *out)
{
	if (word_eq(s, strlen(s), "RSA-SHA256"))
		*out = DKIM_SIGN_RSA_SHA256;
	else if (word_eq(s, strlen(s), "ED25519-SHA256"))
		*out = DKIM_SIGN_ED25519_SHA256;
	else
		return -1;
	return 0;
}

/* A DNS name as d= and s= take it: labels of letters, digits, '-' and
 * '_' (selectors of some providers have them), dots between labels. */
static int dns_name_ok(const char *s)
{
	size_t n = strlen(s), label = 0;

	if (n == 0 || n > 253)
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '.') {
			if (label == 0)
				return 0;
			label = 0;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '-' || c == '_') || ++label > 63)
			return 0;
	}
	return label > 0;
}

struct dkim_sign_key *dkim_sign_key_new(const char *domain, const char *selector,
					EVP_PKEY *pkey, char *err, size_t errlen)
{
	struct dkim_sign_key *k = NULL;
	enum dkim_sign_alg alg = DKIM_SIGN_RSA_SHA256;
	int refused = 1;

	if (!dns_name_ok(domain)) {
		snprintf(err, errlen, "signing domain \"%s\" is not a domain name", domain);
	} else if (!dns_name_ok(selector)) {
		snprintf(err, errlen, "selector \"%s\" is not a DNS name", selector);
	} else if (!pkey) {
		snprintf(err, errlen, "no key");
	} else if (EVP_PKEY_get_base_id(pkey) == EVP_PKEY_ED25519) {
		alg = DKIM_SIGN_ED25519_SHA256;
		refused = 0;
		k = calloc(1, sizeof(*k));
	} else if (EVP_PKEY_get_base_id(pkey) == EVP_PKEY_RSA) {
		alg = DKIM_SIGN_RSA_SHA256;
		if (EVP_PKEY_get_bits(pkey) < 1024)
			snprintf(err, errlen, "RSA key of %d bits: DKIM needs at least 1024",
				 EVP_PKEY_get_bits(pkey));
		else
			refused = 0;
		if (!refused)
			k = calloc(1, sizeof(*k));
	} else {
		snprintf(err, errlen, "key type %s cannot sign DKIM (rsa or ed25519)",
			 OBJ_nid2sn(EVP_PKEY_get_base_id(pkey)));
	}
	if (!k) {
		if (!refused)
			snprintf(err, errlen, "out of memory");
		EVP_PKEY_free(pkey);
		return NULL;
	}
	k->domain = strdup(domain);
	k->selector = strdup(selector);
	k->pkey = pkey;
	k->alg = alg;
	if (!k->domain || !k->selector) {
		snprintf(err, errlen, "out of memory");
		dkim_sign_key_free(k);
		return NULL;
	}
	ascii_lower_str(k->domain);
	return k;
}

void dkim_sign_key_free(struct dkim_sign_key *k)
{
	if (!k)
		return;
	free(k->domain);
	free(k->selector);
	EVP_PKEY_free(k->pkey);
	free(k);
}

/* ---------------------------------------------------------- text buffer */

struct text {
	char *buf;
	size_t len, cap;
	size_t col;		/* characters on the current line */
	int oom;
};

static void put(struct text *t, const char *s, size_t n)
{
	if (t->oom)
		return;
	if (t->len + n + 1 > t->cap) {
		size_t cap = t->cap ? t->cap : 256;
		while (cap < t->len + n + 1)
			cap *= 2;
		char *b = realloc(t->buf, cap);
		if (!b) {
			t->oom = 1;
			return;
		}
		t->buf = b;
		t->cap = cap;
	}
	memcpy(t->buf + t->len, s, n);
	t->len += n;
	t->buf[t->len] = '\0';
	t->col += n;
}

static void putstr(struct text *t, const char *s)
{
	put(t, s, strlen(s));
}

/* Folding white space: a new line starting with a tab. */
static void fold(struct text *t)
{
	put(t, "\r\n\t", 3);
	t->col = 1;
}

/* One token; space: a space before it on the same line (none after a
 * fold). Folds first when the token would pass the line limit. */
static void token(struct text *t, const char *s, size_t n, int space)
{
	if (t->col > 1 && t->col + (size_t)space + n > LINE_MAX_CHARS)
		fold(t);
	else if (space)
		put(t, " ", 1);
	put(t, s, n);
}

/* A tag "name=value;" as one token. */
static void tag(struct text *t, const char *name, const char *value, int newline)
{
	char buf[600];
	int n = snprintf(buf, sizeof(buf), "%s=%s;", name, value);

	if (newline && t->col > 1)
		fold(t);
	token(t, buf, n < 0 ? 0 : (size_t)n, !newline);
}

/* A base64 value broken wherever the line is full. */
static void b64_folded(struct text *t, const char *s)
{
	size_t n = strlen(s);

	while (n > 0) {
		if (t->col >= LINE_MAX_CHARS)
			fold(t);
		size_t room = LINE_MAX_CHARS - t->col;
		size_t k = n < room ? n : room;
		put(t, s, k);
		s += k;
		n -= k;
	}
}

/* -------------------------------------------------------- header fields */

struct field {
	const char *p;		/* the field, without its final CRLF */
	size_t len;
	size_t namelen;		/* 0: no colon, never selected */
	int used;
};

/* Splits the header block into fields (ends at the empty line or the
 * end). Returns the number of fields, *out malloc'd; -1 when out of
 * memory. */
static long parse_fields(const char *h, size_t hlen, struct field **out)
{
	size_t cap = 32, n = 0, i = 0;
	struct field *f = malloc(cap * sizeof(*f));

	if (!f)
		return -1;
	while (i < hlen) {
		if (h[i] == '\n' || (h[i] == '\r' && i + 1 < hlen && h[i + 1] == '\n'))
			break;	/* the empty line */
		size_t start = i, end;
		for (;;) {
			const char *nl = memchr(h + i, '\n', hlen - i);
			if (!nl) {
				end = i = hlen;
				break;
			}
			end = (size_t)(nl - h);
			i = end + 1;
			if (i >= hlen || (h[i] != ' ' && h[i] != '\t'))
				break;
		}
		if (end > start && h[end - 1] == '\r' && end < hlen)
			end--;
		if (n == cap) {
			struct field *g = realloc(f, 2 * cap * sizeof(*f));
			if (!g) {
				free(f);
				return -1;
			}
			f = g;
			cap *= 2;
		}
		const char *colon = memchr(h + start, ':', end - start);
		size_t nl = colon ? (size_t)(colon - (h + start)) : 0;
		while (nl > 0 && (h[start + nl - 1] == ' ' || h[start + nl - 1] == '\t'))
			nl--;
		f[n++] = (struct field){h + start, end - start, colon ? nl : 0, 0};
	}
	*out = f;
	return (long)n;
}

static int name_is(const struct field *f, const char *name)
{
	return f->namelen && f->namelen == strlen(name) &&
	       strncasecmp(f->p, name, f->namelen) == 0;
}

/* A header field name (RFC 5322 ftext): printable ASCII but ':'. */
static int field_name_ok(const char *s)
{
	if (!*s || strlen(s) > 200)
		return 0;
	for (; *s; s++)
		if ((unsigned char)*s < 33 || (unsigned char)*s > 126 || *s == ':')
			return 0;
	return 1;
}

static int in_list(const char *name, const char *const *list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcasecmp(name, list[i]) == 0)
			return 1;
	return 0;
}

/* The names to sign, in order, each once (headers then the oversigned
 * ones not among them). Returns the count; *out malloc'd (borrowed
 * strings); -1 when out of memory or a name is bad (err set). */
static long sign_names(const struct dkim_sign_params *p, const char ***out, char *err,
		       size_t errlen)
{
	const char **v = malloc((p->nheaders + p->noversign + 1) * sizeof(*v));
	size_t n = 0;

	if (!v) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (size_t pass = 0; pass < 2; pass++) {
		const char *const *list = pass ? p->oversign : p->headers;
		size_t nl = pass ? p->noversign : p->nheaders;
		for (size_t i = 0; i < nl; i++) {
			if (!field_name_ok(list[i])) {
				snprintf(err, errlen, "\"%s\" is not a header field name", list[i]);
				free(v);
				return -1;
			}
			if (!in_list(list[i], v, n))
				v[n++] = list[i];
		}
	}
	*out = v;
	return (long)n;
}

/* i= in DKIM quoted-printable (RFC 6376 2.11): ';', '=', space and
 * anything outside printable ASCII as =XX. Its domain must be d= or
 * below it. */
static int put_identity(struct text *t, const char *id, const char *domain, char *err,
			size_t errlen)
{
	const char *at = strrchr(id, '@');
	size_t dl = strlen(domain);

	if (!at) {
		snprintf(err, errlen, "identity \"%s\" has no @domain", id);
		return -1;
	}
	size_t il = strlen(at + 1);
	if (!(il == dl && strcasecmp(at + 1, domain) == 0) &&
	    !(il > dl && at[il - dl] == '.' && strcasecmp(at + 1 + il - dl, domain) == 0)) {
		snprintf(err, errlen, "identity \"%s\" is not in the signing domain %s", id,
			 domain);
		return -1;
	}
	struct text v = {0};
	putstr(&v, "i=");
	for (const char *c = id; *c; c++) {
		unsigned char u = (unsigned char)*c;
		char hex[4];
		if (u <= 0x20 || u >= 0x7f || u == ';' || u == '=') {
			snprintf(hex, sizeof(hex), "=%02X", u);
			put(&v, hex, 3);
		} else {
			put(&v, c, 1);
		}
	}
	put(&v, ";", 1);
	if (v.oom) {
		free(v.buf);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	token(t, v.buf, v.len, 1);
	free(v.buf);
	return 0;
}

/* The names h= lists, in order: pointers borrowed from the params. */
struct hlist {
	const char **v;
	size_t n;
};

/* Fills h: each name to sign once per occurrence in the fields, once
 * more if oversigned. Returns 0, or -1 with err set. */
static int signed_names(const struct dkim_sign_params *p, const struct field *f, size_t nf,
			struct hlist *h, char *err, size_t errlen)
{
	const char **names;
	long nn = sign_names(p, &names, err, errlen);
	size_t from = 0, cap = 0;

	if (nn < 0)
		return -1;
	for (size_t j = 0; j < nf; j++)
		from += (size_t)name_is(&f[j], "From");
	if (!in_list("From", names, (size_t)nn) || from == 0) {
		free(names);
		snprintf(err, errlen, from ? "the header fields to sign do not include From"
				      : "the message has no From header field");
		return -1;
	}
	for (long i = 0; i < nn; i++) {
		size_t count = 0;
		for (size_t j = 0; j < nf; j++)
			count += (size_t)name_is(&f[j], names[i]);
		count += (size_t)in_list(names[i], p->oversign, p->noversign);
		if (h->n + count > MAX_SIGNED_NAMES) {
			snprintf(err, errlen, "more than %d header fields to sign",
				 MAX_SIGNED_NAMES);
			goto fail;
		}
		if (h->n + count > cap) {
			cap = 2 * (h->n + count) + 16;
			const char **v = realloc(h->v, cap * sizeof(*v));
			if (!v) {
				snprintf(err, errlen, "out of memory");
				goto fail;
			}
			h->v = v;
		}
		while (count-- > 0)
			h->v[h->n++] = names[i];
	}
	free(names);
	return 0;
fail:
	free(names);
	free(h->v);
	h->v = NULL;
	h->n = 0;
	return -1;
}

/* The tag list up to "b=" (the signature's own value comes later).
 * Returns 0, or -1 with err set. */
static int build_tags(struct text *t, const struct dkim_sign_key *key,
		      const struct dkim_sign_params *p, const struct hlist *h,
		      const char *bh64, char *err, size_t errlen)
{
	char num[64];

	t->col = strlen(FIELD_NAME);
	tag(t, "v", "1", 0);
	tag(t, "a", dkim_sign_alg_name(key->alg), 0);
	snprintf(num, sizeof(num), "%s/%s", dkim_canon_name(p->hcanon), dkim_canon_name(p->bcanon));
	tag(t, "c", num, 0);
	tag(t, "d", key->domain, 0);
	tag(t, "s", key->selector, 0);
	if (p->identity && put_identity(t, p->identity, key->domain, err, errlen) < 0)
		return -1;
	time_t now = p->now ? p->now : time(NULL);
	snprintf(num, sizeof(num), "%lld", (long long)now);
	tag(t, "t", num, 1);
	if (p->expire > 0) {
		snprintf(num, sizeof(num), "%lld", (long long)now + p->expire);
		tag(t, "x", num, 0);
	}
	/* h=: a fold may follow any ':' */
	for (size_t i = 0; i < h->n; i++) {
		char w[300];
		size_t n = 0;
		if (i == 0) {
			w[n++] = 'h';
			w[n++] = '=';
		}
		for (const char *c = h->v[i]; *c && n < sizeof(w) - 2; c++)
			w[n++] = (char)ascii_lower((unsigned char)*c);
		w[n++] = i + 1 < h->n ? ':' : ';';
		token(t, w, n, i == 0);
	}
	tag(t, "bh", bh64, 1);
	if (t->col > 1)
		fold(t);
	token(t, "b=", 2, 0);
	if (t->oom) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

/* The canonical text the signature covers: the fields named in h=,
 * bottom-up per name, then the DKIM-Signature field with an empty b=
 * (value: the tag list up to "b="). */
static int header_data(const struct dkim_sign_params *p, struct field *f, size_t nf,
		       const struct hlist *h, const char *value,
		       char **buf, size_t *len, size_t *cap)
{
	for (size_t i = 0; i < h->n; i++) {
		for (size_t j = nf; j-- > 0;) {
			if (!f[j].used && name_is(&f[j], h->v[i])) {
				f[j].used = 1;
				if (dkim_canon_header(p->hcanon, f[j].p, f[j].len, 1, buf, len,
						      cap) < 0)
					return -1;
				break;
			}
		}
	}
	size_t flen = strlen(FIELD_NAME), vlen = strlen(value);
	char *sig = malloc(flen + vlen + 1);
	if (!sig)
		return -1;
	memcpy(sig, FIELD_NAME, flen);
	memcpy(sig + flen, value, vlen + 1);
	int rc = dkim_canon_header(p->hcanon, sig, flen + vlen, 0, buf, len, cap);
	free(sig);
	return rc;
}

/* Signs data with the key: RSA PKCS#1 v1.5 over SHA-256; Ed25519 over
 * the SHA-256 of data (RFC 8463 3). Returns the malloc'd base64 of the
 * signature, or NULL with err set. */
static char *sign_data(const struct dkim_sign_key *key, const unsigned char *data, size_t len,
		       char *err, size_t errlen)
{
	unsigned char md[SHA256_LEN], *sig = NULL;
	unsigned int mdlen = 0;
	size_t siglen = 0;
	char *out = NULL;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int ok = ctx != NULL;

	if (ok && key->alg == DKIM_SIGN_ED25519_SHA256) {
		ok = EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) == 1 &&
		     EVP_DigestSignInit(ctx, NULL, NULL, NULL, key->pkey) == 1;
		data = md;
		len = mdlen;
	} else if (ok) {
		ok = EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, key->pkey) == 1;
	}
	ok = ok && EVP_DigestSign(ctx, NULL, &siglen, data, len) == 1 &&
	     (sig = malloc(siglen)) != NULL &&
	     EVP_DigestSign(ctx, sig, &siglen, data, len) == 1;
	if (ok) {
		out = malloc(4 * ((siglen + 2) / 3) + 1);
		if (out)
			EVP_EncodeBlock((unsigned char *)out, sig, (int)siglen);
	}
	if (!out) {
		unsigned long e = ERR_peek_last_error();
		char why[200] = "out of memory";
		if (e)
			ERR_error_string_n(e, why, sizeof(why));
		snprintf(err, errlen, "signing with %s._domainkey.%s failed: %s", key->selector,
			 key->domain, why);
	}
	ERR_clear_error();
	free(sig);
	EVP_MD_CTX_free(ctx);
	return out;
}

int dkim_sign(const struct dkim_sign_key *key, const struct dkim_sign_params *p,
	      const char *header_block, size_t hlen,
	      const unsigned char *body_hash, size_t bhlen,
	      char **value_out, char *err, size_t errlen)
{
	struct field *f = NULL;
	struct text t = {0};
	struct hlist h = {NULL, 0};
	char bh64[4 * ((SHA256_LEN + 2) / 3) + 1];
	char *data = NULL, *b64 = NULL;
	size_t dlen = 0, dcap = 0;
	int rc = -1;

	*value_out = NULL;
	if (bhlen != SHA256_LEN) {
		snprintf(err, errlen, "body hash of %zu octets (SHA-256 has %d)", bhlen,
			 SHA256_LEN);
		return -1;
	}
	long nf = parse_fields(header_block, hlen, &f);
	if (nf < 0) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	EVP_EncodeBlock((unsigned char *)bh64, body_hash, (int)bhlen);
	if (signed_names(p, f, (size_t)nf, &h, err, errlen) < 0 ||
	    build_tags(&t, key, p, &h, bh64, err, errlen) < 0)
		goto out;
	if (header_data(p, f, (size_t)nf, &h, t.buf, &data, &dlen, &dcap) < 0) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	b64 = sign_data(key, (const unsigned char *)data, dlen, err, errlen);
	if (!b64)
		goto out;
	b64_folded(&t, b64);
	if (t.oom) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	*value_out = t.buf;
	t.buf = NULL;
	rc = 0;
out:
	free(b64);
	free(data);
	free(t.buf);
	free(h.v);
	free(f);
	return rc;
}
