/*
 * test_proxy_proto - unit tests for the PROXY protocol header parser and
 * writer (proxy/proxy_proto.c), and the client networks of the
 * per-client limits (proxy/client_limits.c).
 */
#include "client_limits.h"
#include "config.h"
#include "proxy_proto.h"
#include "unit.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#define S(lit) (const unsigned char *)(lit), sizeof(lit) - 1

static const char V2SIG[] = "\r\n\r\n\0\r\nQUIT\n";

static int port_of(const struct sockaddr_storage *ss)
{
	return ss->ss_family == AF_INET ? ntohs(((const struct sockaddr_in *)(const void *)ss)->sin_port)
					: ntohs(((const struct sockaddr_in6 *)(const void *)ss)->sin6_port);
}

static const char *addr_of(const struct sockaddr_storage *ss, char *buf, size_t len)
{
	const void *a = ss->ss_family == AF_INET
		? (const void *)&((const struct sockaddr_in *)(const void *)ss)->sin_addr
		: (const void *)&((const struct sockaddr_in6 *)(const void *)ss)->sin6_addr;
	return inet_ntop(ss->ss_family, a, buf, (socklen_t)len);
}

TEST(v1_tcp4_and_tcp6)
{
	struct proxy_hdr h;
	const char *why;
	char a[64];

	CHECK(proxy_proto_parse(S("PROXY TCP4 192.0.2.7 198.51.100.1 40000 25\r\nEHLO x\r\n"),
				&h, &why) == 44);
	CHECK(h.version == 1 && h.has_addr && h.src.ss_family == AF_INET);
	CHECK(strcmp(addr_of(&h.src, a, sizeof(a)), "192.0.2.7") == 0 && port_of(&h.src) == 40000);
	CHECK(strcmp(addr_of(&h.dst, a, sizeof(a)), "198.51.100.1") == 0 && port_of(&h.dst) == 25);
	CHECK(proxy_proto_parse(S("PROXY TCP6 2001:db8::7 2001:db8::1 1 65535\r\n"), &h, &why) == 44);
	CHECK(h.src.ss_family == AF_INET6 && port_of(&h.dst) == 65535);
	CHECK(strcmp(addr_of(&h.src, a, sizeof(a)), "2001:db8::7") == 0);
	CHECK(proxy_proto_parse(S("PROXY UNKNOWN\r\n"), &h, &why) == 15 && !h.has_addr);
	CHECK(proxy_proto_parse(S("PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n"), &h, &why) == 35 &&
	      !h.has_addr);
}

TEST(v1_need_more)
{
	struct proxy_hdr h;
	const char *why;

	CHECK(proxy_proto_parse(S(""), &h, &why) == PROXY_NEED_MORE);
	CHECK(proxy_proto_parse(S("PRO"), &h, &why) == PROXY_NEED_MORE);
	CHECK(proxy_proto_parse(S("PROXY TCP4 192.0.2.7"), &h, &why) == PROXY_NEED_MORE);
	CHECK(proxy_proto_parse(S("PROXY TCP4 192.0.2.7 198.51.100.1 40000 25\r"), &h, &why) ==
	      PROXY_NEED_MORE);
}

TEST(v1_invalid)
{
	static const char *const bad[] = {
		"EHLO x\r\n",
		"PROXY TCP4 192.0.2.7 198.51.100.1 40000 25\n",		/* bare LF */
		"PROXY TCP4 192.0.2.7 198.51.100.1 40000 25 \r\n",	/* trailing space */
		"PROXY TCP4  192.0.2.7 198.51.100.1 40000 25\r\n",	/* two spaces */
		"PROXY TCP4 192.0.2.7 198.51.100.1 040000 25\r\n",	/* leading zero */
		"PROXY TCP4 192.0.2.7 198.51.100.1 65536 25\r\n",	/* port range */
		"PROXY TCP4 2001:db8::7 198.51.100.1 1 25\r\n",		/* family mismatch */
		"PROXY TCP4 192.0.2.300 198.51.100.1 1 25\r\n",
		"PROXY TCP5 192.0.2.7 198.51.100.1 1 25\r\n",
		"PROXY TCP4 192.0.2.7 198.51.100.1 1\r\n",
		"PROXY TCP4 192.0.2.7\r198.51.100.1 1 25\r\n",		/* bare CR */
		"proxy TCP4 192.0.2.7 198.51.100.1 1 25\r\n",
	};
	struct proxy_hdr h;
	const char *why;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		long n = proxy_proto_parse((const unsigned char *)bad[i], strlen(bad[i]), &h, &why);
		CHECK(n == PROXY_INVALID && why && *why);
	}
	/* no CRLF within 107 octets */
	char longline[200];
	memset(longline, 'x', sizeof(longline));
	memcpy(longline, "PROXY UNKNOWN ", 14);
	CHECK(proxy_proto_parse((unsigned char *)longline, sizeof(longline), &h, &why) ==
	      PROXY_INVALID);
	CHECK(proxy_proto_parse((unsigned char *)longline, 106, &h, &why) == PROXY_NEED_MORE);
}

TEST(v2)
{
	unsigned char b[64];
	struct proxy_hdr h;
	const char *why;
	char a[64];

	memcpy(b, V2SIG, 12);
	memcpy(b + 12, "\x21\x11\x00\x0c\xc0\x00\x02\x07\xc6\x33\x64\x01\x9c\x40\x00\x19", 16);
	CHECK(proxy_proto_parse(b, 28, &h, &why) == 28);
	CHECK(h.version == 2 && h.has_addr && port_of(&h.src) == 40000 && port_of(&h.dst) == 25);
	CHECK(strcmp(addr_of(&h.src, a, sizeof(a)), "192.0.2.7") == 0);
	for (size_t cut = 0; cut < 28; cut++)
		CHECK(proxy_proto_parse(b, cut, &h, &why) == PROXY_NEED_MORE);
	b[12] = 0x20;		/* LOCAL: the connection's own address */
	b[15] = 0;
	CHECK(proxy_proto_parse(b, 16, &h, &why) == 16 && !h.has_addr);
	b[12] = 0x31;		/* version 3 */
	CHECK(proxy_proto_parse(b, 16, &h, &why) == PROXY_INVALID);
	b[12] = 0x22;		/* command 2 */
	CHECK(proxy_proto_parse(b, 16, &h, &why) == PROXY_INVALID);
	b[12] = 0x21;
	b[13] = 0x12;		/* UDP */
	b[15] = 12;
	CHECK(proxy_proto_parse(b, 28, &h, &why) == PROXY_INVALID);
	b[13] = 0x11;
	b[15] = 8;		/* too short for TCP4 */
	CHECK(proxy_proto_parse(b, 24, &h, &why) == PROXY_INVALID);
	b[14] = 0x04;		/* longer than accepted */
	b[15] = 0x01;
	CHECK(proxy_proto_parse(b, 16, &h, &why) == PROXY_INVALID);
	b[11] = 'X';		/* signature */
	CHECK(proxy_proto_parse(b, 16, &h, &why) == PROXY_INVALID);
	CHECK(proxy_proto_parse(b, 11, &h, &why) == PROXY_NEED_MORE);
}

TEST(build_round_trip)
{
	struct sockaddr_in s4 = {0}, d4 = {0};
	struct sockaddr_in6 s6 = {0}, m6 = {0};
	unsigned char buf[PROXY_HDR_MAX];
	struct proxy_hdr h;
	const char *why;
	char a[64];
	size_t n;

	s4.sin_family = d4.sin_family = AF_INET;
	inet_pton(AF_INET, "192.0.2.7", &s4.sin_addr);
	inet_pton(AF_INET, "198.51.100.1", &d4.sin_addr);
	s4.sin_port = htons(40000);
	d4.sin_port = htons(25);
	n = proxy_proto_build(1, (struct sockaddr *)&s4, (struct sockaddr *)&d4, buf, sizeof(buf));
	CHECK(n == 44 && memcmp(buf, "PROXY TCP4 192.0.2.7 198.51.100.1 40000 25\r\n", 44) == 0);
	n = proxy_proto_build(2, (struct sockaddr *)&s4, (struct sockaddr *)&d4, buf, sizeof(buf));
	CHECK(n == 28 && proxy_proto_parse(buf, n, &h, &why) == 28 && port_of(&h.src) == 40000);
	/* a v4-mapped client is written as IPv4 */
	m6.sin6_family = AF_INET6;
	inet_pton(AF_INET6, "::ffff:192.0.2.9", &m6.sin6_addr);
	m6.sin6_port = htons(1234);
	n = proxy_proto_build(1, (struct sockaddr *)&m6, (struct sockaddr *)&d4, buf, sizeof(buf));
	CHECK(n > 0 && memcmp(buf, "PROXY TCP4 192.0.2.9 198.51.100.1 1234 25\r\n", n) == 0);
	/* mixed families: UNKNOWN, or an UNSPEC v2 header */
	s6.sin6_family = AF_INET6;
	inet_pton(AF_INET6, "2001:db8::7", &s6.sin6_addr);
	n = proxy_proto_build(1, (struct sockaddr *)&s6, (struct sockaddr *)&d4, buf, sizeof(buf));
	CHECK(n == 15 && memcmp(buf, "PROXY UNKNOWN\r\n", 15) == 0);
	n = proxy_proto_build(2, (struct sockaddr *)&s6, (struct sockaddr *)&d4, buf, sizeof(buf));
	CHECK(n == 16 && proxy_proto_parse(buf, n, &h, &why) == 16 && !h.has_addr);
	n = proxy_proto_build(2, (struct sockaddr *)&s6, (struct sockaddr *)&s6, buf, sizeof(buf));
	CHECK(n == 52 && proxy_proto_parse(buf, n, &h, &why) == 52 && h.has_addr);
	CHECK(strcmp(addr_of(&h.dst, a, sizeof(a)), "2001:db8::7") == 0);
	CHECK(proxy_proto_build(1, (struct sockaddr *)&s4, (struct sockaddr *)&d4, buf, 20) == 0);
	CHECK(proxy_proto_build(2, (struct sockaddr *)&s4, (struct sockaddr *)&d4, buf, 20) == 0);
}

TEST(client_networks)
{
	struct sockaddr_in s4 = {0};
	struct sockaddr_in6 s6 = {0};
	struct client_key k1, k2;
	char buf[80];

	s4.sin_family = AF_INET;
	inet_pton(AF_INET, "192.0.2.77", &s4.sin_addr);
	CHECK(client_key_make((struct sockaddr *)&s4, 32, 64, &k1) == 0);
	CHECK(strcmp(client_key_format(&k1, 32, 64, buf, sizeof(buf)), "192.0.2.77") == 0);
	CHECK(client_key_make((struct sockaddr *)&s4, 20, 64, &k1) == 0);
	CHECK(strcmp(client_key_format(&k1, 20, 64, buf, sizeof(buf)), "192.0.0.0/20") == 0);
	s6.sin6_family = AF_INET6;
	inet_pton(AF_INET6, "2001:db8:1:2:3:4:5:6", &s6.sin6_addr);
	CHECK(client_key_make((struct sockaddr *)&s6, 32, 64, &k1) == 0);
	CHECK(strcmp(client_key_format(&k1, 32, 64, buf, sizeof(buf)), "2001:db8:1:2::/64") == 0);
	inet_pton(AF_INET6, "2001:db8:1:2:ffff::1", &s6.sin6_addr);
	CHECK(client_key_make((struct sockaddr *)&s6, 32, 64, &k2) == 0);
	CHECK(memcmp(&k1, &k2, sizeof(k1)) == 0);
	inet_pton(AF_INET6, "::ffff:192.0.2.77", &s6.sin6_addr);	/* counts as IPv4 */
	CHECK(client_key_make((struct sockaddr *)&s6, 32, 64, &k2) == 0 && k2.family == 4);
	CHECK(strcmp(client_key_format(&k2, 32, 64, buf, sizeof(buf)), "192.0.2.77") == 0);
}

TEST(client_limits)
{
	struct client_limits *cl = client_limits_new(4);
	struct client_limit_conf lim = {2, 3, 2, 60};
	struct client_key a = {4, {192, 0, 2, 1}}, b = {4, {192, 0, 2, 2}};
	time_t t = 1000;

	CHECK(cl != NULL);
	CHECK(client_limits_admit(cl, &a, &lim, t) == CLIENT_OK);
	CHECK(client_limits_admit(cl, &a, &lim, t) == CLIENT_OK);
	CHECK(client_limits_admit(cl, &a, &lim, t) == CLIENT_TOO_MANY);
	client_limits_release(cl, &a, t);
	CHECK(client_limits_admit(cl, &a, &lim, t) == CLIENT_OK);
	client_limits_release(cl, &a, t);
	CHECK(client_limits_admit(cl, &a, &lim, t) == CLIENT_TOO_FAST);	/* 3 a minute */
	CHECK(client_limits_admit(cl, &b, &lim, t) == CLIENT_OK);
	client_limits_error(cl, &b, &lim, t);
	client_limits_error(cl, &b, &lim, t);
	client_limits_release(cl, &b, t);
	CHECK(client_limits_admit(cl, &b, &lim, t + 10) == CLIENT_TOO_MANY_ERRORS);
	CHECK(client_limits_admit(cl, &b, &lim, t + 60) == CLIENT_OK);	/* a new minute */
	client_limits_release(cl, &b, t + 60);
	client_limits_release(cl, &a, t + 60);
	client_limits_release(cl, &a, t + 60);
	CHECK(client_limits_admit(cl, &a, &lim, t + 60) == CLIENT_OK);
	client_limits_release(cl, &a, t + 60);
	/* idle entries go once their minute is over */
	CHECK(client_limits_count(cl) == 2);
	struct client_key c = {4, {192, 0, 2, 3}};
	CHECK(client_limits_admit(cl, &c, &lim, t + 200) == CLIENT_OK);
	CHECK(client_limits_count(cl) <= 3);
	/* a full table lets new clients in untracked */
	for (unsigned char i = 10; i < 20; i++) {
		struct client_key k = {4, {10, 0, 0, i}};
		CHECK(client_limits_admit(cl, &k, &lim, t + 200) == CLIENT_OK);
	}
	CHECK(client_limits_count(cl) == 4);
	client_limits_free(cl);
}

int main(void)
{
	RUN(v1_tcp4_and_tcp6);
	RUN(v1_need_more);
	RUN(v1_invalid);
	RUN(v2);
	RUN(build_round_trip);
	RUN(client_networks);
	RUN(client_limits);
	return unit_done();
}
