/*
 * test_spf.c - unit tests of the SPF filter's pure parts: input bounding
 * and A-label conversion (filters/spf_input.c), the worker protocol
 * (filters/spf_proto.c: round trips, malformed messages rejected, the
 * DNS messages and their limits), the result -> symbol/score/action
 * mapping and the Received-SPF text (filters/spf.c), and the `spf`
 * section's configuration errors.
 * libspf2 and the worker processes are exercised by
 * tests/integration/test_spf.py.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "filter.h"
#include "resolver.h"
#include "spf.h"
#include "spf_input.h"
#include "spf_proto.h"
#include "spf_syntax.h"
#include "unit.h"

static char dir[] = "/tmp/moat-spf-test.XXXXXX";

/* ---- input ---- */

TEST(domains_bounded)
{
	char out[SPF_DOMAIN_MAX + 1], label[70], big[400];
	CHECK(spf_domain_alabel("Example.ORG.", out, sizeof(out)) == 0 &&
	      strcmp(out, "example.org") == 0);
	CHECK(spf_domain_alabel("_spf.example.net", out, sizeof(out)) == 0);
	CHECK(spf_domain_alabel("localhost", out, sizeof(out)) == -1 && !out[0]);
	CHECK(spf_domain_alabel("a..example", out, sizeof(out)) == -1);
	CHECK(spf_domain_alabel(".example.org", out, sizeof(out)) == -1);
	CHECK(spf_domain_alabel("ex ample.org", out, sizeof(out)) == -1);
	CHECK(spf_domain_alabel("[192.0.2.1]", out, sizeof(out)) == -1);
	CHECK(spf_domain_alabel("", out, sizeof(out)) == -1);
	CHECK(spf_domain_alabel("example.org%{l}", out, sizeof(out)) == -1);
	memset(label, 'a', 63);
	label[63] = '\0';
	snprintf(big, sizeof(big), "%s.example", label);
	CHECK(spf_domain_alabel(big, out, sizeof(out)) == 0);
	snprintf(big, sizeof(big), "a%s.example", label);	/* 64-octet label */
	CHECK(spf_domain_alabel(big, out, sizeof(out)) == -1);
	/* 253 octets pass, 254 do not */
	snprintf(big, sizeof(big), "%s.%s.%s.%.61s", label, label, label, label);
	CHECK(strlen(big) == 253 && spf_domain_alabel(big, out, sizeof(out)) == 0);
	snprintf(big, sizeof(big), "%s.%s.%s.%.62s", label, label, label, label);
	CHECK(strlen(big) == 254 && spf_domain_alabel(big, out, sizeof(out)) == -1);
	CHECK(spf_domain_alabel("example.org", out, 5) == -1);	/* no room */
}

TEST(idn_to_a_labels)
{
	char out[SPF_DOMAIN_MAX + 1];
	CHECK(spf_domain_alabel("b\xc3\xbc" "cher.example", out, sizeof(out)) == 0 &&
	      strcmp(out, "xn--bcher-kva.example") == 0);
	CHECK(spf_domain_alabel("B\xc3\x9c" "CHER.Example", out, sizeof(out)) == 0 &&
	      strcmp(out, "xn--bcher-kva.example") == 0);	/* UTS #46 mapping */
	CHECK(spf_domain_alabel("\xe4\xbe\x8b\xe3\x81\x88.example", out, sizeof(out)) == 0 &&
	      strncmp(out, "xn--", 4) == 0);
	CHECK(spf_domain_alabel("bad\xff.example", out, sizeof(out)) == -1);	/* not UTF-8 */
	CHECK(spf_domain_alabel("\xc3\xbc", out, sizeof(out)) == -1);	/* one label */
}

TEST(senders_bounded)
{
	char out[SPF_SENDER_MAX + 1], dom[SPF_DOMAIN_MAX + 1], lp[80], addr[200];
	CHECK(spf_sender_prepare("User@Example.org", out, sizeof(out), dom, sizeof(dom)) ==
	      SPF_INPUT_OK && strcmp(out, "User@example.org") == 0 &&
	      strcmp(dom, "example.org") == 0);
	CHECK(spf_sender_prepare("@example.org", out, sizeof(out), dom, sizeof(dom)) ==
	      SPF_INPUT_OK && strcmp(out, "postmaster@example.org") == 0);
	CHECK(spf_sender_prepare("j\xc3\xb6rg@example.org", out, sizeof(out), dom, sizeof(dom)) ==
	      SPF_INPUT_OK && strcmp(out, "postmaster@example.org") == 0);
	CHECK(spf_sender_prepare("", out, sizeof(out), dom, sizeof(dom)) == SPF_INPUT_NONE);
	CHECK(spf_sender_prepare("user@localhost", out, sizeof(out), dom, sizeof(dom)) ==
	      SPF_INPUT_NONE && !out[0]);
	CHECK(spf_sender_prepare("user@[192.0.2.1]", out, sizeof(out), dom, sizeof(dom)) ==
	      SPF_INPUT_NONE);
	CHECK(spf_sender_prepare("a\tb@example.org", out, sizeof(out), dom, sizeof(dom)) ==
	      SPF_INPUT_PERMERROR);
	memset(lp, 'x', 64);
	lp[64] = '\0';
	snprintf(addr, sizeof(addr), "%s@example.org", lp);
	CHECK(spf_sender_prepare(addr, out, sizeof(out), dom, sizeof(dom)) == SPF_INPUT_OK);
	snprintf(addr, sizeof(addr), "x%s@example.org", lp);
	CHECK(spf_sender_prepare(addr, out, sizeof(out), dom, sizeof(dom)) ==
	      SPF_INPUT_PERMERROR);
	CHECK(spf_sender_prepare("a@b@example.org", out, sizeof(out), dom, sizeof(dom)) ==
	      SPF_INPUT_OK && strcmp(out, "a@b@example.org") == 0);
}

TEST(helo_and_ip)
{
	char out[SPF_DOMAIN_MAX + 1], ip[SPF_IP_MAX + 1];
	CHECK(spf_helo_prepare("Mail.Example.org", out, sizeof(out)) == 0 &&
	      strcmp(out, "mail.example.org") == 0);
	CHECK(spf_helo_prepare("[192.0.2.1]", out, sizeof(out)) == -1);
	CHECK(spf_helo_prepare("mailhost", out, sizeof(out)) == -1);
	CHECK(spf_helo_prepare(NULL, out, sizeof(out)) == -1);
	CHECK(spf_ip_normalize("192.0.2.1", ip, sizeof(ip)) == 4 && !strcmp(ip, "192.0.2.1"));
	CHECK(spf_ip_normalize("::ffff:192.0.2.1", ip, sizeof(ip)) == 4 &&
	      !strcmp(ip, "192.0.2.1"));
	CHECK(spf_ip_normalize("2001:DB8:0::1", ip, sizeof(ip)) == 6 &&
	      !strcmp(ip, "2001:db8::1"));
	CHECK(spf_ip_normalize("192.0.2", ip, sizeof(ip)) == -1);
	CHECK(spf_ip_normalize("unix:/tmp/x", ip, sizeof(ip)) == -1);
}

TEST(text_sanitized)
{
	char out[SPF_EXP_MAX + 1], big[600];
	CHECK(spf_text_sanitize("  a\r\nb\x01" "c\xc3\xa9 d  ", out, sizeof(out)) == 7 &&
	      strcmp(out, "a b c d") == 0);
	memset(big, 'y', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	CHECK(spf_text_sanitize(big, out, sizeof(out)) == SPF_EXP_MAX);
	CHECK(spf_text_sanitize(big, out, 10) == 9 && strlen(out) == 9);
	CHECK(spf_text_sanitize(NULL, out, sizeof(out)) == 0 && !out[0]);
}

/* ---- protocol ---- */

static struct spf_proto_check a_check(void)
{
	struct spf_proto_check c;
	memset(&c, 0, sizeof(c));
	c.id = 42;
	c.budget_ms = 20000;
	c.flags = SPF_CHECK_MAILFROM | SPF_CHECK_HELO;
	strcpy(c.ip, "192.0.2.1");
	strcpy(c.sender, "user@example.org");
	strcpy(c.helo, "mail.example.org");
	return c;
}

TEST(proto_round_trips)
{
	unsigned char buf[SPF_PROTO_HDR + SPF_PROTO_MAX];
	char err[128];
	struct spf_proto_check c = a_check(), c2;
	int n = spf_proto_encode_check(&c, buf, sizeof(buf));
	CHECK(n > SPF_PROTO_HDR &&
	      spf_proto_frame(buf, (size_t)n, SPF_PROTO_MAX) == n - SPF_PROTO_HDR);
	CHECK(spf_proto_frame(buf, (size_t)n - 1, SPF_PROTO_MAX) == 0 &&
	      spf_proto_frame(buf, 3, SPF_PROTO_MAX) == 0);
	CHECK(spf_proto_type(buf + 4, (size_t)n - 4) == SPF_MSG_CHECK);
	CHECK(spf_proto_decode_check(buf + 4, (size_t)n - 4, &c2, err, sizeof(err)) == 0);
	CHECK(c2.id == 42 && c2.flags == c.flags && !strcmp(c2.sender, c.sender) &&
	      !strcmp(c2.helo, c.helo) && !strcmp(c2.ip, c.ip) && c2.budget_ms == 20000);

	struct spf_proto_config k, k2;
	memset(&k, 0, sizeof(k));
	k.timeout_ms = 5000;
	strcpy(k.receiver, "mx.example.org");
	n = spf_proto_encode_config(&k, buf, sizeof(buf));
	CHECK(n > 0 && spf_proto_decode_config(buf + 4, (size_t)n - 4, &k2, err, sizeof(err)) == 0);
	CHECK(k2.timeout_ms == 5000 && !strcmp(k2.receiver, "mx.example.org"));
	/* an older worker's or main process's CONFIG: another version */
	buf[4 + 1 + 3] = 1;
	CHECK(spf_proto_decode_config(buf + 4, (size_t)n - 4, &k2, err, sizeof(err)) == -1 &&
	      strstr(err, "version"));

	struct spf_proto_result r, r2;
	memset(&r, 0, sizeof(r));
	r.id = 7;
	r.mailfrom.done = 1;
	r.mailfrom.result = SPF_RES_FAIL;
	r.mailfrom.terms = 3;
	strcpy(r.mailfrom.mechanism, "-all");
	strcpy(r.mailfrom.explanation, "not allowed");
	n = spf_proto_encode_result(&r, buf, sizeof(buf));
	CHECK(n > 0 && spf_proto_decode_result(buf + 4, (size_t)n - 4, &r2, err, sizeof(err)) == 0);
	CHECK(r2.id == 7 && r2.mailfrom.result == SPF_RES_FAIL && r2.mailfrom.terms == 3 &&
	      !strcmp(r2.mailfrom.mechanism, "-all") && !r2.helo.done);
}

TEST(proto_rejects_malformed)
{
	unsigned char buf[SPF_PROTO_HDR + SPF_PROTO_MAX], copy[sizeof(buf)];
	char err[128];
	struct spf_proto_check c = a_check(), out;
	struct spf_proto_result r, rout;
	int n = spf_proto_encode_check(&c, buf, sizeof(buf));
	size_t pl = (size_t)n - 4;

	/* every truncation, and a trailing octet */
	for (size_t k = 0; k < pl; k++)
		CHECK(spf_proto_decode_check(buf + 4, k, &out, err, sizeof(err)) == -1);
	memcpy(copy, buf, (size_t)n);
	copy[n] = 0;
	CHECK(spf_proto_decode_check(copy + 4, pl + 1, &out, err, sizeof(err)) == -1 &&
	      strstr(err, "trailing"));
	/* the wrong type */
	CHECK(spf_proto_decode_result(buf + 4, pl, &rout, err, sizeof(err)) == -1);
	/* a control character in a string (the sender's first octet) */
	memcpy(copy, buf, (size_t)n);
	size_t at = 4 + 1 + 4 + 4 + 1 + 2 + strlen(c.ip) + 2;
	copy[at] = '\n';
	CHECK(spf_proto_decode_check(copy + 4, pl, &out, err, sizeof(err)) == -1);
	/* a string length beyond its field's maximum */
	memcpy(copy, buf, (size_t)n);
	copy[at - 2] = 0xff;
	CHECK(spf_proto_decode_check(copy + 4, pl, &out, err, sizeof(err)) == -1);
	/* flags out of range */
	memcpy(copy, buf, (size_t)n);
	copy[4 + 1 + 4 + 4] = 0x80;
	CHECK(spf_proto_decode_check(copy + 4, pl, &out, err, sizeof(err)) == -1);
	/* what the main process would never send: unprepared names */
	struct spf_proto_check bad = a_check();
	strcpy(bad.helo, "Mail.Example.org");
	n = spf_proto_encode_check(&bad, buf, sizeof(buf));
	CHECK(n > 0 && spf_proto_decode_check(buf + 4, (size_t)n - 4, &out, err, sizeof(err)) == -1);
	bad = a_check();
	strcpy(bad.ip, "::ffff:192.0.2.1");
	n = spf_proto_encode_check(&bad, buf, sizeof(buf));
	CHECK(n > 0 && spf_proto_decode_check(buf + 4, (size_t)n - 4, &out, err, sizeof(err)) == -1);
	bad = a_check();
	strcpy(bad.sender, "user@localhost");
	n = spf_proto_encode_check(&bad, buf, sizeof(buf));
	CHECK(n > 0 && spf_proto_decode_check(buf + 4, (size_t)n - 4, &out, err, sizeof(err)) == -1);
	/* encoder refuses what it must not send */
	bad = a_check();
	strcpy(bad.helo, "a\nb");
	CHECK(spf_proto_encode_check(&bad, buf, sizeof(buf)) == -1);
	CHECK(spf_proto_encode_check(&c, buf, 20) == -1);
	/* results: out-of-range result, data for an identity not checked */
	memset(&r, 0, sizeof(r));
	r.mailfrom.done = 1;
	r.mailfrom.result = SPF_RES__COUNT;
	n = spf_proto_encode_result(&r, buf, sizeof(buf));
	CHECK(n > 0 && spf_proto_decode_result(buf + 4, (size_t)n - 4, &rout, err, sizeof(err)) == -1);
	memset(&r, 0, sizeof(r));
	strcpy(r.helo.problem, "x");
	n = spf_proto_encode_result(&r, buf, sizeof(buf));
	CHECK(n > 0 && spf_proto_decode_result(buf + 4, (size_t)n - 4, &rout, err, sizeof(err)) == -1);
	/* frame lengths */
	unsigned char hdr[8] = {0, 0, 0, 0, 1};
	CHECK(spf_proto_frame(hdr, 8, SPF_PROTO_MAX) == -1);
	hdr[1] = 1;	/* 65536: the most a main process's frame may hold */
	CHECK(spf_proto_frame(hdr, 8, SPF_PROTO_MAX) == 0);
	CHECK(spf_proto_frame(hdr, 8, SPF_PROTO_WORKER_MAX) == -1);
	hdr[3] = 1;	/* 65537 */
	CHECK(spf_proto_frame(hdr, 8, SPF_PROTO_MAX) == -1);
	hdr[1] = 0;
	hdr[2] = 0x20;	/* 8193: more than a worker sends */
	CHECK(spf_proto_frame(hdr, 8, SPF_PROTO_WORKER_MAX) == -1 &&
	      spf_proto_frame(hdr, 8, SPF_PROTO_MAX) == 0);
}

/* ---- DNS through the main process ---- */

static int dec_answer(const unsigned char *frame, int n, struct spf_proto_dns_answer *a,
		      const unsigned char **rr, size_t *rl, size_t max, char *err, size_t errlen)
{
	return spf_proto_decode_dns_answer(frame + 4, (size_t)n - 4, a, rr, rl, max, err, errlen);
}

TEST(proto_dns_round_trips)
{
	static unsigned char buf[SPF_PROTO_HDR + SPF_PROTO_MAX];
	static const unsigned char *rr[SPF_DNS_MAX_RR];
	static size_t rl[SPF_DNS_MAX_RR];
	char err[128];

	struct spf_proto_dns_query q, q2;
	memset(&q, 0, sizeof(q));
	q.id = 0xfffffffe;
	q.type = MOAT_DNS_TXT;
	strcpy(q.name, "_spf.Example.org.");
	int n = spf_proto_encode_dns_query(&q, buf, sizeof(buf));
	CHECK(n > 0 && spf_proto_frame(buf, (size_t)n, SPF_PROTO_WORKER_MAX) == n - 4);
	CHECK(spf_proto_type(buf + 4, (size_t)n - 4) == SPF_MSG_DNS_QUERY);
	CHECK(spf_proto_decode_dns_query(buf + 4, (size_t)n - 4, &q2, err, sizeof(err)) == 0);
	CHECK(q2.id == q.id && q2.type == MOAT_DNS_TXT && !strcmp(q2.name, q.name));
	/* the longest name: 253 octets and a trailing dot */
	memset(q.name, 'a', 254);
	for (int i = 63; i < 253; i += 64)
		q.name[i] = '.';
	q.name[253] = '.';
	q.name[254] = '\0';
	n = spf_proto_encode_dns_query(&q, buf, sizeof(buf));
	CHECK(n > 0 && spf_proto_decode_dns_query(buf + 4, (size_t)n - 4, &q2, err, sizeof(err)) == 0 &&
	      strlen(q2.name) == 254);

	/* an answer: binary records, NULs and 0xff included */
	static const unsigned char r1[] = {5, 'v', '=', 's', 'p', 'f', 0, 1, 0xff};
	static const unsigned char r2[] = {0};
	const unsigned char *recs[] = {r1, r2};
	size_t lens[] = {sizeof(r1), sizeof(r2)};
	struct spf_proto_dns_answer a, a2;
	memset(&a, 0, sizeof(a));
	a.id = 9;
	a.status = MOAT_DNS_OK;
	a.ttl = 3600;
	a.secure = 1;
	a.nrr = 2;
	a.rr = recs;
	a.rrlen = lens;
	n = spf_proto_encode_dns_answer(&a, buf, sizeof(buf));
	CHECK(n == 4 + 16 + 2 + (int)sizeof(r1) + 2 + (int)sizeof(r2));
	CHECK(spf_proto_frame(buf, (size_t)n, SPF_PROTO_MAX) == n - 4);
	CHECK(spf_proto_type(buf + 4, (size_t)n - 4) == SPF_MSG_DNS_ANSWER);
	CHECK(dec_answer(buf, n, &a2, rr, rl, SPF_DNS_MAX_RR, err, sizeof(err)) == 0);
	CHECK(a2.id == 9 && a2.status == MOAT_DNS_OK && a2.ttl == 3600 && a2.secure == 1 &&
	      !a2.truncated && a2.rcode == 0 && a2.nrr == 2 && a2.rr == rr && a2.rrlen == rl);
	CHECK(rl[0] == sizeof(r1) && !memcmp(rr[0], r1, sizeof(r1)) && rl[1] == 1 && rr[1][0] == 0);
	CHECK(rr[0] >= buf + 4 && rr[1] + rl[1] <= buf + n);	/* inside the payload */

	/* no records: NXDOMAIN, a failure with its rcode */
	memset(&a, 0, sizeof(a));
	a.id = 10;
	a.status = MOAT_DNS_SERVFAIL;
	a.rcode = 2;
	n = spf_proto_encode_dns_answer(&a, buf, sizeof(buf));
	CHECK(n == 4 + 16 && dec_answer(buf, n, &a2, rr, rl, SPF_DNS_MAX_RR, err, sizeof(err)) == 0 &&
	      a2.status == MOAT_DNS_SERVFAIL && a2.rcode == 2 && a2.nrr == 0);
	a.status = MOAT_DNS_NXDOMAIN;
	a.rcode = 3;
	n = spf_proto_encode_dns_answer(&a, buf, sizeof(buf));
	CHECK(n > 0 && dec_answer(buf, n, &a2, rr, rl, SPF_DNS_MAX_RR, err, sizeof(err)) == 0 &&
	      a2.status == MOAT_DNS_NXDOMAIN);
}

TEST(proto_dns_large_answers)
{
	static unsigned char buf[SPF_PROTO_HDR + SPF_PROTO_MAX];
	static const unsigned char *rr[SPF_DNS_MAX_RR + 10], *recs[SPF_DNS_MAX_RR + 10];
	static size_t rl[SPF_DNS_MAX_RR + 10], lens[SPF_DNS_MAX_RR + 10];
	static unsigned char big[300];
	static const unsigned char addr[4] = {192, 0, 2, 1};
	char err[128];
	struct spf_proto_dns_answer a, a2;

	/* the A records of a full 64 KB DNS message fit, untruncated */
	for (size_t i = 0; i < SPF_DNS_MAX_RR + 10; i++) {
		recs[i] = addr;
		lens[i] = 4;
	}
	memset(&a, 0, sizeof(a));
	a.status = MOAT_DNS_OK;
	a.nrr = 4094;
	a.rr = recs;
	a.rrlen = lens;
	int n = spf_proto_encode_dns_answer(&a, buf, sizeof(buf));
	CHECK(n > 0 && dec_answer(buf, n, &a2, rr, rl, SPF_DNS_MAX_RR, err, sizeof(err)) == 0 &&
	      a2.nrr == 4094 && !a2.truncated);
	/* more than SPF_DNS_MAX_RR: the first ones, marked truncated */
	a.nrr = SPF_DNS_MAX_RR + 10;
	n = spf_proto_encode_dns_answer(&a, buf, sizeof(buf));
	CHECK(n > 0 && dec_answer(buf, n, &a2, rr, rl, SPF_DNS_MAX_RR, err, sizeof(err)) == 0 &&
	      a2.nrr == SPF_DNS_MAX_RR && a2.truncated);
	/* more octets than a frame holds (long uncompressed MX names): as
	 * many as fit, at least the 11 that make MX a permerror */
	memset(big, 'x', sizeof(big));
	for (size_t i = 0; i < 400; i++) {
		recs[i] = big;
		lens[i] = 259;
	}
	a.nrr = 400;
	n = spf_proto_encode_dns_answer(&a, buf, sizeof(buf));
	CHECK(n > 0 && n <= 4 + SPF_PROTO_MAX &&
	      dec_answer(buf, n, &a2, rr, rl, SPF_DNS_MAX_RR, err, sizeof(err)) == 0 &&
	      a2.truncated && a2.nrr == (SPF_PROTO_MAX - 16) / 261);
	/* a buffer too small for all: the same, within it */
	n = spf_proto_encode_dns_answer(&a, buf, 4 + 16 + 3 * 261 + 10);
	CHECK(n == 4 + 16 + 3 * 261 &&
	      dec_answer(buf, n, &a2, rr, rl, SPF_DNS_MAX_RR, err, sizeof(err)) == 0 &&
	      a2.truncated && a2.nrr == 3);
	/* not even one record fits */
	CHECK(spf_proto_encode_dns_answer(&a, buf, 4 + 16 + 100) == -1);
	/* the decoder takes no more records than the caller has room for */
	a.nrr = 5;
	n = spf_proto_encode_dns_answer(&a, buf, sizeof(buf));
	CHECK(n > 0 && dec_answer(buf, n, &a2, rr, rl, 4, err, sizeof(err)) == -1 &&
	      strstr(err, "too many records") && a2.nrr == 0);
	CHECK(dec_answer(buf, n, &a2, rr, rl, 5, err, sizeof(err)) == 0 && a2.nrr == 5);
}

TEST(proto_dns_rejects_malformed)
{
	static unsigned char buf[SPF_PROTO_HDR + SPF_PROTO_MAX], copy[SPF_PROTO_HDR + SPF_PROTO_MAX];
	static const unsigned char *rr[SPF_DNS_MAX_RR];
	static size_t rl[SPF_DNS_MAX_RR];
	char err[128];
	struct spf_proto_dns_query q, q2;
	struct spf_proto_dns_answer a, a2;
	struct spf_proto_result res;

	/* queries: every truncation, a trailing octet, the wrong type */
	memset(&q, 0, sizeof(q));
	q.id = 1;
	q.type = MOAT_DNS_A;
	strcpy(q.name, "mx1.example.org");
	int n = spf_proto_encode_dns_query(&q, buf, sizeof(buf));
	size_t pl = (size_t)n - 4;
	for (size_t k = 0; k < pl; k++)
		CHECK(spf_proto_decode_dns_query(buf + 4, k, &q2, err, sizeof(err)) == -1);
	memcpy(copy, buf, (size_t)n);
	copy[n] = 0;
	CHECK(spf_proto_decode_dns_query(copy + 4, pl + 1, &q2, err, sizeof(err)) == -1 &&
	      strstr(err, "trailing"));
	CHECK(spf_proto_decode_result(buf + 4, pl, &res, err, sizeof(err)) == -1);
	CHECK(spf_proto_decode_dns_answer(buf + 4, pl, &a2, rr, rl, SPF_DNS_MAX_RR, err,
					  sizeof(err)) == -1);
	/* types SPF does not ask for: SPF (99), NS, ANY */
	static const int types[] = {99, MOAT_DNS_NS, MOAT_DNS_CNAME, 255, 0};
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		memcpy(copy, buf, (size_t)n);
		copy[4 + 1 + 4] = (unsigned char)(types[i] >> 8);
		copy[4 + 1 + 4 + 1] = (unsigned char)types[i];
		CHECK(spf_proto_decode_dns_query(copy + 4, pl, &q2, err, sizeof(err)) == -1);
		q2 = q;
		q2.type = (uint16_t)types[i];
		CHECK(spf_proto_encode_dns_query(&q2, buf + 1000, 1000) == -1);
	}
	/* names no query is made of, and non-printable octets */
	static const char *const names[] = {"", ".", "a..b", ".a.b", "a\tb.example",
					    "a.b\x7f", "a.b..",
					    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.b"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		q2 = q;
		strcpy(q2.name, names[i]);
		CHECK(spf_proto_encode_dns_query(&q2, copy, sizeof(copy)) == -1);
		/* the same, written by hand */
		size_t l = strlen(names[i]);
		unsigned char *p = copy + 4;
		p[0] = SPF_MSG_DNS_QUERY;
		memset(p + 1, 0, 4);
		p[5] = 0;
		p[6] = MOAT_DNS_A;
		p[7] = (unsigned char)(l >> 8);
		p[8] = (unsigned char)l;
		memcpy(p + 9, names[i], l);
		CHECK(spf_proto_decode_dns_query(p, 9 + l, &q2, err, sizeof(err)) == -1);
	}
	/* a string length beyond the name's maximum */
	memcpy(copy, buf, (size_t)n);
	copy[4 + 1 + 4 + 2] = 0x01;
	CHECK(spf_proto_decode_dns_query(copy + 4, pl, &q2, err, sizeof(err)) == -1);

	/* answers */
	static const unsigned char r1[] = {1, 2, 3, 4}, r2[] = {5, 6, 7, 8};
	const unsigned char *recs[] = {r1, r2};
	size_t lens[] = {4, 4};
	memset(&a, 0, sizeof(a));
	a.id = 77;
	a.status = MOAT_DNS_OK;
	a.ttl = 60;
	a.nrr = 2;
	a.rr = recs;
	a.rrlen = lens;
	n = spf_proto_encode_dns_answer(&a, buf, sizeof(buf));
	pl = (size_t)n - 4;
	CHECK(dec_answer(buf, n, &a2, rr, rl, SPF_DNS_MAX_RR, err, sizeof(err)) == 0);
	for (size_t k = 0; k < pl; k++)
		CHECK(spf_proto_decode_dns_answer(buf + 4, k, &a2, rr, rl, SPF_DNS_MAX_RR, err,
						  sizeof(err)) == -1);
	memcpy(copy, buf, (size_t)n);
	copy[n] = 0;
	CHECK(spf_proto_decode_dns_answer(copy + 4, pl + 1, &a2, rr, rl, SPF_DNS_MAX_RR, err,
					  sizeof(err)) == -1 && strstr(err, "trailing"));
	CHECK(spf_proto_decode_dns_query(buf + 4, pl, &q2, err, sizeof(err)) == -1);
	/* offsets into the payload: id 1, status 5, rcode 6, ttl 8, secure 12,
	 * truncated 13, count 14, first record's length 16 */
	struct { size_t at; unsigned char v; } bad[] = {
		{5, MOAT_DNS_ERROR + 1},	/* status */
		{5, MOAT_DNS_NODATA},		/* records without OK */
		{6, 0x10},			/* rcode 4096 */
		{8, 0x80},			/* TTL 2^31 */
		{12, 2},			/* secure */
		{13, 2},			/* truncated */
		{15, 3},			/* three records announced, two there */
		{15, 1},			/* one announced: the second is trailing */
		{15, 0},			/* OK without records */
		{17, 5},			/* a record longer than it is */
		{17, 3},			/* one shorter: the rest misread */
		{16, 0xff},			/* a record past the payload */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memcpy(copy, buf, (size_t)n);
		copy[4 + bad[i].at] = bad[i].v;
		CHECK(spf_proto_decode_dns_answer(copy + 4, pl, &a2, rr, rl, SPF_DNS_MAX_RR, err,
						  sizeof(err)) == -1);
	}
	/* too many records for the protocol, whatever the caller's room */
	memcpy(copy, buf, (size_t)n);
	copy[4 + 14] = (SPF_DNS_MAX_RR + 1) >> 8;
	copy[4 + 15] = (SPF_DNS_MAX_RR + 1) & 0xff;
	CHECK(spf_proto_decode_dns_answer(copy + 4, pl, &a2, rr, rl, SPF_DNS_MAX_RR + 1, err,
					  sizeof(err)) == -1 && strstr(err, "too many"));
	/* a failure carrying records, or marked truncated */
	memcpy(copy, buf, 4 + 16);
	copy[4 + 5] = MOAT_DNS_TIMEOUT;
	copy[4 + 14] = copy[4 + 15] = 0;
	CHECK(spf_proto_decode_dns_answer(copy + 4, 16, &a2, rr, rl, SPF_DNS_MAX_RR, err,
					  sizeof(err)) == 0 && a2.status == MOAT_DNS_TIMEOUT);
	copy[4 + 13] = 1;
	CHECK(spf_proto_decode_dns_answer(copy + 4, 16, &a2, rr, rl, SPF_DNS_MAX_RR, err,
					  sizeof(err)) == -1);
	/* a payload longer than SPF_PROTO_MAX */
	CHECK(spf_proto_decode_dns_answer(buf + 4, SPF_PROTO_MAX + 1, &a2, rr, rl, SPF_DNS_MAX_RR,
					  err, sizeof(err)) == -1);
	/* the encoder refuses what it must not send */
	a.status = MOAT_DNS_NODATA;
	CHECK(spf_proto_encode_dns_answer(&a, buf, sizeof(buf)) == -1);
	a.status = MOAT_DNS_OK;
	a.nrr = 0;
	CHECK(spf_proto_encode_dns_answer(&a, buf, sizeof(buf)) == -1);
	a.status = MOAT_DNS_ERROR;
	a.truncated = 1;
	CHECK(spf_proto_encode_dns_answer(&a, buf, sizeof(buf)) == -1);
	a.truncated = 0;
	a.rcode = 4096;
	CHECK(spf_proto_encode_dns_answer(&a, buf, sizeof(buf)) == -1);
	a.rcode = 0;
	a.status = MOAT_DNS_ERROR + 1;
	CHECK(spf_proto_encode_dns_answer(&a, buf, sizeof(buf)) == -1);
	/* a RESULT larger than a worker may send is refused both ways */
	CHECK(spf_proto_decode_result(buf + 4, SPF_PROTO_WORKER_MAX + 1, &res, err,
				      sizeof(err)) == -1);
}

/* ---- results ---- */

static struct spf_conf conf_defaults(void)
{
	struct spf_conf c;
	memset(&c, 0, sizeof(c));
	c.score[SPF_RES_PASS] = -1;
	c.score[SPF_RES_FAIL] = 8;
	c.score[SPF_RES_SOFTFAIL] = 3;
	c.score[SPF_RES_PERMERROR] = 2;
	return c;
}

TEST(mapping)
{
	struct spf_conf c = conf_defaults();
	struct spf_prepared pr;
	struct spf_proto_identity id;
	struct spf_action act;

	CHECK(spf_prepare("192.0.2.1", "user@Example.org", "mail.example.org", 1, &pr) == 0);
	CHECK(pr.check.flags == (SPF_CHECK_MAILFROM | SPF_CHECK_HELO) && pr.helo_checked);
	memset(&id, 0, sizeof(id));
	id.done = 1;
	id.result = SPF_RES_FAIL;
	strcpy(id.explanation, "See\r\nhttp://example.org/why");
	spf_action_for(&c, &pr, &id, &act);
	CHECK(act.score == 8 && act.action == MOAT_ACTION_NONE);
	c.reject_fail = 1;
	spf_action_for(&c, &pr, &id, &act);
	CHECK(act.action == MOAT_ACTION_REJECT && act.code == 550 &&
	      strcmp(act.text, "5.7.23 See http://example.org/why") == 0);
	id.explanation[0] = '\0';
	spf_action_for(&c, &pr, &id, &act);
	CHECK(strcmp(act.text, "5.7.23 SPF validation failed for example.org") == 0);
	id.result = SPF_RES_TEMPERROR;
	spf_action_for(&c, &pr, &id, &act);
	CHECK(act.action == MOAT_ACTION_NONE && act.score == 0);
	c.temperror_tempfail = 1;
	spf_action_for(&c, &pr, &id, &act);
	CHECK(act.action == MOAT_ACTION_TEMPFAIL && act.code == 451 &&
	      strncmp(act.text, "4.7.24 ", 7) == 0);
	id.result = SPF_RES_PERMERROR;
	spf_action_for(&c, &pr, &id, &act);
	CHECK(act.action == MOAT_ACTION_NONE && act.score == 2);
	CHECK(strcmp(spf_symbol(SPF_RES_SOFTFAIL, 0), "SPF_SOFTFAIL") == 0);
	CHECK(strcmp(spf_symbol(SPF_RES_NONE, 1), "SPF_HELO_NONE") == 0);
	for (int r = 0; r < SPF_RES__COUNT; r++) {
		enum spf_result back;
		CHECK(spf_result_parse(spf_result_name((enum spf_result)r), &back) == 0 &&
		      (int)back == r);
	}

	/* null sender: the HELO identity; results known before a worker */
	CHECK(spf_prepare("192.0.2.1", "", "Mail.Example.org", 1, &pr) == 0);
	CHECK(pr.check.flags == SPF_CHECK_HELO && !pr.helo_checked && pr.null_sender);
	char props[400];
	spf_auth_props(&pr, props, sizeof(props));
	CHECK(strcmp(props, "smtp.helo=mail.example.org") == 0);
	CHECK(spf_prepare("192.0.2.1", "", "[192.0.2.1]", 1, &pr) == 0);
	CHECK(pr.check.flags == 0 && pr.have_primary && pr.primary.result == SPF_RES_NONE);
	CHECK(spf_prepare("192.0.2.1", "user@nodot", "x", 1, &pr) == 0);
	CHECK(pr.check.flags == 0 && pr.primary.result == SPF_RES_NONE);
	CHECK(spf_prepare("not-an-ip", "user@example.org", "x", 1, &pr) == -1);
	CHECK(spf_prepare("192.0.2.1", "user@example.org", "mail.example.org", 0, &pr) == 0 &&
	      pr.check.flags == SPF_CHECK_MAILFROM);
	spf_auth_props(&pr, props, sizeof(props));
	CHECK(strcmp(props, "smtp.mailfrom=example.org") == 0);
}

TEST(received_spf_text)
{
	struct spf_prepared pr;
	struct spf_proto_identity id;
	char h[2048];

	CHECK(spf_prepare("2001:db8::1", "user@example.org", "mail.example.org", 1, &pr) == 0);
	memset(&id, 0, sizeof(id));
	id.done = 1;
	id.result = SPF_RES_PASS;
	strcpy(id.mechanism, "ip6:2001:db8::/32");
	spf_received_spf(h, sizeof(h), &pr, &id, "mx.example.net");
	CHECK(strcmp(h, "pass (mx.example.net: domain of user@example.org designates 2001:db8::1 "
		     "as permitted sender) client-ip=\"2001:db8::1\"; "
		     "envelope-from=\"user@example.org\"; helo=mail.example.org; "
		     "receiver=mx.example.net; identity=mailfrom; "
		     "mechanism=\"ip6:2001:db8::/32\"") == 0);
	id.result = SPF_RES_PERMERROR;
	id.mechanism[0] = '\0';
	strcpy(id.problem, "more than 10 \"terms\" (RFC)");
	spf_received_spf(h, sizeof(h), &pr, &id, "mx.example.net");
	CHECK(strncmp(h, "permerror (", 11) == 0 &&
	      strstr(h, "; problem=\"more than 10 \\\"terms\\\" RFC\"") &&
	      !strstr(h, "mechanism="));
	/* quotes and backslashes in an address are escaped */
	CHECK(spf_prepare("192.0.2.1", "\"a\\b\"@example.org", "x", 1, &pr) == 0);
	id.result = SPF_RES_NONE;
	spf_received_spf(h, sizeof(h), &pr, &id, "r.example");
	CHECK(strstr(h, "envelope-from=\"\\\"a\\\\b\\\"@example.org\";"));
	CHECK(strstr(h, "client-ip=192.0.2.1;") && strstr(h, "helo=x;"));
	/* never overruns */
	for (size_t len = 1; len < 200; len++) {
		char small[200];
		memset(small, 'Z', sizeof(small));
		size_t n = spf_received_spf(small, len, &pr, &id, "r.example");
		CHECK(n < len && small[n] == '\0' && (len == sizeof(small) || small[len] == 'Z'));
	}
}

TEST(networks)
{
	struct moat_net n[3];
	char err[200];
	CHECK(moat_net_parse("10.0.0.0/8", &n[0], err, sizeof(err)) == 0);
	CHECK(moat_net_parse("2001:db8::/32", &n[1], err, sizeof(err)) == 0);
	CHECK(moat_net_parse("192.0.2.7", &n[2], err, sizeof(err)) == 0);
	CHECK(moat_net_match(n, 3, "10.1.2.3") && moat_net_match(n, 3, "::ffff:10.9.9.9"));
	CHECK(moat_net_match(n, 3, "2001:db8:1::5") && moat_net_match(n, 3, "192.0.2.7"));
	CHECK(!moat_net_match(n, 3, "192.0.2.8") && !moat_net_match(n, 3, "11.0.0.1"));
	CHECK(!moat_net_match(n, 0, "10.1.2.3") && !moat_net_match(n, 3, "bogus"));
	CHECK(moat_net_parse("10.0.0.1/8", &n[0], err, sizeof(err)) == -1 && strstr(err, "10.0.0.0/8"));
	CHECK(moat_net_parse("10.0.0.0/33", &n[0], err, sizeof(err)) == -1);
	CHECK(moat_net_parse("10.0.0.0/", &n[0], err, sizeof(err)) == -1);
	CHECK(moat_net_parse("example.org", &n[0], err, sizeof(err)) == -1);
}

/* ---- configuration ---- */

static int load(const char *text, char *const *ov, size_t nov, struct moat_config **c,
		struct moat_config_errors *e)
{
	char path[600];
	snprintf(path, sizeof(path), "%s/moat.conf", dir);
	FILE *f = fopen(path, "w");
	if (!f)
		return -1;
	fprintf(f, "listener in {\n    listen = \"127.0.0.1:2525\"\n"
		"    upstream = \"127.0.0.1:10025\"\n}\nfilters = {\"spf\"}\n%s", text);
	fclose(f);
	return moat_config_load(path, ov, nov, c, e);
}

static int has_error(const struct moat_config_errors *e, const char *want)
{
	for (size_t i = 0; i < e->n; i++)
		if (strstr(e->msg[i], want))
			return 1;
	return 0;
}

TEST(config_defaults)
{
	struct moat_config *c = NULL;
	struct moat_config_errors e;
	CHECK(load("", NULL, 0, &c, &e) == 0);
	const struct spf_conf *s = c ? moat_config_section(c, "spf") : NULL;
	CHECK(s && s->common.timeout == 25 && !s->reject_fail && s->received_spf &&
	      s->workers == 2 && s->nnets == 0 && !s->temperror_tempfail && s->check_helo);
	CHECK(s && s->score[SPF_RES_PASS] == -1 && s->score[SPF_RES_FAIL] == 8 &&
	      s->score[SPF_RES_SOFTFAIL] == 3 && s->score[SPF_RES_NEUTRAL] == 0 &&
	      s->score[SPF_RES_NONE] == 0 && s->score[SPF_RES_TEMPERROR] == 0 &&
	      s->score[SPF_RES_PERMERROR] == 2);
	/* other filters keep the common default */
	const struct moat_filter_common *d = c ? moat_config_section(c, "dnsbl") : NULL;
	CHECK(!d || d->timeout == 10);
	moat_config_unref(c);
	if (e.n)
		moat_config_errors_free(&e);

	char *ov[] = {"spf.reject_fail=yes", "spf.temperror=tempfail",
		      "spf.skip_networks=10.0.0.0/8,2001:db8::/32", "spf.score_fail=5.5"};
	CHECK(load("", ov, 4, &c, &e) == 0);
	s = c ? moat_config_section(c, "spf") : NULL;
	CHECK(s && s->reject_fail && s->temperror_tempfail && s->nnets == 2 &&
	      s->score[SPF_RES_FAIL] == 5.5);
	moat_config_unref(c);
	if (e.n)
		moat_config_errors_free(&e);
}

TEST(config_errors)
{
	struct moat_config *c = NULL;
	struct moat_config_errors e;
	CHECK(load("spf {\n"					/* 6 */
		   "    temperror = \"reject\"\n"		/* 7 */
		   "    skip_networks = {\"10.0.0.1/8\"}\n"	/* 8 */
		   "    timeout = 20\n"				/* 9 */
		   "    workers = 0\n"				/* 10 */
		   "}\n", NULL, 0, &c, &e) == -1);
	CHECK(c == NULL);
	CHECK(has_error(&e, "moat.conf:7") && has_error(&e, "temperror"));
	CHECK(has_error(&e, "moat.conf:8: spf: skip_networks: \"10.0.0.1/8\": address bits set"));
	CHECK(has_error(&e, "moat.conf:9: spf: timeout: 20 s: expected more than the 20 s"));
	CHECK(has_error(&e, "moat.conf:10"));
	moat_config_errors_free(&e);
}

/* ---- RFC 7208 record syntax (filters/spf_syntax.c) ---- */

static int syn(const char *rec)
{
	char why[160];
	int rc = spf_syntax_check(rec, strlen(rec), why, sizeof(why));
	if (rc == 0 && why[0])
		return 99;	/* a reason without an error */
	if (rc < 0 && !why[0])
		return 98;	/* an error without a reason */
	return rc;
}

TEST(record_syntax)
{
	static const char *const good[] = {
		"v=spf1", "v=spf1 ", "V=SPF1 -ALL", "v=spf1 +all", "v=spf1  ip4:192.0.2.1  -all ",
		"v=spf1 ip4:192.0.2.0/24 ip4:0.0.0.0/0 ip4:1.1.1.1/32 ?all",
		"v=spf1 ip6:2001:db8::/32 ip6:::1 ip6:::ffff:1.2.3.4/128 ~all",
		"v=spf1 a a/24 a//64 a/24//64 a:mail.example.org a:mail.example.org/24//64 -all",
		"v=spf1 mx mx:example.org mx//0 mx:example.org. -all",
		"v=spf1 ptr ptr:example.org include:_spf.example.net exists:%{ir}.%{l1r+-}._spf.%{d} -all",
		"v=spf1 a:foo-bar.example.123-45 a:foo.example.com:8080.x",
		"v=spf1 redirect=_spf.example.org", "v=spf1 -all exp=explain._spf.%{d}",
		"v=spf1 a:%{H}.bar a:%{d}%% a:%{d}%_ a:%{d}%- exists:%{i}.%{v}.%{p}.%{s}.%{o}",
		"v=spf1 moo.cow-far_out=man:dog/cat -all", "v=spf1 default=deny -all",
		"v=spf1 foo=%{c}%{r}%{t} -all", "v=spf1 a:example.org/0",
		"v=spf1 a:a.b.c.d.example.com", "v=spf1 exists:%{l}.%{d}.", NULL,
	};
	static const char *const bad[] = {
		"", "v=spf", "v=spf10", "v=spf1\t-all", "v=spf1 -all\x01", "v=spf1 a:\xc3\xa9.example",
		"v=spf1 redirect:t2.example.com", "v=spf1 a:foo.example.com/24/", "v=spf1 a:",
		"v=spf1 a:1.2.3.4", "v=spf1 a:foo.example.123", "v=spf1 a:foo.example.-com",
		"v=spf1 a:museum", "v=spf1 a:museum.", "v=spf1 a:foo.example.com-",
		"v=spf1 mx:", "v=spf1 mx:abc.123", "v=spf1 ptr:", "v=spf1 exists:",
		"v=spf1 exists:foo.example.com/24", "v=spf1 include:", "v=spf1 include:foo.com/24",
		"v=spf1 ip4:1.2.3.4/032", "v=spf1 ip4:1.2.3.4/33", "v=spf1 ip4:1.2.3", "v=spf1 ip4:01.2.3.4",
		"v=spf1 ip4:256.2.3.4", "v=spf1 ip4", "v=spf1 ip6:2001:db8::/129", "v=spf1 ip6:1.2.3.4",
		"v=spf1 a//129", "v=spf1 a/33", "v=spf1 a/08",
		"v=spf1 exp=", "v=spf1 redirect=", "v=spf1 exp=a.example exp=b.example",
		"v=spf1 redirect=a.example redirect=b.example", "v=spf1 -redirect=a.example",
		"v=spf1 foo=%", "v=spf1 foo=%z", "v=spf1 a:%{q}.example", "v=spf1 a:%{d.example",
		"v=spf1 a:%{c}.example", "v=spf1 exists:%{r}.example", "v=spf1 a:foo%xbar.example",
		"v=spf1 a:foo.%.example", "v=spf1 a:foo..example.com", "v=spf1 a:.example.com",
		"v=spf1 -all.", "v=spf1 -all:foobar", "v=spf1 -all/8", "v=spf1 allx", "v=spf1 ptr/0",
		"v=spf1 ?", "v=spf1 =foo", "v=spf1 1foo=bar", NULL,
	};
	char big[200];
	for (int i = 0; good[i]; i++)
		if (syn(good[i]) != 0) {
			fprintf(stderr, "    rejected: \"%s\"\n", good[i]);
			CHECK(0);
		}
	for (int i = 0; bad[i]; i++)
		if (syn(bad[i]) != -1) {
			fprintf(stderr, "    accepted: \"%s\"\n", bad[i]);
			CHECK(0);
		}
	/* a 64-octet literal label; an embedded NUL */
	snprintf(big, sizeof(big), "v=spf1 a:%064d.example.com", 0);
	CHECK(syn(big) == -1);
	snprintf(big, sizeof(big), "v=spf1 a:x%062d.example.com", 0);
	CHECK(syn(big) == 0);
	CHECK(spf_syntax_check("v=spf1 a:foo.example.com\0", 25, NULL, 0) == -1);
	CHECK(spf_syntax_check("v=spf1 -all", 11, NULL, 0) == 0);
	CHECK(spf_syntax_check(NULL, 0, NULL, 0) == -1);
}

int main(void)
{
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	moat_filters_register_builtin();

	RUN(domains_bounded);
	RUN(idn_to_a_labels);
	RUN(senders_bounded);
	RUN(helo_and_ip);
	RUN(text_sanitized);
	RUN(proto_round_trips);
	RUN(proto_rejects_malformed);
	RUN(proto_dns_round_trips);
	RUN(proto_dns_large_answers);
	RUN(proto_dns_rejects_malformed);
	RUN(mapping);
	RUN(received_spf_text);
	RUN(record_syntax);
	RUN(networks);
	RUN(config_defaults);
	RUN(config_errors);

	char path[600];
	snprintf(path, sizeof(path), "%s/moat.conf", dir);
	unlink(path);
	rmdir(dir);
	return unit_done();
}
