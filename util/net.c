/*
 * net.c - IPv4 and IPv6 networks in configuration ("192.0.2.0/24",
 * "2001:db8::/32", a single address) and matching a client address
 * against a list of them. Owns nothing.
 */
#include "net.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void mask(unsigned char *a, unsigned prefix, size_t bytes)
{
	for (size_t i = 0; i < bytes; i++) {
		unsigned bits = prefix > i * 8 ? prefix - (unsigned)i * 8 : 0;
		if (bits < 8)
			a[i] &= (unsigned char)(0xff00u >> bits);
	}
}

/* "192.0.2.1", v4-mapped IPv6 as IPv4, into a[16]; 4, 6 or 0. */
static int addr_parse(const char *s, unsigned char a[16])
{
	static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	memset(a, 0, 16);
	if (inet_pton(AF_INET, s, a) == 1)
		return 4;
	if (inet_pton(AF_INET6, s, a) != 1)
		return 0;
	if (memcmp(a, mapped, 12) == 0) {
		memmove(a, a + 12, 4);
		memset(a + 4, 0, 12);
		return 4;
	}
	return 6;
}

int moat_net_parse(const char *s, struct moat_net *out, char *err, size_t errlen)
{
	char buf[64];
	const char *slash = strchr(s, '/');
	size_t alen = slash ? (size_t)(slash - s) : strlen(s);
	unsigned char a[16];

	memset(out, 0, sizeof(*out));
	if (alen == 0 || alen >= sizeof(buf) || strchr(s, ' '))
		goto bad;
	memcpy(buf, s, alen);
	buf[alen] = '\0';
	int fam = addr_parse(buf, a);
	if (!fam || (fam == 4 && strchr(buf, ':')))
		goto bad;	/* v4-mapped networks: write them as IPv4 */
	unsigned max = fam == 4 ? 32 : 128, prefix = max;
	if (slash) {
		char *end;
		long v = strtol(slash + 1, &end, 10);
		if (!slash[1] || *end || slash[1] < '0' || slash[1] > '9' || v < 0 ||
		    v > (long)max) {
			snprintf(err, errlen, "\"%s\": prefix length out of range (0 to %u)", s, max);
			return -1;
		}
		prefix = (unsigned)v;
	}
	unsigned char net[16];
	memcpy(net, a, 16);
	mask(net, prefix, fam == 4 ? 4 : 16);
	if (memcmp(net, a, 16) != 0) {
		inet_ntop(fam == 4 ? AF_INET : AF_INET6, net, buf, sizeof(buf));
		snprintf(err, errlen, "\"%s\": address bits set after the /%u prefix; expected "
			 "%s/%u", s, prefix, buf, prefix);
		return -1;
	}
	out->family = fam;
	out->prefix = prefix;
	memcpy(out->addr, net, 16);
	return 0;
bad:
	snprintf(err, errlen, "\"%s\": expected an IPv4 or IPv6 network (192.0.2.0/24, "
		 "2001:db8::/32) or address", s);
	return -1;
}

int moat_net_match(const struct moat_net *nets, size_t n, const char *addr)
{
	unsigned char a[16];
	int fam = addr ? addr_parse(addr, a) : 0;
	for (size_t i = 0; fam && i < n; i++) {
		unsigned char m[16];
		if (nets[i].family != fam)
			continue;
		memcpy(m, a, 16);
		mask(m, nets[i].prefix, fam == 4 ? 4 : 16);
		if (memcmp(m, nets[i].addr, 16) == 0)
			return 1;
	}
	return 0;
}
