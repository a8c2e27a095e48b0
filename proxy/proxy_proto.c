/*
 * proxy_proto.c - the PROXY protocol header, versions 1 and 2: a strict
 * parser of what a load balancer sends and the writer of what moat
 * sends upstream (proxy_proto.h). Follows HAProxy's proxy-protocol.txt:
 * v1 is one CRLF-ended line of at most 107 octets with single spaces
 * and canonical numbers; v2 is a 12-octet signature, version and
 * command, family, a length, the addresses and TLVs (skipped). Owns
 * nothing.
 */
#include "proxy_proto.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#define V1_MAX 107
static const unsigned char v2_sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a,
					 0x51, 0x55, 0x49, 0x54, 0x0a};
static const char v1_sig[] = "PROXY ";

static void set4(struct sockaddr_storage *ss, socklen_t *len, const void *addr, unsigned port)
{
	struct sockaddr_in *a = (struct sockaddr_in *)(void *)ss;
	memset(ss, 0, sizeof(*ss));
	a->sin_family = AF_INET;
	memcpy(&a->sin_addr, addr, 4);
	a->sin_port = htons((unsigned short)port);
	*len = sizeof(*a);
}

static void set6(struct sockaddr_storage *ss, socklen_t *len, const void *addr, unsigned port)
{
	struct sockaddr_in6 *a = (struct sockaddr_in6 *)(void *)ss;
	memset(ss, 0, sizeof(*ss));
	a->sin6_family = AF_INET6;
	memcpy(&a->sin6_addr, addr, 16);
	a->sin6_port = htons((unsigned short)port);
	*len = sizeof(*a);
}

/* The next space-separated field of line [*p, end): 0, or -1. */
static int field(const char **p, const char *end, char *out, size_t outlen, int last)
{
	const char *s = *p, *e = s;
	while (e < end && *e != ' ')
		e++;
	if (e == s || (size_t)(e - s) >= outlen || (last ? e != end : e == end))
		return -1;
	memcpy(out, s, (size_t)(e - s));
	out[e - s] = '\0';
	*p = last ? e : e + 1;
	return 0;
}

/* A canonical port: "0" or 1-65535 without leading zeros. */
static int port_of(const char *s, unsigned *out)
{
	unsigned long v = 0;
	size_t n = strlen(s);
	if (n == 0 || n > 5 || (n > 1 && s[0] == '0'))
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (v > 65535)
		return -1;
	*out = (unsigned)v;
	return 0;
}

static long parse_v1(const unsigned char *buf, size_t len, struct proxy_hdr *out,
		     const char **why)
{
	size_t lim = len < V1_MAX ? len : V1_MAX, eol = 0;
	char s[48], d[48], sp[8], dp[8], fam[8];
	unsigned char sa[16], da[16];
	unsigned sport, dport;

	while (eol < lim && buf[eol] != '\n')
		eol++;
	if (eol == lim) {
		if (len >= V1_MAX) {
			*why = "v1 header without CRLF within 107 octets";
			return PROXY_INVALID;
		}
		for (size_t i = 0; i < len; i++)
			if (buf[i] == '\r' && i + 1 < len) {
				*why = "v1 header with a bare CR";
				return PROXY_INVALID;
			}
		return PROXY_NEED_MORE;
	}
	if (eol == 0 || buf[eol - 1] != '\r') {
		*why = "v1 header ends with a bare LF";
		return PROXY_INVALID;
	}
	const char *p = (const char *)buf + 6, *end = (const char *)buf + eol - 1;
	for (const char *q = p; q < end; q++)
		if (*q < 0x20 || *q > 0x7e) {
			*why = "v1 header with a control or non-ASCII character";
			return PROXY_INVALID;
		}
	out->version = 1;
	if (end - p >= 7 && memcmp(p, "UNKNOWN", 7) == 0 && (end - p == 7 || p[7] == ' ')) {
		out->has_addr = 0;
		return (long)eol + 1;
	}
	if (field(&p, end, fam, sizeof(fam), 0) < 0 || field(&p, end, s, sizeof(s), 0) < 0 ||
	    field(&p, end, d, sizeof(d), 0) < 0 || field(&p, end, sp, sizeof(sp), 0) < 0 ||
	    field(&p, end, dp, sizeof(dp), 1) < 0) {
		*why = "v1 header: expected PROXY TCP4|TCP6 SRC DST SPORT DPORT";
		return PROXY_INVALID;
	}
	int v6 = strcmp(fam, "TCP6") == 0;
	if (!v6 && strcmp(fam, "TCP4") != 0) {
		*why = "v1 header: expected TCP4, TCP6 or UNKNOWN";
		return PROXY_INVALID;
	}
	if (inet_pton(v6 ? AF_INET6 : AF_INET, s, sa) != 1 ||
	    inet_pton(v6 ? AF_INET6 : AF_INET, d, da) != 1) {
		*why = "v1 header: bad address";
		return PROXY_INVALID;
	}
	if (port_of(sp, &sport) < 0 || port_of(dp, &dport) < 0) {
		*why = "v1 header: bad port";
		return PROXY_INVALID;
	}
	if (v6) {
		set6(&out->src, &out->srclen, sa, sport);
		set6(&out->dst, &out->dstlen, da, dport);
	} else {
		set4(&out->src, &out->srclen, sa, sport);
		set4(&out->dst, &out->dstlen, da, dport);
	}
	out->has_addr = 1;
	return (long)eol + 1;
}

static long parse_v2(const unsigned char *buf, size_t len, struct proxy_hdr *out,
		     const char **why)
{
	if (len < 16)
		return PROXY_NEED_MORE;
	unsigned ver = buf[12] >> 4, cmd = buf[12] & 0x0f, fam = buf[13];
	size_t plen = (size_t)buf[14] << 8 | buf[15];
	if (ver != 2) {
		*why = "v2 header: version is not 2";
		return PROXY_INVALID;
	}
	if (cmd > 1) {
		*why = "v2 header: command is neither LOCAL nor PROXY";
		return PROXY_INVALID;
	}
	if (plen > PROXY_V2_MAX_PAYLOAD) {
		*why = "v2 header longer than 1040 octets";
		return PROXY_INVALID;
	}
	if (len < 16 + plen)
		return PROXY_NEED_MORE;
	const unsigned char *a = buf + 16;
	out->version = 2;
	out->has_addr = 0;
	if (cmd == 0 || fam == 0x00)	/* LOCAL (health checks), UNSPEC */
		return (long)(16 + plen);
	if (fam == 0x11) {		/* TCP over IPv4 */
		if (plen < 12) {
			*why = "v2 header: TCP4 addresses truncated";
			return PROXY_INVALID;
		}
		set4(&out->src, &out->srclen, a, (unsigned)(a[8] << 8 | a[9]));
		set4(&out->dst, &out->dstlen, a + 4, (unsigned)(a[10] << 8 | a[11]));
	} else if (fam == 0x21) {	/* TCP over IPv6 */
		if (plen < 36) {
			*why = "v2 header: TCP6 addresses truncated";
			return PROXY_INVALID;
		}
		set6(&out->src, &out->srclen, a, (unsigned)(a[32] << 8 | a[33]));
		set6(&out->dst, &out->dstlen, a + 16, (unsigned)(a[34] << 8 | a[35]));
	} else {
		*why = "v2 header: not TCP over IPv4 or IPv6";
		return PROXY_INVALID;
	}
	out->has_addr = 1;
	return (long)(16 + plen);
}

long proxy_proto_parse(const unsigned char *buf, size_t len, struct proxy_hdr *out,
		       const char **why)
{
	size_t n;

	memset(out, 0, sizeof(*out));
	*why = "";
	if (len == 0)
		return PROXY_NEED_MORE;
	if (buf[0] == v2_sig[0]) {
		n = len < sizeof(v2_sig) ? len : sizeof(v2_sig);
		if (memcmp(buf, v2_sig, n) != 0) {
			*why = "not a PROXY protocol header";
			return PROXY_INVALID;
		}
		return n < sizeof(v2_sig) ? PROXY_NEED_MORE : parse_v2(buf, len, out, why);
	}
	n = len < 6 ? len : 6;
	if (memcmp(buf, v1_sig, n) != 0) {
		*why = "not a PROXY protocol header";
		return PROXY_INVALID;
	}
	return n < 6 ? PROXY_NEED_MORE : parse_v1(buf, len, out, why);
}

/* IPv4 address of sa (v4-mapped IPv6 too) into a4: 1, else 0. */
static int as_v4(const struct sockaddr *sa, unsigned char *a4, unsigned *port)
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)(const void *)sa;
		memcpy(a4, &a->sin_addr, 4);
		*port = ntohs(a->sin_port);
		return 1;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)(const void *)sa;
		if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr)) {
			memcpy(a4, a->sin6_addr.s6_addr + 12, 4);
			*port = ntohs(a->sin6_port);
			return 1;
		}
	}
	return 0;
}

size_t proxy_proto_build(int version, const struct sockaddr *src, const struct sockaddr *dst,
			 unsigned char *buf, size_t len)
{
	unsigned char s4[4], d4[4];
	unsigned sport = 0, dport = 0;
	int fam = 0;		/* 4, 6, or 0: unknown */
	const struct sockaddr_in6 *s6 = NULL, *d6 = NULL;

	if (as_v4(src, s4, &sport) && as_v4(dst, d4, &dport)) {
		fam = 4;
	} else if (src->sa_family == AF_INET6 && dst->sa_family == AF_INET6) {
		s6 = (const struct sockaddr_in6 *)(const void *)src;
		d6 = (const struct sockaddr_in6 *)(const void *)dst;
		sport = ntohs(s6->sin6_port);
		dport = ntohs(d6->sin6_port);
		fam = 6;
	}
	if (version == 1) {
		char sa[INET6_ADDRSTRLEN], da[INET6_ADDRSTRLEN];
		int n;
		if (fam == 4) {
			inet_ntop(AF_INET, s4, sa, sizeof(sa));
			inet_ntop(AF_INET, d4, da, sizeof(da));
		} else if (fam == 6) {
			inet_ntop(AF_INET6, &s6->sin6_addr, sa, sizeof(sa));
			inet_ntop(AF_INET6, &d6->sin6_addr, da, sizeof(da));
		}
		if (fam)
			n = snprintf((char *)buf, len, "PROXY TCP%d %s %s %u %u\r\n", fam, sa, da,
				     sport, dport);
		else
			n = snprintf((char *)buf, len, "PROXY UNKNOWN\r\n");
		return n > 0 && (size_t)n < len ? (size_t)n : 0;
	}
	size_t plen = fam == 4 ? 12 : fam == 6 ? 36 : 0;
	if (len < 16 + plen)
		return 0;
	memcpy(buf, v2_sig, sizeof(v2_sig));
	buf[12] = 0x21;		/* version 2, PROXY */
	buf[13] = fam == 4 ? 0x11 : fam == 6 ? 0x21 : 0x00;
	buf[14] = 0;
	buf[15] = (unsigned char)plen;
	unsigned char *a = buf + 16;
	if (fam == 4) {
		memcpy(a, s4, 4);
		memcpy(a + 4, d4, 4);
		a += 8;
	} else if (fam == 6) {
		memcpy(a, &s6->sin6_addr, 16);
		memcpy(a + 16, &d6->sin6_addr, 16);
		a += 32;
	}
	if (fam) {
		a[0] = (unsigned char)(sport >> 8);
		a[1] = (unsigned char)sport;
		a[2] = (unsigned char)(dport >> 8);
		a[3] = (unsigned char)dport;
	}
	return 16 + plen;
}
