/*
 * debuglog.h - the per-message debug log: the `debug` section names
 * client networks and senders whose sessions and messages are traced to
 * the log, the lines `moat check --trace` prints (moat_call_trace():
 * what each filter looked up, what it got, why it scored).
 *
 * Front ends call moat_debuglog_apply() whenever they bring their
 * context up to date (before each stage); it turns ctx->trace on or off.
 */
#ifndef MOAT_DEBUGLOG_H
#define MOAT_DEBUGLOG_H

#include "config.h"
#include "filter.h"

/* Registers the `debug` section (at start, with the filters). */
void moat_debuglog_register(void);

/* Traces ctx to the log when its client address is in debug.clients or
 * its envelope sender matches debug.senders, and stops when neither
 * holds any more (a new transaction); a trace set by someone else
 * (moat check --trace) is left alone. */
void moat_debuglog_apply(struct moat_msgctx *ctx, const struct moat_config *c);

#endif
