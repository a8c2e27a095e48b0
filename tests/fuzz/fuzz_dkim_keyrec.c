/*
 * fuzz_dkim_keyrec - libFuzzer target for the DKIM key record parser
 * (filters/dkim_keyrec.c): every key record comes from a DNS answer,
 * untrusted, and its p= goes to OpenSSL's DER decoders.
 *
 * Checks, abort()ing on violation:
 *  - nothing reads outside the input (ASan; it is not NUL-terminated)
 *    and the result is 0 or -1;
 *  - on 0: a key of the record's type (an RSA key of at least 1024 bits,
 *    or Ed25519), not revoked; on -1: no key, a printable reason, and a
 *    revoked record only with p= empty;
 *  - parsing the same text twice gives the same answer.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dkim_keyrec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dkim_keyrec k, k2;
	const char *why = NULL, *why2 = NULL;

	if (size > 8192)
		return 0;
	char *in = malloc(size ? size : 1);
	if (!in)
		return 0;
	memcpy(in, data, size);
	int r = dkim_keyrec_parse(in, size, &k, &why);
	if (r == 0) {
		if (!k.pkey || k.revoked)
			abort();
		int id = EVP_PKEY_get_base_id(k.pkey);
		if (k.type == DKIM_KEYTYPE_RSA && (id != EVP_PKEY_RSA || k.bits < DKIM_RSA_MIN_BITS))
			abort();
		if (k.type == DKIM_KEYTYPE_ED25519 && (id != EVP_PKEY_ED25519 || k.bits != 256))
			abort();
	} else if (r == -1) {
		if (k.pkey || !why || !*why)
			abort();
		for (const char *p = why; *p; p++)
			if (*p < 0x20 || *p > 0x7e)
				abort();
		if (k.revoked && strcmp(why, "key revoked") != 0)
			abort();
	} else {
		abort();
	}
	int r2 = dkim_keyrec_parse(in, size, &k2, &why2);
	if (r2 != r || (r == -1 && strcmp(why, why2) != 0) || k2.bits != k.bits)
		abort();
	dkim_keyrec_clear(&k);
	dkim_keyrec_clear(&k2);
	free(in);
	return 0;
}
