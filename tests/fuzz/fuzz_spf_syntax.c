/*
 * fuzz_spf_syntax - libFuzzer target for the RFC 7208 record syntax
 * check (filters/spf_syntax.c), which the SPF worker runs on every SPF
 * record a DNS answer brings (untrusted, up to 4096 octets).
 *
 * Checks, abort()ing on violation:
 *  - it never reads outside the input (ASan; the input is not
 *    NUL-terminated for it) and always returns 0 or -1;
 *  - on -1 the reason is a NUL-terminated, non-empty, printable ASCII
 *    string within the buffer; on 0 it is empty;
 *  - an accepted record holds only printable ASCII and begins with
 *    "v=spf1" (any case), followed by a space or nothing;
 *  - the result does not depend on the reason buffer (none, tiny, big);
 *  - appending spaces to an accepted record keeps it accepted.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "spf_syntax.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char why[160], tiny[4];
	if (size > 4096)
		return 0;
	char *rec = malloc(size ? size : 1);
	if (!rec)
		return 0;
	memcpy(rec, data, size);
	memset(why, 'Z', sizeof(why));
	int rc = spf_syntax_check(rec, size, why, sizeof(why));
	if (rc != 0 && rc != -1)
		abort();
	size_t n = strnlen(why, sizeof(why));
	if (n == sizeof(why) || (rc == 0) != (n == 0))
		abort();
	for (size_t i = 0; i < n; i++)
		if (why[i] < 0x20 || why[i] > 0x7e)
			abort();
	if (spf_syntax_check(rec, size, NULL, 0) != rc ||
	    spf_syntax_check(rec, size, tiny, sizeof(tiny)) != rc || strnlen(tiny, 4) == 4)
		abort();
	if (rc == 0) {
		if (size < 6 || strncasecmp(rec, "v=spf1", 6) != 0 || (size > 6 && rec[6] != ' '))
			abort();
		for (size_t i = 0; i < size; i++)
			if (rec[i] < 0x20 || rec[i] > 0x7e)
				abort();
		char *sp = malloc(size + 2);
		if (!sp)
			abort();
		memcpy(sp, rec, size);
		sp[size] = sp[size + 1] = ' ';
		if (spf_syntax_check(sp, size + 2, NULL, 0) != 0)
			abort();
		free(sp);
	}
	free(rec);
	return 0;
}
