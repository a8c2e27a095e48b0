/*
 * test_dns_cache - the shared DNS cache's value format (filters/resolver.c,
 * documented in docs/redis-keys.md): what is encoded decodes to the same
 * entry, and values that no fresh answer could produce are refused.
 */
#include <string.h>
#include <stdlib.h>

#include "resolver.h"
#include "unit.h"

TEST(round_trip_records)
{
	const unsigned char a[] = {127, 0, 0, 2}, b[] = {127, 0, 0, 10};
	const unsigned char *raw[] = {a, b};
	size_t len[] = {4, 4}, vlen;
	struct moat_dns_cached c = {MOAT_DNS_OK, 0, 1, 1800000000LL}, d;
	char *v = moat_dns_cache_encode(&c, 2, raw, len, &vlen);
	const unsigned char *rd[4];
	size_t rl[4];
	CHECK(v != NULL);
	CHECK(vlen > 20 && memcmp(v, "moat-dns 1 ok 0 1 1800000000\n4:", 31) == 0);
	CHECK(moat_dns_cache_decode(v, vlen, &d, rd, rl, 4) == 2);
	CHECK(d.status == MOAT_DNS_OK && d.rcode == 0 && d.secure == 1 && d.expires == 1800000000LL);
	CHECK(rl[0] == 4 && memcmp(rd[0], a, 4) == 0 && rl[1] == 4 && memcmp(rd[1], b, 4) == 0);
	/* too many records for the caller's arrays: refused, not cut */
	CHECK(moat_dns_cache_decode(v, vlen, &d, rd, rl, 1) == -1);
	/* a value cut short */
	CHECK(moat_dns_cache_decode(v, vlen - 1, &d, rd, rl, 4) == -1);
	free(v);
}

TEST(round_trip_negative)
{
	struct moat_dns_cached c = {MOAT_DNS_NXDOMAIN, 3, 0, 1700000000LL}, d;
	size_t vlen;
	char *v = moat_dns_cache_encode(&c, 0, NULL, NULL, &vlen);
	const unsigned char *rd[1];
	size_t rl[1];
	CHECK(v && vlen == strlen("moat-dns 1 nxdomain 3 0 1700000000\n"));
	CHECK(moat_dns_cache_decode(v, vlen, &d, rd, rl, 1) == 0);
	CHECK(d.status == MOAT_DNS_NXDOMAIN && d.rcode == 3 && d.expires == 1700000000LL);
	free(v);
}

TEST(txt_with_newline_inside)
{
	/* record octets are length-counted: a newline inside is data */
	const unsigned char t[] = "\x05" "a\nb c";
	const unsigned char *raw[] = {t};
	size_t len[] = {6}, vlen;
	struct moat_dns_cached c = {MOAT_DNS_OK, 0, 0, 1800000000LL}, d;
	char *v = moat_dns_cache_encode(&c, 1, raw, len, &vlen);
	const unsigned char *rd[2];
	size_t rl[2];
	CHECK(moat_dns_cache_decode(v, vlen, &d, rd, rl, 2) == 1);
	CHECK(rl[0] == 6 && memcmp(rd[0], t, 6) == 0);
	free(v);
}

TEST(refused_values)
{
	const unsigned char *rd[4];
	size_t rl[4];
	struct moat_dns_cached d;
	static const char *const bad[] = {
		"",
		"moat-dns 2 ok 0 0 1\n1:x\n",		/* another version */
		"moat-dns 1 ok 0 0 1\n",		/* ok without records */
		"moat-dns 1 nxdomain 3 0 1\n1:x\n",	/* records with nxdomain */
		"moat-dns 1 servfail 2 0 1\n",		/* failures are never cached */
		"moat-dns 1 timeout 0 0 1\n",
		"moat-dns 1 ok 0 2 1\n1:x\n",		/* secure is 0 or 1 */
		"moat-dns 1 ok 0 0 1\n2:x\n",		/* length past the end */
		"moat-dns 1 ok 0 0 1\n1:xy",		/* no newline after the record */
		"moat-dns 1 ok 0 0 1\nx:x\n",		/* no length */
		"moat-dns 1 ok 0 0 1",			/* no end of header */
		"moat-dns 1 ok -1 0 1\n1:x\n",		/* rcode out of range */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK(moat_dns_cache_decode(bad[i], strlen(bad[i]), &d, rd, rl, 4) == -1);
	const char *good = "moat-dns 1 ok 0 0 1\n1:x\n";
	CHECK(moat_dns_cache_decode(good, strlen(good), &d, rd, rl, 4) == 1);
}

int main(void)
{
	RUN(round_trip_records);
	RUN(round_trip_negative);
	RUN(txt_with_newline_inside);
	RUN(refused_values);
	return unit_done();
}
