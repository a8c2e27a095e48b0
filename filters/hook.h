/*
 * hook.h - the stage hooks: where filters meet an SMTP session.
 *
 * A front end (the proxy now, the milter later) calls
 * moat_hook_run_start() at each SMTP stage; every registered hook for
 * that stage is asked in registration order with the message context.
 *
 * THE RETURN RULE (one rule for every hook):
 *   MOAT_HOOK_CONTINUE  no objection; the next hook is asked.
 *   MOAT_HOOK_REPLY     the stage ends with the reply the hook set with
 *                       moat_hook_call_reply() (4xx tempfail, 5xx
 *                       reject); later hooks are not asked.
 *   MOAT_HOOK_WAIT      the hook started asynchronous work (a timer, DNS,
 *                       Redis, a worker thread) and will call
 *                       moat_hook_done(call, CONTINUE or REPLY) exactly
 *                       once, later, on the loop thread. It must call it
 *                       even after the stage gave up waiting (deadline,
 *                       client gone): the call is then discarded.
 * A hook never blocks the loop; blocking work goes to the worker pool
 * (ctx->workers).
 *
 * Owns: the registry (static, filled at start) and each pending run;
 * the message context is borrowed from the front end for the duration
 * of the call (a hook that waits must copy what it needs).
 */
#ifndef MOAT_HOOK_H
#define MOAT_HOOK_H

#include <stddef.h>

struct event_base;
struct moat_worker_pool;
struct msg_spool;

enum moat_stage {
	MOAT_STAGE_CONNECT = 0,
	MOAT_STAGE_HELO,
	MOAT_STAGE_MAIL,
	MOAT_STAGE_RCPT,
	MOAT_STAGE_EOM,		/* end of message: headers and body complete */
	MOAT_STAGE__COUNT
};

const char *moat_stage_name(enum moat_stage stage);

/* What a filter may know of a message, whichever front end feeds it. */
struct moat_msgctx {
	const char *session_id;
	const char *listener;		/* listener name */
	int role;			/* enum moat_role */
	const char *client_addr;	/* "192.0.2.1" */
	int client_port;
	const char *client_name;	/* "[UNAVAILABLE]" until resolved */
	const char *helo;		/* NULL before HELO/EHLO */
	const char *mail_from;		/* NULL before MAIL; "" for <> */
	const char *rcpt;		/* the RCPT being decided (RCPT stage) */
	const char *const *rcpts;	/* accepted recipients */
	size_t nrcpts;
	const struct msg_spool *message; /* EOM stage: the whole message */
	struct event_base *base;
	struct moat_worker_pool *workers;
};

enum moat_hook_status {
	MOAT_HOOK_CONTINUE = 0,
	MOAT_HOOK_REPLY = 1,
	MOAT_HOOK_WAIT = 2,
};

struct moat_hook_call;		/* one hook asked at one stage */

typedef enum moat_hook_status (*moat_hook_fn)(const struct moat_msgctx *ctx,
					      struct moat_hook_call *call);

struct moat_hook {
	const char *name;
	moat_hook_fn stage[MOAT_STAGE__COUNT];	/* NULL: not interested */
};

/* Registers a hook (static storage, at start, before the loop runs). */
void moat_hook_register(const struct moat_hook *hook);
size_t moat_hook_count(void);

/* Sets the reply for MOAT_HOOK_REPLY: code 400..599 and text starting
 * with the enhanced status code ("5.7.1 Rejected by policy"). */
void moat_hook_call_reply(struct moat_hook_call *call, int code, const char *text);
/* Completes a MOAT_HOOK_WAIT. */
void moat_hook_done(struct moat_hook_call *call, enum moat_hook_status status);

/* The outcome of a stage. code 0 = go on. */
struct moat_hook_reply {
	int code;
	char text[512];
	char hook[64];		/* which hook replied or timed out */
	int timed_out;
};

struct moat_hook_run;
typedef void (*moat_hook_run_cb)(void *arg, const struct moat_hook_reply *reply);

/* Runs the hooks of one stage. Returns 1 when they finished at once
 * (*reply filled), or 0 when one is waiting: cb(arg, reply) runs later
 * on the loop, unless moat_hook_run_cancel(*run) is called first. The
 * context must stay valid until then. timeout_sec bounds the wait. */
int moat_hook_run_start(enum moat_stage stage, const struct moat_msgctx *ctx,
			long timeout_sec, moat_hook_run_cb cb, void *arg,
			struct moat_hook_run **run, struct moat_hook_reply *reply);
void moat_hook_run_cancel(struct moat_hook_run *run);

#endif
