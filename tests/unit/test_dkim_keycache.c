/*
 * test_dkim_keycache - parsed key records kept by their text
 * (filters/dkim_keycache.c): a record seen before is a hit and gives the
 * same key with a reference of its own; records that do not parse are
 * not kept; the table stays bounded and keeps the recently used.
 */
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

#include "dkim_keycache.h"
#include "unit.h"

/* An Ed25519 key record whose 32 key octets are all n (any 32 octets are
 * a valid Ed25519 public key to OpenSSL). */
static void ed_record(unsigned n, char *out, size_t len)
{
	unsigned char raw[32], b64[64];
	memset(raw, (int)(n & 0xff), sizeof(raw));
	raw[0] = (unsigned char)(n >> 8);
	EVP_EncodeBlock(b64, raw, sizeof(raw));
	snprintf(out, len, "v=DKIM1; k=ed25519; p=%s", b64);
}

static unsigned long long hits(void)
{
	unsigned long long h, m;
	dkim_keycache_stats(&h, &m);
	return h;
}

TEST(second_parse_is_a_hit_with_its_own_reference)
{
	char t[128];
	struct dkim_keyrec a, b;
	const char *why;
	ed_record(1, t, sizeof(t));
	unsigned long long h0 = hits();
	CHECK(dkim_keycache_parse(t, strlen(t), &a, &why) == 0);
	CHECK(hits() == h0);
	CHECK(dkim_keycache_parse(t, strlen(t), &b, &why) == 0);
	CHECK(hits() == h0 + 1);
	CHECK(a.pkey && b.pkey && EVP_PKEY_eq(a.pkey, b.pkey) == 1);
	CHECK(a.type == DKIM_KEYTYPE_ED25519 && b.type == DKIM_KEYTYPE_ED25519 && b.bits == 256);
	dkim_keyrec_clear(&a);	/* b's reference stays valid (ASan would tell) */
	CHECK(EVP_PKEY_get_bits(b.pkey) == 253 || EVP_PKEY_get_bits(b.pkey) == 256);
	dkim_keyrec_clear(&b);
	/* and the cached one is still there */
	CHECK(dkim_keycache_parse(t, strlen(t), &a, &why) == 0 && hits() == h0 + 2);
	dkim_keyrec_clear(&a);
}

TEST(bad_records_not_kept)
{
	const char *bad = "v=DKIM1; k=rsa; p=AAAA";
	struct dkim_keyrec a;
	const char *why = NULL;
	unsigned long long h0 = hits();
	CHECK(dkim_keycache_parse(bad, strlen(bad), &a, &why) == -1 && why && !a.pkey);
	CHECK(dkim_keycache_parse(bad, strlen(bad), &a, &why) == -1 && !a.pkey);
	CHECK(hits() == h0);
}

TEST(bounded_keeps_recently_used)
{
	char t[128], hot[128];
	struct dkim_keyrec k;
	const char *why;
	ed_record(1000, hot, sizeof(hot));
	CHECK(dkim_keycache_parse(hot, strlen(hot), &k, &why) == 0);
	dkim_keyrec_clear(&k);
	for (unsigned i = 0; i < 3 * DKIM_KEYCACHE_SLOTS; i++) {
		ed_record(2000 + i, t, sizeof(t));
		CHECK(dkim_keycache_parse(t, strlen(t), &k, &why) == 0);
		dkim_keyrec_clear(&k);
		if (i % 16 == 0) {	/* keep the hot one in use */
			CHECK(dkim_keycache_parse(hot, strlen(hot), &k, &why) == 0);
			dkim_keyrec_clear(&k);
		}
	}
	unsigned long long h0 = hits();
	CHECK(dkim_keycache_parse(hot, strlen(hot), &k, &why) == 0 && hits() == h0 + 1);
	dkim_keyrec_clear(&k);
	ed_record(2000, t, sizeof(t));	/* long evicted */
	CHECK(dkim_keycache_parse(t, strlen(t), &k, &why) == 0 && hits() == h0 + 1);
	dkim_keyrec_clear(&k);
}

int main(void)
{
	RUN(second_parse_is_a_hit_with_its_own_reference);
	RUN(bad_records_not_kept);
	RUN(bounded_keeps_recently_used);
	return unit_done();
}
