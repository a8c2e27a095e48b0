/*
 * redis_ring.h - a consistent-hash ring that spreads keys over several
 * Redis servers (redis_ring.c).
 *
 * Each server gets many points on a 64-bit ring (virtual nodes); a key
 * belongs to the first point at or after its hash. Adding or removing
 * one of N servers moves about 1/N of the keys and leaves the others
 * where they were. A key with a non-empty {tag} is placed by the tag
 * alone (as Redis Cluster's hash tags), so keys that must live together
 * can.
 *
 * The ring owns its points; it knows servers by index only.
 */
#ifndef MOAT_REDIS_RING_H
#define MOAT_REDIS_RING_H

#include <stddef.h>
#include <stdint.h>

struct redis_ring;

#define REDIS_RING_VNODES 160	/* points per server */

/* A ring over n servers named names[i] (their "host:port"; the names,
 * not the order, decide the points). NULL when out of memory or n is 0. */
struct redis_ring *redis_ring_new(const char *const *names, size_t n);
void redis_ring_free(struct redis_ring *ring);

/* The index of the server that holds key. */
size_t redis_ring_pick(const struct redis_ring *ring, const char *key);

/* The 64-bit hash used for keys and points. */
uint64_t redis_ring_hash(const void *data, size_t len);

#endif
