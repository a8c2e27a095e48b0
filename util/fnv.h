/*
 * fnv.h - the FNV-1a hash (64-bit), for moat's in-memory tables (the
 * memory store, the resolver's hot answers, the DKIM key cache, metrics
 * series, per-client limits) and the Redis hash ring. Not for anything an
 * attacker must not be able to collide on purpose: every table using it
 * stays bounded whatever the keys.
 *
 *	h = moat_fnv1a(data, len);
 *	h = moat_fnv1a_add(h, more, morelen);	(continues a hash)
 *
 * Header-only; owns nothing.
 */
#ifndef MOAT_FNV_H
#define MOAT_FNV_H

#include <stddef.h>
#include <stdint.h>

#define MOAT_FNV1A_BASIS 14695981039346656037ULL

static inline uint64_t moat_fnv1a_add(uint64_t h, const void *data, size_t len)
{
	const unsigned char *p = data;
	for (size_t i = 0; i < len; i++)
		h = (h ^ p[i]) * 1099511628211ULL;
	return h;
}

static inline uint64_t moat_fnv1a(const void *data, size_t len)
{
	return moat_fnv1a_add(MOAT_FNV1A_BASIS, data, len);
}

#endif
