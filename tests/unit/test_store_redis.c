/*
 * test_store_redis - filters/store_redis.c against a real redis-server
 * it starts on a free loopback port: get/set/incr with TTL/del; a
 * stalled server (SIGSTOP) answers UNAVAILABLE at the deadline; a dead
 * one too, at once; the store reconnects by itself when it is back;
 * key_prefix and the database number; a reply over redis_max_reply
 * answers UNAVAILABLE and the next operation works; reads go to a
 * replica and writes to the primary; keys spread over several servers
 * by the hash ring, and a server that is down makes only its own keys
 * unknown.
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

static pid_t spawn_redis(int p)
{
	char ps[16];
	snprintf(ps, sizeof(ps), "%d", p);
	pid_t pid = fork();
	if (pid == 0) {
		freopen("/dev/null", "w", stdout);
		execlp("redis-server", "redis-server", "--port", ps, "--bind", "127.0.0.1",
		       "--save", "", "--appendonly", "no", (char *)NULL);
		_exit(127);
	}
	return pid;
}

static void start_server(void)
{
	server = spawn_redis(port);
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


/* A reply larger than max_reply: UNAVAILABLE, no crash, and the store
 * goes on (it reconnects at once). */
TEST(reply_over_the_cap)
{
	struct moat_store_redis_conf conf = {.host = "127.0.0.1", .port = port, .timeout_ms = 500,
					     .max_reply = 4096};
	struct moat_store *c = moat_store_redis_new(base, &conf);
	static char big[200000];
	memset(big, 'x', sizeof(big));
	spin(0.3);
	got = 0;
	moat_store_set(c, "big", big, 3000, 0, cb, NULL);	/* under the cap */
	wait_answer();
	CHECK(st == MOAT_STORE_OK);
	got = 0;
	moat_store_get(c, "big", cb, NULL);
	wait_answer();
	CHECK(st == MOAT_STORE_OK);
	got = 0;
	moat_store_set(c, "mid", big, 10000, 0, cb, NULL);
	wait_answer();
	got = 0;
	moat_store_get(c, "mid", cb, NULL);	/* in one read: refused as it is built */
	wait_answer();
	CHECK(got && st == MOAT_STORE_UNAVAILABLE);
	spin(0.2);
	got = 0;
	moat_store_set(c, "big", big, sizeof(big), 0, cb, NULL);
	wait_answer();
	CHECK(st == MOAT_STORE_OK);
	got = 0;
	moat_store_get(c, "big", cb, NULL);	/* 200 kB back: over */
	double t = wait_answer();
	CHECK(got && st == MOAT_STORE_UNAVAILABLE && t < 0.4);
	spin(0.3);
	got = 0;
	moat_store_set(c, "small", "s", 1, 0, cb, NULL);
	wait_answer();
	CHECK(st == MOAT_STORE_OK);
	got = 0;
	moat_store_del(c, "big", cb, NULL);
	wait_answer();
	CHECK(st == MOAT_STORE_OK);
	moat_store_free(c);
}

/* With a replica listed, GET goes to it and SET/INCR/DEL to the
 * primary. The "replica" here is a second independent server, so where
 * each operation went shows. When it is down, reads go to the primary. */
TEST(reads_from_the_replica)
{
	int rport = free_port();
	pid_t rpid = spawn_redis(rport);
	usleep(300 * 1000);
	char rspec[32];
	snprintf(rspec, sizeof(rspec), "127.0.0.1:%d", rport);
	const char *reps[] = {rspec};
	struct moat_store_redis_conf conf = {.host = "127.0.0.1", .port = port, .timeout_ms = 300,
					     .replicas = reps, .nreplicas = 1, .prefix = "rr:"};
	struct moat_store_redis_conf rconf = {.host = "127.0.0.1", .port = rport, .timeout_ms = 300,
					      .prefix = "rr:"};
	struct moat_store *c = moat_store_redis_new(base, &conf);
	struct moat_store *rd = moat_store_redis_new(base, &rconf);
	spin(0.3);
	got = 0;
	moat_store_set(c, "k", "primary", 7, 0, cb, NULL);
	wait_answer();
	CHECK(st == MOAT_STORE_OK);
	got = 0;
	moat_store_get(c, "k", cb, NULL);	/* the replica has nothing */
	wait_answer();
	CHECK(st == MOAT_STORE_MISSING);
	got = 0;
	moat_store_set(rd, "k", "replica", 7, 0, cb, NULL);
	wait_answer();
	got = 0;
	moat_store_get(c, "k", cb, NULL);
	wait_answer();
	CHECK(st == MOAT_STORE_OK && strcmp(val, "replica") == 0);
	kill(rpid, SIGKILL);
	waitpid(rpid, NULL, 0);
	spin(0.2);
	got = 0;
	moat_store_get(c, "k", cb, NULL);	/* replica down: the primary */
	wait_answer();
	CHECK(st == MOAT_STORE_OK && strcmp(val, "primary") == 0);
	CHECK(!c->stats.down);
	moat_store_free(rd);
	moat_store_free(c);
}

/* Three servers: every key is on exactly one, each server gets a fair
 * share; one killed makes its keys (only) unknown. */
TEST(hash_ring_over_three_servers)
{
	int ports[3];
	pid_t pids[3];
	char specs[3][32];
	const char *sv[3];
	struct moat_store *one[3];
	for (int i = 0; i < 3; i++) {
		ports[i] = free_port();
		pids[i] = spawn_redis(ports[i]);
		snprintf(specs[i], sizeof(specs[i]), "127.0.0.1:%d", ports[i]);
		sv[i] = specs[i];
	}
	usleep(400 * 1000);
	struct moat_store_redis_conf conf = {.timeout_ms = 300, .servers = sv, .nservers = 3};
	struct moat_store *c = moat_store_redis_new(base, &conf);
	for (int i = 0; i < 3; i++) {
		struct moat_store_redis_conf oc = {.host = "127.0.0.1", .port = ports[i],
						   .timeout_ms = 300};
		one[i] = moat_store_redis_new(base, &oc);
	}
	spin(0.3);
	int where[60], count[3] = {0, 0, 0}, once = 1;
	for (int k = 0; k < 60; k++) {
		char key[32];
		snprintf(key, sizeof(key), "ring:%d", k);
		got = 0;
		moat_store_set(c, key, "v", 1, 0, cb, NULL);
		wait_answer();
		CHECK(st == MOAT_STORE_OK);
		int n = 0;
		where[k] = -1;
		for (int i = 0; i < 3; i++) {
			got = 0;
			moat_store_get(one[i], key, cb, NULL);
			wait_answer();
			if (st == MOAT_STORE_OK) {
				n++;
				where[k] = i;
				count[i]++;
			}
		}
		once &= n == 1;
	}
	CHECK(once);
	CHECK(count[0] >= 8 && count[1] >= 8 && count[2] >= 8);
	kill(pids[1], SIGKILL);
	waitpid(pids[1], NULL, 0);
	spin(0.2);
	int right = 1;
	for (int k = 0; k < 60; k++) {
		char key[32];
		snprintf(key, sizeof(key), "ring:%d", k);
		got = 0;
		moat_store_get(c, key, cb, NULL);
		wait_answer();
		right &= where[k] == 1 ? st == MOAT_STORE_UNAVAILABLE : st == MOAT_STORE_OK;
	}
	CHECK(right);
	CHECK(c->stats.down && c->stats.outages == 1);
	for (int i = 0; i < 3; i++) {
		moat_store_free(one[i]);
		if (i != 1) {
			kill(pids[i], SIGKILL);
			waitpid(pids[i], NULL, 0);
		}
	}
	moat_store_free(c);
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
	RUN(reply_over_the_cap);
	RUN(reads_from_the_replica);
	RUN(hash_ring_over_three_servers);
	RUN(stalled_server_answers_at_the_deadline);
	RUN(dead_server_then_recovery);
	moat_store_free(s);
	stop_server();
	event_base_free(base);
	return unit_done();
}
