/*
 * dkim_verify.c - the DKIM verifier of one message: splits the header
 * block into fields, parses each DKIM-Signature, feeds the body to the
 * body hashes the signatures share, takes each signature's key as it
 * comes, and decides each signature once both body and key are there.
 *
 * Owns: the copy of the header block, the field index, the signatures
 * (struct dkim_sig), their keys (struct dkim_keyrec) and the body hashes.
 */
#include "dkim_verify.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dkim_canon.h"
#include "dkim_keycache.h"
#include "dkim_keyrec.h"
#include "dkim_sig.h"
#include "dkim_tags.h"

#define DEFAULT_MAX_SIGNATURES 10
#define DEFAULT_CLOCK_SKEW 300

struct field {
	size_t off, len;	/* in the block copy, without the final CRLF */
	size_t name_len;	/* trailing whitespace trimmed; 0 if no colon */
	size_t colon;		/* offset of ":" in the field */
};

struct slot {			/* one body hash */
	enum dkim_canon canon;
	enum dkim_hash hash;
	long long l;
	struct dkim_body_hash *bh;
	unsigned char digest[DKIM_MAX_DIGEST];
	int dlen;		/* -1 after a digest error */
	unsigned long long clen;
};

enum sig_state {
	S_DECIDED,		/* result final */
	S_NEED_KEY,		/* waiting for its key */
	S_HAVE_KEY,		/* key checked, waiting for the end of body */
};

struct sigent {
	size_t field;
	enum sig_state state;
	int parsed;		/* sig holds a parsed signature */
	struct dkim_sig sig;
	struct dkim_keyrec key;	/* when state is S_HAVE_KEY */
	size_t slot;
	char *key_name;
	char *b_prefix;
	char *loose_d, *loose_s, *loose_b;	/* from an unparsable signature */
	struct dkim_result res;
};

struct dkim_verifier {
	struct dkim_verify_opts o;
	char *block;
	size_t block_len;
	struct field *fields;
	size_t nfields;
	struct sigent *sigs;
	size_t nsigs;
	struct slot *slots;
	size_t nslots;
	int have_headers;
	int finished;
};

static const char *const status_names[] = {
	[DKIM_PASS] = "pass",
	[DKIM_FAIL] = "fail",
	[DKIM_NEUTRAL] = "neutral",
	[DKIM_POLICY] = "policy",
	[DKIM_TEMPERROR] = "temperror",
	[DKIM_PERMERROR] = "permerror",
	[DKIM_NONE] = "none",
};

const char *dkim_status_name(enum dkim_status s)
{
	if ((unsigned)s < sizeof(status_names) / sizeof(status_names[0]))
		return status_names[s];
	return "none";
}

void dkim_verify_opts_default(struct dkim_verify_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->max_signatures = DEFAULT_MAX_SIGNATURES;
	o->l_policy = DKIM_L_ACCEPT;
	o->clock_skew = DEFAULT_CLOCK_SKEW;
}

struct dkim_verifier *dkim_verifier_new(const struct dkim_verify_opts *o)
{
	struct dkim_verifier *v = calloc(1, sizeof(*v));
	if (!v)
		return NULL;
	if (o)
		v->o = *o;
	else
		dkim_verify_opts_default(&v->o);
	if (v->o.max_signatures <= 0)
		v->o.max_signatures = DEFAULT_MAX_SIGNATURES;
	if (v->o.clock_skew < 0)
		v->o.clock_skew = 0;
	if (v->o.now == 0)
		v->o.now = time(NULL);
	return v;
}

/* ------------------------------------------------------------ the header block */

static int is_wsp(char c)
{
	return c == ' ' || c == '\t';
}

static int add_field(struct dkim_verifier *v, size_t *cap, size_t off, size_t end)
{
	if (v->nfields == *cap) {
		size_t n = *cap ? *cap * 2 : 32;
		struct field *f = realloc(v->fields, n * sizeof(*f));
		if (!f)
			return -1;
		v->fields = f;
		*cap = n;
	}
	struct field *f = &v->fields[v->nfields++];
	const char *s = v->block + off;
	f->off = off;
	f->len = end - off;
	const char *colon = memchr(s, ':', f->len);
	f->colon = colon ? (size_t)(colon - s) : 0;
	f->name_len = f->colon;
	while (f->name_len > 0 && is_wsp(s[f->name_len - 1]))
		f->name_len--;
	return 0;
}

/* Splits the block copy into fields: a line starting with SP/HT continues
 * the field before it; an empty line ends the block. */
static int split_fields(struct dkim_verifier *v)
{
	size_t cap = 0, i = 0, start = 0, end = 0;
	int open = 0;

	while (i < v->block_len) {
		const char *nl = memchr(v->block + i, '\n', v->block_len - i);
		size_t next = nl ? (size_t)(nl - v->block) + 1 : v->block_len;
		size_t le = nl ? (size_t)(nl - v->block) : v->block_len;	/* line end */
		if (nl && le > i && v->block[le - 1] == '\r')
			le--;
		if (le == i)	/* the empty line */
			break;
		if (is_wsp(v->block[i])) {
			if (open)
				end = le;	/* continuation */
		} else {
			if (open && add_field(v, &cap, start, end) < 0)
				return -1;
			start = i;
			end = le;
			open = 1;
		}
		i = next;
	}
	if (open && add_field(v, &cap, start, end) < 0)
		return -1;
	return 0;
}

static int field_is(const struct dkim_verifier *v, const struct field *f, const char *name,
		    size_t n)
{
	return f->name_len == n && strncasecmp(v->block + f->off, name, n) == 0;
}

/* ------------------------------------------------------------ signatures */

static void decide(struct sigent *s, enum dkim_status st, const char *reason)
{
	s->state = S_DECIDED;
	s->res.status = st;
	s->res.reason = reason;
	if (s->key.pkey)
		dkim_keyrec_clear(&s->key);
}

static char *dup_tag(const struct dkim_tags *t, const char *name, int domain)
{
	const struct dkim_tag *tag = dkim_tags_get(t, name);
	if (!tag || tag->value_len == 0 || tag->value_len > 255)
		return NULL;
	if (domain && !dkim_domain_ok(tag->value, tag->value_len))
		return NULL;
	char *d = malloc(tag->value_len + 1);
	if (!d)
		return NULL;
	size_t n = 0;
	for (size_t i = 0; i < tag->value_len; i++)	/* printable, no whitespace */
		if (tag->value[i] > ' ' && tag->value[i] < 0x7f)
			d[n++] = tag->value[i];
	d[n] = '\0';
	return d;
}

/* For a signature that does not parse: d=, s= and b= if they look sane,
 * so that the result can still say whose signature it was. */
static void loose_tags(struct sigent *s, const char *value, size_t len)
{
	struct dkim_tags t;
	const char *why;
	if (dkim_tags_parse(value, len, &t, &why) < 0)
		return;
	s->loose_d = dup_tag(&t, "d", 1);
	s->loose_s = dup_tag(&t, "s", 1);
	s->loose_b = dup_tag(&t, "b", 0);
	s->res.domain = s->loose_d;
	s->res.selector = s->loose_s;
}

static int find_slot(struct dkim_verifier *v, enum dkim_canon c, enum dkim_hash h, long long l,
		     size_t *out)
{
	for (size_t i = 0; i < v->nslots; i++)
		if (v->slots[i].canon == c && v->slots[i].hash == h && v->slots[i].l == l) {
			*out = i;
			return 0;
		}
	struct slot *n = realloc(v->slots, (v->nslots + 1) * sizeof(*n));
	if (!n)
		return -1;
	v->slots = n;
	struct slot *s = &v->slots[v->nslots];
	memset(s, 0, sizeof(*s));
	s->canon = c;
	s->hash = h;
	s->l = l;
	if (!(s->bh = dkim_body_hash_new(c, h, l)))
		return -1;
	*out = v->nslots++;
	return 0;
}

/* Parses signature s and sets it up; -1 only when out of memory. */
static int setup_sig(struct dkim_verifier *v, struct sigent *s, size_t index)
{
	const struct field *f = &v->fields[s->field];
	const char *value = v->block + f->off + f->colon + 1;
	size_t vlen = f->len - f->colon - 1;
	const char *why;

	s->res.l = -1;
	if (index >= (size_t)v->o.max_signatures) {
		loose_tags(s, value, vlen);
		decide(s, DKIM_POLICY, "not checked: too many signatures");
		return 0;
	}
	if (dkim_sig_parse(value, vlen, &s->sig, &why) < 0) {
		if (strcmp(why, "out of memory") == 0)
			return -1;
		loose_tags(s, value, vlen);
		decide(s, DKIM_PERMERROR, why);
		return 0;
	}
	s->parsed = 1;
	struct dkim_sig *g = &s->sig;
	s->res.domain = g->domain;
	s->res.selector = g->selector;
	s->res.identity = g->identity;
	s->res.algorithm = dkim_alg_name(g->alg);
	s->res.l = g->l;

	size_t sl = strlen(g->selector), dl = strlen(g->domain);
	if (!(s->key_name = malloc(sl + dl + sizeof("._domainkey."))))
		return -1;
	memcpy(s->key_name, g->selector, sl);
	memcpy(s->key_name + sl, "._domainkey.", 12);
	memcpy(s->key_name + sl + 12, g->domain, dl + 1);

	if (g->alg == DKIM_ALG_RSA_SHA1) {
		decide(s, DKIM_PERMERROR, "rsa-sha1 is not accepted (RFC 8301)");
		return 0;
	}
	long long now = (long long)v->o.now, skew = v->o.clock_skew;
	if (g->x >= 0 && g->x + skew < now) {
		decide(s, DKIM_PERMERROR, "signature expired");
		return 0;
	}
	if (g->t >= 0 && g->t > now + skew) {
		decide(s, DKIM_PERMERROR, "signature timestamp in the future");
		return 0;
	}
	if (find_slot(v, g->bcanon, dkim_alg_hash(g->alg), g->l, &s->slot) < 0)
		return -1;
	s->state = S_NEED_KEY;
	s->res.status = DKIM_TEMPERROR;
	s->res.reason = "key not supplied";
	return 0;
}

/* header.b: at least 8 characters of b=, more until it differs from the
 * b= of every other signature (as far as b= goes) among the first
 * PREFIX_PEERS (a bound on the work a message full of signatures costs). */
#define PREFIX_PEERS 64

static int set_b_prefixes(struct dkim_verifier *v)
{
	for (size_t i = 0; i < v->nsigs; i++) {
		struct sigent *s = &v->sigs[i];
		const char *b = s->parsed ? s->sig.b_text : s->loose_b;
		if (!b)
			continue;
		size_t n = strlen(b), want = n < 8 ? n : 8;
		for (size_t j = 0; j < v->nsigs && j < PREFIX_PEERS; j++) {
			const struct sigent *o = &v->sigs[j];
			const char *ob = o->parsed ? o->sig.b_text : o->loose_b;
			if (j == i || !ob)
				continue;
			size_t k = 0;
			while (k < n && b[k] == ob[k])
				k++;
			if (k + 1 > want)
				want = k + 1 > n ? n : k + 1;
		}
		if (!(s->b_prefix = malloc(want + 1)))
			return -1;
		memcpy(s->b_prefix, b, want);
		s->b_prefix[want] = '\0';
		s->res.b_prefix = s->b_prefix;
	}
	return 0;
}

int dkim_verifier_headers(struct dkim_verifier *v, const char *block, size_t len)
{
	if (!v || v->have_headers)
		return -1;
	v->have_headers = 1;
	if (!(v->block = malloc(len ? len : 1)))
		return -1;
	memcpy(v->block, block, len);
	v->block_len = len;
	if (split_fields(v) < 0)
		return -1;
	size_t n = 0;
	for (size_t i = 0; i < v->nfields; i++)
		if (field_is(v, &v->fields[i], "DKIM-Signature", 14))
			n++;
	if (n == 0)
		return 0;
	if (!(v->sigs = calloc(n, sizeof(*v->sigs))))
		return -1;
	for (size_t i = 0; i < v->nfields; i++) {
		if (!field_is(v, &v->fields[i], "DKIM-Signature", 14))
			continue;
		struct sigent *s = &v->sigs[v->nsigs];
		s->field = i;
		s->sig.l = s->sig.t = s->sig.x = -1;
		v->nsigs++;
		if (setup_sig(v, s, v->nsigs - 1) < 0)
			return -1;
	}
	return set_b_prefixes(v);
}

void dkim_verifier_body(struct dkim_verifier *v, const char *buf, size_t len)
{
	if (!v || !v->have_headers || v->finished)
		return;
	for (size_t i = 0; i < v->nslots; i++)
		dkim_body_hash_update(v->slots[i].bh, buf, len);
}

size_t dkim_verifier_count(const struct dkim_verifier *v)
{
	return v ? v->nsigs : 0;
}

const char *dkim_verifier_key_name(const struct dkim_verifier *v, size_t i)
{
	if (!v || i >= v->nsigs || v->sigs[i].state != S_NEED_KEY)
		return NULL;
	return v->sigs[i].key_name;
}

/* ------------------------------------------------------------ verification */

/* Appends the canonical header fields h= selects, then the signature field
 * itself with its b= value (and the whitespace around it) removed. */
static int header_data(const struct dkim_verifier *v, const struct sigent *s, char **buf,
		       size_t *len)
{
	const struct dkim_sig *g = &s->sig;
	const size_t NONE = (size_t)-1;
	size_t cap = 0;
	size_t *picked = malloc((g->nheaders ? g->nheaders : 1) * sizeof(size_t));
	if (!picked)
		return -1;
	*buf = NULL;
	*len = 0;
	for (size_t i = 0; i < g->nheaders; i++) {
		/* repeated names: each takes the next field up from the bottom;
		 * one listed more often than present selects nothing */
		const char *name = g->headers[i];
		size_t nl = strlen(name), k = v->nfields;
		for (size_t j = i; j-- > 0;)
			if (strcasecmp(g->headers[j], name) == 0) {
				k = picked[j];	/* NONE (0) or above the last pick */
				break;
			}
		while (k-- > 0)
			if (k != s->field && field_is(v, &v->fields[k], name, nl))
				break;
		if (k == NONE) {
			picked[i] = 0;	/* searching up from 0 finds nothing */
			continue;
		}
		picked[i] = k;
		const struct field *f = &v->fields[k];
		if (dkim_canon_header(g->hcanon, v->block + f->off, f->len, 1, buf, len, &cap) < 0)
			goto fail;
	}
	free(picked);
	picked = NULL;

	/* the signature field with b= emptied */
	const struct field *f = &v->fields[s->field];
	size_t boff = f->colon + 1 + g->b_raw_off;
	char *tmp = malloc(f->len);
	if (!tmp)
		goto fail;
	memcpy(tmp, v->block + f->off, boff);
	memcpy(tmp + boff, v->block + f->off + boff + g->b_raw_len, f->len - boff - g->b_raw_len);
	int r = dkim_canon_header(g->hcanon, tmp, f->len - g->b_raw_len, 0, buf, len, &cap);
	free(tmp);
	if (r < 0)
		goto fail;
	return 0;
fail:
	free(picked);
	free(*buf);
	*buf = NULL;
	return -1;
}

/* 1 if b= verifies over data with the key, 0 if not, -1 on an error. */
static int check_signature(const struct sigent *s, const char *data, size_t len)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int ok = -1;
	if (!ctx)
		return -1;
	if (s->sig.alg == DKIM_ALG_ED25519_SHA256) {
		/* RFC 8463: Ed25519 over the SHA-256 digest of the header data */
		unsigned char dg[32];
		unsigned int dn = 0;
		if (EVP_Digest(data, len, dg, &dn, EVP_sha256(), NULL) == 1 &&
		    EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, s->key.pkey) == 1)
			ok = EVP_DigestVerify(ctx, s->sig.b, s->sig.b_len, dg, dn) == 1;
	} else if (EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, s->key.pkey) == 1) {
		ok = EVP_DigestVerify(ctx, s->sig.b, s->sig.b_len,
				      (const unsigned char *)data, len) == 1;
	}
	EVP_MD_CTX_free(ctx);
	ERR_clear_error();
	return ok;
}

/* Decides signature s: body and key are both there. */
static void verify_one(struct dkim_verifier *v, struct sigent *s)
{
	const struct slot *sl = &v->slots[s->slot];
	const struct dkim_sig *g = &s->sig;

	if (sl->dlen < 0) {
		decide(s, DKIM_TEMPERROR, "body hash could not be computed");
		return;
	}
	if (g->l >= 0) {
		if ((unsigned long long)g->l > sl->clen) {
			decide(s, DKIM_PERMERROR, "l= exceeds the body length");
			return;
		}
		s->res.body_truncated = (unsigned long long)g->l < sl->clen;
	}
	if ((size_t)sl->dlen != g->bh_len || memcmp(sl->digest, g->bh, g->bh_len) != 0) {
		decide(s, DKIM_FAIL, "body hash did not verify");
		return;
	}
	char *data;
	size_t len;
	if (header_data(v, s, &data, &len) < 0) {
		decide(s, DKIM_TEMPERROR, "out of memory");
		return;
	}
	int ok = check_signature(s, data, len);
	free(data);
	if (ok < 0)
		decide(s, DKIM_TEMPERROR, "signature could not be checked");
	else if (ok == 0)
		decide(s, DKIM_FAIL, "signature did not verify");
	else if (s->res.body_truncated && v->o.l_policy == DKIM_L_REFUSE)
		decide(s, DKIM_POLICY, "body extends past l=");
	else
		decide(s, DKIM_PASS, NULL);
}

/* The key's record against the signature; 0 if usable (else decided). */
static int key_fits(struct sigent *s)
{
	const struct dkim_keyrec *k = &s->key;
	const struct dkim_sig *g = &s->sig;
	enum dkim_keytype want = g->alg == DKIM_ALG_ED25519_SHA256 ? DKIM_KEYTYPE_ED25519
								   : DKIM_KEYTYPE_RSA;
	if (k->type != want) {
		decide(s, DKIM_PERMERROR, "key type does not match a=");
		return -1;
	}
	if (!(k->hashes & DKIM_KEYREC_SHA256)) {
		decide(s, DKIM_PERMERROR, "key record h= does not allow sha256");
		return -1;
	}
	if (!k->email) {
		decide(s, DKIM_PERMERROR, "key record s= does not allow email");
		return -1;
	}
	if (k->strict) {
		const char *at = strrchr(g->identity, '@');
		if (!at || strcasecmp(at + 1, g->domain) != 0) {
			decide(s, DKIM_FAIL, "key t=s requires i= in d= itself");
			return -1;
		}
	}
	return 0;
}

void dkim_verifier_key(struct dkim_verifier *v, size_t i, enum dkim_key_status status,
		       const char *const *txt, size_t ntxt)
{
	if (!v || i >= v->nsigs || v->sigs[i].state != S_NEED_KEY)
		return;
	struct sigent *s = &v->sigs[i];
	if (status == DKIM_KEY_TEMP) {
		decide(s, DKIM_TEMPERROR, "key lookup failed");
		return;
	}
	if (status != DKIM_KEY_OK || ntxt == 0) {
		decide(s, DKIM_PERMERROR, "no key for signature");
		return;
	}
	const char *first_why = NULL;
	int bits = 0;
	for (size_t k = 0; k < ntxt; k++) {
		const char *why;
		struct dkim_keyrec kr;
		if (!txt[k])
			continue;
		if (dkim_keycache_parse(txt[k], strlen(txt[k]), &kr, &why) == 0) {
			s->key = kr;
			break;
		}
		if (!first_why) {
			first_why = why;
			bits = kr.bits;
		}
	}
	if (!s->key.pkey) {
		if (first_why && strcmp(first_why, "out of memory") == 0)
			decide(s, DKIM_TEMPERROR, first_why);
		else
			decide(s, DKIM_PERMERROR, first_why ? first_why : "no key for signature");
		s->res.key_bits = bits;
		return;
	}
	s->res.key_bits = s->key.bits;
	s->res.testing = s->key.testing;
	if (key_fits(s) < 0)
		return;
	s->state = S_HAVE_KEY;
	if (v->finished)
		verify_one(v, s);
}

void dkim_verifier_finish(struct dkim_verifier *v)
{
	if (!v || v->finished)
		return;
	v->finished = 1;
	for (size_t i = 0; i < v->nslots; i++) {
		struct slot *sl = &v->slots[i];
		sl->dlen = dkim_body_hash_final(sl->bh, sl->digest, &sl->clen);
		ERR_clear_error();
	}
	for (size_t i = 0; i < v->nsigs; i++)
		if (v->sigs[i].state == S_HAVE_KEY)
			verify_one(v, &v->sigs[i]);
}

const struct dkim_result *dkim_verifier_result(const struct dkim_verifier *v, size_t i)
{
	if (!v || i >= v->nsigs)
		return NULL;
	return &v->sigs[i].res;
}

void dkim_verifier_free(struct dkim_verifier *v)
{
	if (!v)
		return;
	for (size_t i = 0; i < v->nsigs; i++) {
		struct sigent *s = &v->sigs[i];
		dkim_sig_clear(&s->sig);
		dkim_keyrec_clear(&s->key);
		free(s->key_name);
		free(s->b_prefix);
		free(s->loose_d);
		free(s->loose_s);
		free(s->loose_b);
	}
	for (size_t i = 0; i < v->nslots; i++)
		dkim_body_hash_free(v->slots[i].bh);
	free(v->sigs);
	free(v->slots);
	free(v->fields);
	free(v->block);
	free(v);
}
