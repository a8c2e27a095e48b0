/*
 * spf_proto.h - the messages between moat and its SPF worker processes
 * (spf_pool.c on the main side, spf_worker.c in the worker), over a
 * socketpair.
 *
 * A frame is a 4-octet big-endian payload length and the payload: one
 * type octet, then the message's fields in a fixed order. Integers are
 * big-endian (u8, u16, u32); a string is a u16 length and that many
 * octets of printable ASCII (0x20-0x7e; no NUL, no controls), each field
 * with its own maximum length; an octet string (a DNS record) is a u16
 * length and that many octets of anything. Decoding is strict: a wrong
 * type, a field out of range, a string too long or with another octet,
 * a short payload or trailing octets reject the whole message. A
 * malformed message is a bug or a compromise of the sender: the main
 * process kills a worker that sends one (its check ends in temperror),
 * a worker exits on one.
 *
 *   CONFIG      main -> worker, first and after a reload: DNS timeout,
 *               receiver name
 *   CHECK       main -> worker: one SPF check (MAIL FROM and/or HELO)
 *   RESULT      worker -> main: its results, with the check's id
 *   DNS_QUERY   worker -> main, during a check: one lookup (an id of the
 *               worker's, the name, the type) for moat's resolver
 *   DNS_ANSWER  main -> worker: the answer to a DNS_QUERY, with its id
 *
 * Sizes. A worker's messages (RESULT, DNS_QUERY) are small: at most
 * SPF_PROTO_WORKER_MAX octets of payload, which is all the main process
 * reads from a worker at once. The main process's are at most
 * SPF_PROTO_MAX: a DNS_ANSWER carries every record of one RRset, and an
 * RRset of A, AAAA or TXT records that a DNS message (at most 65535
 * octets, each record costing at least 11 octets besides its data)
 * can carry always fits in 64 KB with 2 octets of length per record.
 * MX and PTR records hold names, which libunbound hands over
 * uncompressed and so may be longer than on the wire; an answer whose
 * records do not all fit (more than SPF_DNS_MAX_RR of them, or too many
 * octets) is sent with the first ones that do and the `truncated` flag.
 * That is enough for SPF (more than 10 MX records is a permerror
 * whatever the rest are; of PTR names only 10 are looked at); the
 * worker reads any other truncated answer as a DNS failure.
 *
 * Pure encode/decode over caller buffers; owns nothing.
 */
#ifndef MOAT_SPF_PROTO_H
#define MOAT_SPF_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "spf_input.h"

#define SPF_PROTO_VERSION 2
#define SPF_PROTO_MAX 65536	/* payload octets, any message */
#define SPF_PROTO_WORKER_MAX 8192	/* payload octets, a worker's message */
#define SPF_PROTO_HDR 4
#define SPF_QNAME_MAX (SPF_DOMAIN_MAX + 1)	/* a DNS_QUERY name, a trailing dot allowed */
#define SPF_DNS_MAX_RR 4096	/* records in one DNS_ANSWER (the A records of a
				 * 64 KB DNS message) */
#define SPF_MECH_MAX 255	/* the mechanism that matched, as text */
#define SPF_COMMENT_MAX 512	/* header comment */
#define SPF_PROBLEM_MAX 255	/* why (errors) */

enum spf_msg_type {
	SPF_MSG_CONFIG = 1,
	SPF_MSG_CHECK = 2,
	SPF_MSG_RESULT = 3,
	SPF_MSG_DNS_QUERY = 4,
	SPF_MSG_DNS_ANSWER = 5,
};

/* The results of RFC 7208 2.6, in the order of moat spf's exit codes. */
enum spf_result {
	SPF_RES_PASS = 0,
	SPF_RES_FAIL,
	SPF_RES_SOFTFAIL,
	SPF_RES_NEUTRAL,
	SPF_RES_NONE,
	SPF_RES_TEMPERROR,
	SPF_RES_PERMERROR,
	SPF_RES__COUNT
};

/* "pass", "fail"...; spf_result_parse() returns 0 or -1. */
const char *spf_result_name(enum spf_result r);
int spf_result_parse(const char *s, enum spf_result *out);

struct spf_proto_config {
	uint32_t timeout_ms;		/* a worker waits this long for one DNS
					 * answer (the resolver's timeout), 1..600000 */
	char receiver[SPF_DOMAIN_MAX + 1];	/* %{r}: this host's name */
};

#define SPF_CHECK_MAILFROM 1	/* check the MAIL FROM identity */
#define SPF_CHECK_HELO 2	/* check the HELO identity */

/* Prepared by the main process (spf_input.h): the worker hands these
 * to libspf2 as they are. */
struct spf_proto_check {
	uint32_t id;
	uint32_t budget_ms;		/* time for the whole check, 1..600000 */
	uint8_t flags;			/* SPF_CHECK_*, at least one */
	char ip[SPF_IP_MAX + 1];	/* canonical, as spf_ip_normalize() */
	char sender[SPF_SENDER_MAX + 1];	/* "local@domain" (MAILFROM) */
	char helo[SPF_DOMAIN_MAX + 1];	/* A-label form (HELO; also %{h}), or a
					 * HELO that is no domain, printable, for
					 * %{h} only (no SPF_CHECK_HELO), or "" */
};

/* The result for one identity. */
struct spf_proto_identity {
	uint8_t done;			/* this identity was checked */
	uint8_t result;			/* enum spf_result */
	uint16_t terms;			/* DNS-querying terms evaluated */
	uint16_t voids;			/* void lookups */
	char mechanism[SPF_MECH_MAX + 1];	/* "ip4:192.0.2.0/24", "-all", "" */
	char explanation[SPF_EXP_MAX + 1];	/* fail: sanitised; else "" */
	char problem[SPF_PROBLEM_MAX + 1];	/* errors, limits hit; or "" */
};

struct spf_proto_result {
	uint32_t id;
	struct spf_proto_identity mailfrom, helo;
};

/* A lookup a worker asks for. type: one of those SPF uses (A 1, PTR 12,
 * MX 15, TXT 16, AAAA 28; enum moat_dns_type); name: a query name
 * (labels of 1..63 octets, at most SPF_DOMAIN_MAX octets without a
 * trailing dot), printable. */
struct spf_proto_dns_query {
	uint32_t id;			/* the worker's, echoed in the answer */
	uint16_t type;
	char name[SPF_QNAME_MAX + 1];
};

/* Its answer. Records (RDATA, names uncompressed, as moat's resolver
 * has them) exactly when status is MOAT_DNS_OK; the records are
 * borrowed: from the caller when encoding, from the payload (and the
 * arrays the caller passes) when decoded. */
struct spf_proto_dns_answer {
	uint32_t id;
	uint8_t status;			/* enum moat_dns_status */
	uint16_t rcode;			/* 0..4095 */
	uint32_t ttl;			/* 0..2^31-1 */
	uint8_t secure;			/* 0/1: DNSSEC-validated */
	uint8_t truncated;		/* 0/1: records were left off (see above) */
	size_t nrr;
	const unsigned char *const *rr;
	const size_t *rrlen;		/* each at most 65535 */
};

/* Encoders write one whole frame (header and payload) into buf and
 * return its length, or -1 (a field out of range, buf too small). */
int spf_proto_encode_config(const struct spf_proto_config *c, unsigned char *buf, size_t len);
int spf_proto_encode_check(const struct spf_proto_check *c, unsigned char *buf, size_t len);
int spf_proto_encode_result(const struct spf_proto_result *r, unsigned char *buf, size_t len);
int spf_proto_encode_dns_query(const struct spf_proto_dns_query *q, unsigned char *buf,
			       size_t len);
/* Writes the records that fit (at most SPF_DNS_MAX_RR, the payload at
 * most SPF_PROTO_MAX octets, and within len), in order, and sets the
 * frame's truncated flag if any were left off (or a->truncated is set).
 * -1: a field out of range, records with another status than OK or
 * none with OK, or not even the first record fits. */
int spf_proto_encode_dns_answer(const struct spf_proto_dns_answer *a, unsigned char *buf,
				size_t len);

/* Frames in a stream: given n octets received, returns the length of
 * the first frame's payload if it is complete (it starts at buf + 4),
 * 0 if more octets are needed, -1 if the length field is 0 or more than
 * max (SPF_PROTO_MAX, or SPF_PROTO_WORKER_MAX for a worker's frames). */
long spf_proto_frame(const unsigned char *buf, size_t n, size_t max);

/* The type of a payload (its first octet), or -1. */
int spf_proto_type(const unsigned char *p, size_t n);

/* Decoders take one payload; 0, or -1 with the reason in err. */
int spf_proto_decode_config(const unsigned char *p, size_t n, struct spf_proto_config *c,
			    char *err, size_t errlen);
int spf_proto_decode_check(const unsigned char *p, size_t n, struct spf_proto_check *c,
			   char *err, size_t errlen);
int spf_proto_decode_result(const unsigned char *p, size_t n, struct spf_proto_result *r,
			    char *err, size_t errlen);
int spf_proto_decode_dns_query(const unsigned char *p, size_t n, struct spf_proto_dns_query *q,
			       char *err, size_t errlen);
/* a->rr and a->rrlen are set to rr and rrlen, arrays of max entries
 * the caller owns; the records point into p. More than max (or
 * SPF_DNS_MAX_RR) records reject the message. */
int spf_proto_decode_dns_answer(const unsigned char *p, size_t n, struct spf_proto_dns_answer *a,
				const unsigned char **rr, size_t *rrlen, size_t max, char *err,
				size_t errlen);

#endif
