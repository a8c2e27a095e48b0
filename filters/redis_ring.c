/*
 * redis_ring.c - the consistent-hash ring of redis_ring.h.
 *
 * Points are the hashes of "NAME#i" for i below REDIS_RING_VNODES,
 * sorted; a lookup is a binary search. The hash is 64-bit FNV-1a
 * followed by a strong final mix (the MurmurHash3 finalizer), so short,
 * similar names still spread evenly. Owns the array of points.
 */
#include "redis_ring.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fnv.h"

struct point {
	uint64_t h;
	size_t server;
};

struct redis_ring {
	struct point *p;
	size_t n;
};

uint64_t redis_ring_hash(const void *data, size_t len)
{
	/* this basis (not FNV's own) decides where keys live: keep it */
	uint64_t h = moat_fnv1a_add(1469598103934665603ull, data, len);
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ull;
	h ^= h >> 33;
	return h;
}

static int cmp_point(const void *a, const void *b)
{
	const struct point *x = a, *y = b;
	if (x->h != y->h)
		return x->h < y->h ? -1 : 1;
	return x->server < y->server ? -1 : x->server > y->server;
}

struct redis_ring *redis_ring_new(const char *const *names, size_t n)
{
	if (n == 0)
		return NULL;
	struct redis_ring *ring = calloc(1, sizeof(*ring));
	if (!ring || !(ring->p = calloc(n * REDIS_RING_VNODES, sizeof(*ring->p)))) {
		free(ring);
		return NULL;
	}
	for (size_t s = 0; s < n; s++)
		for (size_t i = 0; i < REDIS_RING_VNODES; i++) {
			char buf[600];
			int len = snprintf(buf, sizeof(buf), "%s#%zu", names[s], i);
			if (len < 0 || (size_t)len >= sizeof(buf))
				len = (int)sizeof(buf) - 1;
			ring->p[ring->n].h = redis_ring_hash(buf, (size_t)len);
			ring->p[ring->n++].server = s;
		}
	qsort(ring->p, ring->n, sizeof(*ring->p), cmp_point);
	return ring;
}

void redis_ring_free(struct redis_ring *ring)
{
	if (!ring)
		return;
	free(ring->p);
	free(ring);
}

size_t redis_ring_pick(const struct redis_ring *ring, const char *key)
{
	const char *open = strchr(key, '{'), *close = open ? strchr(open + 1, '}') : NULL;
	uint64_t h = close && close > open + 1 ? redis_ring_hash(open + 1, (size_t)(close - open - 1))
					       : redis_ring_hash(key, strlen(key));
	size_t lo = 0, hi = ring->n;	/* first point with p.h >= h */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (ring->p[mid].h < h)
			lo = mid + 1;
		else
			hi = mid;
	}
	return ring->p[lo == ring->n ? 0 : lo].server;
}
