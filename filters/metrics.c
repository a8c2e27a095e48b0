/*
 * metrics.c - the registry of counters and histograms (metrics.h), its
 * Prometheus text exposition, and the events filters and front ends
 * report.
 *
 * Series live in one open-addressing hash table (MAX_SERIES slots, keyed
 * by family and label values) and are written in the order they first
 * appeared. Owns the table; one mutex guards it.
 */
#include "metrics.h"

#include <event2/buffer.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "fnv.h"
#include "msglog.h"
#include "recent.h"

#define MAX_SERIES 2048		/* slots in the table; a power of two */
#define NBUCKETS 14

/* Upper bounds (seconds) of the filter latency buckets; +Inf implied. */
static const double bucket_le[NBUCKETS] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
					   0.1, 0.25, 0.5, 1, 2.5, 5, 10};

struct family {
	const char *name;
	int histogram;
	const char *help;
	const char *label1, *label2;	/* NULL: fewer labels */
	size_t max_series;
};

static const struct family families[MOAT_M__COUNT] = {
	[MOAT_M_MESSAGES] = {"moat_messages_total", 0,
		"Messages that reached the end of their data, by the action moat took (one per msg log line).",
		"action", NULL, 16},
	[MOAT_M_MESSAGES_WOULD] = {"moat_messages_would_total", 0,
		"Messages for which dry-run held back a stronger action, by that action.",
		"action", NULL, 16},
	[MOAT_M_REFUSALS] = {"moat_stage_refusals_total", 0,
		"Stages a filter ended with reject or tempfail (connect, helo, mail, rcpt, eom).",
		"stage", "action", 64},
	[MOAT_M_SYMBOLS] = {"moat_symbols_total", 0,
		"Symbols added, once per verdict that ends a message or a refused connect, HELO or MAIL.",
		"symbol", NULL, 256},
	[MOAT_M_FILTER_SECONDS] = {"moat_filter_duration_seconds", 1,
		"Time one filter call took, from the call to its answer (or its timeout).",
		"filter", "stage", 256},
	[MOAT_M_FILTER_ERRORS] = {"moat_filter_errors_total", 0,
		"Filter calls that failed or timed out (timeouts included), and failed seal hooks.",
		"filter", NULL, 64},
	[MOAT_M_FILTER_TIMEOUTS] = {"moat_filter_timeouts_total", 0,
		"Filter calls that did not answer within the filter's timeout.",
		"filter", NULL, 64},
	[MOAT_M_FILTER_WOULD] = {"moat_filter_would_total", 0,
		"Decisions a filter in dry-run would have taken (its own, or its on_error action).",
		"filter", "action", 256},
	[MOAT_M_UPSTREAM_ERRORS] = {"moat_upstream_errors_total", 0,
		"Upstream connections that failed, by reason (probes included).",
		"reason", NULL, 32},
	[MOAT_M_RELOADS] = {"moat_reloads_total", 0,
		"Configuration reloads (SIGHUP, moat reload), by result.",
		"result", NULL, 4},
};

struct series {
	int used;
	enum moat_metric m;
	char l1[64], l2[64];
	double value;			/* counter; histogram: count */
	double sum;
	unsigned long long bucket[NBUCKETS];	/* per bucket, not cumulative */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct series table[MAX_SERIES];
static size_t order[MAX_SERIES];	/* slots in the order they appeared */
static size_t nseries, per_family[MOAT_M__COUNT];
static int primed;

static unsigned long hash(enum moat_metric m, const char *l1, const char *l2)
{
	uint64_t h = moat_fnv1a_add(MOAT_FNV1A_BASIS ^ (uint64_t)m, l1, strlen(l1));
	h = moat_fnv1a_add(h, "\xff", 1);
	return (unsigned long)moat_fnv1a_add(h, l2, strlen(l2));
}

static struct series *lookup(enum moat_metric m, const char *a, const char *b);

/* Series every scrape should show from the start, at zero. */
static void prime(void)
{
	static const char *const actions[] = {"accept", "add_header", "tempfail", "reject",
					      "discard"};
	primed = 1;
	for (size_t i = 0; i < sizeof(actions) / sizeof(actions[0]); i++)
		lookup(MOAT_M_MESSAGES, actions[i], NULL);
	lookup(MOAT_M_RELOADS, "ok", NULL);
	lookup(MOAT_M_RELOADS, "failed", NULL);
}

/* The series of m with these labels, created if there is room (else the
 * family's "_other" series, else NULL). Under the lock. */
static struct series *lookup(enum moat_metric m, const char *a, const char *b)
{
	char l1[64], l2[64];
	if (!primed)
		prime();
	snprintf(l1, sizeof(l1), "%s", a ? a : "");
	snprintf(l2, sizeof(l2), "%s", b ? b : "");
	for (int attempt = 0; attempt < 2; attempt++) {
		unsigned long h = hash(m, l1, l2);
		for (size_t i = 0; i < MAX_SERIES; i++) {
			struct series *s = &table[(h + i) & (MAX_SERIES - 1)];
			if (s->used && s->m == m && strcmp(s->l1, l1) == 0 && strcmp(s->l2, l2) == 0)
				return s;
			if (s->used)
				continue;
			/* keep a quarter of the table free: probes stay short;
			 * a family's "_other" may go past its bound */
			if ((!attempt && per_family[m] >= families[m].max_series) ||
			    nseries >= MAX_SERIES * 3 / 4)
				break;
			s->used = 1;
			s->m = m;
			memcpy(s->l1, l1, sizeof(l1));
			memcpy(s->l2, l2, sizeof(l2));
			order[nseries++] = (size_t)(s - table);
			per_family[m]++;
			return s;
		}
		if (strcmp(l1, "_other") == 0)
			return NULL;
		snprintf(l1, sizeof(l1), "_other");
		l2[0] = '\0';
	}
	return NULL;
}

void moat_metrics_add(enum moat_metric m, const char *l1, const char *l2, double by)
{
	if ((int)m < 0 || m >= MOAT_M__COUNT)
		return;
	pthread_mutex_lock(&lock);
	struct series *s = lookup(m, l1, l2);
	if (s)
		s->value += by;
	pthread_mutex_unlock(&lock);
}

void moat_metrics_observe(enum moat_metric m, const char *l1, const char *l2, double value)
{
	if ((int)m < 0 || m >= MOAT_M__COUNT)
		return;
	pthread_mutex_lock(&lock);
	struct series *s = lookup(m, l1, l2);
	if (s) {
		size_t b = 0;
		while (b < NBUCKETS && value > bucket_le[b])
			b++;
		if (b < NBUCKETS)
			s->bucket[b]++;
		s->value += 1;
		s->sum += value;
	}
	pthread_mutex_unlock(&lock);
}

size_t moat_metrics_values(enum moat_metric m, struct moat_metric_value *out, size_t max)
{
	size_t k = 0;
	pthread_mutex_lock(&lock);
	for (size_t i = 0; i < nseries && k < max; i++) {
		const struct series *s = &table[order[i]];
		if (s->m != m)
			continue;
		memcpy(out[k].l1, s->l1, sizeof(out[k].l1));
		memcpy(out[k].l2, s->l2, sizeof(out[k].l2));
		out[k].value = s->value;
		out[k].sum = s->sum;
		k++;
	}
	pthread_mutex_unlock(&lock);
	return k;
}

/* ---- the text format ---- */

const char *moat_metrics_escape(const char *in, char *buf, size_t len)
{
	size_t o = 0;
	for (const char *p = in ? in : ""; *p && o + 3 < len; p++) {
		if (*p == '\\' || *p == '"') {
			buf[o++] = '\\';
			buf[o++] = *p;
		} else if (*p == '\n') {
			buf[o++] = '\\';
			buf[o++] = 'n';
		} else {
			buf[o++] = *p;
		}
	}
	buf[o] = '\0';
	return buf;
}

/* `l1="v1",l2="v2"` of s into buf. */
static const char *labels(const struct family *f, const struct series *s, char *buf, size_t len)
{
	char e1[160], e2[160];
	buf[0] = '\0';
	if (f->label1 && f->label2)
		snprintf(buf, len, "%s=\"%s\",%s=\"%s\"", f->label1,
			 moat_metrics_escape(s->l1, e1, sizeof(e1)), f->label2,
			 moat_metrics_escape(s->l2, e2, sizeof(e2)));
	else if (f->label1)
		snprintf(buf, len, "%s=\"%s\"", f->label1, moat_metrics_escape(s->l1, e1, sizeof(e1)));
	return buf;
}

void moat_metrics_write_one(struct evbuffer *out, const char *name, const char *type,
			    const char *help, const char *lbl, double value)
{
	if (help)
		evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
	evbuffer_add_printf(out, "%s%s%s%s %.15g\n", name, lbl && *lbl ? "{" : "", lbl ? lbl : "",
			    lbl && *lbl ? "}" : "", value);
}

void moat_metrics_write(struct evbuffer *out)
{
	char lbl[400];
	pthread_mutex_lock(&lock);
	if (!primed)
		prime();
	for (int m = 0; m < MOAT_M__COUNT; m++) {
		const struct family *f = &families[m];
		if (!f->histogram) {
			evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s counter\n", f->name, f->help,
					    f->name);
			for (size_t i = 0; i < nseries; i++) {
				const struct series *s = &table[order[i]];
				if ((int)s->m == m)
					moat_metrics_write_one(out, f->name, NULL, NULL,
							       labels(f, s, lbl, sizeof(lbl)), s->value);
			}
			continue;
		}
		evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s histogram\n", f->name, f->help,
				    f->name);
		for (size_t i = 0; i < nseries; i++) {
			const struct series *s = &table[order[i]];
			unsigned long long cum = 0;
			if ((int)s->m != m)
				continue;
			labels(f, s, lbl, sizeof(lbl));
			for (size_t b = 0; b < NBUCKETS; b++) {
				cum += s->bucket[b];
				evbuffer_add_printf(out, "%s_bucket{%s,le=\"%g\"} %llu\n", f->name, lbl,
						    bucket_le[b], cum);
			}
			evbuffer_add_printf(out, "%s_bucket{%s,le=\"+Inf\"} %.15g\n", f->name, lbl,
					    s->value);
			evbuffer_add_printf(out, "%s_sum{%s} %.15g\n%s_count{%s} %.15g\n", f->name, lbl,
					    s->sum, f->name, lbl, s->value);
		}
	}
	pthread_mutex_unlock(&lock);
}

/* ---- events ---- */

void moat_metrics_filter_call(const char *filter, enum moat_stage stage, double seconds)
{
	moat_metrics_observe(MOAT_M_FILTER_SECONDS, filter, moat_stage_name(stage), seconds);
}

static void count_symbols(const struct moat_verdict *v)
{
	for (size_t i = 0; i < v->nsymbols; i++)
		moat_metrics_add(MOAT_M_SYMBOLS, v->symbols[i].name, NULL, 1);
}

static void copy(char *dst, size_t len, const char *src)
{
	snprintf(dst, len, "%s", src ? src : "-");
}

void moat_metrics_stage_end(const struct moat_msgctx *ctx, enum moat_stage stage,
			    const struct moat_verdict *v, const struct moat_decision *d)
{
	if (d->action != MOAT_ACTION_REJECT && d->action != MOAT_ACTION_TEMPFAIL)
		return;
	moat_metrics_add(MOAT_M_REFUSALS, moat_stage_name(stage), moat_action_name(d->action), 1);
	if (stage == MOAT_STAGE_EOM)
		return;		/* the message's log line reports it */
	if (stage != MOAT_STAGE_RCPT)	/* a refused recipient ends nothing */
		count_symbols(v);
	struct moat_recent_verdict r;
	memset(&r, 0, sizeof(r));
	r.when = time(NULL);
	copy(r.session, sizeof(r.session), ctx->session_id);
	copy(r.client, sizeof(r.client), ctx->client_addr);
	copy(r.from, sizeof(r.from), ctx->mail_from);
	copy(r.stage, sizeof(r.stage), moat_stage_name(stage));
	r.action = d->action;
	r.code = d->code ? d->code : d->action == MOAT_ACTION_REJECT ? 550 : 451;
	for (size_t i = 0; i < v->nsymbols; i++)
		r.score += v->symbols[i].dry_run ? 0 : v->symbols[i].score;
	moat_verdict_symbols_text(v, r.symbols, sizeof(r.symbols));
	moat_recent_add(&r);
}

void moat_metrics_message(const struct moat_msglog *m, const char *action)
{
	const struct moat_verdict *v = m->v;
	moat_metrics_add(MOAT_M_MESSAGES, action, NULL, 1);
	if (v->would.action)
		moat_metrics_add(MOAT_M_MESSAGES_WOULD, moat_action_name(v->would.action), NULL, 1);
	count_symbols(v);

	struct moat_recent_verdict r;
	memset(&r, 0, sizeof(r));
	r.when = time(NULL);
	copy(r.session, sizeof(r.session), m->session_id);
	copy(r.client, sizeof(r.client), m->client_addr);
	copy(r.from, sizeof(r.from), m->mail_from);
	copy(r.stage, sizeof(r.stage), moat_stage_name(MOAT_STAGE_EOM));
	r.action = MOAT_ACTION_NONE;
	moat_action_parse(action, &r.action);
	r.code = m->code;
	r.score = v->score;
	moat_verdict_symbols_text(v, r.symbols, sizeof(r.symbols));
	moat_recent_add(&r);
}
