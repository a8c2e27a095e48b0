/*
 * spf_proto.h - the messages between moat and its SPF worker processes
 * (spf_pool.c on the main side, spf_worker.c in the worker), over a
 * socketpair.
 *
 * A frame is a 4-octet big-endian payload length (1 to SPF_PROTO_MAX)
 * and the payload: one type octet, then the message's fields in a fixed
 * order. Integers are big-endian (u8, u16, u32); a string is a u16
 * length and that many octets of printable ASCII (0x20-0x7e; no NUL,
 * no controls), each field with its own maximum length. Decoding is
 * strict: a wrong type, a field out of range, a string too long or with
 * another octet, a short payload or trailing octets reject the whole
 * message. A malformed message is a bug or a compromise of the sender:
 * the main process kills a worker that sends one (its check ends in
 * temperror), a worker exits on one.
 *
 *   CONFIG   main -> worker, first and after a reload: resolver settings
 *   CHECK    main -> worker: one SPF check (MAIL FROM and/or HELO)
 *   RESULT   worker -> main: its results, with the check's id
 *
 * Pure encode/decode over caller buffers; owns nothing.
 */
#ifndef MOAT_SPF_PROTO_H
#define MOAT_SPF_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "spf_input.h"

#define SPF_PROTO_VERSION 1
#define SPF_PROTO_MAX 8192	/* payload octets */
#define SPF_PROTO_HDR 4
#define SPF_MAX_NS 8		/* nameservers sent to a worker */
#define SPF_NS_MAX 128		/* octets of one nameserver */
#define SPF_PATH_MAX 1024	/* trust anchor file name */
#define SPF_MECH_MAX 255	/* the mechanism that matched, as text */
#define SPF_COMMENT_MAX 512	/* header comment */
#define SPF_PROBLEM_MAX 255	/* why (errors) */

enum spf_msg_type {
	SPF_MSG_CONFIG = 1,
	SPF_MSG_CHECK = 2,
	SPF_MSG_RESULT = 3,
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
	uint32_t timeout_ms;		/* per DNS query, 1..600000 */
	uint32_t cache_size;		/* libunbound cache octets, 0 = default */
	char receiver[SPF_DOMAIN_MAX + 1];	/* %{r}: this host's name */
	uint8_t nns;			/* 0..SPF_MAX_NS; 0: /etc/resolv.conf */
	char ns[SPF_MAX_NS][SPF_NS_MAX + 1];	/* "127.0.0.1:53", "[::1]:53" */
	char trust_anchor[SPF_PATH_MAX + 1];	/* "" = no DNSSEC validation */
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

/* Encoders write one whole frame (header and payload) into buf and
 * return its length, or -1 (a field out of range, buf too small). */
int spf_proto_encode_config(const struct spf_proto_config *c, unsigned char *buf, size_t len);
int spf_proto_encode_check(const struct spf_proto_check *c, unsigned char *buf, size_t len);
int spf_proto_encode_result(const struct spf_proto_result *r, unsigned char *buf, size_t len);

/* Frames in a stream: given n octets received, returns the length of
 * the first frame's payload if it is complete (it starts at buf + 4),
 * 0 if more octets are needed, -1 if the length field is invalid. */
long spf_proto_frame(const unsigned char *buf, size_t n);

/* The type of a payload (its first octet), or -1. */
int spf_proto_type(const unsigned char *p, size_t n);

/* Decoders take one payload; 0, or -1 with the reason in err. */
int spf_proto_decode_config(const unsigned char *p, size_t n, struct spf_proto_config *c,
			    char *err, size_t errlen);
int spf_proto_decode_check(const unsigned char *p, size_t n, struct spf_proto_check *c,
			   char *err, size_t errlen);
int spf_proto_decode_result(const unsigned char *p, size_t n, struct spf_proto_result *r,
			    char *err, size_t errlen);

#endif
