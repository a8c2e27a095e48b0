/*
 * test_pipeline - filters/pipeline.c, scoring.c, verdict.c and message.c
 * on a real libevent loop, with filters defined here: order, the first
 * reject ends a stage, exemption, asynchronous answers from a worker
 * thread, a filter's timeout and on_error, dry-run per filter and
 * global, thresholds, discard, the result and spam headers, header edits.
 */
#include "filter.h"
#include "message.h"
#include "pipeline.h"
#include "unit.h"
#include "worker.h"

#include <event2/event.h>
#include <event2/thread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct event_base *base;
static struct moat_worker_pool *pool;
static char dir[] = "/tmp/moat-pipeline-test.XXXXXX";
static int asked[4];
static struct moat_filter_call *held;

struct conf { struct moat_filter_common common; };

/* "one": scores the recipient; rejects "one-reject"; allows "one-allow" */
static enum moat_filter_status one_rcpt(struct moat_filter_call *call)
{
	const char *r = moat_call_ctx(call)->rcpt;
	asked[0]++;
	moat_call_symbol(call, "ONE", 1.5, "recipient %s", r);
	if (strcmp(r, "one-reject") == 0)
		moat_call_decide(call, MOAT_ACTION_REJECT, 0, "5.7.1 no by one");
	if (strcmp(r, "one-allow") == 0)
		moat_call_decide(call, MOAT_ACTION_ACCEPT, 0, NULL);
	if (strcmp(r, "one-discard") == 0)
		moat_call_decide(call, MOAT_ACTION_DISCARD, 0, NULL);
	return MOAT_FILTER_CONTINUE;
}

static void slow_work(void *arg) { (void)arg; usleep(20000); }
static void slow_done(void *arg)
{
	struct moat_filter_call *call = arg;
	moat_call_symbol(call, "TWO_ASYNC", 10, "from a worker thread");
	moat_call_done(call, MOAT_FILTER_CONTINUE);
}

/* "two": for "two-async" answers from a worker; for "two-hang" never in
 * time; for "two-error" fails; else scores 2 */
static enum moat_filter_status two_rcpt(struct moat_filter_call *call)
{
	const char *r = moat_call_ctx(call)->rcpt;
	asked[1]++;
	if (strcmp(r, "two-async") == 0) {
		moat_worker_submit(moat_call_ctx(call)->workers, slow_work, slow_done, call);
		return MOAT_FILTER_WAIT;
	}
	if (strcmp(r, "two-hang") == 0) {
		moat_call_symbol(call, "TWO_LOST", 100, "must never count");
		held = call;
		return MOAT_FILTER_WAIT;
	}
	if (strcmp(r, "two-error") == 0) {
		moat_call_symbol(call, "TWO_LOST", 100, "must never count");
		moat_call_error(call, "broken on purpose");
		return MOAT_FILTER_ERROR;
	}
	moat_call_symbol(call, "TWO", 2, "always");
	return MOAT_FILTER_CONTINUE;
}

static enum moat_filter_status two_eom(struct moat_filter_call *call)
{
	const struct moat_message *m = moat_call_ctx(call)->message;
	moat_call_header_add(call, "X-Two", "added");
	moat_call_header_remove(call, "X-Drop", 0);
	moat_call_header_change(call, "Subject", 1, "changed");
	if (moat_message_header(m, "X-Spammy", 1))
		moat_call_symbol(call, "SPAMMY", 20, "X-Spammy present");
	if (moat_message_header(m, "X-Auth", 1)) {
		moat_call_auth_result(call, "spf", "pass", "smtp.mailfrom=example.org", NULL);
		moat_call_auth_result(call, "dkim", "fail", "header.d=example.org", "bad signature");
	}
	return MOAT_FILTER_CONTINUE;
}

static const struct moat_filter f_one = {
	.name = "one", .doc = "test filter one", .conf_size = sizeof(struct conf),
	.stage = {[MOAT_STAGE_RCPT] = one_rcpt},
};
static const struct moat_filter f_two = {
	.name = "two", .doc = "test filter two", .conf_size = sizeof(struct conf),
	.stage = {[MOAT_STAGE_RCPT] = two_rcpt, [MOAT_STAGE_EOM] = two_eom},
};

static struct moat_stage_result got;
static int got_n;
static void on_done(void *arg, const struct moat_stage_result *r)
{
	(void)arg;
	got = *r;
	got_n++;
	event_base_loopbreak(base);
}

static struct moat_config *load(const char *extra)
{
	char path[600], text[2048];
	struct moat_config *c;
	struct moat_config_errors e;
	snprintf(path, sizeof(path), "%s/p.conf", dir);
	snprintf(text, sizeof(text),
		 "listener in {\n listen = \"127.0.0.1:2525\"\n upstream = \"127.0.0.1:10025\"\n}\n%s\n",
		 extra);
	FILE *f = fopen(path, "w");
	fputs(text, f);
	fclose(f);
	if (moat_config_load(path, NULL, 0, &c, &e) < 0) {
		for (size_t i = 0; i < e.n; i++)
			fprintf(stderr, "%s\n", e.msg[i]);
		moat_config_errors_free(&e);
		return NULL;
	}
	moat_config_errors_free(&e);
	return c;
}

/* Runs the RCPT stage for rcpt; waits on the loop if needed. */
static struct moat_stage_result rcpt(struct moat_config *c, struct moat_verdict *v, const char *r)
{
	struct moat_msgctx ctx;
	struct moat_pipeline_run *run;
	struct moat_stage_result res;
	memset(&ctx, 0, sizeof(ctx));
	ctx.session_id = "TEST";
	ctx.rcpt = r;
	ctx.base = base;
	ctx.workers = pool;
	got_n = 0;
	if (moat_pipeline_run(c, MOAT_STAGE_RCPT, &ctx, v, on_done, NULL, &run, &res))
		return res;
	event_base_dispatch(base);
	return got;
}

static int has_symbol(const struct moat_verdict *v, const char *name)
{
	for (size_t i = 0; i < v->nsymbols; i++)
		if (strcmp(v->symbols[i].name, name) == 0)
			return 1;
	return 0;
}

TEST(order_and_symbols)
{
	struct moat_config *c = load("filters = {\"one\", \"two\"}");
	struct moat_verdict v;
	moat_verdict_init(&v);
	memset(asked, 0, sizeof(asked));
	struct moat_stage_result r = rcpt(c, &v, "someone");
	CHECK(r.decision.action == MOAT_ACTION_NONE);
	CHECK(asked[0] == 1 && asked[1] == 1);
	CHECK(v.nsymbols == 2 && strcmp(v.symbols[0].name, "ONE") == 0);
	CHECK(v.score == 3.5);
	moat_verdict_clear(&v);
	moat_config_unref(c);
}

TEST(filter_not_listed_does_not_run)
{
	struct moat_config *c = load("filters = {\"two\"}");
	struct moat_verdict v;
	moat_verdict_init(&v);
	memset(asked, 0, sizeof(asked));
	rcpt(c, &v, "someone");
	CHECK(asked[0] == 0 && asked[1] == 1);
	moat_verdict_clear(&v);
	moat_config_unref(c);
}

TEST(reject_ends_stage)
{
	struct moat_config *c = load("filters = {\"one\", \"two\"}");
	struct moat_verdict v;
	moat_verdict_init(&v);
	memset(asked, 0, sizeof(asked));
	struct moat_stage_result r = rcpt(c, &v, "one-reject");
	CHECK(r.decision.action == MOAT_ACTION_REJECT);
	CHECK(strcmp(r.decision.text, "5.7.1 no by one") == 0);
	CHECK(strcmp(r.decision.filter, "one") == 0);
	CHECK(asked[1] == 0);
	moat_verdict_clear(&v);
	moat_config_unref(c);
}

TEST(allow_exempts_later_filters)
{
	struct moat_config *c = load("filters = {\"one\", \"two\"}");
	struct moat_verdict v;
	moat_verdict_init(&v);
	memset(asked, 0, sizeof(asked));
	struct moat_stage_result r = rcpt(c, &v, "one-allow");
	CHECK(r.decision.action == MOAT_ACTION_NONE && v.exempt);
	CHECK(asked[1] == 0);
	moat_verdict_clear(&v);
	moat_config_unref(c);
}

TEST(async_from_worker)
{
	struct moat_config *c = load("filters = {\"one\", \"two\"}");
	struct moat_verdict v;
	moat_verdict_init(&v);
	rcpt(c, &v, "two-async");
	CHECK(got_n == 1);
	CHECK(has_symbol(&v, "TWO_ASYNC") && v.score == 11.5);
	moat_verdict_clear(&v);
	moat_config_unref(c);
}

TEST(timeout_continue_drops_late_answer)
{
	struct moat_config *c = load("filters = {\"two\", \"one\"}\ntwo {\n timeout = 1\n}");
	struct moat_verdict v;
	moat_verdict_init(&v);
	memset(asked, 0, sizeof(asked));
	held = NULL;
	struct moat_stage_result r = rcpt(c, &v, "two-hang");
	CHECK(got_n == 1 && r.errors == 1);
	CHECK(r.decision.action == MOAT_ACTION_NONE);
	CHECK(asked[0] == 1);		/* the next filter still ran */
	CHECK(!has_symbol(&v, "TWO_LOST"));
	CHECK(held != NULL);
	moat_call_done(held, MOAT_FILTER_CONTINUE);	/* too late: discarded */
	CHECK(!has_symbol(&v, "TWO_LOST"));
	moat_verdict_clear(&v);
	moat_config_unref(c);
}

TEST(error_with_on_error_tempfail)
{
	struct moat_config *c = load("filters = {\"two\", \"one\"}\ntwo {\n on_error = \"tempfail\"\n}");
	struct moat_verdict v;
	moat_verdict_init(&v);
	memset(asked, 0, sizeof(asked));
	struct moat_stage_result r = rcpt(c, &v, "two-error");
	CHECK(r.decision.action == MOAT_ACTION_TEMPFAIL && r.errors == 1);
	CHECK(r.decision.text[0] == '4');
	CHECK(!has_symbol(&v, "TWO_LOST") && asked[0] == 0);
	moat_verdict_clear(&v);
	moat_config_unref(c);
}

TEST(dry_run_per_filter)
{
	struct moat_config *c = load("filters = {\"one\", \"two\"}\none {\n dry_run = yes\n}");
	struct moat_verdict v;
	moat_verdict_init(&v);
	memset(asked, 0, sizeof(asked));
	struct moat_stage_result r = rcpt(c, &v, "one-reject");
	CHECK(r.decision.action == MOAT_ACTION_NONE);
	CHECK(v.would.action == MOAT_ACTION_REJECT && v.would.dry_run);
	CHECK(asked[1] == 1);
	CHECK(v.score == 2 && v.score_all == 3.5);	/* ONE is dry-run */
	moat_verdict_clear(&v);
	moat_config_unref(c);
}

/* End of message with a real message in a spool. */
static int eom(struct moat_config *c, struct moat_verdict *v, const char *msg,
	       struct moat_message *m, struct msg_spool **sp)
{
	struct moat_msgctx ctx;
	struct moat_pipeline_run *run;
	struct moat_stage_result res;
	*sp = msg_spool_new(dir, 1 << 20);
	msg_spool_write(*sp, msg, strlen(msg));
	if (moat_message_parse(m, *sp, 1 << 20) < 0)
		return -1;
	memset(&ctx, 0, sizeof(ctx));
	ctx.session_id = "TEST";
	ctx.message = m;
	ctx.base = base;
	ctx.workers = pool;
	if (!moat_pipeline_run(c, MOAT_STAGE_EOM, &ctx, v, on_done, NULL, &run, &res))
		event_base_dispatch(base);
	moat_pipeline_score(c, m, v);
	return 0;
}

TEST(score_thresholds_and_headers)
{
	struct moat_config *c = load("filters = {\"one\", \"two\"}\n"
				     "scoring {\n add_header = 3\n reject = 30\n result_header = \"X-R\"\n}");
	struct moat_verdict v;
	struct moat_message m;
	struct msg_spool *sp;
	char *head;
	size_t len;
	moat_verdict_init(&v);
	rcpt(c, &v, "someone");			/* 3.5: add_header */
	CHECK(eom(c, &v, "Subject: old\r\nX-Drop: a\r\nFrom: a@b\r\nX-Drop: b\r\n\r\nbody\r\n",
		  &m, &sp) == 0);
	CHECK(v.decision.action == MOAT_ACTION_ADD_HEADER);
	CHECK(moat_message_edited_header(&m, &v, &head, &len) == 0);
	/* added first, in order: the filter's, the spam header, the result */
	CHECK(strncmp(head, "X-Two: added\r\nX-Spam: Yes\r\nX-R: score=3.50 action=add_header", 56) == 0);
	CHECK(strstr(head, "symbols=ONE(1.5),TWO(2)") != NULL);
	CHECK(strstr(head, "Subject: changed\r\n") != NULL && !strstr(head, "old"));
	CHECK(!strstr(head, "X-Drop"));
	CHECK(strstr(head, "From: a@b\r\n\r\n") != NULL);
	CHECK(len == strlen(head) && m.body_offset == strlen(
		"Subject: old\r\nX-Drop: a\r\nFrom: a@b\r\nX-Drop: b\r\n\r\n"));
	free(head);
	moat_message_free(&m);
	msg_spool_free(sp);
	moat_verdict_clear(&v);

	moat_verdict_init(&v);
	rcpt(c, &v, "someone");
	CHECK(eom(c, &v, "X-Spammy: 1\r\n\r\nbody\r\n", &m, &sp) == 0);	/* 23.5 */
	CHECK(v.decision.action == MOAT_ACTION_ADD_HEADER);
	moat_message_free(&m);
	msg_spool_free(sp);
	moat_verdict_clear(&v);
	moat_config_unref(c);

	c = load("filters = {\"one\", \"two\"}\nscoring {\n reject = 20\n}");
	moat_verdict_init(&v);
	rcpt(c, &v, "someone");
	CHECK(eom(c, &v, "X-Spammy: 1\r\n\r\nbody\r\n", &m, &sp) == 0);
	CHECK(v.decision.action == MOAT_ACTION_REJECT);
	CHECK(strcmp(v.decision.text, "5.7.1 Message rejected as spam") == 0);
	moat_message_free(&m);
	msg_spool_free(sp);
	moat_verdict_clear(&v);
	moat_config_unref(c);
}

TEST(global_dry_run_never_rejects_but_says_would)
{
	struct moat_config *c = load("dry_run = yes\nfilters = {\"one\", \"two\"}\n"
				     "scoring {\n reject = 20\n}");
	struct moat_verdict v;
	struct moat_message m;
	struct msg_spool *sp;
	char *head;
	size_t len;
	moat_verdict_init(&v);
	struct moat_stage_result r = rcpt(c, &v, "one-reject");
	CHECK(r.decision.action == MOAT_ACTION_NONE && v.would.action == MOAT_ACTION_REJECT);
	CHECK(eom(c, &v, "X-Spammy: 1\r\n\r\nbody\r\n", &m, &sp) == 0);
	CHECK(v.decision.action == MOAT_ACTION_ACCEPT);
	CHECK(v.would.action == MOAT_ACTION_REJECT);
	CHECK(moat_message_edited_header(&m, &v, &head, &len) == 0);
	CHECK(strstr(head, "X-Moat-Result: score=23.50 action=accept would=reject dry_run=yes") != NULL);
	free(head);
	moat_message_free(&m);
	msg_spool_free(sp);
	moat_verdict_clear(&v);
	moat_config_unref(c);
}

TEST(authentication_results_added_and_forgeries_removed)
{
	struct moat_config *c = load("authserv_id = \"mx.moat.example\"\nfilters = {\"two\"}");
	struct moat_verdict v;
	struct moat_message m;
	struct msg_spool *sp;
	char *head;
	size_t len;
	moat_verdict_init(&v);
	CHECK(eom(c, &v, "Authentication-Results: MX.moat.example; spf=pass (forged)\r\n"
		  "Authentication-Results: other.example; dkim=pass\r\n"
		  "Authentication-Results:  mx.moat.example;\r\n\tdkim=pass (forged too)\r\n"
		  "X-Auth: 1\r\n\r\nbody\r\n", &m, &sp) == 0);
	CHECK(moat_message_edited_header(&m, &v, &head, &len) == 0);
	CHECK(strstr(head, "forged") == NULL);
	CHECK(strstr(head, "Authentication-Results: other.example; dkim=pass\r\n") != NULL);
	CHECK(strstr(head, "Authentication-Results: mx.moat.example;\r\n\tspf=pass smtp.mailfrom=example.org;"
		     "\r\n\tdkim=fail header.d=example.org (bad signature)\r\n") != NULL);
	free(head);
	moat_message_free(&m);
	msg_spool_free(sp);
	moat_verdict_clear(&v);
	moat_config_unref(c);
}

TEST(discard_is_explicit)
{
	struct moat_config *c = load("filters = {\"one\"}");
	struct moat_verdict v;
	struct moat_message m;
	struct msg_spool *sp;
	moat_verdict_init(&v);
	rcpt(c, &v, "one-discard");
	CHECK(eom(c, &v, "Subject: x\r\n\r\nbody\r\n", &m, &sp) == 0);
	CHECK(v.decision.action == MOAT_ACTION_DISCARD);
	moat_message_free(&m);
	msg_spool_free(sp);
	moat_verdict_clear(&v);
	moat_config_unref(c);
}

TEST(config_errors)
{
	struct moat_config *c = load("filters = {\"one\", \"nosuch\"}");
	CHECK(c == NULL);
	c = load("filters = {\"one\", \"one\"}");
	CHECK(c == NULL);
	c = load("filters = {\"one\"}\none {\n on_error = \"explode\"\n}");
	CHECK(c == NULL);
	c = load("scoring {\n reject_text = \"4.7.1 not a reject\"\n}");
	CHECK(c == NULL);
}

TEST(message_parse)
{
	struct msg_spool *sp = msg_spool_new(dir, 1 << 20);
	struct moat_message m;
	const char *msg = "From: a@b\r\nSubject: one\r\n two\r\nsubject: again\r\n\r\nbody\r\n";
	msg_spool_write(sp, msg, strlen(msg));
	CHECK(moat_message_parse(&m, sp, 1 << 20) == 0);
	CHECK(m.nheaders == 3 && m.has_body);
	CHECK(moat_message_count(&m, "SUBJECT") == 2);
	const struct moat_header *h = moat_message_header(&m, "subject", 1);
	CHECK(h && h->value_len == 10 && memcmp(h->value, " one\r\n two", 10) == 0);
	CHECK(moat_message_header(&m, "subject", 3) == NULL);
	CHECK(m.body_offset == strlen(msg) - 6);
	moat_message_free(&m);
	msg_spool_free(sp);
}

int main(void)
{
	if (!mkdtemp(dir))
		return 1;
	evthread_use_pthreads();
	base = event_base_new();
	pool = moat_worker_pool_new(base, 2);
	moat_filter_register(&f_one);
	moat_filter_register(&f_two);
	moat_scoring_register();
	RUN(order_and_symbols);
	RUN(filter_not_listed_does_not_run);
	RUN(reject_ends_stage);
	RUN(allow_exempts_later_filters);
	RUN(async_from_worker);
	RUN(timeout_continue_drops_late_answer);
	RUN(error_with_on_error_tempfail);
	RUN(dry_run_per_filter);
	RUN(score_thresholds_and_headers);
	RUN(global_dry_run_never_rejects_but_says_would);
	RUN(authentication_results_added_and_forgeries_removed);
	RUN(discard_is_explicit);
	RUN(config_errors);
	RUN(message_parse);
	moat_worker_pool_free(pool);
	event_base_free(base);
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		return 1;
	return unit_done();
}
