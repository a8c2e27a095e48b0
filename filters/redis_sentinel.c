/*
 * redis_sentinel.c - the primary's address from Redis Sentinel.
 *
 * One link per sentinel (redis_link.c, no store counters: a sentinel
 * being down costs nothing while another answers). A round asks the
 * sentinels in turn, starting with the last one that answered, until
 * one names the master; a sentinel that errs, does not know the master
 * or does not answer within the timeout is skipped. Rounds run every
 * POLL_MS, and every URGENT_MS for URGENT_FOR_MS after
 * redis_sentinel_ask() (until the answer changes), so a failover is
 * followed within about a quarter of a second of the sentinels
 * agreeing on it.
 *
 * Owns the links, the timers, the last answers, and each question until
 * hiredis has called back.
 */
#include "redis_sentinel.h"

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "redis_link.h"

#define POLL_MS 5000
#define URGENT_MS 250
#define URGENT_FOR_MS 30000
#define MAX_REPLICAS 16

enum question { Q_MASTER, Q_REPLICAS };

struct redis_sentinel {
	struct event_base *eb;
	char *master;
	long timeout_ms;
	int want_replicas;
	struct redis_link **links;
	size_t n;
	size_t cur;		/* the sentinel to ask first */
	int busy;		/* a round is under way */
	unsigned seq;		/* of the question in flight */
	size_t tried;		/* sentinels tried in this round */
	struct event *deadline, *poll;
	struct timespec urgent_until;
	char host[256];		/* the last answer ("" : none yet) */
	int port;
	char **replicas;
	size_t nreplicas;
	int unknown_logged;
	int freeing;
	redis_sentinel_master_cb master_cb;
	redis_sentinel_replicas_cb replicas_cb;
	void *owner;
};

struct ask {
	struct redis_sentinel *s;
	unsigned seq;
	enum question q;
};

static void ask_next(struct redis_sentinel *s);
static void send_question(struct redis_sentinel *s, enum question q);

static int urgent(const struct redis_sentinel *s)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return now.tv_sec < s->urgent_until.tv_sec ||
	       (now.tv_sec == s->urgent_until.tv_sec && now.tv_nsec < s->urgent_until.tv_nsec);
}

static void arm_poll(struct redis_sentinel *s)
{
	long ms = urgent(s) ? URGENT_MS : POLL_MS;
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	evtimer_add(s->poll, &tv);
}

/* The round is over (an answer, or no sentinel could give one). */
static void round_done(struct redis_sentinel *s)
{
	s->busy = 0;
	s->seq++;
	evtimer_del(s->deadline);
	arm_poll(s);
}

static void start_round(struct redis_sentinel *s)
{
	if (s->busy || s->freeing)
		return;		/* one in flight */
	s->busy = 1;
	s->tried = 0;
	ask_next(s);
}

static void on_poll(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct redis_sentinel *s = arg;
	start_round(s);
	if (!s->busy)
		arm_poll(s);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct redis_sentinel *s = arg;
	(void)fd;
	(void)what;
	if (!s->busy)
		return;
	redis_link_stalled(s->links[s->cur], s->timeout_ms);
	s->seq++;		/* its late answer is ignored */
	s->cur = (s->cur + 1) % s->n;
	ask_next(s);
}

static void master_is(struct redis_sentinel *s, const char *host, int port)
{
	char w[300];
	if (strcmp(s->host, host) == 0 && s->port == port)
		return;
	snprintf(s->host, sizeof(s->host), "%s", host);
	s->port = port;
	s->urgent_until.tv_sec = 0;	/* the change came */
	moat_log(LOG_NOTICE, "redis sentinel %s: master %s is at %s:%d",
		 redis_link_where(s->links[s->cur], w, sizeof(w)), s->master, host, port);
	s->master_cb(s->owner, host, port);
}

/* The healthy replicas from SENTINEL replicas: each an array of
 * field/value pairs. */
static void replicas_are(struct redis_sentinel *s, const redisReply *rr)
{
	char *got[MAX_REPLICAS];
	size_t n = 0;
	for (size_t i = 0; i < rr->elements && n < MAX_REPLICAS; i++) {
		const redisReply *r = rr->element[i];
		const char *ip = NULL, *port = NULL, *flags = NULL, *link = NULL;
		if (r->type != REDIS_REPLY_ARRAY)
			continue;
		for (size_t j = 0; j + 1 < r->elements; j += 2) {
			const redisReply *k = r->element[j], *v = r->element[j + 1];
			if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
				continue;
			if (strcmp(k->str, "ip") == 0)
				ip = v->str;
			else if (strcmp(k->str, "port") == 0)
				port = v->str;
			else if (strcmp(k->str, "flags") == 0)
				flags = v->str;
			else if (strcmp(k->str, "master-link-status") == 0)
				link = v->str;
		}
		if (!ip || !port || !flags || strstr(flags, "down") || strstr(flags, "disconnected") ||
		    (link && strcmp(link, "ok") != 0))
			continue;
		char a[300];
		snprintf(a, sizeof(a), strchr(ip, ':') ? "[%s]:%s" : "%s:%s", ip, port);
		if ((got[n] = strdup(a)))
			n++;
	}
	int same = n == s->nreplicas;
	for (size_t i = 0; same && i < n; i++)
		same = strcmp(got[i], s->replicas[i]) == 0;
	if (same) {
		for (size_t i = 0; i < n; i++)
			free(got[i]);
		return;
	}
	for (size_t i = 0; i < s->nreplicas; i++)
		free(s->replicas[i]);
	free(s->replicas);
	s->replicas = n ? calloc(n, sizeof(char *)) : NULL;
	s->nreplicas = s->replicas ? n : 0;
	for (size_t i = 0; i < n; i++) {
		if (s->replicas)
			s->replicas[i] = got[i];
		else
			free(got[i]);
	}
	moat_log(LOG_INFO, "redis sentinel: master %s has %zu healthy replica(s)", s->master,
		 s->nreplicas);
	s->replicas_cb(s->owner, (const char *const *)s->replicas, s->nreplicas);
}

static void on_answer(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct ask *a = privdata;
	struct redis_sentinel *s = a->s;
	redisReply *rr = reply;
	char w[300];
	(void)ac;
	if (s->freeing || !s->busy || a->seq != s->seq) {
		free(a);
		return;		/* the deadline passed, or the end */
	}
	enum question q = a->q;
	free(a);
	if (q == Q_REPLICAS) {
		if (rr && rr->type == REDIS_REPLY_ARRAY)
			replicas_are(s, rr);
		round_done(s);
		return;
	}
	if (rr && rr->type == REDIS_REPLY_ARRAY && rr->elements == 2 &&
	    rr->element[0]->type == REDIS_REPLY_STRING && rr->element[1]->type == REDIS_REPLY_STRING) {
		int port = atoi(rr->element[1]->str);
		if (port > 0 && port < 65536 && rr->element[0]->len < sizeof(s->host)) {
			redis_link_answering(s->links[s->cur]);
			s->unknown_logged = 0;
			master_is(s, rr->element[0]->str, port);
			if (s->want_replicas)
				send_question(s, Q_REPLICAS);
			else
				round_done(s);
			return;
		}
	}
	if (rr && !s->unknown_logged) {
		moat_log(LOG_WARNING, "redis sentinel %s cannot name master %s: %s",
			 redis_link_where(s->links[s->cur], w, sizeof(w)), s->master,
			 rr->type == REDIS_REPLY_ERROR ? rr->str : "not known there");
		s->unknown_logged = 1;
	}
	s->cur = (s->cur + 1) % s->n;
	ask_next(s);
}

static void send_question(struct redis_sentinel *s, enum question q)
{
	struct ask *a = calloc(1, sizeof(*a));
	const char *argv[] = {"SENTINEL", q == Q_MASTER ? "get-master-addr-by-name" : "replicas",
			      s->master};
	size_t lens[] = {8, strlen(argv[1]), strlen(s->master)};
	if (!a) {
		round_done(s);
		return;
	}
	a->s = s;
	a->seq = ++s->seq;
	a->q = q;
	if (redis_link_command(s->links[s->cur], on_answer, a, 3, argv, lens) < 0) {
		free(a);
		s->cur = (s->cur + 1) % s->n;
		ask_next(s);
		return;
	}
	struct timeval tv = {s->timeout_ms / 1000, (s->timeout_ms % 1000) * 1000};
	evtimer_add(s->deadline, &tv);
}

/* Asks the next sentinel that is up, or ends the round. */
static void ask_next(struct redis_sentinel *s)
{
	while (s->tried < s->n && !redis_link_up(s->links[s->cur])) {
		s->tried++;
		s->cur = (s->cur + 1) % s->n;
	}
	if (s->tried >= s->n) {
		round_done(s);
		return;
	}
	s->tried++;
	send_question(s, Q_MASTER);
}

void redis_sentinel_ask(struct redis_sentinel *s)
{
	clock_gettime(CLOCK_MONOTONIC, &s->urgent_until);
	s->urgent_until.tv_sec += URGENT_FOR_MS / 1000;
	start_round(s);
}

/* A sentinel came up: ask it if nobody has answered yet. */
static void on_link_state(void *owner, struct redis_link *l, int up)
{
	struct redis_sentinel *s = owner;
	(void)l;
	if (up && !s->host[0])
		start_round(s);
}

void redis_sentinel_free(struct redis_sentinel *s)
{
	if (!s)
		return;
	s->freeing = 1;
	for (size_t i = 0; s->links && i < s->n; i++)
		redis_link_free(s->links[i]);
	free(s->links);
	if (s->deadline)
		event_free(s->deadline);
	if (s->poll)
		event_free(s->poll);
	for (size_t i = 0; i < s->nreplicas; i++)
		free(s->replicas[i]);
	free(s->replicas);
	free(s->master);
	free(s);
}

struct redis_sentinel *redis_sentinel_new(struct event_base *base,
					  const struct redis_sentinel_conf *conf,
					  redis_sentinel_master_cb master_cb,
					  redis_sentinel_replicas_cb replicas_cb, void *owner)
{
	struct redis_sentinel *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->eb = base;
	s->timeout_ms = conf->timeout_ms > 0 ? conf->timeout_ms : 200;
	s->want_replicas = conf->want_replicas;
	s->master_cb = master_cb;
	s->replicas_cb = replicas_cb;
	s->owner = owner;
	s->master = strdup(conf->master ? conf->master : "");
	s->links = calloc(conf->n ? conf->n : 1, sizeof(*s->links));
	s->deadline = evtimer_new(base, on_deadline, s);
	s->poll = evtimer_new(base, on_poll, s);
	if (!s->master || !s->links || !s->deadline || !s->poll || conf->n == 0) {
		redis_sentinel_free(s);
		return NULL;
	}
	struct redis_link_conf lc = {.kind = "redis sentinel", .max_reply = conf->max_reply};
	for (size_t i = 0; i < conf->n; i++) {
		char host[256];
		int port;
		if (redis_addr_parse(conf->addrs[i], host, sizeof(host), &port) < 0 ||
		    !(s->links[i] = redis_link_new(base, &lc, host, port, NULL, on_link_state, s))) {
			redis_sentinel_free(s);
			return NULL;
		}
		s->n++;
	}
	arm_poll(s);
	return s;
}
