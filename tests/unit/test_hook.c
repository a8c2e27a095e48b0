/*
 * test_hook - the stage hook runner (filters/hook.c) and the worker pool
 * (util/worker.c) on a real libevent loop: order, the first reply wins,
 * asynchronous answers from a timer and from a worker thread, the stage
 * deadline, an answer arriving after the deadline, cancellation.
 */
#include "hook.h"
#include "unit.h"
#include "worker.h"

#include <event2/event.h>
#include <event2/thread.h>
#include <string.h>
#include <unistd.h>

static struct event_base *base;
static struct moat_worker_pool *pool;
static int calls[8];
static struct moat_hook_call *held;	/* a call answered later by hand */

/* hook A: counts, rejects RCPT "a-reject" at once */
static enum moat_hook_status a_rcpt(const struct moat_msgctx *c, struct moat_hook_call *call)
{
	calls[0]++;
	if (strcmp(c->rcpt, "a-reject") == 0) {
		moat_hook_call_reply(call, 550, "5.7.1 no by A");
		return MOAT_HOOK_REPLY;
	}
	return MOAT_HOOK_CONTINUE;
}

static void work_sleep(void *arg) { (void)arg; usleep(20000); }
static void work_done(void *arg)
{
	struct moat_hook_call *call = arg;
	moat_hook_call_reply(call, 451, "4.7.1 later by B");
	moat_hook_done(call, MOAT_HOOK_REPLY);
}

/* hook B: for "b-async" answers from a worker thread; for "b-hang"
 * keeps the call for the test to answer after the deadline. */
static enum moat_hook_status b_rcpt(const struct moat_msgctx *c, struct moat_hook_call *call)
{
	calls[1]++;
	if (strcmp(c->rcpt, "b-async") == 0) {
		moat_worker_submit(c->workers, work_sleep, work_done, call);
		return MOAT_HOOK_WAIT;
	}
	if (strcmp(c->rcpt, "b-hang") == 0) {
		held = call;
		return MOAT_HOOK_WAIT;
	}
	return MOAT_HOOK_CONTINUE;
}

static const struct moat_hook hook_a = {"A", {[MOAT_STAGE_RCPT] = a_rcpt}};
static const struct moat_hook hook_b = {"B", {[MOAT_STAGE_RCPT] = b_rcpt}};

static struct moat_hook_reply got;
static int got_n;

static void on_done(void *arg, const struct moat_hook_reply *r)
{
	(void)arg;
	got = *r;
	got_n++;
	event_base_loopbreak(base);
}

static struct moat_msgctx ctx_for(const char *rcpt)
{
	struct moat_msgctx c;
	memset(&c, 0, sizeof(c));
	c.rcpt = rcpt;
	c.base = base;
	c.workers = pool;
	return c;
}

static void reset(void)
{
	memset(calls, 0, sizeof(calls));
	memset(&got, 0, sizeof(got));
	got_n = 0;
}

TEST(no_hooks_for_stage_continue_at_once)
{
	struct moat_msgctx c = ctx_for("x");
	struct moat_hook_run *run;
	struct moat_hook_reply r;
	reset();
	CHECK(moat_hook_run_start(MOAT_STAGE_MAIL, &c, 5, on_done, NULL, &run, &r) == 1);
	CHECK(r.code == 0 && run == NULL);
}

TEST(all_continue_in_order)
{
	struct moat_msgctx c = ctx_for("someone");
	struct moat_hook_run *run;
	struct moat_hook_reply r;
	reset();
	CHECK(moat_hook_run_start(MOAT_STAGE_RCPT, &c, 5, on_done, NULL, &run, &r) == 1);
	CHECK(r.code == 0);
	CHECK(calls[0] == 1 && calls[1] == 1);
}

TEST(first_reply_wins_later_hooks_not_asked)
{
	struct moat_msgctx c = ctx_for("a-reject");
	struct moat_hook_run *run;
	struct moat_hook_reply r;
	reset();
	CHECK(moat_hook_run_start(MOAT_STAGE_RCPT, &c, 5, on_done, NULL, &run, &r) == 1);
	CHECK(r.code == 550 && strcmp(r.text, "5.7.1 no by A") == 0);
	CHECK(strcmp(r.hook, "A") == 0);
	CHECK(calls[1] == 0);
}

TEST(async_answer_from_worker_thread)
{
	struct moat_msgctx c = ctx_for("b-async");
	struct moat_hook_run *run;
	struct moat_hook_reply r;
	reset();
	CHECK(moat_hook_run_start(MOAT_STAGE_RCPT, &c, 5, on_done, NULL, &run, &r) == 0);
	CHECK(run != NULL && got_n == 0);
	event_base_dispatch(base);
	CHECK(got_n == 1);
	CHECK(got.code == 451 && strcmp(got.hook, "B") == 0 && !got.timed_out);
}

TEST(deadline_then_late_answer_is_discarded)
{
	struct moat_msgctx c = ctx_for("b-hang");
	struct moat_hook_run *run;
	struct moat_hook_reply r;
	reset();
	held = NULL;
	CHECK(moat_hook_run_start(MOAT_STAGE_RCPT, &c, 1, on_done, NULL, &run, &r) == 0);
	event_base_dispatch(base);
	CHECK(got_n == 1 && got.timed_out && got.code == 0);
	CHECK(strcmp(got.hook, "B") == 0);
	CHECK(held != NULL);
	/* The hook answers after all: nothing may happen, nothing leak. */
	moat_hook_call_reply(held, 550, "5.7.1 too late");
	moat_hook_done(held, MOAT_HOOK_REPLY);
	CHECK(got_n == 1);
}

TEST(cancel_then_answer)
{
	struct moat_msgctx c = ctx_for("b-hang");
	struct moat_hook_run *run;
	struct moat_hook_reply r;
	reset();
	held = NULL;
	CHECK(moat_hook_run_start(MOAT_STAGE_RCPT, &c, 5, on_done, NULL, &run, &r) == 0);
	moat_hook_run_cancel(run);	/* the session went away */
	moat_hook_done(held, MOAT_HOOK_CONTINUE);
	CHECK(got_n == 0);
}

int main(void)
{
	evthread_use_pthreads();
	base = event_base_new();
	pool = moat_worker_pool_new(base, 2);
	RUN(no_hooks_for_stage_continue_at_once);
	moat_hook_register(&hook_a);
	moat_hook_register(&hook_b);
	CHECK(moat_hook_count() == 2);
	RUN(all_continue_in_order);
	RUN(first_reply_wins_later_hooks_not_asked);
	RUN(async_answer_from_worker_thread);
	RUN(deadline_then_late_answer_is_discarded);
	RUN(cancel_then_answer);
	moat_worker_pool_free(pool);
	event_base_free(base);
	return unit_done();
}
