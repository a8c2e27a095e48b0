/*
 * net.h - IP networks from configuration, and matching a client address
 * (as front ends write it: "192.0.2.1", "2001:db8::1", v4-mapped IPv6
 * counted as IPv4) against them. Used by the filters' network options
 * (spf skip_networks, dkim sign_networks).
 */
#ifndef MOAT_NET_H
#define MOAT_NET_H

#include <stddef.h>

struct moat_net {
	int family;		/* 4 or 6 */
	unsigned prefix;
	unsigned char addr[16];	/* the network, host bits zero */
};

/* Parses "192.0.2.0/24", "2001:db8::/32", "192.0.2.1" (host bits must
 * be clear). 0, or -1 with err naming what was expected. */
int moat_net_parse(const char *s, struct moat_net *out, char *err, size_t errlen);
/* 1 if addr is in one of the n nets. */
int moat_net_match(const struct moat_net *nets, size_t n, const char *addr);

#endif
