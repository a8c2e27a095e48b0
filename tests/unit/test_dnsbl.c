/*
 * test_dnsbl - the pure parts of filters/dnsbl.c: query names (reversed
 * IPv4, RFC 5782 IPv6 nibbles, IPv4-mapped clients, name lists), the
 * MAIL FROM and From: domains, codes parsing and matching (exact, range,
 * &bitmask, several, refused codes), classifying answers, TXT
 * sanitising, reply texts, the RFC 5782 section 5 health rules, and
 * config errors through moat_config_load (file:line). Lookups on the
 * wire are in tests/integration/test_dnsbl.py.
 */
#include "dnsbl.h"
#include "unit.h"

#include <arpa/inet.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char dir[] = "/tmp/moat-dnsbl-test.XXXXXX";

static uint32_t ip(const char *s)
{
	struct in_addr a;
	inet_pton(AF_INET, s, &a);
	return ntohl(a.s_addr);
}

/* ---- query names ---- */

TEST(ipv4_reversed)
{
	char q[300];
	CHECK(dnsbl_ip_query("192.0.2.1", "bl.example", q, sizeof(q)) == 4);
	CHECK(strcmp(q, "1.2.0.192.bl.example") == 0);
	CHECK(dnsbl_ip_query("127.0.0.2", "zen.example.org", q, sizeof(q)) == 4);
	CHECK(strcmp(q, "2.0.0.127.zen.example.org") == 0);
	CHECK(dnsbl_ip_query("not an address", "bl.example", q, sizeof(q)) == -1);
	CHECK(dnsbl_ip_query("192.0.2.1", "bl.example", q, 10) == -1);	/* does not fit */
	CHECK(dnsbl_ip_query(NULL, "bl.example", q, sizeof(q)) == -1);
}

TEST(ipv6_nibbles_and_mapped)
{
	char q[300];
	/* RFC 5782 2.4's example */
	CHECK(dnsbl_ip_query("2001:db8:1:2:3:4:567:89ab", "ugly.example.com", q, sizeof(q)) == 6);
	CHECK(strcmp(q, "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2."
			"ugly.example.com") == 0);
	CHECK(dnsbl_ip_query("2001:DB8::5", "bl.example", q, sizeof(q)) == 6);
	CHECK(strcmp(q, "5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2."
			"bl.example") == 0);
	/* an IPv4-mapped client is looked up as IPv4 */
	CHECK(dnsbl_ip_query("::ffff:192.0.2.1", "bl.example", q, sizeof(q)) == 4);
	CHECK(strcmp(q, "1.2.0.192.bl.example") == 0);
	CHECK(dnsbl_ip_query("::FFFF:7F00:5", "bl.example", q, sizeof(q)) == 4);
	CHECK(strcmp(q, "5.0.0.127.bl.example") == 0);
	/* the raw form, for the ::FFFF:7F00:2 test point */
	unsigned char a[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0x7f, 0, 0, 2};
	CHECK(dnsbl_ip6_query(a, "bl.example", q, sizeof(q)) == 0);
	CHECK(strcmp(q, "2.0.0.0.0.0.f.7.f.f.f.f.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0."
			"bl.example") == 0);
	/* 64 + 1 + zone must stay within 253 */
	char zone[200];
	memset(zone, 'a', 63);
	zone[63] = '.';
	memset(zone + 64, 'b', 63);
	zone[127] = '.';
	memset(zone + 128, 'c', 63);
	zone[191] = '\0';
	CHECK(dnsbl_ip_query("2001:db8::1", zone, q, sizeof(q)) == -1);
	CHECK(dnsbl_ip_query("192.0.2.1", zone, q, sizeof(q)) == 4);
}

TEST(name_queries)
{
	char q[300];
	CHECK(dnsbl_name_query("Mail.Example.COM.", "rhs.example", q, sizeof(q)) == 0);
	CHECK(strcmp(q, "mail.example.com.rhs.example") == 0);
	CHECK(dnsbl_name_query("[192.0.2.1]", "rhs.example", q, sizeof(q)) == -1);
	CHECK(dnsbl_name_query("[IPv6:2001:db8::1]", "rhs.example", q, sizeof(q)) == -1);
	CHECK(dnsbl_name_query("192.0.2.1", "rhs.example", q, sizeof(q)) == -1);
	CHECK(dnsbl_name_query("bad name", "rhs.example", q, sizeof(q)) == -1);
	CHECK(dnsbl_name_query("a..b", "rhs.example", q, sizeof(q)) == -1);
	CHECK(dnsbl_name_query("", "rhs.example", q, sizeof(q)) == -1);
	CHECK(dnsbl_name_query(NULL, "rhs.example", q, sizeof(q)) == -1);
}

TEST(domains)
{
	char d[300];
	CHECK(dnsbl_addr_domain("user@Example.ORG", d, sizeof(d)) == 0 &&
	      strcmp(d, "example.org") == 0);
	CHECK(dnsbl_addr_domain("\"a@b\"@x.example.", d, sizeof(d)) == 0 &&
	      strcmp(d, "x.example") == 0);
	CHECK(dnsbl_addr_domain("", d, sizeof(d)) == -1);	/* <> */
	CHECK(dnsbl_addr_domain("postmaster", d, sizeof(d)) == -1);
	CHECK(dnsbl_addr_domain("u@[192.0.2.1]", d, sizeof(d)) == -1);
	CHECK(dnsbl_addr_domain("u@", d, sizeof(d)) == -1);

	static const struct { const char *v, *want; } from[] = {
		{"Some One <some.one@Sender.Example>", "sender.example"},
		{" u@d.example (comment with x@y.example)", "d.example"},
		{"\"x@quoted.example\" <u@d.example>", "d.example"},
		{"(x@c.example) u@d.example", "d.example"},
		{"Folded\r\n <u@folded.example>", "folded.example"},
		{"a@first.example, b@second.example", "first.example"},
		{"group: a@g.example, b@h.example;", "g.example"},
		{"<u@d.example", "d.example"},
		{"undisclosed-recipients:;", NULL},
		{"<>", NULL},
		{"u@[192.0.2.1]", NULL},
	};
	for (size_t i = 0; i < sizeof(from) / sizeof(from[0]); i++) {
		int rc = dnsbl_from_domain(from[i].v, strlen(from[i].v), d, sizeof(d));
		CHECK(from[i].want ? rc == 0 && strcmp(d, from[i].want) == 0 : rc == -1);
		if (from[i].want ? rc != 0 || strcmp(d, from[i].want) != 0 : rc != -1)
			fprintf(stderr, "# From: %s -> rc %d \"%s\"\n", from[i].v, rc, rc ? "" : d);
	}
}

TEST(zone_names_and_symbols)
{
	char z[300], err[200], s[64];
	CHECK(dnsbl_zone_name("Zen.Example.ORG.", z, sizeof(z), err, sizeof(err)) == 0);
	CHECK(strcmp(z, "zen.example.org") == 0);
	CHECK(dnsbl_zone_name("bad..zone", z, sizeof(z), err, sizeof(err)) == -1);
	CHECK(strstr(err, "empty label") != NULL);
	CHECK(dnsbl_zone_name("bad zone", z, sizeof(z), err, sizeof(err)) == -1);
	CHECK(dnsbl_zone_name("", z, sizeof(z), err, sizeof(err)) == -1);
	dnsbl_default_symbol("zen.spam-haus.example", s, sizeof(s));
	CHECK(strcmp(s, "DNSBL_ZEN_SPAM_HAUS_EXAMPLE") == 0);
}

/* ---- codes ---- */

TEST(codes_parse)
{
	struct dnsbl_code c;
	char err[200];
	CHECK(dnsbl_code_parse("127.0.0.2", &c, err, sizeof(err)) == 0);
	CHECK(!c.is_mask && c.lo == ip("127.0.0.2") && c.hi == c.lo && !c.has_score);
	CHECK(dnsbl_code_parse("127.0.0.10-127.0.0.11  -1.5", &c, err, sizeof(err)) == 0);
	CHECK(c.lo == ip("127.0.0.10") && c.hi == ip("127.0.0.11") && c.has_score && c.score == -1.5);
	CHECK(dnsbl_code_parse("&4 2", &c, err, sizeof(err)) == 0);
	CHECK(c.is_mask && c.mask == 4 && c.has_score && c.score == 2);
	CHECK(dnsbl_code_parse("&255", &c, err, sizeof(err)) == 0);

	static const char *const bad[] = {
		"", "10.0.0.1", "127.0.0.3-127.0.0.2", "127.0.0.2-10.0.0.1", "&0", "&256", "&x",
		"&", "127.0.0.2 many", "127.0.0.2 5000", "127.255.255.254", "127.0.0.256",
		"127.0.0.2 1 2",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		CHECK(dnsbl_code_parse(bad[i], &c, err, sizeof(err)) == -1 && err[0]);
	}
}

static void zone_with(struct dnsbl_zone *z, const char *const *codes, size_t n, double score)
{
	char err[200];
	memset(z, 0, sizeof(*z));
	snprintf(z->name, sizeof(z->name), "bl.example");
	z->score = score;
	for (size_t i = 0; i < n; i++)
		dnsbl_code_parse(codes[i], &z->codes[z->ncodes++], err, sizeof(err));
}

TEST(codes_match)
{
	struct dnsbl_zone z;
	double s = 0;
	uint32_t a[4];

	/* no codes: any answer in 127.0.0.0/8 counts once */
	zone_with(&z, NULL, 0, 5);
	a[0] = ip("127.0.0.2"), a[1] = ip("127.0.0.4");
	CHECK(dnsbl_codes_match(&z, a, 2, &s) == 1 && s == 5);
	a[0] = ip("127.255.255.254");
	CHECK(dnsbl_codes_match(&z, a, 1, &s) == 0);	/* refused code */
	a[0] = ip("192.0.2.1");
	CHECK(dnsbl_codes_match(&z, a, 1, &s) == 0);

	/* exact and range, each entry counts once, its own score or the zone's */
	static const char *const exact[] = {"127.0.0.2", "127.0.0.10-127.0.0.11 1.5"};
	zone_with(&z, exact, 2, 3);
	a[0] = ip("127.0.0.2");
	CHECK(dnsbl_codes_match(&z, a, 1, &s) == 1 && s == 3);
	a[0] = ip("127.0.0.3");
	CHECK(dnsbl_codes_match(&z, a, 1, &s) == 0);
	a[0] = ip("127.0.0.11"), a[1] = ip("127.0.0.10");
	CHECK(dnsbl_codes_match(&z, a, 2, &s) == 1 && s == 1.5);
	a[0] = ip("127.0.0.2"), a[1] = ip("127.0.0.10"), a[2] = ip("127.0.0.99");
	CHECK(dnsbl_codes_match(&z, a, 3, &s) == 1 && s == 4.5);

	/* bitmask lists (RFC 5782 2.3): 127.0.0.6 = bits 2 and 4 */
	static const char *const mask[] = {"&2 3", "&4 1", "&8 10"};
	zone_with(&z, mask, 3, 5);
	a[0] = ip("127.0.0.6");
	CHECK(dnsbl_codes_match(&z, a, 1, &s) == 1 && s == 4);
	a[0] = ip("127.0.0.8");
	CHECK(dnsbl_codes_match(&z, a, 1, &s) == 1 && s == 10);
	a[0] = ip("127.0.0.1");
	CHECK(dnsbl_codes_match(&z, a, 1, &s) == 0);
	a[0] = ip("127.255.255.254");	/* a refused code never matches a mask */
	CHECK(dnsbl_codes_match(&z, a, 1, &s) == 0);

	/* allowlist: negative scores */
	static const char *const wl[] = {"127.0.10.0-127.0.10.255 -5"};
	zone_with(&z, wl, 1, -1);
	a[0] = ip("127.0.10.3");
	CHECK(dnsbl_codes_match(&z, a, 1, &s) == 1 && s == -5);
}

static struct moat_dns_answer answer(enum moat_dns_status st, const struct in_addr *a, size_t n)
{
	struct moat_dns_answer ans;
	memset(&ans, 0, sizeof(ans));
	ans.status = st;
	ans.type = MOAT_DNS_A;
	ans.a = a;
	ans.n = n;
	return ans;
}

TEST(classify)
{
	struct dnsbl_zone z;
	struct dnsbl_result r;
	struct in_addr a[3];
	zone_with(&z, NULL, 0, 5);
	memset(&r, 0, sizeof(r));

	inet_pton(AF_INET, "127.0.0.2", &a[0]);
	inet_pton(AF_INET, "127.0.0.4", &a[1]);
	struct moat_dns_answer ans = answer(MOAT_DNS_OK, a, 2);
	dnsbl_classify(&z, &ans, &r);
	CHECK(r.status == DNSBL_LISTED && r.score == 5 && strcmp(r.codes, "127.0.0.2,127.0.0.4") == 0);

	ans = answer(MOAT_DNS_NXDOMAIN, NULL, 0);
	dnsbl_classify(&z, &ans, &r);
	CHECK(r.status == DNSBL_NOT_LISTED);
	ans = answer(MOAT_DNS_NODATA, NULL, 0);
	dnsbl_classify(&z, &ans, &r);
	CHECK(r.status == DNSBL_NOT_LISTED);
	ans = answer(MOAT_DNS_SERVFAIL, NULL, 0);
	dnsbl_classify(&z, &ans, &r);
	CHECK(r.status == DNSBL_FAILED);	/* never "not listed" */
	ans = answer(MOAT_DNS_TIMEOUT, NULL, 0);
	dnsbl_classify(&z, &ans, &r);
	CHECK(r.status == DNSBL_FAILED);

	inet_pton(AF_INET, "127.255.255.254", &a[0]);
	ans = answer(MOAT_DNS_OK, a, 1);
	dnsbl_classify(&z, &ans, &r);
	CHECK(r.status == DNSBL_REFUSED && strcmp(r.codes, "127.255.255.254") == 0);

	inet_pton(AF_INET, "192.0.2.1", &a[0]);
	ans = answer(MOAT_DNS_OK, a, 1);
	dnsbl_classify(&z, &ans, &r);
	CHECK(r.status == DNSBL_OUT_OF_RANGE);

	static const char *const only3[] = {"127.0.0.3"};
	zone_with(&z, only3, 1, 5);
	inet_pton(AF_INET, "127.0.0.2", &a[0]);
	ans = answer(MOAT_DNS_OK, a, 1);
	dnsbl_classify(&z, &ans, &r);
	CHECK(r.status == DNSBL_NOT_LISTED);	/* an answer whose code doesn't count */
}

/* ---- texts ---- */

TEST(txt_sanitize)
{
	char out[300];
	CHECK(dnsbl_txt_sanitize("Listed\r\n250 OK\tsee\x01http://x ", out, sizeof(out)) ==
	      strlen("Listed 250 OK see http://x"));
	CHECK(strcmp(out, "Listed 250 OK see http://x") == 0);
	CHECK(dnsbl_txt_sanitize("caf\xc3\xa9", out, sizeof(out)) == 5 && strcmp(out, "caf??") == 0);
	char big[400];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	CHECK(dnsbl_txt_sanitize(big, out, sizeof(out)) == DNSBL_TXT_MAX);
	CHECK(strlen(out) == DNSBL_TXT_MAX);
	CHECK(dnsbl_txt_sanitize(big, out, 10) == 9 && strlen(out) == 9);
	CHECK(dnsbl_txt_sanitize("  \r\n ", out, sizeof(out)) == 0 && out[0] == '\0');
}

TEST(reply_texts)
{
	struct dnsbl_zone z;
	char out[300], err[300];
	zone_with(&z, NULL, 0, 5);
	dnsbl_reply_text(&z, "192.0.2.1", "Listed at http://bl.example/", out, sizeof(out));
	CHECK(strcmp(out, "5.7.1 Service unavailable; Client host [192.0.2.1] blocked using "
			  "bl.example; Listed at http://bl.example/") == 0);
	dnsbl_reply_text(&z, "192.0.2.1", "", out, sizeof(out));
	CHECK(strcmp(out, "5.7.1 Service unavailable; Client host [192.0.2.1] blocked using "
			  "bl.example") == 0);
	z.kind = DNSBL_HELO;
	dnsbl_reply_text(&z, "mx.example", NULL, out, sizeof(out));
	CHECK(strstr(out, "Helo command [mx.example]") != NULL);
	z.kind = DNSBL_SENDER;
	dnsbl_reply_text(&z, "spam.example", NULL, out, sizeof(out));
	CHECK(strstr(out, "Sender address [spam.example]") != NULL);
	snprintf(z.reject_text, sizeof(z.reject_text), "5.7.1 $value is in $zone: $txt!");
	dnsbl_reply_text(&z, "spam.example", "why", out, sizeof(out));
	CHECK(strcmp(out, "5.7.1 spam.example is in bl.example: why!") == 0);
	dnsbl_reply_text(&z, "spam.example", "why", out, 12);
	CHECK(strcmp(out, "5.7.1 spam.") == 0);

	CHECK(dnsbl_reply_text_check("5.7.1 Blocked $value by $zone: $txt", err,
				     sizeof(err)) == 0);
	CHECK(dnsbl_reply_text_check("4.7.1 Later", err, sizeof(err)) == -1);
	CHECK(dnsbl_reply_text_check("5.7.1", err, sizeof(err)) == -1);
	CHECK(dnsbl_reply_text_check("Blocked", err, sizeof(err)) == -1);
	CHECK(dnsbl_reply_text_check("5.7.1 $addr", err, sizeof(err)) == -1);
	CHECK(strstr(err, "unknown variable") != NULL);
}

/* ---- health ---- */

static struct dnsbl_point pt(enum moat_dns_status st, const char *a)
{
	struct dnsbl_point p;
	memset(&p, 0, sizeof(p));
	p.dns = st;
	if (a) {
		p.a[0] = ip(a);
		p.n = 1;
	}
	return p;
}

TEST(health_rules)
{
	struct dnsbl_zone z;
	struct dnsbl_point p[DNSBL_POINTS];
	char why[300], names[DNSBL_POINTS][DNSBL_NAME_MAX + 1];
	zone_with(&z, NULL, 0, 5);

	CHECK(dnsbl_test_points(&z, names) == 4);
	CHECK(strcmp(names[0], "2.0.0.127.bl.example") == 0);
	CHECK(strcmp(names[1], "1.0.0.127.bl.example") == 0);
	CHECK(strncmp(names[2], "2.0.0.0.0.0.f.7.f.f.f.f.", 24) == 0);
	CHECK(strncmp(names[3], "1.0.0.0.0.0.f.7.f.f.f.f.", 24) == 0);

	p[0] = pt(MOAT_DNS_OK, "127.0.0.2");
	p[1] = pt(MOAT_DNS_NXDOMAIN, NULL);
	p[2] = pt(MOAT_DNS_NXDOMAIN, NULL);	/* no IPv6 test points: fine */
	p[3] = pt(MOAT_DNS_NXDOMAIN, NULL);
	CHECK(dnsbl_health_eval(&z, p, why, sizeof(why)) == DNSBL_HEALTH_OK);
	p[2] = pt(MOAT_DNS_OK, "127.0.0.2");
	CHECK(dnsbl_health_eval(&z, p, why, sizeof(why)) == DNSBL_HEALTH_OK);
	p[3] = pt(MOAT_DNS_OK, "127.0.0.2");	/* ::FFFF:7F00:1 listed */
	CHECK(dnsbl_health_eval(&z, p, why, sizeof(why)) == DNSBL_HEALTH_BROKEN);
	p[2] = p[3] = pt(MOAT_DNS_NXDOMAIN, NULL);

	p[1] = pt(MOAT_DNS_OK, "127.0.0.2");	/* lists everything */
	CHECK(dnsbl_health_eval(&z, p, why, sizeof(why)) == DNSBL_HEALTH_BROKEN);
	CHECK(strstr(why, "1.0.0.127.bl.example is listed") != NULL);
	p[1] = pt(MOAT_DNS_NXDOMAIN, NULL);
	p[0] = pt(MOAT_DNS_NXDOMAIN, NULL);	/* test point missing */
	CHECK(dnsbl_health_eval(&z, p, why, sizeof(why)) == DNSBL_HEALTH_BROKEN);
	CHECK(strstr(why, "2.0.0.127.bl.example is not listed") != NULL);
	p[0] = pt(MOAT_DNS_OK, "192.0.2.1");	/* a squatted domain */
	CHECK(dnsbl_health_eval(&z, p, why, sizeof(why)) == DNSBL_HEALTH_BROKEN);
	CHECK(strstr(why, "outside 127.0.0.0/8") != NULL);
	p[0] = pt(MOAT_DNS_SERVFAIL, NULL);	/* a failure: state unknown */
	CHECK(dnsbl_health_eval(&z, p, why, sizeof(why)) == DNSBL_HEALTH_UNKNOWN);
	p[0] = pt(MOAT_DNS_TIMEOUT, NULL);
	CHECK(dnsbl_health_eval(&z, p, why, sizeof(why)) == DNSBL_HEALTH_UNKNOWN);
	p[0] = pt(MOAT_DNS_OK, "127.255.255.254");	/* the list refuses us */
	CHECK(dnsbl_health_eval(&z, p, why, sizeof(why)) == DNSBL_HEALTH_UNKNOWN);
	CHECK(strstr(why, "refused") != NULL);

	z.kind = DNSBL_SENDER;
	CHECK(dnsbl_test_points(&z, names) == 2);
	CHECK(strcmp(names[0], "test.bl.example") == 0 && strcmp(names[1], "invalid.bl.example") == 0);
	p[0] = pt(MOAT_DNS_OK, "127.0.0.2");
	p[1] = pt(MOAT_DNS_NXDOMAIN, NULL);
	CHECK(dnsbl_health_eval(&z, p, why, sizeof(why)) == DNSBL_HEALTH_OK);
	p[1] = pt(MOAT_DNS_OK, "127.0.0.2");
	CHECK(dnsbl_health_eval(&z, p, why, sizeof(why)) == DNSBL_HEALTH_BROKEN);
}

/* ---- configuration ---- */

static int load(const char *text, struct moat_config **c, struct moat_config_errors *e,
		char *path, size_t pathlen)
{
	snprintf(path, pathlen, "%s/moat.conf", dir);
	FILE *f = fopen(path, "w");
	if (!f)
		return -1;
	fprintf(f, "listener in {\n    listen = \"127.0.0.1:2525\"\n"
		"    upstream = \"127.0.0.1:10025\"\n}\nfilters = {\"dnsbl\"}\n%s", text);
	fclose(f);
	return moat_config_load(path, NULL, 0, c, e);
}

static int has_error(const struct moat_config_errors *e, const char *want)
{
	for (size_t i = 0; i < e->n; i++)
		if (strstr(e->msg[i], want))
			return 1;
	return 0;
}

TEST(config_good)
{
	struct moat_config *c = NULL;
	struct moat_config_errors e;
	char path[600];
	CHECK(load("dnsbl {\n"
		   "    wait = 500\n"
		   "    zone Zen.Example.ORG {\n"
		   "        codes = {\"127.0.0.2\", \"127.0.0.10-127.0.0.11 1\", \"&4 2\"}\n"
		   "    }\n"
		   "    zone wl.example {\n"
		   "        action = \"score\"\n"
		   "        score = -5\n"
		   "        symbol = \"MY_WL\"\n"
		   "        txt = no\n"
		   "    }\n"
		   "    zone rhs.example {\n"
		   "        lookup = \"sender\"\n"
		   "        reject_text = \"5.7.1 $value is listed\"\n"
		   "    }\n"
		   "}\n", &c, &e, path, sizeof(path)) == 0);
	for (size_t i = 0; i < e.n; i++)
		fprintf(stderr, "# %s\n", e.msg[i]);
	const struct dnsbl_conf *d = c ? moat_config_section(c, "dnsbl") : NULL;
	CHECK(d && d->nzones == 3 && d->wait == 500 && d->recheck == 3600);
	if (d && d->nzones == 3) {
		CHECK(strcmp(d->zones[0].name, "zen.example.org") == 0);
		CHECK(strcmp(d->zones[0].symbol, "DNSBL_ZEN_EXAMPLE_ORG") == 0);
		CHECK(d->zones[0].kind == DNSBL_CLIENT && d->zones[0].reject && d->zones[0].txt);
		CHECK(d->zones[0].ncodes == 3 && d->zones[0].codes[2].is_mask);
		CHECK(d->zones[0].score == 5);
		CHECK(!d->zones[1].reject && d->zones[1].score == -5 && !d->zones[1].txt);
		CHECK(strcmp(d->zones[1].symbol, "MY_WL") == 0);
		CHECK(d->zones[2].kind == DNSBL_SENDER);
		CHECK(strcmp(d->zones[2].reject_text, "5.7.1 $value is listed") == 0);
	}
	moat_config_errors_free(&e);
	moat_config_unref(c);
}

TEST(config_errors_name_file_and_line)
{
	struct moat_config *c = NULL;
	struct moat_config_errors e;
	char path[600], want[700];
	/* lines: 1-4 listener, 5 filters, 6 dnsbl { */
	CHECK(load("dnsbl {\n"					/* 6 */
		   "    wait = 20000\n"				/* 7 */
		   "    zone bl.example {\n"			/* 8 */
		   "        codes = {\"127.0.0.2\", \"&300\"}\n"	/* 9 */
		   "        reject_text = \"4.7.1 later\"\n"	/* 10 */
		   "        lookup = \"address\"\n"		/* 11 */
		   "        symbol = \"bad-symbol\"\n"		/* 12 */
		   "    }\n"
		   "    zone BL.example. {\n"			/* 14 */
		   "        codes = {\"10.0.0.1\"}\n"		/* 15 */
		   "    }\n"
		   "}\n", &c, &e, path, sizeof(path)) == -1);
	CHECK(c == NULL);
	snprintf(want, sizeof(want), "%s:9: dnsbl: zone bl.example: codes: entry 2 \"&300\"", path);
	CHECK(has_error(&e, want));
	snprintf(want, sizeof(want), "%s:10: dnsbl: zone bl.example: reject_text:", path);
	CHECK(has_error(&e, want));
	snprintf(want, sizeof(want), "%s:11: lookup: expected one of \"client\"", path);
	CHECK(has_error(&e, want));
	snprintf(want, sizeof(want), "%s:12: dnsbl: zone bl.example: symbol:", path);
	CHECK(has_error(&e, want));
	snprintf(want, sizeof(want), "%s:15: dnsbl: zone BL.example.: codes: entry 1 \"10.0.0.1\"",
		 path);
	CHECK(has_error(&e, want));
	CHECK(has_error(&e, "configured twice"));
	snprintf(want, sizeof(want), "%s:7: dnsbl: wait:", path);
	CHECK(has_error(&e, want));
	if (e.n != 7)
		for (size_t i = 0; i < e.n; i++)
			fprintf(stderr, "# %s\n", e.msg[i]);
	CHECK(e.n == 7);
	moat_config_errors_free(&e);
}

TEST(config_shipped)
{
	struct moat_config *c = NULL;
	struct moat_config_errors e;
	char path[600], text[4200], root[4096];
	CHECK(realpath("conf/dnsbl.conf", root) != NULL);	/* run from the repo root */
	snprintf(text, sizeof(text), "include(\"%s\")\n", root);
	CHECK(load(text, &c, &e, path, sizeof(path)) == 0);
	for (size_t i = 0; i < e.n; i++)
		fprintf(stderr, "# %s\n", e.msg[i]);
	const struct dnsbl_conf *d = c ? moat_config_section(c, "dnsbl") : NULL;
	CHECK(d && d->nzones == 0 && d->wait == 2000);
	moat_config_errors_free(&e);
	moat_config_unref(c);
}

int main(void)
{
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	dnsbl_register();
	moat_filters_register_builtin();	/* resolver, scoring: as moatd has them */

	RUN(ipv4_reversed);
	RUN(ipv6_nibbles_and_mapped);
	RUN(name_queries);
	RUN(domains);
	RUN(zone_names_and_symbols);
	RUN(codes_parse);
	RUN(codes_match);
	RUN(classify);
	RUN(txt_sanitize);
	RUN(reply_texts);
	RUN(health_rules);
	RUN(config_good);
	RUN(config_errors_name_file_and_line);
	RUN(config_shipped);

	char cmd[700];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "# could not remove %s\n", dir);
	return unit_done();
}
