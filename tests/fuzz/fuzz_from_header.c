/*
 * fuzz_from_header - libFuzzer target for the From: reader
 * (filters/from_header.c), which DMARC and the DKIM signing table both
 * use: every From field comes from the sender, untrusted.
 *
 * The input is read as one field value and as a header block. Checks,
 * abort()ing on violation:
 *  - nothing reads outside the input (ASan; it is not NUL-terminated);
 *  - a status of the enum, and a printable problem text for it;
 *  - on OK a non-empty domain of at most 253 octets, lower case, and a
 *    local part of at most 64 octets, lower case; otherwise both empty;
 *  - the value "From: " + input as a block gives the same as the value.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "from_header.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(enum moat_from_status st, const struct moat_from *f)
{
	const char *p = moat_from_problem(st);
	if (st < MOAT_FROM_OK || st > MOAT_FROM_TOO_LONG || !p)
		abort();
	size_t dl = strnlen(f->domain, sizeof(f->domain)), ll = strnlen(f->local, sizeof(f->local));
	if (dl >= sizeof(f->domain) || ll >= sizeof(f->local))
		abort();
	if (st != MOAT_FROM_OK && (dl || ll))
		abort();
	if (st == MOAT_FROM_OK && (dl == 0 || dl > MOAT_FROM_DOMAIN_MAX))
		abort();
	for (size_t i = 0; i < dl; i++)
		if (f->domain[i] >= 'A' && f->domain[i] <= 'Z')
			abort();
	for (size_t i = 0; i < ll; i++)
		if (f->local[i] >= 'A' && f->local[i] <= 'Z')
			abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct moat_from a, b, c;

	if (size > 8192)
		return 0;
	char *in = malloc(size ? size : 1);
	if (!in)
		return 0;
	memcpy(in, data, size);
	enum moat_from_status sa = moat_from_value(in, size, &a);
	check(sa, &a);
	enum moat_from_status sb = moat_from_block(in, size, &b);
	check(sb, &b);
	/* one field "From:" + a value without line breaks, as a block */
	if (!memchr(in, '\n', size) && !memchr(in, '\r', size) && size <= 4000) {
		char *blk = malloc(size + 8);
		if (!blk)
			abort();
		memcpy(blk, "From:", 5);
		memcpy(blk + 5, in, size);
		memcpy(blk + 5 + size, "\r\n", 2);
		enum moat_from_status sc = moat_from_block(blk, size + 7, &c);
		check(sc, &c);
		if (sc != sa || strcmp(c.domain, a.domain) != 0 || strcmp(c.local, a.local) != 0)
			abort();
		free(blk);
	}
	free(in);
	return 0;
}
