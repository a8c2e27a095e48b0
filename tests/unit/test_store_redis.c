/*
 * test_store_redis - filters/store_redis.c against a real redis-server
 * it starts on a free loopback port: get/set/incr with TTL/del; a
 * stalled server (SIGSTOP) answers UNAVAILABLE at the deadline; a dead
 * one too, at once; the store reconnects by itself when it is back;
 * key_prefix and the database number.
 */
#include "store_redis.h"
#include "unit.h"

#include <event2/event.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static struct event_base *base;
static int port;
static pid_t server;
static int got;
static enum moat_store_status st;
static char val[128];
static long long num;

static void cb(void *arg, enum moat_store_status s, const char *v, size_t len, long long n)
{
	(void)arg;
	got = 1;
	st = s;
	num = n;
	val[0] = '\0';
	if (v && len < sizeof(val)) {
		memcpy(val, v, len);
		val[len] = '\0';
	}
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Runs the loop until the callback ran (or 5 s). Returns the seconds. */
static double wait_answer(void)
{
	double t0 = now();
	while (!got && now() - t0 < 5)
		event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK), usleep(1000);
	return now() - t0;
}

static void spin(double seconds)
{
	double t0 = now();
	while (now() - t0 < seconds)
		event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK), usleep(1000);
}

static int free_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t l = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	bind(fd, (struct sockaddr *)&a, sizeof(a));
	getsockname(fd, (struct sockaddr *)&a, &l);
	close(fd);
	return ntohs(a.sin_port);
}

static void start_server(void)
{
	char p[16];
	snprintf(p, sizeof(p), "%d", port);
	server = fork();
	if (server == 0) {
		freopen("/dev/null", "w", stdout);
		execlp("redis-server", "redis-server", "--port", p, "--bind", "127.0.0.1",
		       "--save", "", "--appendonly", "no", (char *)NULL);
		_exit(127);
	}
	usleep(300 * 1000);
}

static void stop_server(void)
{
	kill(server, SIGKILL);
	waitpid(server, NULL, 0);
}

static struct moat_store *s;

TEST(roundtrip)
{
	got = 0;
	moat_store_set(s, "moat:test:k", "v1", 2, 0, cb, NULL);
	wait_answer();
	CHECK(got && st == MOAT_STORE_OK);
	got = 0;
	moat_store_get(s, "moat:test:k", cb, NULL);
	wait_answer();
	CHECK(st == MOAT_STORE_OK && strcmp(val, "v1") == 0);
	got = 0;
	moat_store_get(s, "moat:test:none", cb, NULL);
	wait_answer();
	CHECK(st == MOAT_STORE_MISSING);
	got = 0;
	moat_store_incr(s, "moat:test:c", 2, 1, cb, NULL);
	wait_answer();
	CHECK(st == MOAT_STORE_OK && num == 2);
	got = 0;
	moat_store_incr(s, "moat:test:c", 3, 100, cb, NULL);
	wait_answer();
	CHECK(num == 5);
	spin(1.2);		/* the first TTL (1 s) stayed */
	got = 0;
	moat_store_get(s, "moat:test:c", cb, NULL);
	wait_answer();
	CHECK(st == MOAT_STORE_MISSING);
	got = 0;
	moat_store_del(s, "moat:test:k", cb, NULL);
	wait_answer();
	CHECK(st == MOAT_STORE_OK);
}

TEST(stalled_server_answers_at_the_deadline)
{
	kill(server, SIGSTOP);
	got = 0;
	moat_store_get(s, "moat:test:k", cb, NULL);
	double t = wait_answer();
	CHECK(got && st == MOAT_STORE_UNAVAILABLE);
	CHECK(t >= 0.15 && t < 1.0);	/* timeout_ms = 200 */
	kill(server, SIGCONT);
	spin(0.3);		/* the late reply is dropped */
	got = 0;
	moat_store_set(s, "moat:test:k", "v2", 2, 0, cb, NULL);
	wait_answer();
	CHECK(st == MOAT_STORE_OK);
}

TEST(dead_server_then_recovery)
{
	stop_server();
	spin(0.2);
	got = 0;
	moat_store_get(s, "moat:test:k", cb, NULL);
	double t = wait_answer();
	CHECK(got && st == MOAT_STORE_UNAVAILABLE && t < 0.15);	/* at once */
	start_server();
	spin(1.5);		/* reconnect with backoff */
	got = 0;
	moat_store_set(s, "moat:test:k", "v3", 2, 0, cb, NULL);
	wait_answer();
	CHECK(st == MOAT_STORE_OK);
}

/* key_prefix and redis_db: the key lands as PREFIX+key in that
 * database, and nowhere else. */
TEST(prefix_and_db)
{
	struct moat_store_redis_conf conf = {.host = "127.0.0.1", .port = port, .timeout_ms = 200,
					     .db = 2, .prefix = "pfx:"};
	struct moat_store *p = moat_store_redis_new(base, &conf);
	spin(0.3);
	got = 0;
	moat_store_set(p, "k", "in2", 3, 0, cb, NULL);
	wait_answer();
	CHECK(st == MOAT_STORE_OK);
	got = 0;
	moat_store_get(p, "k", cb, NULL);
	wait_answer();
	CHECK(st == MOAT_STORE_OK && strcmp(val, "in2") == 0);
	got = 0;
	moat_store_get(s, "pfx:k", cb, NULL);	/* db 0, no prefix */
	wait_answer();
	CHECK(st == MOAT_STORE_MISSING);
	CHECK(p->stats.ops == 2 && p->stats.unavailable == 0 && !p->stats.down);
	moat_store_free(p);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	base = event_base_new();
	port = free_port();
	start_server();
	struct moat_store_redis_conf conf = {.host = "127.0.0.1", .port = port, .timeout_ms = 200};
	s = moat_store_redis_new(base, &conf);
	spin(0.3);
	RUN(roundtrip);
	RUN(prefix_and_db);
	RUN(stalled_server_answers_at_the_deadline);
	RUN(dead_server_then_recovery);
	moat_store_free(s);
	stop_server();
	event_base_free(base);
	return unit_done();
}
