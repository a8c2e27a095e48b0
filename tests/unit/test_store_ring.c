/*
 * test_store_ring - filters/redis_ring.c: every key lands on one
 * server, fairly spread; adding a fourth server to three moves about a
 * quarter of the keys, all of them to the new one; removing one moves
 * only its own keys; {tags} place keys together; the same names give
 * the same placement in any order of listing.
 */
#include "redis_ring.h"
#include "unit.h"

#include <stdio.h>
#include <string.h>

#define NKEYS 20000

static size_t picks3[NKEYS];

static const char *key(int i)
{
	static char buf[64];
	snprintf(buf, sizeof(buf), "rep:ip:192.0.2.%d:ham:%d", i % 256, i);
	return buf;
}

TEST(fair_spread)
{
	const char *names[] = {"10.0.0.1:6379", "10.0.0.2:6379", "10.0.0.3:6379"};
	struct redis_ring *r = redis_ring_new(names, 3);
	int count[3] = {0, 0, 0};
	for (int i = 0; i < NKEYS; i++) {
		picks3[i] = redis_ring_pick(r, key(i));
		count[picks3[i]]++;
	}
	for (int s = 0; s < 3; s++)
		CHECK(count[s] > NKEYS / 3 * 0.8 && count[s] < NKEYS / 3 * 1.2);
	redis_ring_free(r);
}

TEST(adding_a_server_moves_a_quarter_to_it)
{
	const char *names[] = {"10.0.0.1:6379", "10.0.0.2:6379", "10.0.0.3:6379", "10.0.0.4:6379"};
	struct redis_ring *r = redis_ring_new(names, 4);
	int moved = 0, wrong = 0;
	for (int i = 0; i < NKEYS; i++) {
		size_t p = redis_ring_pick(r, key(i));
		if (p != picks3[i]) {
			moved++;
			wrong += p != 3;
		}
	}
	CHECK(wrong == 0);
	CHECK(moved > NKEYS / 4 * 0.75 && moved < NKEYS / 4 * 1.25);
	redis_ring_free(r);
}

TEST(removing_a_server_moves_only_its_keys)
{
	const char *names[] = {"10.0.0.1:6379", "10.0.0.3:6379"};	/* .2 gone */
	struct redis_ring *r = redis_ring_new(names, 2);
	int bad = 0;
	for (int i = 0; i < NKEYS; i++) {
		size_t p = redis_ring_pick(r, key(i));
		size_t was = picks3[i];
		if (was == 0)
			bad += p != 0;
		else if (was == 2)
			bad += p != 1;
	}
	CHECK(bad == 0);
	redis_ring_free(r);
}

TEST(order_of_listing_does_not_matter_and_tags_group)
{
	const char *a[] = {"x:1", "y:2", "z:3"}, *b[] = {"z:3", "x:1", "y:2"};
	struct redis_ring *ra = redis_ring_new(a, 3), *rb = redis_ring_new(b, 3);
	int same = 1, together = 1;
	for (int i = 0; i < 2000; i++) {
		same &= strcmp(a[redis_ring_pick(ra, key(i))], b[redis_ring_pick(rb, key(i))]) == 0;
		char k1[64], k2[64];
		snprintf(k1, sizeof(k1), "gl:{%d}:a", i);
		snprintf(k2, sizeof(k2), "other:{%d}", i);
		together &= redis_ring_pick(ra, k1) == redis_ring_pick(ra, k2);
	}
	CHECK(same);
	CHECK(together);
	CHECK(redis_ring_new(a, 0) == NULL);
	redis_ring_free(ra);
	redis_ring_free(rb);
}

int main(void)
{
	RUN(fair_spread);
	RUN(adding_a_server_moves_a_quarter_to_it);
	RUN(removing_a_server_moves_only_its_keys);
	RUN(order_of_listing_does_not_matter_and_tags_group);
	return unit_done();
}
