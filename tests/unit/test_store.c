/*
 * test_store - filters/store_memory.c: get/set/incr/del, answers only
 * from the loop, expiry by TTL, least-recently-used eviction, cancel.
 */
#include "store.h"
#include "unit.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct event_base *base;
static int ncalls;
static enum moat_store_status last_st;
static char last_val[256];
static long long last_num;

static void cb(void *arg, enum moat_store_status st, const char *value, size_t len,
	       long long number)
{
	(void)arg;
	ncalls++;
	last_st = st;
	last_num = number;
	last_val[0] = '\0';
	if (value && len < sizeof(last_val)) {
		memcpy(last_val, value, len);
		last_val[len] = '\0';
	}
}

static void run(void)
{
	event_base_loop(base, EVLOOP_NONBLOCK);
}

TEST(set_get_missing_del)
{
	struct moat_store *s = moat_store_memory_new(base, 100);
	ncalls = 0;
	moat_store_set(s, "k1", "hello", 5, 0, cb, NULL);
	CHECK(ncalls == 0);		/* never from inside the call */
	run();
	CHECK(ncalls == 1 && last_st == MOAT_STORE_OK);
	moat_store_get(s, "k1", cb, NULL);
	run();
	CHECK(last_st == MOAT_STORE_OK && strcmp(last_val, "hello") == 0);
	moat_store_get(s, "nope", cb, NULL);
	run();
	CHECK(last_st == MOAT_STORE_MISSING);
	moat_store_del(s, "k1", cb, NULL);
	run();
	CHECK(last_st == MOAT_STORE_OK);
	moat_store_get(s, "k1", cb, NULL);
	run();
	CHECK(last_st == MOAT_STORE_MISSING);
	moat_store_free(s);
}

TEST(incr_counts_and_keeps_first_ttl)
{
	struct moat_store *s = moat_store_memory_new(base, 100);
	moat_store_incr(s, "c", 1, 1, cb, NULL);
	run();
	CHECK(last_st == MOAT_STORE_OK && last_num == 1);
	moat_store_incr(s, "c", 5, 100, cb, NULL);	/* TTL stays 1 s */
	run();
	CHECK(last_num == 6);
	moat_store_set(s, "text", "abc", 3, 0, NULL, NULL);
	moat_store_incr(s, "text", 1, 0, cb, NULL);
	run();
	CHECK(last_st == MOAT_STORE_UNAVAILABLE);	/* not an integer */
	usleep(1100 * 1000);
	moat_store_get(s, "c", cb, NULL);
	run();
	CHECK(last_st == MOAT_STORE_MISSING);
	moat_store_free(s);
}

TEST(lru_eviction)
{
	struct moat_store *s = moat_store_memory_new(base, 3);
	moat_store_set(s, "a", "1", 1, 0, NULL, NULL);
	moat_store_set(s, "b", "2", 1, 0, NULL, NULL);
	moat_store_set(s, "c", "3", 1, 0, NULL, NULL);
	moat_store_get(s, "a", NULL, NULL);	/* a is now the most recent */
	moat_store_set(s, "d", "4", 1, 0, NULL, NULL);	/* evicts b */
	run();
	moat_store_get(s, "b", cb, NULL);
	run();
	CHECK(last_st == MOAT_STORE_MISSING);
	moat_store_get(s, "a", cb, NULL);
	run();
	CHECK(last_st == MOAT_STORE_OK && strcmp(last_val, "1") == 0);
	moat_store_free(s);
}

TEST(cancel_and_free_with_pending)
{
	struct moat_store *s = moat_store_memory_new(base, 10);
	ncalls = 0;
	struct moat_store_op *op = moat_store_get(s, "x", cb, NULL);
	moat_store_cancel(s, op);
	run();
	CHECK(ncalls == 0);
	moat_store_get(s, "x", cb, NULL);
	moat_store_free(s);		/* pending answers dropped, nothing leaks */
	run();
	CHECK(ncalls == 0);
}

int main(void)
{
	base = event_base_new();
	RUN(set_get_missing_del);
	RUN(incr_counts_and_keeps_first_ttl);
	RUN(lru_eviction);
	RUN(cancel_and_free_with_pending);
	event_base_free(base);
	return unit_done();
}
