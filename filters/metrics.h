/*
 * metrics.h - what moat counts: a small registry of labelled counters
 * and histograms, written in the Prometheus text format, and the events
 * the pipeline and the per-message log line report to it.
 *
 * Each metric family is declared once, in a table in metrics.c (name,
 * type, help, label names, how many series it may grow to). A series is
 * one combination of label values; a family that reaches its bound puts
 * further values under the label value "_other" (symbol names come from
 * configuration, but the bound keeps a mistake from growing the table).
 *
 * The registry belongs to its process: moatd's filters and front end
 * report here on the loop thread, and moatd's metrics listener
 * (proxy/metrics_http.c) serves it. The milter process and `moat check`
 * count into registries of their own that nobody serves. Every function
 * takes one mutex, so a front end on another thread may report too.
 *
 * Owns the registry; every string passed in is copied.
 */
#ifndef MOAT_METRICS_H
#define MOAT_METRICS_H

#include <stddef.h>

#include "filter.h"
#include "verdict.h"

struct evbuffer;
struct moat_msglog;

enum moat_metric {
	MOAT_M_MESSAGES,		/* moat_messages_total{action} */
	MOAT_M_MESSAGES_WOULD,		/* moat_messages_would_total{action} */
	MOAT_M_REFUSALS,		/* moat_stage_refusals_total{stage,action} */
	MOAT_M_SYMBOLS,			/* moat_symbols_total{symbol} */
	MOAT_M_FILTER_SECONDS,		/* moat_filter_duration_seconds{filter,stage} */
	MOAT_M_FILTER_ERRORS,		/* moat_filter_errors_total{filter} */
	MOAT_M_FILTER_TIMEOUTS,		/* moat_filter_timeouts_total{filter} */
	MOAT_M_FILTER_WOULD,		/* moat_filter_would_total{filter,action} */
	MOAT_M_UPSTREAM_ERRORS,		/* moat_upstream_errors_total{reason} */
	MOAT_M_RELOADS,			/* moat_reloads_total{result} */
	MOAT_M__COUNT
};

/* Adds by to the counter m with label values l1, l2 (NULL where the
 * family has fewer labels). */
void moat_metrics_add(enum moat_metric m, const char *l1, const char *l2, double by);
/* Records one observation (seconds) in the histogram m. */
void moat_metrics_observe(enum moat_metric m, const char *l1, const char *l2, double value);

/* One series, copied out. */
struct moat_metric_value {
	char l1[64], l2[64];
	double value;		/* a counter's value; a histogram's count */
	double sum;		/* a histogram's sum */
};
/* Copies up to max series of m (in the order they appeared); returns
 * how many were copied. */
size_t moat_metrics_values(enum moat_metric m, struct moat_metric_value *out, size_t max);

/* Appends every family, as Prometheus text format 0.0.4. */
void moat_metrics_write(struct evbuffer *out);
/* Appends "# HELP", "# TYPE" and one line of a gauge or counter the
 * caller keeps (labels: "" or `name="value",...`, already escaped). */
void moat_metrics_write_one(struct evbuffer *out, const char *name, const char *type,
			    const char *help, const char *labels, double value);
/* Escapes a label value for the text format into buf. */
const char *moat_metrics_escape(const char *in, char *buf, size_t len);

/* ---- events ---- */

/* The pipeline: one filter call took seconds at stage. */
void moat_metrics_filter_call(const char *filter, enum moat_stage stage, double seconds);
/* The pipeline: a stage ended with decision d (counted when it refuses:
 * reject or tempfail); v is the verdict so far. */
void moat_metrics_stage_end(const struct moat_msgctx *ctx, enum moat_stage stage,
			    const struct moat_verdict *v, const struct moat_decision *d);
/* The per-message log line (msglog.c): the message's outcome, action as
 * the line says it. */
void moat_metrics_message(const struct moat_msglog *m, const char *action);

#endif
