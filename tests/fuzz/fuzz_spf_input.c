/*
 * fuzz_spf_input - libFuzzer target for what moat hands to libspf2 and
 * to its SPF workers: the input bounding and A-label conversion
 * (filters/spf_input.c), the preparation of a check (filters/spf.c
 * spf_prepare) and every decoder of the worker protocol
 * (filters/spf_proto.c): main -> worker (CONFIG, CHECK, DNS_ANSWER) and
 * worker -> main (RESULT, DNS_QUERY). libspf2 itself is not run (no
 * network in a fuzzer).
 *
 * The input's first octet picks the mode; the rest is split at NUL into
 * fields. Checks, abort()ing on violation:
 *  - a domain that spf_domain_alabel() accepts is 1..253 octets of
 *    lower-case LDH/'_' labels of 1..63 octets, at least two, and is a
 *    fixed point (converting it again gives itself);
 *  - a prepared sender is "local@domain" with the domain as above and a
 *    local part of 1..64 printable octets; a prepared check always
 *    decodes (what the main process sends, the worker accepts), and
 *    its Received-SPF text is printable ASCII and NUL-terminated within
 *    the buffer;
 *  - sanitised text is printable ASCII of at most 200 octets;
 *  - decoders never read past the payload, and what they accept
 *    re-encodes to the same octets; a decoded DNS answer's records lie
 *    inside the payload, number at most SPF_DNS_MAX_RR, and are there
 *    exactly when its status is OK; a decoded query's name is one a
 *    query can be made of.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "resolver.h"
#include "spf.h"
#include "spf_input.h"
#include "spf_proto.h"

static void check_domain(const char *d)
{
	size_t n = strlen(d), label = 0, labels = 0;
	char again[SPF_DOMAIN_MAX + 1];
	if (n == 0 || n > SPF_DOMAIN_MAX)
		abort();
	for (size_t i = 0; i < n; i++) {
		char c = d[i];
		if (c == '.') {
			if (label == 0)
				abort();
			label = 0;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
			abort();
		if (label++ == 0)
			labels++;
		if (label > SPF_LABEL_MAX)
			abort();
	}
	if (label == 0 || labels < 2)
		abort();
	if (spf_domain_alabel(d, again, sizeof(again)) != 0 || strcmp(again, d) != 0)
		abort();
}

static void check_printable(const char *s, size_t max)
{
	size_t n = strnlen(s, max + 1);
	if (n > max)
		abort();
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
			abort();
}

/* field i of the NUL-separated input (a copy), or "" */
static const char *field(char *buf, size_t n, int i)
{
	size_t o = 0;
	for (int k = 0; k < i; k++) {
		size_t l = strnlen(buf + o, n - o);
		if (o + l + 1 >= n)	/* no field after this one */
			return "";
		o += l + 1;
	}
	return buf + o;
}

static void check_answer(const struct spf_proto_dns_answer *a, const unsigned char *p, size_t n)
{
	if (a->nrr > SPF_DNS_MAX_RR || (a->status == MOAT_DNS_OK) != (a->nrr > 0) ||
	    a->status > MOAT_DNS_ERROR || (a->truncated && !a->nrr))
		abort();
	for (size_t i = 0; i < a->nrr; i++)
		if (a->rr[i] < p || a->rrlen[i] > n || a->rr[i] + a->rrlen[i] > p + n)
			abort();
}

static void check_query(const struct spf_proto_dns_query *q)
{
	size_t n = strlen(q->name), label = 0;
	if (q->type != MOAT_DNS_A && q->type != MOAT_DNS_AAAA && q->type != MOAT_DNS_TXT &&
	    q->type != MOAT_DNS_MX && q->type != MOAT_DNS_PTR)
		abort();
	check_printable(q->name, SPF_QNAME_MAX);
	if (n && q->name[n - 1] == '.')
		n--;
	if (n == 0 || n > SPF_DOMAIN_MAX)
		abort();
	for (size_t i = 0; i <= n; i++) {
		if (i < n && q->name[i] != '.') {
			label++;
			continue;
		}
		if (label == 0 || label > SPF_LABEL_MAX)
			abort();
		label = 0;
	}
}

static void reencode(const unsigned char *p, size_t n, int type)
{
	static unsigned char out[SPF_PROTO_HDR + SPF_PROTO_MAX];
	static const unsigned char *rr[SPF_DNS_MAX_RR];
	static size_t rl[SPF_DNS_MAX_RR];
	char err[128];
	int k = -1;
	if (type == SPF_MSG_DNS_QUERY) {
		struct spf_proto_dns_query q;
		if (spf_proto_decode_dns_query(p, n, &q, err, sizeof(err)) < 0)
			return;
		check_query(&q);
		k = spf_proto_encode_dns_query(&q, out, sizeof(out));
	} else if (type == SPF_MSG_DNS_ANSWER) {
		struct spf_proto_dns_answer a;
		/* half the time with little room for records */
		size_t max = n % 2 ? SPF_DNS_MAX_RR : 3;
		if (spf_proto_decode_dns_answer(p, n, &a, rr, rl, max, err, sizeof(err)) < 0)
			return;
		if (a.nrr > max)
			abort();
		check_answer(&a, p, n);
		k = spf_proto_encode_dns_answer(&a, out, sizeof(out));
	} else if (type == SPF_MSG_CHECK) {
		struct spf_proto_check c;
		if (spf_proto_decode_check(p, n, &c, err, sizeof(err)) < 0)
			return;
		k = spf_proto_encode_check(&c, out, sizeof(out));
	} else if (type == SPF_MSG_CONFIG) {
		struct spf_proto_config c;
		if (spf_proto_decode_config(p, n, &c, err, sizeof(err)) < 0)
			return;
		k = spf_proto_encode_config(&c, out, sizeof(out));
	} else {
		struct spf_proto_result r;
		if (spf_proto_decode_result(p, n, &r, err, sizeof(err)) < 0)
			return;
		k = spf_proto_encode_result(&r, out, sizeof(out));
	}
	if (k != (int)n + SPF_PROTO_HDR || memcmp(out + SPF_PROTO_HDR, p, n) != 0)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > 2 * SPF_PROTO_MAX)
		return 0;
	int mode = data[0] % 4;
	data++;
	size--;
	/* a NUL-terminated copy, exactly sized, so ASan sees overreads */
	char *buf = malloc(size + 1);
	if (!buf)
		return 0;
	memcpy(buf, data, size);
	buf[size] = '\0';

	if (mode == 0) {
		char out[SPF_DOMAIN_MAX + 1], snd[SPF_SENDER_MAX + 1], dom[SPF_DOMAIN_MAX + 1];
		char txt[SPF_EXP_MAX + 1], ip[SPF_IP_MAX + 1];
		if (spf_domain_alabel(buf, out, sizeof(out)) == 0)
			check_domain(out);
		else if (out[0])
			abort();
		enum spf_input_status st = spf_sender_prepare(buf, snd, sizeof(snd), dom, sizeof(dom));
		if (st == SPF_INPUT_OK) {
			const char *at = strrchr(snd, '@');
			if (!at || at == snd || (size_t)(at - snd) > SPF_LOCAL_MAX ||
			    strcmp(at + 1, dom) != 0)
				abort();
			check_domain(dom);
			check_printable(snd, SPF_SENDER_MAX);
		}
		if (spf_helo_prepare(buf, out, sizeof(out)) == 0)
			check_domain(out);
		size_t n = spf_text_sanitize(buf, txt, sizeof(txt));
		if (n != strlen(txt))
			abort();
		check_printable(txt, SPF_EXP_MAX);
		if (spf_ip_normalize(buf, ip, sizeof(ip)) > 0) {
			char again[SPF_IP_MAX + 1];
			if (spf_ip_normalize(ip, again, sizeof(again)) <= 0 || strcmp(ip, again))
				abort();
		}
	} else if (mode == 1) {
		/* fields: ip, sender, helo */
		struct spf_prepared pr;
		const char *ipf = field(buf, size + 1, 0);
		if (spf_prepare(*ipf ? ipf : "192.0.2.1", field(buf, size + 1, 1),
				field(buf, size + 1, 2), 1, &pr) == 0) {
			if (pr.check.flags) {
				unsigned char frame[SPF_PROTO_HDR + SPF_PROTO_MAX];
				struct spf_proto_check back;
				char err[128];
				pr.check.budget_ms = 20000;
				int k = spf_proto_encode_check(&pr.check, frame, sizeof(frame));
				if (k < 0 || spf_proto_decode_check(frame + 4, (size_t)k - 4, &back, err,
								    sizeof(err)) < 0)
					abort();
			}
			struct spf_proto_identity id;
			memset(&id, 0, sizeof(id));
			id.result = (uint8_t)(size % SPF_RES__COUNT);
			spf_text_sanitize(field(buf, size + 1, 3), id.mechanism, sizeof(id.mechanism));
			spf_text_sanitize(field(buf, size + 1, 4), id.problem, sizeof(id.problem));
			char hdr[300];
			size_t n = spf_received_spf(hdr, sizeof(hdr), &pr, &id, field(buf, size + 1, 5));
			if (n >= sizeof(hdr) || hdr[n] != '\0')
				abort();
			check_printable(hdr, sizeof(hdr) - 1);
		}
	} else {
		/* a payload for a decoder; in mode 2 a payload's own type
		 * octet picks its decoder (seeds are plain payloads), mode 3
		 * hands it to another one */
		static const int types[] = {SPF_MSG_RESULT, SPF_MSG_DNS_QUERY, SPF_MSG_DNS_ANSWER,
					    SPF_MSG_CONFIG, SPF_MSG_CHECK};
		unsigned char *p = malloc(size ? size : 1);
		if (p) {
			memcpy(p, data, size);
			int t = types[((size ? data[0] : 0) + mode) % 5];
			if (size)
				p[0] = (unsigned char)t;	/* mostly the right type */
			reencode(p, size, t);
			long f = spf_proto_frame(p, size, SPF_PROTO_MAX);
			if (f > 0 && (size < SPF_PROTO_HDR || (size_t)f > size - SPF_PROTO_HDR ||
				      f > SPF_PROTO_MAX))
				abort();
			f = spf_proto_frame(p, size, SPF_PROTO_WORKER_MAX);
			if (f > SPF_PROTO_WORKER_MAX)
				abort();
			free(p);
		}
	}
	free(buf);
	return 0;
}
