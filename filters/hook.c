/*
 * hook.c - the hook registry and the runner that asks a stage's hooks
 * in order, waiting for asynchronous ones up to a deadline.
 *
 * Owns the registry (a fixed array filled at start) and each run and
 * call record. A call that outlives its run (the deadline passed, or the
 * session went away) is marked abandoned and freed when its hook finally
 * calls moat_hook_done().
 */
#include "hook.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_HOOKS 64

static const struct moat_hook *registry[MAX_HOOKS];
static size_t nregistry;

static const char *const stage_names[MOAT_STAGE__COUNT] = {
	"connect", "helo", "mail", "rcpt", "eom",
};

const char *moat_stage_name(enum moat_stage stage)
{
	return stage < MOAT_STAGE__COUNT ? stage_names[stage] : "?";
}

void moat_hook_register(const struct moat_hook *hook)
{
	if (nregistry < MAX_HOOKS)
		registry[nregistry++] = hook;
}

size_t moat_hook_count(void)
{
	return nregistry;
}

struct moat_hook_call {
	struct moat_hook_run *run;	/* NULL once abandoned */
	int code;
	char text[512];
};

struct moat_hook_run {
	enum moat_stage stage;
	const struct moat_msgctx *ctx;
	size_t next;			/* index of the hook being asked */
	struct moat_hook_call *waiting;	/* the call we wait for */
	struct event *deadline;
	moat_hook_run_cb cb;
	void *arg;
	struct moat_hook_reply reply;
};

void moat_hook_call_reply(struct moat_hook_call *call, int code, const char *text)
{
	call->code = code;
	snprintf(call->text, sizeof(call->text), "%s", text);
}

/* Asks hooks from run->next on. Returns 1 when the stage is decided
 * (run->reply filled), 0 when a hook waits. */
static int ask(struct moat_hook_run *run)
{
	while (run->next < nregistry) {
		const struct moat_hook *h = registry[run->next];
		moat_hook_fn fn = h->stage[run->stage];
		if (!fn) {
			run->next++;
			continue;
		}
		struct moat_hook_call *call = calloc(1, sizeof(*call));
		if (!call) {
			run->next++;	/* no memory: no opinion, go on */
			continue;
		}
		call->run = run;
		enum moat_hook_status st = fn(run->ctx, call);
		if (st == MOAT_HOOK_WAIT) {
			run->waiting = call;
			return 0;
		}
		run->next++;
		if (st == MOAT_HOOK_REPLY && call->code >= 400 && call->code <= 599) {
			run->reply.code = call->code;
			snprintf(run->reply.text, sizeof(run->reply.text), "%s", call->text);
			snprintf(run->reply.hook, sizeof(run->reply.hook), "%s", h->name);
			free(call);
			return 1;
		}
		free(call);
	}
	return 1;
}

static void finish(struct moat_hook_run *run)
{
	moat_hook_run_cb cb = run->cb;
	void *arg = run->arg;
	struct moat_hook_reply reply = run->reply;

	event_free(run->deadline);
	free(run);
	cb(arg, &reply);
}

void moat_hook_done(struct moat_hook_call *call, enum moat_hook_status status)
{
	struct moat_hook_run *run = call->run;

	if (!run) {		/* abandoned: nobody waits any more */
		free(call);
		return;
	}
	run->waiting = NULL;
	const struct moat_hook *h = registry[run->next];
	run->next++;
	if (status == MOAT_HOOK_REPLY && call->code >= 400 && call->code <= 599) {
		run->reply.code = call->code;
		snprintf(run->reply.text, sizeof(run->reply.text), "%s", call->text);
		snprintf(run->reply.hook, sizeof(run->reply.hook), "%s", h->name);
		free(call);
		finish(run);
		return;
	}
	free(call);
	if (ask(run))
		finish(run);
	/* else: another hook waits; the deadline keeps running */
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct moat_hook_run *run = arg;
	(void)fd;
	(void)what;
	if (run->waiting) {
		run->waiting->run = NULL;
		run->waiting = NULL;
	}
	memset(&run->reply, 0, sizeof(run->reply));
	run->reply.timed_out = 1;
	snprintf(run->reply.hook, sizeof(run->reply.hook), "%s",
		 run->next < nregistry ? registry[run->next]->name : "?");
	finish(run);
}

int moat_hook_run_start(enum moat_stage stage, const struct moat_msgctx *ctx,
			long timeout_sec, moat_hook_run_cb cb, void *arg,
			struct moat_hook_run **out, struct moat_hook_reply *reply)
{
	struct moat_hook_run *run;

	memset(reply, 0, sizeof(*reply));
	*out = NULL;
	if (nregistry == 0)
		return 1;
	run = calloc(1, sizeof(*run));
	if (!run)
		return 1;	/* no memory: no opinion */
	run->stage = stage;
	run->ctx = ctx;
	run->cb = cb;
	run->arg = arg;
	if (ask(run)) {
		*reply = run->reply;
		free(run);
		return 1;
	}
	run->deadline = evtimer_new(ctx->base, on_deadline, run);
	struct timeval tv = {timeout_sec, 0};
	if (run->deadline)
		evtimer_add(run->deadline, &tv);
	*out = run;
	return 0;
}

void moat_hook_run_cancel(struct moat_hook_run *run)
{
	if (!run)
		return;
	if (run->waiting)
		run->waiting->run = NULL;
	if (run->deadline)
		event_free(run->deadline);
	free(run);
}
