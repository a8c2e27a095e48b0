/*
 * test_metrics.c - the metrics registry (filters/metrics.c) and the
 * recent verdicts (filters/recent.c): counting, the bound on series
 * with "_other", cumulative histogram buckets, label escaping, the text
 * format, the minute ring and the verdict ring.
 */
#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "recent.h"
#include "unit.h"

/* The whole exposition as a string (caller frees). */
static char *exposition(void)
{
	struct evbuffer *b = evbuffer_new();
	moat_metrics_write(b);
	size_t n = evbuffer_get_length(b);
	char *s = malloc(n + 1);
	evbuffer_remove(b, s, n);
	s[n] = '\0';
	evbuffer_free(b);
	return s;
}

TEST(counts_and_primes_actions)
{
	moat_metrics_add(MOAT_M_MESSAGES, "accept", NULL, 1);
	moat_metrics_add(MOAT_M_MESSAGES, "accept", NULL, 2);
	char *s = exposition();
	CHECK(strstr(s, "# TYPE moat_messages_total counter\n") != NULL);
	CHECK(strstr(s, "moat_messages_total{action=\"accept\"} 3\n") != NULL);
	CHECK(strstr(s, "moat_messages_total{action=\"discard\"} 0\n") != NULL);
	CHECK(strstr(s, "moat_reloads_total{result=\"failed\"} 0\n") != NULL);
	free(s);
}

TEST(symbols_are_bounded)
{
	char name[32];
	for (int i = 0; i < 300; i++) {
		snprintf(name, sizeof(name), "SYM_%d", i);
		moat_metrics_add(MOAT_M_SYMBOLS, name, NULL, 1);
	}
	moat_metrics_add(MOAT_M_SYMBOLS, "SYM_1", NULL, 1);	/* an old name still counts */
	static struct moat_metric_value v[400];
	size_t n = moat_metrics_values(MOAT_M_SYMBOLS, v, 400);
	CHECK(n == 257);
	double other = -1, one = -1;
	for (size_t i = 0; i < n; i++) {
		if (strcmp(v[i].l1, "_other") == 0)
			other = v[i].value;
		if (strcmp(v[i].l1, "SYM_1") == 0)
			one = v[i].value;
	}
	CHECK(other == 44);
	CHECK(one == 2);
}

TEST(histogram_buckets_are_cumulative)
{
	moat_metrics_filter_call("f\"x", MOAT_STAGE_MAIL, 0.0001);
	moat_metrics_filter_call("f\"x", MOAT_STAGE_MAIL, 0.003);
	moat_metrics_filter_call("f\"x", MOAT_STAGE_MAIL, 20);
	char *s = exposition();
	const char *p = "moat_filter_duration_seconds_bucket{filter=\"f\\\"x\",stage=\"mail\",le=";
	char want[256];
	snprintf(want, sizeof(want), "%s\"0.0005\"} 1\n", p);
	CHECK(strstr(s, want) != NULL);
	snprintf(want, sizeof(want), "%s\"0.005\"} 2\n", p);
	CHECK(strstr(s, want) != NULL);
	snprintf(want, sizeof(want), "%s\"10\"} 2\n", p);
	CHECK(strstr(s, want) != NULL);
	snprintf(want, sizeof(want), "%s\"+Inf\"} 3\n", p);
	CHECK(strstr(s, want) != NULL);
	CHECK(strstr(s, "moat_filter_duration_seconds_count{filter=\"f\\\"x\",stage=\"mail\"} 3\n"));
	free(s);
}

TEST(escape)
{
	char b[64];
	CHECK(strcmp(moat_metrics_escape("a\\b\"c\nd", b, sizeof(b)), "a\\\\b\\\"c\\nd") == 0);
	CHECK(strcmp(moat_metrics_escape(NULL, b, sizeof(b)), "") == 0);
}

TEST(recent_minutes_and_verdicts)
{
	time_t now = 1700000000;
	struct moat_recent_verdict v;
	memset(&v, 0, sizeof(v));
	v.when = now - 3600 * 2;	/* the same slot, two hours before: stale */
	v.action = MOAT_ACTION_DISCARD;
	moat_recent_add(&v);
	for (int i = 0; i < 60; i++) {
		v.when = now - 120;		/* two minutes ago */
		v.action = MOAT_ACTION_ACCEPT;
		snprintf(v.session, sizeof(v.session), "S%d", i);
		moat_recent_add(&v);
	}
	v.when = now;
	v.action = MOAT_ACTION_REJECT;
	snprintf(v.session, sizeof(v.session), "LAST");
	moat_recent_add(&v);
	static unsigned c[MOAT_RECENT_MINUTES][MOAT_ACTION__COUNT];
	moat_recent_minutes(now, c);
	CHECK(c[59][MOAT_ACTION_REJECT] == 1);
	CHECK(c[57][MOAT_ACTION_ACCEPT] == 60);
	CHECK(c[58][MOAT_ACTION_ACCEPT] == 0);
	CHECK(c[59][MOAT_ACTION_DISCARD] == 0);
	static struct moat_recent_verdict out[MOAT_RECENT_VERDICTS + 5];
	size_t n = moat_recent_verdicts(out, MOAT_RECENT_VERDICTS + 5);
	CHECK(n == MOAT_RECENT_VERDICTS);
	CHECK(strcmp(out[0].session, "LAST") == 0);
	CHECK(strcmp(out[1].session, "S59") == 0);
	CHECK(strcmp(out[MOAT_RECENT_VERDICTS - 1].session, "S11") == 0);
}

int main(void)
{
	RUN(counts_and_primes_actions);
	RUN(symbols_are_bounded);
	RUN(histogram_buckets_are_cumulative);
	RUN(escape);
	RUN(recent_minutes_and_verdicts);
	return unit_done();
}
