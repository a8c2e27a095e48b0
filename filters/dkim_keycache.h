/*
 * dkim_keycache.h - parsed DKIM key records, kept by their text, so that
 * mail from a signer seen before does not pay for decoding its key again
 * (base64 and OpenSSL's DER decoders cost about five times the RSA-2048
 * verification itself).
 *
 * The text of a key record is its identity: the same text always parses
 * to the same key, so entries need no TTL (the DNS answer's TTL still
 * decides when the text is looked up again). Only records that parse are
 * kept. A bounded table (DKIM_KEYCACHE_SLOTS entries, the least recently
 * used replaced); thread-safe (moatd's loop and the milter's threads).
 *
 * Owns its entries and their EVP_PKEY references; a caller gets a
 * reference of its own.
 */
#ifndef MOAT_DKIM_KEYCACHE_H
#define MOAT_DKIM_KEYCACHE_H

#include <stddef.h>

#include "dkim_keyrec.h"

#define DKIM_KEYCACHE_SLOTS 256
#define DKIM_KEYCACHE_TEXT_MAX 4096	/* longer records are parsed, not kept */

/* dkim_keyrec_parse() with the cache in front: same arguments, same
 * results; out->pkey is the caller's reference (dkim_keyrec_clear()). */
int dkim_keycache_parse(const char *txt, size_t len, struct dkim_keyrec *out, const char **why);

/* Lookups answered from the cache, and parses, since start. */
void dkim_keycache_stats(unsigned long long *hits, unsigned long long *misses);

#endif
