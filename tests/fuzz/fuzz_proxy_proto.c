/*
 * fuzz_proxy_proto - libFuzzer target for the PROXY protocol header
 * parser and writer (proxy/proxy_proto.c).
 *
 * The input is parsed whole and in every prefix a load balancer's
 * segments could deliver (1, 2, 16 octets, ...). Checks, abort()ing on
 * violation:
 *  - a result is PROXY_INVALID, PROXY_NEED_MORE or a length within the
 *    input and at most PROXY_HDR_MAX;
 *  - a prefix of a complete header never reads as invalid, and a longer
 *    input gives the same length (the parser never needs more than the
 *    header: what follows is the client's);
 *  - addresses, when present, are IPv4 or IPv6 with matching lengths;
 *    writing them back (v1 and v2) and parsing that gives the same
 *    addresses and ports.
 */
#include "proxy_proto.h"

#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		abort();
	if (a->ss_family == AF_INET) {
		const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
		if (memcmp(&x->sin_addr, &y->sin_addr, 4) || x->sin_port != y->sin_port)
			abort();
	} else {
		const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
		if (memcmp(&x->sin6_addr, &y->sin6_addr, 16) || x->sin6_port != y->sin6_port)
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proxy_hdr h, p;
	const char *why;
	long n = proxy_proto_parse(data, size, &h, &why);

	if (n != PROXY_INVALID && n != PROXY_NEED_MORE &&
	    (n < 0 || (size_t)n > size || (size_t)n > PROXY_HDR_MAX))
		abort();
	if (n == PROXY_INVALID && (!why || !*why))
		abort();
	if (n <= 0)
		return 0;
	for (size_t cut = 0; cut < (size_t)n; cut = cut < 16 ? cut + 1 : cut * 2)
		if (proxy_proto_parse(data, cut, &p, &why) != PROXY_NEED_MORE)
			abort();
	if (h.version != 1 && h.version != 2)
		abort();
	if (!h.has_addr)
		return 0;
	if (h.src.ss_family != h.dst.ss_family ||
	    (h.src.ss_family == AF_INET && h.srclen != sizeof(struct sockaddr_in)) ||
	    (h.src.ss_family == AF_INET6 && h.srclen != sizeof(struct sockaddr_in6)) ||
	    (h.src.ss_family != AF_INET && h.src.ss_family != AF_INET6))
		abort();
	for (int v = 1; v <= 2; v++) {
		unsigned char buf[PROXY_HDR_MAX];
		size_t len = proxy_proto_build(v, (struct sockaddr *)&h.src,
					       (struct sockaddr *)&h.dst, buf, sizeof(buf));
		if (len == 0 || proxy_proto_parse(buf, len, &p, &why) != (long)len || !p.has_addr)
			abort();
		/* v4-mapped IPv6 is written as IPv4: compare only same families */
		if (p.src.ss_family == h.src.ss_family) {
			same_addr(&h.src, &p.src);
			same_addr(&h.dst, &p.dst);
		}
	}
	return 0;
}
