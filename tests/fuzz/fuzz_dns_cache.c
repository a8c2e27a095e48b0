/*
 * fuzz_dns_cache - libFuzzer target for the shared DNS cache's value
 * decoder (moat_dns_cache_decode() in filters/resolver.c): every value
 * comes back from Redis, which other hosts write to.
 *
 * Checks, abort()ing on violation:
 *  - nothing reads outside the input (ASan; it is not NUL-terminated);
 *  - a decoded entry is one a fresh answer can be: records exactly when
 *    its status is ok, and only ok, nxdomain or nodata; every record
 *    lies inside the input;
 *  - encoding what was decoded and decoding that again gives the same
 *    entry and records.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "resolver.h"

#define MAXREC 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const unsigned char *rd[MAXREC], *rd2[MAXREC];
	size_t rl[MAXREC], rl2[MAXREC], len2;
	struct moat_dns_cached c, c2;

	if (size > 65536)
		return 0;
	char *in = malloc(size ? size : 1);
	if (!in)
		return 0;
	memcpy(in, data, size);
	int n = moat_dns_cache_decode(in, size, &c, rd, rl, MAXREC);
	if (n >= 0) {
		if ((c.status == MOAT_DNS_OK) != (n > 0) ||
		    (c.status != MOAT_DNS_OK && c.status != MOAT_DNS_NXDOMAIN &&
		     c.status != MOAT_DNS_NODATA))
			abort();
		for (int i = 0; i < n; i++)
			if ((const char *)rd[i] < in || (const char *)rd[i] + rl[i] > in + size)
				abort();
		char *v = moat_dns_cache_encode(&c, (size_t)n, rd, rl, &len2);
		if (!v)
			abort();
		int n2 = moat_dns_cache_decode(v, len2, &c2, rd2, rl2, MAXREC);
		if (n2 != n || c2.status != c.status || c2.rcode != c.rcode ||
		    c2.secure != c.secure || c2.expires != c.expires)
			abort();
		for (int i = 0; i < n; i++)
			if (rl2[i] != rl[i] || memcmp(rd2[i], rd[i], rl[i]) != 0)
				abort();
		free(v);
	}
	free(in);
	return 0;
}
