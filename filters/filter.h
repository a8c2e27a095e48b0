/*
 * filter.h - the filter interface: what every filter (access, DNS lists,
 * SPF, DKIM, DMARC, reputation...) implements, and what it may do.
 *
 * A filter is a static struct moat_filter: its name (also the name of its
 * config section, `NAME { ... }`, read from conf/NAME.conf), its options
 * (declared once, in a table; see util/config.h), and one function per
 * SMTP stage it cares about. The pipeline (pipeline.h) calls the enabled
 * filters in the configured order. A filter never knows which front end
 * (proxy, milter, CLI) feeds it: everything it may know is in the
 * message context, everything it may do goes through its call.
 *
 * THE RETURN RULE, for every stage function:
 *   MOAT_FILTER_CONTINUE  done; what it recorded (symbols, header edits, a
 *                         decision) stands; the next filter runs.
 *   MOAT_FILTER_WAIT      it started asynchronous work (DNS, Redis, a
 *                         timer, a worker thread) and will call
 *                         moat_call_done(call, status) exactly once, later,
 *                         on the loop thread. It must do so even if the
 *                         stage stopped waiting (the filter's timeout, the
 *                         client left): the call then discards what it
 *                         carries. Until then the call and the context stay
 *                         valid; after done() the filter must not touch them.
 *   MOAT_FILTER_ERROR     it could not do its job (the same as done() with
 *                         MOAT_FILTER_ERROR). What it recorded is dropped and
 *                         the filter's on_error action applies (default:
 *                         log, count, go on as if it had no opinion).
 * A stage function never blocks the loop: blocking work goes to the worker
 * pool (ctx->workers, util/worker.h).
 *
 * What a call records is kept in the call until the filter finishes, and
 * only then merged into the verdict: a late or failed filter cannot leave
 * half its opinion behind.
 */
#ifndef MOAT_FILTER_H
#define MOAT_FILTER_H

#include <stddef.h>

#include "config.h"
#include "message.h"
#include "verdict.h"

struct event_base;
struct moat_resolver;
struct moat_store;
struct moat_worker_pool;

enum moat_stage {
	MOAT_STAGE_CONNECT = 0,
	MOAT_STAGE_HELO,
	MOAT_STAGE_MAIL,
	MOAT_STAGE_RCPT,
	MOAT_STAGE_EOM,		/* end of message: headers and body complete */
	MOAT_STAGE__COUNT
};

const char *moat_stage_name(enum moat_stage stage);

/* What a filter may know of a session and its message. Strings are
 * borrowed from the front end for the duration of the call. */
struct moat_msgctx {
	const char *session_id;
	const char *listener;		/* listener name */
	int role;			/* enum moat_role */
	const char *client_addr;	/* "192.0.2.1", "2001:db8::1" */
	int client_port;
	const char *client_name;	/* "[UNAVAILABLE]" until resolved */
	const char *helo;		/* NULL before HELO/EHLO */
	/* TLS and authentication of the client */
	const char *tls_version;	/* NULL: no TLS */
	const char *tls_cipher;
	int tls_bits;			/* the cipher's strength; 0 unknown */
	const char *tls_peer_subject;	/* client certificate (not verified); NULL: none */
	const char *auth_user;		/* NULL: not authenticated; "": authenticated,
					 * the mechanism does not tell the name */
	/* envelope */
	const char *mail_from;		/* NULL before MAIL; "" for <> */
	const char *rcpt;		/* RCPT stage: the recipient being decided */
	const char *const *rcpts;	/* recipients accepted so far */
	size_t nrcpts;
	/* EOM stage: the message as received */
	const struct moat_message *message;
	/* services */
	struct event_base *base;
	struct moat_worker_pool *workers;
	struct moat_resolver *resolver;	/* DNS (filters/resolver.h) */
	struct moat_store *store;	/* what moat learns (filters/store.h); NULL: none */
	/* per-session state of each filter (MOAT_MAX_FILTERS slots, kept
	 * by the front end; see moat_call_session_state()) */
	void **filter_state;
	/* Tracing (`moat check --trace`): NULL, or receives each line a
	 * filter traces with moat_call_trace(). */
	void (*trace)(void *arg, const char *filter, enum moat_stage stage, const char *line);
	void *trace_arg;
};

#define MOAT_MAX_FILTERS 32

enum moat_filter_status {
	MOAT_FILTER_CONTINUE = 0,
	MOAT_FILTER_WAIT = 1,
	MOAT_FILTER_ERROR = 2,
};

struct moat_filter_call;

typedef enum moat_filter_status (*moat_filter_fn)(struct moat_filter_call *call);

/* The options every filter section has; the first member of every
 * filter's config struct. */
struct moat_filter_common {
	int dry_run;		/* score and log, never reject/tempfail/discard */
	char *on_error;		/* "continue", "tempfail", "reject" */
	long timeout;		/* seconds one stage waits for this filter */
	/* derived */
	enum moat_action on_error_action;	/* NONE for continue */
};

struct moat_filter {
	const char *name;		/* section and log name, [a-z0-9_] */
	const char *doc;		/* one sentence for moat.conf(5) */
	const struct moat_opt *opts;	/* its own options (offsets into conf) */
	size_t nopts;
	/* titled subsections of its section (`zone NAME { }`), or NULL */
	const struct moat_subsection_def *sub;
	size_t conf_size;		/* starts with struct moat_filter_common */
	/* After the options are read: derive, check, report errors with
	 * moat_section_error(). Returns 0 or -1. May be NULL. */
	int (*prepare)(void *conf, struct moat_section_ctx *ctx);
	void (*release)(void *conf);	/* frees what prepare made */
	moat_filter_fn stage[MOAT_STAGE__COUNT];	/* NULL: not interested */
	/* Frees what the filter kept in its session slot (may be NULL). */
	void (*session_end)(void *state);
	/* Runs on the loop when a configuration becomes current (start,
	 * reload), with the services: e.g. to start health checks. It must
	 * not keep conf after it returns. May be NULL. */
	void (*activate)(const void *conf, struct event_base *base,
			 struct moat_resolver *resolver);
	/* Default of this filter's common `timeout` option in seconds (0:
	 * the common default, 10), for a filter whose work may take longer
	 * (SPF: RFC 7208 allows 20 s). It is the default in the option table
	 * of the filter's section, so `moat config` and `moat options` show
	 * it. */
	long default_timeout;
	/* The message as it streams in, before the EOM stage, for work that
	 * should not take a second pass over the body (DKIM's body hash):
	 * called with buf NULL when a message starts, then with every piece
	 * of the message as the client sent it (CRLF line ends, not
	 * dot-stuffed, headers first: exactly what the spool holds after
	 * what moat itself prepends), in pieces of any size. state: this
	 * filter's session slot. Synchronous and cheap: it may run on a
	 * front end thread other than the loop (the milter's), never while
	 * a stage of the same session runs. Failures are kept in state and
	 * reported at EOM. May be NULL. */
	void (*data)(const void *conf, const struct moat_msgctx *ctx, void **state,
		     const char *buf, size_t len);
	/* After scoring, for a message that will be passed on (accept or
	 * add_header): head is the header block exactly as it will leave,
	 * every other edit applied (with its blank line). The filter may add
	 * fields with moat_verdict_edit(v, its name, MOAT_HEADER_ADD, ...):
	 * DKIM signatures, which must cover what leaves. Runs on the loop,
	 * synchronously. Returns 0, or -1 with err filled (the front end
	 * applies the filter's on_error: tempfail, reject, or pass the
	 * message on without the fields). May be NULL. */
	int (*seal)(const void *conf, const struct moat_msgctx *ctx, void **state,
		    const char *head, size_t hlen, struct moat_verdict *v, char *err,
		    size_t errlen);
	/* Once per message that reached the end of its data, right after
	 * scoring (moat_pipeline_done()): v holds every filter's symbols
	 * and authentication results and v->decision the action moat took
	 * (accept, add_header, tempfail, reject, discard; what the upstream
	 * answers afterwards is not part of it). For filters that learn
	 * from outcomes (reputation). Runs on the loop, for every enabled
	 * filter (also in dry-run, also for an exempt message); must not
	 * block; may start work that needs no answer (store writes). Not
	 * called by `moat check`. May be NULL. */
	void (*done)(const void *conf, const struct moat_msgctx *ctx, void **state,
		     const struct moat_verdict *v);
};

/* Registers a filter and its config section; at start, before the
 * configuration is read. moat_filters_register_builtin() registers the
 * filters moat ships (filters/registry.c). */
void moat_filter_register(const struct moat_filter *f);
void moat_filters_register_builtin(void);
const struct moat_filter *moat_filter_find(const char *name);
/* The filter's slot number in session state, or MOAT_MAX_FILTERS. */
size_t moat_filter_index(const struct moat_filter *f);

/* Front ends: at the end of a session, let every filter free its
 * session state (state: the MOAT_MAX_FILTERS slots). */
void moat_filters_session_end(void **state);
/* Front ends: after a configuration became current. */
void moat_filters_activate(const struct moat_config *c, struct event_base *base,
			   struct moat_resolver *resolver);

/* ---- inside a call ---- */

const struct moat_msgctx *moat_call_ctx(const struct moat_filter_call *call);
/* The filter's configuration (its struct, common part first). */
const void *moat_call_conf(const struct moat_filter_call *call);
enum moat_stage moat_call_stage(const struct moat_filter_call *call);
/* What earlier filters recorded for this message (or session) so far:
 * their symbols and authentication results (DMARC reads SPF's and
 * DKIM's there). Read-only; valid until the stage function returns, or
 * until moat_call_done(). NULL once the call is abandoned. */
const struct moat_verdict *moat_call_verdict(const struct moat_filter_call *call);
/* This filter's slot for the session (NULL pointer at first; what the
 * filter puts there is freed by its session_end()). NULL if the front
 * end keeps no session state. */
void **moat_call_session_state(struct moat_filter_call *call);

/* A scored symbol. name: upper case, [A-Z0-9_]; reason: one line. */
void moat_call_symbol(struct moat_filter_call *call, const char *name, double score,
		      const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Header edits, applied when the message is passed on. ADD puts the
 * header at the top, in the order added. */
void moat_call_header_add(struct moat_filter_call *call, const char *name, const char *value);
void moat_call_header_remove(struct moat_filter_call *call, const char *name, int index);
void moat_call_header_change(struct moat_filter_call *call, const char *name, int index,
			     const char *value);
/* An explicit action at this stage: REJECT/TEMPFAIL end the stage (the
 * RCPT, the MAIL, the connection...) with code and text ("5.7.1 ...";
 * 0/NULL: the defaults 550 5.7.1 / 451 4.7.1); DISCARD drops the message
 * at its end; ACCEPT exempts the session or message from later filters.
 * In dry-run it is only logged. */
void moat_call_decide(struct moat_filter_call *call, enum moat_action action, int code,
		      const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* An authentication result for moat's Authentication-Results header
 * (RFC 8601), e.g. ("spf", "pass", "smtp.mailfrom=example.org", NULL). */
void moat_call_auth_result(struct moat_filter_call *call, const char *method,
			   const char *result, const char *props, const char *comment);
/* What the filter looked up and what it got, one line ("zone
 * bl.example: 2.0.0.127.bl.example A -> 127.0.0.2"), for a front end
 * that traces the message (ctx->trace); nothing otherwise, so a filter
 * may call it freely. moat_ctx_trace() is the same outside a call (the
 * seal hook). */
void moat_call_trace(struct moat_filter_call *call, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void moat_ctx_trace(const struct moat_msgctx *ctx, const char *filter, enum moat_stage stage,
		    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Why the filter failed, for the log (then return/done ERROR). */
void moat_call_error(struct moat_filter_call *call, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Completes a MOAT_FILTER_WAIT. */
void moat_call_done(struct moat_filter_call *call, enum moat_filter_status status);

#endif
