/*
 * proxy_proto.h - the PROXY protocol (HAProxy, versions 1 and 2): parsing
 * the header a load balancer puts before a client's bytes, and writing
 * one for an upstream.
 *
 * No I/O and no state: the caller peeks at what arrived and consumes
 * exactly the header's length, so the client's own bytes (a TLS
 * ClientHello, a pregreet) stay in the socket. Network input: fuzzed
 * (tests/fuzz/fuzz_proxy_proto.c).
 */
#ifndef MOAT_PROXY_PROTO_H
#define MOAT_PROXY_PROTO_H

#include <stddef.h>
#include <sys/socket.h>

/* Longest header accepted: v1's 107 octets, or v2's 16 plus at most
 * this much of addresses and TLVs. */
#define PROXY_V2_MAX_PAYLOAD 1024
#define PROXY_HDR_MAX (16 + PROXY_V2_MAX_PAYLOAD)

struct proxy_hdr {
	int version;			/* 1 or 2 */
	int has_addr;			/* 0: LOCAL, UNKNOWN, or not TCP: use the connection's */
	struct sockaddr_storage src, dst;
	socklen_t srclen, dstlen;
};

#define PROXY_NEED_MORE 0
#define PROXY_INVALID (-1)

/* Parses the header at buf (len octets so far). Returns its length
 * (> 0) with *out filled, PROXY_NEED_MORE if what is there is a valid
 * start, or PROXY_INVALID with a reason in why. */
long proxy_proto_parse(const unsigned char *buf, size_t len, struct proxy_hdr *out,
		       const char **why);

/* Writes a header (version 1 or 2) for a TCP connection from src to dst
 * into buf (v4-mapped IPv6 written as IPv4). Addresses that are not IP,
 * or of two families, give "PROXY UNKNOWN" (v1) or an UNSPEC header
 * (v2). Returns its length, or 0 if buf is too small (PROXY_HDR_MAX
 * always fits). */
size_t proxy_proto_build(int version, const struct sockaddr *src, const struct sockaddr *dst,
			 unsigned char *buf, size_t len);

#endif
