/*
 * spf_proto.c - encode and strictly decode the messages between moat
 * and its SPF workers (format: spf_proto.h).
 *
 * Owns nothing: a writer and a reader over caller buffers.
 */
#include "spf_proto.h"

#include <stdio.h>
#include <string.h>

#include "resolver.h"

static const char *const result_names[SPF_RES__COUNT] = {
	"pass", "fail", "softfail", "neutral", "none", "temperror", "permerror",
};

const char *spf_result_name(enum spf_result r)
{
	return (unsigned)r < SPF_RES__COUNT ? result_names[r] : "?";
}

int spf_result_parse(const char *s, enum spf_result *out)
{
	for (int i = 0; s && i < SPF_RES__COUNT; i++)
		if (strcmp(s, result_names[i]) == 0) {
			*out = (enum spf_result)i;
			return 0;
		}
	return -1;
}

/* ---- writer ---- */

struct wr {
	unsigned char *buf;
	size_t len, o;
	size_t max;		/* payload octets allowed */
	int bad;
};

static void put(struct wr *w, const void *p, size_t n)
{
	if (w->bad || n > w->len - w->o || w->o + n - SPF_PROTO_HDR > w->max) {
		w->bad = 1;
		return;
	}
	memcpy(w->buf + w->o, p, n);
	w->o += n;
}

static void put_u8(struct wr *w, unsigned v)
{
	unsigned char b = (unsigned char)v;
	put(w, &b, 1);
}

static void put_u16(struct wr *w, unsigned v)
{
	unsigned char b[2] = {(unsigned char)(v >> 8), (unsigned char)v};
	put(w, b, 2);
}

static void put_u32(struct wr *w, uint32_t v)
{
	unsigned char b[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16),
			      (unsigned char)(v >> 8), (unsigned char)v};
	put(w, b, 4);
}

static void put_str(struct wr *w, const char *s, size_t max)
{
	size_t n = strnlen(s, max + 1);
	if (n > max) {
		w->bad = 1;
		return;
	}
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
			w->bad = 1;
	put_u16(w, (unsigned)n);
	put(w, s, n);
}

/* An octet string: a u16 length and the octets, whatever they are. */
static void put_bytes(struct wr *w, const unsigned char *p, size_t n)
{
	if (n > 0xffff) {
		w->bad = 1;
		return;
	}
	put_u16(w, (unsigned)n);
	put(w, p, n);
}

static int wr_begin(struct wr *w, unsigned char *buf, size_t len, int type, size_t max)
{
	w->buf = buf;
	w->len = len;
	w->max = max;
	w->o = 0;
	w->bad = len < SPF_PROTO_HDR + 1;
	if (!w->bad) {
		w->o = SPF_PROTO_HDR;
		put_u8(w, (unsigned)type);
	}
	return 0;
}

static int wr_end(struct wr *w)
{
	if (w->bad)
		return -1;
	uint32_t n = (uint32_t)(w->o - SPF_PROTO_HDR);
	w->buf[0] = (unsigned char)(n >> 24);
	w->buf[1] = (unsigned char)(n >> 16);
	w->buf[2] = (unsigned char)(n >> 8);
	w->buf[3] = (unsigned char)n;
	return (int)w->o;
}

int spf_proto_encode_config(const struct spf_proto_config *c, unsigned char *buf, size_t len)
{
	struct wr w;
	wr_begin(&w, buf, len, SPF_MSG_CONFIG, SPF_PROTO_MAX);
	put_u32(&w, SPF_PROTO_VERSION);
	put_u32(&w, c->timeout_ms);
	put_str(&w, c->receiver, SPF_DOMAIN_MAX);
	return wr_end(&w);
}

int spf_proto_encode_check(const struct spf_proto_check *c, unsigned char *buf, size_t len)
{
	struct wr w;
	wr_begin(&w, buf, len, SPF_MSG_CHECK, SPF_PROTO_MAX);
	put_u32(&w, c->id);
	put_u32(&w, c->budget_ms);
	put_u8(&w, c->flags);
	put_str(&w, c->ip, SPF_IP_MAX);
	put_str(&w, c->sender, SPF_SENDER_MAX);
	put_str(&w, c->helo, SPF_DOMAIN_MAX);
	return wr_end(&w);
}

static void put_identity(struct wr *w, const struct spf_proto_identity *r)
{
	put_u8(w, r->done);
	put_u8(w, r->result);
	put_u16(w, r->terms);
	put_u16(w, r->voids);
	put_str(w, r->mechanism, SPF_MECH_MAX);
	put_str(w, r->explanation, SPF_EXP_MAX);
	put_str(w, r->problem, SPF_PROBLEM_MAX);
}

int spf_proto_encode_result(const struct spf_proto_result *r, unsigned char *buf, size_t len)
{
	struct wr w;
	wr_begin(&w, buf, len, SPF_MSG_RESULT, SPF_PROTO_WORKER_MAX);
	put_u32(&w, r->id);
	put_identity(&w, &r->mailfrom);
	put_identity(&w, &r->helo);
	return wr_end(&w);
}

/* The types an SPF evaluation looks up (type SPF, 99, never). */
static int spf_qtype(unsigned t)
{
	return t == MOAT_DNS_A || t == MOAT_DNS_AAAA || t == MOAT_DNS_TXT || t == MOAT_DNS_MX ||
	       t == MOAT_DNS_PTR;
}

/* A name a query can be made of: 1..SPF_DOMAIN_MAX octets (a trailing
 * dot aside) in labels of 1..63. */
static int qname_ok(const char *name)
{
	size_t n = strnlen(name, SPF_QNAME_MAX + 1), label = 0;
	if (n > SPF_QNAME_MAX)
		return 0;
	if (n > 0 && name[n - 1] == '.')
		n--;
	if (n == 0 || n > SPF_DOMAIN_MAX)
		return 0;
	for (size_t i = 0; i <= n; i++) {
		if (i == n || name[i] == '.') {
			if (label == 0 || label > SPF_LABEL_MAX)
				return 0;
			label = 0;
		} else {
			label++;
		}
	}
	return 1;
}

int spf_proto_encode_dns_query(const struct spf_proto_dns_query *q, unsigned char *buf,
			       size_t len)
{
	struct wr w;
	wr_begin(&w, buf, len, SPF_MSG_DNS_QUERY, SPF_PROTO_WORKER_MAX);
	if (!spf_qtype(q->type) || !qname_ok(q->name))
		w.bad = 1;
	put_u32(&w, q->id);
	put_u16(&w, q->type);
	put_str(&w, q->name, SPF_QNAME_MAX);
	return wr_end(&w);
}

#define ANSWER_FIXED 16		/* payload octets before the records */

int spf_proto_encode_dns_answer(const struct spf_proto_dns_answer *a, unsigned char *buf,
				size_t len)
{
	struct wr w;
	size_t k = 0, room = len < SPF_PROTO_HDR + SPF_PROTO_MAX ? len : SPF_PROTO_HDR + SPF_PROTO_MAX;
	size_t o = SPF_PROTO_HDR + ANSWER_FIXED;

	/* the records that fit, in order */
	while (k < a->nrr && k < SPF_DNS_MAX_RR && a->rrlen[k] <= 0xffff &&
	       o + 2 + a->rrlen[k] <= room)
		o += 2 + a->rrlen[k++];
	wr_begin(&w, buf, len, SPF_MSG_DNS_ANSWER, SPF_PROTO_MAX);
	if (a->status > MOAT_DNS_ERROR || a->rcode > 4095 || a->ttl > 0x7fffffffu ||
	    a->secure > 1 || a->truncated > 1 || (a->status == MOAT_DNS_OK) != (a->nrr > 0) ||
	    (a->truncated && a->nrr == 0) || (a->nrr > 0 && k == 0))
		w.bad = 1;
	put_u32(&w, a->id);
	put_u8(&w, a->status);
	put_u16(&w, a->rcode);
	put_u32(&w, a->ttl);
	put_u8(&w, a->secure);
	put_u8(&w, a->truncated || k < a->nrr);
	put_u16(&w, (unsigned)k);
	for (size_t i = 0; i < k && !w.bad; i++)
		put_bytes(&w, a->rr[i], a->rrlen[i]);
	return wr_end(&w);
}

/* ---- reader ---- */

long spf_proto_frame(const unsigned char *buf, size_t n, size_t max)
{
	if (n < SPF_PROTO_HDR)
		return 0;
	uint32_t len = (uint32_t)buf[0] << 24 | (uint32_t)buf[1] << 16 | (uint32_t)buf[2] << 8 |
		       buf[3];
	if (len == 0 || len > max || len > SPF_PROTO_MAX)
		return -1;
	return n - SPF_PROTO_HDR >= len ? (long)len : 0;
}

int spf_proto_type(const unsigned char *p, size_t n)
{
	return n >= 1 ? p[0] : -1;
}

struct rd {
	const unsigned char *p;
	size_t n, o;
	const char *bad;	/* the first problem */
};

static void fail(struct rd *r, const char *why)
{
	if (!r->bad)
		r->bad = why;
}

static const unsigned char *take(struct rd *r, size_t k)
{
	if (r->bad || k > r->n - r->o) {
		fail(r, "message too short");
		return NULL;
	}
	r->o += k;
	return r->p + r->o - k;
}

static unsigned get_u8(struct rd *r)
{
	const unsigned char *b = take(r, 1);
	return b ? b[0] : 0;
}

static unsigned get_u16(struct rd *r)
{
	const unsigned char *b = take(r, 2);
	return b ? (unsigned)b[0] << 8 | b[1] : 0;
}

static uint32_t get_u32(struct rd *r)
{
	const unsigned char *b = take(r, 4);
	return b ? (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3] : 0;
}

static void get_str(struct rd *r, char *out, size_t max, const char *what)
{
	unsigned n = get_u16(r);
	out[0] = '\0';
	if (r->bad)
		return;
	if (n > max) {
		fail(r, what);
		return;
	}
	const unsigned char *b = take(r, n);
	if (!b)
		return;
	for (unsigned i = 0; i < n; i++)
		if (b[i] < 0x20 || b[i] > 0x7e) {
			fail(r, what);
			return;
		}
	memcpy(out, b, n);
	out[n] = '\0';
}

static int rd_begin(struct rd *r, const unsigned char *p, size_t n, int type, size_t max)
{
	r->p = p;
	r->n = n;
	r->o = 0;
	r->bad = NULL;
	if (n > max)
		fail(r, "message too long");
	if (get_u8(r) != (unsigned)type)
		fail(r, "unexpected message type");
	return 0;
}

static int rd_end(struct rd *r, char *err, size_t errlen)
{
	if (!r->bad && r->o != r->n)
		fail(r, "trailing octets");
	if (r->bad) {
		snprintf(err, errlen, "%s", r->bad);
		return -1;
	}
	return 0;
}

int spf_proto_decode_config(const unsigned char *p, size_t n, struct spf_proto_config *c,
			    char *err, size_t errlen)
{
	struct rd r;
	memset(c, 0, sizeof(*c));
	rd_begin(&r, p, n, SPF_MSG_CONFIG, SPF_PROTO_MAX);
	if (get_u32(&r) != SPF_PROTO_VERSION)
		fail(&r, "protocol version mismatch");
	c->timeout_ms = get_u32(&r);
	if (c->timeout_ms < 1 || c->timeout_ms > 600000)
		fail(&r, "timeout out of range");
	get_str(&r, c->receiver, SPF_DOMAIN_MAX, "bad receiver");
	return rd_end(&r, err, errlen);
}

int spf_proto_decode_check(const unsigned char *p, size_t n, struct spf_proto_check *c,
			   char *err, size_t errlen)
{
	struct rd r;
	char ip[SPF_IP_MAX + 1], dom[SPF_DOMAIN_MAX + 1], tmp[SPF_SENDER_MAX + 1];

	memset(c, 0, sizeof(*c));
	rd_begin(&r, p, n, SPF_MSG_CHECK, SPF_PROTO_MAX);
	c->id = get_u32(&r);
	c->budget_ms = get_u32(&r);
	if (!r.bad && (c->budget_ms < 1 || c->budget_ms > 600000))
		fail(&r, "budget out of range");
	c->flags = (uint8_t)get_u8(&r);
	if (!r.bad && (c->flags == 0 || (c->flags & ~(SPF_CHECK_MAILFROM | SPF_CHECK_HELO))))
		fail(&r, "bad flags");
	get_str(&r, c->ip, SPF_IP_MAX, "bad client address");
	get_str(&r, c->sender, SPF_SENDER_MAX, "bad sender");
	get_str(&r, c->helo, SPF_DOMAIN_MAX, "bad helo");
	if (r.bad)
		return rd_end(&r, err, errlen);
	/* what the main process prepares, and nothing else */
	if (spf_ip_normalize(c->ip, ip, sizeof(ip)) < 0 || strcmp(ip, c->ip) != 0)
		fail(&r, "client address not canonical");
	if (c->flags & SPF_CHECK_MAILFROM) {
		if (spf_sender_prepare(c->sender, tmp, sizeof(tmp), dom, sizeof(dom)) !=
		    SPF_INPUT_OK || strcmp(tmp, c->sender) != 0)
			fail(&r, "sender not prepared");
	} else if (c->sender[0]) {
		fail(&r, "sender without a MAIL FROM check");
	}
	/* a HELO name that prepares is sent prepared; one that does not (an
	 * address literal, a bare word, junk) only for %{h} (spf_prepare()),
	 * never as the HELO identity */
	if (c->helo[0]) {
		int ok = spf_helo_prepare(c->helo, dom, sizeof(dom)) == 0;
		if (ok ? strcmp(dom, c->helo) != 0 : (c->flags & SPF_CHECK_HELO) != 0)
			fail(&r, "helo not prepared");
	}
	if ((c->flags & SPF_CHECK_HELO) && !c->helo[0])
		fail(&r, "HELO check without a name");
	return rd_end(&r, err, errlen);
}

static void get_identity(struct rd *r, struct spf_proto_identity *id)
{
	id->done = (uint8_t)get_u8(r);
	id->result = (uint8_t)get_u8(r);
	if (!r->bad && (id->done > 1 || id->result >= SPF_RES__COUNT))
		fail(r, "bad result");
	id->terms = (uint16_t)get_u16(r);
	id->voids = (uint16_t)get_u16(r);
	get_str(r, id->mechanism, SPF_MECH_MAX, "bad mechanism");
	get_str(r, id->explanation, SPF_EXP_MAX, "bad explanation");
	get_str(r, id->problem, SPF_PROBLEM_MAX, "bad problem text");
	if (!r->bad && !id->done && (id->result || id->terms || id->voids || id->mechanism[0] ||
				     id->explanation[0] || id->problem[0]))
		fail(r, "data for an identity not checked");
}

int spf_proto_decode_result(const unsigned char *p, size_t n, struct spf_proto_result *res,
			    char *err, size_t errlen)
{
	struct rd r;
	memset(res, 0, sizeof(*res));
	rd_begin(&r, p, n, SPF_MSG_RESULT, SPF_PROTO_WORKER_MAX);
	res->id = get_u32(&r);
	get_identity(&r, &res->mailfrom);
	get_identity(&r, &res->helo);
	return rd_end(&r, err, errlen);
}

int spf_proto_decode_dns_query(const unsigned char *p, size_t n, struct spf_proto_dns_query *q,
			       char *err, size_t errlen)
{
	struct rd r;
	memset(q, 0, sizeof(*q));
	rd_begin(&r, p, n, SPF_MSG_DNS_QUERY, SPF_PROTO_WORKER_MAX);
	q->id = get_u32(&r);
	q->type = (uint16_t)get_u16(&r);
	if (!r.bad && !spf_qtype(q->type))
		fail(&r, "query type not used by SPF");
	get_str(&r, q->name, SPF_QNAME_MAX, "bad query name");
	if (!r.bad && !qname_ok(q->name))
		fail(&r, "bad query name");
	return rd_end(&r, err, errlen);
}

int spf_proto_decode_dns_answer(const unsigned char *p, size_t n, struct spf_proto_dns_answer *a,
				const unsigned char **rr, size_t *rrlen, size_t max, char *err,
				size_t errlen)
{
	struct rd r;
	memset(a, 0, sizeof(*a));
	a->rr = rr;
	a->rrlen = rrlen;
	rd_begin(&r, p, n, SPF_MSG_DNS_ANSWER, SPF_PROTO_MAX);
	a->id = get_u32(&r);
	a->status = (uint8_t)get_u8(&r);
	if (!r.bad && a->status > MOAT_DNS_ERROR)
		fail(&r, "bad DNS status");
	a->rcode = (uint16_t)get_u16(&r);
	if (!r.bad && a->rcode > 4095)
		fail(&r, "bad rcode");
	a->ttl = get_u32(&r);
	if (!r.bad && a->ttl > 0x7fffffffu)
		fail(&r, "bad TTL");
	a->secure = (uint8_t)get_u8(&r);
	a->truncated = (uint8_t)get_u8(&r);
	if (!r.bad && (a->secure > 1 || a->truncated > 1))
		fail(&r, "bad flags");
	size_t k = get_u16(&r);
	if (!r.bad && (k > max || k > SPF_DNS_MAX_RR))
		fail(&r, "too many records");
	if (!r.bad && ((a->status == MOAT_DNS_OK) != (k > 0) || (a->truncated && k == 0)))
		fail(&r, "records do not match the status");
	for (size_t i = 0; !r.bad && i < k; i++) {
		size_t l = get_u16(&r);
		const unsigned char *b = take(&r, l);
		if (!b)
			break;
		rr[i] = b;
		rrlen[i] = l;
	}
	if (rd_end(&r, err, errlen) < 0) {
		a->nrr = 0;
		return -1;
	}
	a->nrr = k;
	return 0;
}
