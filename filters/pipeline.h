/*
 * pipeline.h - run the enabled filters of one SMTP stage, in the
 * configured order, and turn the total score into an action.
 *
 * Front ends (proxy, milter, the moat CLI) call moat_pipeline_run() at
 * each stage with the session's or message's verdict; the filters' symbols,
 * header edits and decisions are merged into it. Each filter gets its
 * own timeout (the common `timeout` option); a filter that errs or times
 * out follows its `on_error` action. Dry-run (global or per filter)
 * turns decisions into "would" entries: logged, shown, never applied.
 *
 * Owns each pending run; the verdict and context are borrowed and must
 * stay valid until the callback runs or moat_pipeline_cancel().
 */
#ifndef MOAT_PIPELINE_H
#define MOAT_PIPELINE_H

#include "config.h"
#include "filter.h"
#include "verdict.h"

/* How a stage ended. */
struct moat_stage_result {
	struct moat_decision decision;	/* NONE: go on; else apply now */
	int errors;			/* filters that failed or timed out */
	double ms;			/* time the stage took */
};

struct moat_pipeline_run;
typedef void (*moat_pipeline_cb)(void *arg, const struct moat_stage_result *res);

/* Runs stage. Returns 1 if it finished at once (*res filled), or 0 when
 * a filter waits: cb(arg, res) runs later on the loop. */
int moat_pipeline_run(const struct moat_config *c, enum moat_stage stage,
		      const struct moat_msgctx *ctx, struct moat_verdict *v,
		      moat_pipeline_cb cb, void *arg, struct moat_pipeline_run **run,
		      struct moat_stage_result *res);
void moat_pipeline_cancel(struct moat_pipeline_run *run);

/* After the EOM stage: totals the score, and unless a filter already
 * decided, maps it to an action by the scoring thresholds (the `scoring`
 * section); adds the result header (and the spam header for add_header)
 * and moat's Authentication-Results (when filters gave results) as header
 * edits, and removes Authentication-Results fields of m that claim moat's
 * authserv-id (RFC 8601 5). Fills v->decision (ACCEPT at least) and
 * v->would. m may be NULL. */
void moat_pipeline_score(const struct moat_config *c, const struct moat_message *m,
			 struct moat_verdict *v);

/* Front ends: passes a piece of the message being received to every
 * enabled filter with a data hook (buf NULL: a message starts). ctx
 * must carry the session's filter_state. */
void moat_pipeline_data(const struct moat_config *c, const struct moat_msgctx *ctx,
			const char *buf, size_t len);

/* After moat_pipeline_score(), for a message that will be passed on:
 * runs the enabled filters' seal hooks in order over the header block as
 * it will leave (m with v's edits), each adding its fields to v. Returns
 * MOAT_ACTION_NONE, or the on_error action (TEMPFAIL, REJECT) of a
 * filter that failed; every failure is described in err (the front end
 * logs it; with NONE the message goes on without that filter's fields).
 */
enum moat_action moat_pipeline_seal(const struct moat_config *c, const struct moat_msgctx *ctx,
				    const struct moat_message *m, struct moat_verdict *v,
				    char *err, size_t errlen);

/* Front ends, after moat_pipeline_score() (and the seal hooks): tells
 * every enabled filter with a done hook how the message ended (v, with
 * its final decision). */
void moat_pipeline_done(const struct moat_config *c, const struct moat_msgctx *ctx,
			const struct moat_verdict *v);

/* Registers the `scoring` section (filters/scoring.c). */
void moat_scoring_register(void);

/* Counters since start, for logs and (later) metrics. */
struct moat_pipeline_stats {
	unsigned long long runs, errors, timeouts, discards;
};
const struct moat_pipeline_stats *moat_pipeline_stats(void);

#endif
