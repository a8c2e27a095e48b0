/*
 * pipeline.c - run one SMTP stage through the enabled filters, in the
 * configured order, and carry each filter's call.
 *
 * A run asks the filters one after another. A filter that waits gets a
 * timer (its `timeout`); when it answers, or the timer fires, the run
 * goes on with the next filter, until one ends the stage (reject or
 * tempfail) or all have spoken. What a filter records stays in its call
 * until it finishes; only then is it merged into the verdict, so a
 * filter that errs or comes too late leaves nothing behind. Each call's
 * time, failures, timeouts and dry-run decisions, and each stage's
 * refusal, are reported to metrics.h. Owns runs, calls and the counters.
 */
#include "pipeline.h"

#include <event2/event.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "metrics.h"

struct moat_filter_call {
	const struct moat_filter *f;
	const struct moat_filter_common *conf;
	const struct moat_msgctx *ctx;
	enum moat_stage stage;
	struct moat_verdict rec;	/* symbols and edits, merged at the end */
	struct moat_decision decision;
	char error[256];
	struct moat_pipeline_run *run;	/* NULL once abandoned */
	struct timespec start;		/* when it was asked (metrics.h) */
};

struct moat_pipeline_run {
	const struct moat_config *c;
	enum moat_stage stage;
	const struct moat_msgctx *ctx;
	struct moat_verdict *v;
	size_t next;			/* index into c->filters */
	struct moat_filter_call *waiting;
	struct event *timer;
	moat_pipeline_cb cb;
	void *arg;
	struct moat_stage_result res;
	struct timespec start;
};

static struct moat_pipeline_stats stats;

const struct moat_pipeline_stats *moat_pipeline_stats(void)
{
	return &stats;
}

/* ---- the call API ---------------------------------------------------- */

const struct moat_msgctx *moat_call_ctx(const struct moat_filter_call *call)
{
	return call->ctx;
}

const void *moat_call_conf(const struct moat_filter_call *call)
{
	return call->conf;
}

const struct moat_verdict *moat_call_verdict(const struct moat_filter_call *call)
{
	return call->run ? call->run->v : NULL;
}

enum moat_stage moat_call_stage(const struct moat_filter_call *call)
{
	return call->stage;
}

void **moat_call_session_state(struct moat_filter_call *call)
{
	size_t i = moat_filter_index(call->f);
	if (!call->ctx->filter_state || i >= MOAT_MAX_FILTERS)
		return NULL;
	return &call->ctx->filter_state[i];
}

void moat_call_symbol(struct moat_filter_call *call, const char *name, double score,
		      const char *fmt, ...)
{
	char reason[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	for (char *p = reason; *p; p++)	/* one line, printable */
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = ' ';
	moat_verdict_symbol(&call->rec, call->f->name, call->stage, call->conf->dry_run, name,
			    score, reason);
}

void moat_call_header_add(struct moat_filter_call *call, const char *name, const char *value)
{
	moat_verdict_edit(&call->rec, call->f->name, MOAT_HEADER_ADD, name, value, 0);
}

void moat_call_header_remove(struct moat_filter_call *call, const char *name, int index)
{
	moat_verdict_edit(&call->rec, call->f->name, MOAT_HEADER_REMOVE, name, NULL, index);
}

void moat_call_header_change(struct moat_filter_call *call, const char *name, int index,
			     const char *value)
{
	moat_verdict_edit(&call->rec, call->f->name, MOAT_HEADER_CHANGE, name, value, index);
}

void moat_call_decide(struct moat_filter_call *call, enum moat_action action, int code,
		      const char *fmt, ...)
{
	struct moat_decision *d = &call->decision;
	d->action = action;
	d->code = code;
	d->text[0] = '\0';
	if (fmt) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(d->text, sizeof(d->text), fmt, ap);
		va_end(ap);
		for (char *p = d->text; *p; p++)	/* it goes into an SMTP reply */
			if ((unsigned char)*p < 0x20 || *p == 0x7f)
				*p = ' ';
	}
	d->filter = call->f->name;
	d->stage = call->stage;
}

void moat_call_auth_result(struct moat_filter_call *call, const char *method,
			   const char *result, const char *props, const char *comment)
{
	moat_verdict_auth(&call->rec, call->f->name, method, result, props, comment);
}

void moat_ctx_trace(const struct moat_msgctx *ctx, const char *filter, enum moat_stage stage,
		    const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	if (!ctx || !ctx->trace)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	for (char *p = line; *p; p++)	/* one line, printable */
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = ' ';
	ctx->trace(ctx->trace_arg, filter, stage, line);
}

void moat_call_trace(struct moat_filter_call *call, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	if (!call->ctx->trace)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	moat_ctx_trace(call->ctx, call->f->name, call->stage, "%s", line);
}

void moat_call_error(struct moat_filter_call *call, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(call->error, sizeof(call->error), fmt, ap);
	va_end(ap);
}

static void call_free(struct moat_filter_call *call)
{
	moat_verdict_clear(&call->rec);
	free(call);
}

/* ---- running a stage -------------------------------------------------- */

/* Decisions that end a stage rank above the rest. */
static int rank(enum moat_action a)
{
	switch (a) {
	case MOAT_ACTION_REJECT: return 5;
	case MOAT_ACTION_TEMPFAIL: return 4;
	case MOAT_ACTION_DISCARD: return 3;
	case MOAT_ACTION_ADD_HEADER: return 2;
	case MOAT_ACTION_ACCEPT: return 1;
	default: return 0;
	}
}

static void note_would(struct moat_verdict *v, const struct moat_decision *d)
{
	moat_metrics_add(MOAT_M_FILTER_WOULD, d->filter, moat_action_name(d->action), 1);
	if (rank(d->action) > rank(v->would.action)) {
		v->would = *d;
		v->would.dry_run = 1;
	}
}

/* Merges a finished call into the verdict. Returns 1 if it ends the
 * stage (run->res.decision set). */
static int merge(struct moat_pipeline_run *run, struct moat_filter_call *call,
		 enum moat_filter_status status)
{
	struct moat_verdict *v = run->v;
	int dry = call->conf->dry_run || run->c->dry_run;
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	moat_metrics_filter_call(call->f->name, run->stage,
				 (double)(now.tv_sec - call->start.tv_sec) +
				 (double)(now.tv_nsec - call->start.tv_nsec) / 1e9);
	if (status == MOAT_FILTER_ERROR) {
		stats.errors++;
		moat_metrics_add(MOAT_M_FILTER_ERRORS, call->f->name, NULL, 1);
		run->res.errors++;
		moat_log(LOG_WARNING, "session=%s: filter %s failed at stage %s: %s; on_error=%s",
			 run->ctx->session_id ? run->ctx->session_id : "-", call->f->name,
			 moat_stage_name(run->stage), call->error[0] ? call->error : "error",
			 call->conf->on_error ? call->conf->on_error : "continue");
		if (call->conf->on_error_action == MOAT_ACTION_NONE)
			return 0;
		struct moat_decision d = {.action = call->conf->on_error_action, .code = 0,
					  .filter = call->f->name, .stage = (int)run->stage};
		snprintf(d.text, sizeof(d.text), "%s",
			 d.action == MOAT_ACTION_REJECT ? "5.7.1 Rejected: a filter failed"
							: "4.7.1 Temporary filter failure, try again later");
		if (dry) {
			note_would(v, &d);
			return 0;
		}
		run->res.decision = d;
		if (run->stage == MOAT_STAGE_EOM)	/* the front end reads it there */
			v->decision = d;
		return 1;
	}
	moat_verdict_add_all(v, &call->rec);
	for (size_t i = 0; i < call->rec.nedits; i++) {
		const struct moat_header_edit *e = &call->rec.edits[i];
		moat_verdict_edit(v, e->filter, e->op, e->name, e->value, e->index);
	}
	struct moat_decision *d = &call->decision;
	if (d->action == MOAT_ACTION_NONE)
		return 0;
	if (dry) {
		moat_log(LOG_INFO, "session=%s: dry-run: filter %s would %s at stage %s%s%s",
			 run->ctx->session_id ? run->ctx->session_id : "-", call->f->name,
			 moat_action_name(d->action), moat_stage_name(run->stage),
			 d->text[0] ? ": " : "", d->text);
		note_would(v, d);
		return 0;
	}
	switch (d->action) {
	case MOAT_ACTION_ACCEPT:
		v->exempt = 1;
		return 0;
	case MOAT_ACTION_DISCARD:
	case MOAT_ACTION_ADD_HEADER:
		if (rank(d->action) > rank(v->decision.action))
			v->decision = *d;
		return 0;
	case MOAT_ACTION_REJECT:
	case MOAT_ACTION_TEMPFAIL:
		run->res.decision = *d;
		if (run->stage == MOAT_STAGE_EOM)
			v->decision = *d;
		return 1;
	default:
		return 0;
	}
}

static void on_timer(evutil_socket_t fd, short what, void *arg);

/* Asks filters from run->next on. Returns 1 when the stage is over,
 * 0 when a filter waits. */
static int ask(struct moat_pipeline_run *run)
{
	const struct moat_str_list *order = &run->c->filters;
	while (run->next < order->n) {
		const char *name = order->v[run->next];
		const struct moat_filter *f = moat_filter_find(name);
		const struct moat_filter_common *conf = moat_config_section(run->c, name);
		moat_filter_fn fn = f ? f->stage[run->stage] : NULL;
		if (!fn || !conf || run->v->exempt) {
			run->next++;
			continue;
		}
		struct moat_filter_call *call = calloc(1, sizeof(*call));
		if (!call) {
			run->next++;
			continue;
		}
		call->f = f;
		call->conf = conf;
		call->ctx = run->ctx;
		call->stage = run->stage;
		call->run = run;
		clock_gettime(CLOCK_MONOTONIC, &call->start);
		enum moat_filter_status st = fn(call);
		if (st == MOAT_FILTER_WAIT) {
			run->waiting = call;
			if (!run->timer)
				run->timer = evtimer_new(run->ctx->base, on_timer, run);
			struct timeval tv = {conf->timeout, 0};
			if (run->timer)
				evtimer_add(run->timer, &tv);
			return 0;
		}
		int ends = merge(run, call, st);
		call_free(call);
		run->next++;
		if (ends)
			return 1;
	}
	return 1;
}

/* The stage is over: its time, and what it ended with counted. */
static void elapsed(struct moat_pipeline_run *run)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	run->res.ms = (double)(now.tv_sec - run->start.tv_sec) * 1e3 +
		      (double)(now.tv_nsec - run->start.tv_nsec) / 1e6;
	moat_metrics_stage_end(run->ctx, run->stage, run->v, &run->res.decision);
}

static void finish(struct moat_pipeline_run *run)
{
	moat_pipeline_cb cb = run->cb;
	void *arg = run->arg;
	struct moat_stage_result res;

	elapsed(run);
	res = run->res;
	if (run->timer)
		event_free(run->timer);
	free(run);
	cb(arg, &res);
}

void moat_call_done(struct moat_filter_call *call, enum moat_filter_status status)
{
	struct moat_pipeline_run *run = call->run;
	if (!run) {		/* abandoned: nobody waits any more */
		call_free(call);
		return;
	}
	run->waiting = NULL;
	if (run->timer)
		evtimer_del(run->timer);
	int ends = merge(run, call, status == MOAT_FILTER_WAIT ? MOAT_FILTER_CONTINUE : status);
	call_free(call);
	run->next++;
	if (ends || ask(run))
		finish(run);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct moat_pipeline_run *run = arg;
	struct moat_filter_call *call = run->waiting;
	(void)fd;
	(void)what;
	if (!call)
		return;
	run->waiting = NULL;
	call->run = NULL;	/* the filter's late done() frees it */
	stats.timeouts++;
	moat_metrics_add(MOAT_M_FILTER_TIMEOUTS, call->f->name, NULL, 1);
	struct moat_filter_call stand_in = *call;
	memset(&stand_in.rec, 0, sizeof(stand_in.rec));
	snprintf(stand_in.error, sizeof(stand_in.error), "timed out after %lds (timeout)",
		 call->conf->timeout);
	int ends = merge(run, &stand_in, MOAT_FILTER_ERROR);
	run->next++;
	if (ends || ask(run))
		finish(run);
}

int moat_pipeline_run(const struct moat_config *c, enum moat_stage stage,
		      const struct moat_msgctx *ctx, struct moat_verdict *v,
		      moat_pipeline_cb cb, void *arg, struct moat_pipeline_run **out,
		      struct moat_stage_result *res)
{
	struct moat_pipeline_run *run = calloc(1, sizeof(*run));
	*out = NULL;
	memset(res, 0, sizeof(*res));
	if (!run)
		return 1;	/* no memory: no opinion */
	stats.runs++;
	run->c = c;
	run->stage = stage;
	run->ctx = ctx;
	run->v = v;
	run->cb = cb;
	run->arg = arg;
	clock_gettime(CLOCK_MONOTONIC, &run->start);
	if (ask(run)) {
		elapsed(run);
		*res = run->res;
		if (run->timer)
			event_free(run->timer);
		free(run);
		return 1;
	}
	*out = run;
	return 0;
}

void moat_pipeline_cancel(struct moat_pipeline_run *run)
{
	if (!run)
		return;
	if (run->waiting)
		run->waiting->run = NULL;
	if (run->timer)
		event_free(run->timer);
	free(run);
}

void moat_pipeline_data(const struct moat_config *c, const struct moat_msgctx *ctx,
			const char *buf, size_t len)
{
	if (!c || !ctx->filter_state)
		return;
	for (size_t i = 0; i < c->filters.n; i++) {
		const struct moat_filter *f = moat_filter_find(c->filters.v[i]);
		const void *conf = moat_config_section(c, c->filters.v[i]);
		size_t slot = f ? moat_filter_index(f) : MOAT_MAX_FILTERS;
		if (f && f->data && conf && slot < MOAT_MAX_FILTERS)
			f->data(conf, ctx, &ctx->filter_state[slot], buf, len);
	}
}

void moat_pipeline_done(const struct moat_config *c, const struct moat_msgctx *ctx,
			const struct moat_verdict *v)
{
	for (size_t i = 0; c && i < c->filters.n; i++) {
		const struct moat_filter *f = moat_filter_find(c->filters.v[i]);
		const void *conf = moat_config_section(c, c->filters.v[i]);
		size_t slot = f ? moat_filter_index(f) : MOAT_MAX_FILTERS;
		if (f && f->done && conf)
			f->done(conf, ctx, ctx->filter_state && slot < MOAT_MAX_FILTERS
						   ? &ctx->filter_state[slot] : NULL, v);
	}
}

/* Sealing is not skipped for an exempt message: an allow entry for an
 * internal network is what outbound mail to be signed usually has. */
enum moat_action moat_pipeline_seal(const struct moat_config *c, const struct moat_msgctx *ctx,
				    const struct moat_message *m, struct moat_verdict *v,
				    char *err, size_t errlen)
{
	enum moat_action worst = MOAT_ACTION_NONE;
	char *head = NULL;
	size_t hlen = 0;
	size_t used = 0;

	err[0] = '\0';
	for (size_t i = 0; c && i < c->filters.n; i++) {
		const struct moat_filter *f = moat_filter_find(c->filters.v[i]);
		const struct moat_filter_common *conf = moat_config_section(c, c->filters.v[i]);
		size_t slot = f ? moat_filter_index(f) : MOAT_MAX_FILTERS;
		if (!f || !f->seal || !conf || !ctx->filter_state || slot >= MOAT_MAX_FILTERS)
			continue;
		char why[256] = "";
		int rc;
		/* each seal sees the fields the ones before it added */
		free(head);
		head = NULL;
		if (moat_message_edited_header(m, v, &head, &hlen) < 0) {
			snprintf(why, sizeof(why), "out of memory");
			rc = -1;
		} else {
			rc = f->seal(conf, ctx, &ctx->filter_state[slot], head, hlen, v, why,
				     sizeof(why));
		}
		if (rc == 0)
			continue;
		stats.errors++;
		moat_metrics_add(MOAT_M_FILTER_ERRORS, f->name, NULL, 1);
		int n = snprintf(err + used, errlen - used, "%s%s: %s", used ? "; " : "", f->name,
				 why[0] ? why : "failed");
		if (n > 0)
			used = (size_t)n < errlen - used ? used + (size_t)n : errlen - 1;
		if (!conf->dry_run && rank(conf->on_error_action) > rank(worst))
			worst = conf->on_error_action;
	}
	free(head);
	return worst;
}
