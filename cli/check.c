/*
 * check.c - `moat check`: run a message file through the same filter
 * pipeline the daemon uses, and print the verdict.
 *
 *	moat check --ip ADDR --helo NAME --from ADDR --rcpt ADDR [--rcpt ...]
 *		   [--listener NAME] [--trace] MSGFILE
 *
 * The stages run in order (connect, HELO, MAIL, each RCPT, end of
 * message) on a real event loop, so filters that wait for DNS or Redis
 * behave as in moatd. A file with bare LF line ends is read as CRLF.
 * --trace prints, as they happen, the lines filters trace: what each
 * looked up and what it got (moat_call_trace(), filters/filter.h).
 * Exit status: 0 accept, 1 add_header, 2 tempfail, 3 reject, 4 discard;
 * 64 usage, 65 unreadable message, 78 configuration error.
 * Owns the loop, the verdicts and the message for the run.
 */
#include "check.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "filter.h"
#include "message.h"
#include "pipeline.h"
#include "resolver.h"
#include "spf_pool.h"
#include "worker.h"

#define MAX_RCPTS 256

struct run {
	const struct moat_config *c;
	struct event_base *base;
	struct moat_msgctx ctx;
	struct moat_verdict sess, msg;
	struct moat_message message;
	struct msg_spool *spool;
	const char *rcpts[MAX_RCPTS];
	size_t nrcpts;
	const char *accepted[MAX_RCPTS];
	size_t naccepted;
	struct moat_stage_result res;
	int waiting;
	void *filter_state[MOAT_MAX_FILTERS];
};

static void on_done(void *arg, const struct moat_stage_result *r)
{
	struct run *run = arg;
	run->res = *r;
	run->waiting = 0;
	event_base_loopbreak(run->base);
}

/* Runs one stage to its end (on the loop if a filter waits). */
static const struct moat_stage_result *stage(struct run *run, enum moat_stage st,
					     struct moat_verdict *v)
{
	struct moat_pipeline_run *pr;
	run->ctx.rcpts = run->accepted;
	run->ctx.nrcpts = run->naccepted;
	run->waiting = 1;
	if (moat_pipeline_run(run->c, st, &run->ctx, v, on_done, run, &pr, &run->res)) {
		run->waiting = 0;
	} else {
		while (run->waiting)
			event_base_loop(run->base, EVLOOP_ONCE);
	}
	return &run->res;
}

static int refused(const struct moat_stage_result *r)
{
	return r->decision.action == MOAT_ACTION_REJECT || r->decision.action == MOAT_ACTION_TEMPFAIL;
}

static void print_stage(const char *name, const char *what, const struct moat_stage_result *r)
{
	printf("stage %-8s%s%s: ", name, what ? " " : "", what ? what : "");
	if (refused(r)) {
		int code;
		const char *text;
		moat_decision_reply(&r->decision, 0, &code, &text);
		printf("%s %s (filter %s)",
		       r->decision.action == MOAT_ACTION_REJECT ? "reject" : "tempfail", text,
		       r->decision.filter ? r->decision.filter : "-");
	} else {
		printf("continue");
	}
	printf("%s (%.1f ms)\n", r->errors ? ", a filter failed" : "", r->ms);
}

static void print_verdict(const struct moat_verdict *v)
{
	printf("symbols:\n");
	if (!v->nsymbols)
		printf("  (none)\n");
	for (size_t i = 0; i < v->nsymbols; i++) {
		const struct moat_symbol *s = &v->symbols[i];
		printf("  %-28s %7.2f  %-10s %s%s\n", s->name, s->score, s->filter ? s->filter : "-",
		       s->reason, s->dry_run ? " [dry-run]" : "");
	}
	printf("score: %.2f", v->score);
	if (v->score_all != v->score)
		printf(" (%.2f with dry-run filters)", v->score_all);
	printf("\naction: %s", moat_action_name(v->decision.action));
	if (v->decision.text[0])
		printf(" %s", v->decision.text);
	if (v->decision.filter)
		printf(" (by %s)", v->decision.filter);
	printf("\n");
	if (v->would.action)
		printf("would: %s%s%s (dry-run)\n", moat_action_name(v->would.action),
		       v->would.text[0] ? " " : "", v->would.text);
}

static int exit_for(enum moat_action a)
{
	switch (a) {
	case MOAT_ACTION_ADD_HEADER: return 1;
	case MOAT_ACTION_TEMPFAIL: return 2;
	case MOAT_ACTION_REJECT: return 3;
	case MOAT_ACTION_DISCARD: return 4;
	default: return 0;
	}
}

/* Reads path into spool, turning bare LF line ends into CRLF. */
static int read_message(const char *path, struct msg_spool *spool)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
	int c, prev = 0;
	char buf[8192];
	size_t n = 0;
	if (!f)
		return -1;
	while ((c = getc(f)) != EOF) {
		if (c == '\n' && prev != '\r')
			buf[n++] = '\r';
		buf[n++] = (char)c;
		prev = c;
		if (n >= sizeof(buf) - 2) {
			if (msg_spool_write(spool, buf, n) < 0)
				return -1;
			n = 0;
		}
	}
	if (prev != '\n' && prev != 0) {
		buf[n++] = '\r';
		buf[n++] = '\n';
	}
	int rc = msg_spool_write(spool, buf, n);
	if (f != stdin)
		fclose(f);
	return rc;
}

/* Passes the message to the filters' data hooks, as a front end does
 * while it is received. 0, or -1 with errno set. */
static int stream_message(struct run *run)
{
	char buf[16384];
	size_t off = 0;
	ssize_t n;
	moat_pipeline_data(run->c, &run->ctx, NULL, 0);
	while ((n = msg_spool_read(run->spool, off, buf, sizeof(buf))) > 0) {
		moat_pipeline_data(run->c, &run->ctx, buf, (size_t)n);
		off += (size_t)n;
	}
	return n < 0 ? -1 : 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: moat [-c file] [-o name=value]... check --ip ADDR --helo NAME "
		"--from ADDR --rcpt ADDR [--rcpt ADDR]... [--listener NAME] [--trace] MSGFILE\n");
}

static void print_trace(void *arg, const char *filter, enum moat_stage st, const char *line)
{
	(void)arg;
	printf("  trace %-8s %-7s %s\n", moat_stage_name(st), filter, line);
}

int moat_cli_check(const struct moat_config *c, int argc, char **argv)
{
	static const struct option longopts[] = {
		{"ip", required_argument, NULL, 'i'},
		{"helo", required_argument, NULL, 'h'},
		{"from", required_argument, NULL, 'f'},
		{"rcpt", required_argument, NULL, 'r'},
		{"listener", required_argument, NULL, 'l'},
		{"trace", no_argument, NULL, 't'},
		{NULL, 0, NULL, 0},
	};
	struct run run;
	const char *listener = NULL;
	int opt, status;

	memset(&run, 0, sizeof(run));
	run.c = c;
	run.ctx.client_addr = "127.0.0.1";
	run.ctx.client_name = "[UNAVAILABLE]";
	run.ctx.session_id = "CHECK";
	run.ctx.filter_state = run.filter_state;
	run.ctx.mail_from = "";
	optind = 1;
	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (opt) {
		case 'i': run.ctx.client_addr = optarg; break;
		case 'h': run.ctx.helo = optarg; break;
		case 'f': run.ctx.mail_from = optarg; break;
		case 'r':
			if (run.nrcpts == MAX_RCPTS) {
				fprintf(stderr, "moat check: at most %d --rcpt\n", MAX_RCPTS);
				return 64;
			}
			run.rcpts[run.nrcpts++] = optarg;
			break;
		case 'l': listener = optarg; break;
		case 't': run.ctx.trace = print_trace; break;
		default: usage(); return 64;
		}
	}
	if (optind != argc - 1 || run.nrcpts == 0 || !run.ctx.helo) {
		usage();
		return 64;
	}
	/* the listener: the named one, else the first */
	const struct moat_listener_conf *lc = c->nlisteners ? &c->listeners[0] : NULL;
	for (size_t i = 0; listener && i < c->nlisteners; i++)
		if (strcmp(c->listeners[i].name, listener) == 0)
			lc = &c->listeners[i];
	if (listener && (!lc || strcmp(lc->name, listener) != 0)) {
		fprintf(stderr, "moat check: no listener \"%s\" in %s\n", listener, c->path);
		return 64;
	}
	if (lc) {
		run.ctx.listener = lc->name;
		run.ctx.role = lc->role_id;
	}
	run.spool = msg_spool_new("/tmp", (size_t)-1);
	if (!run.spool || read_message(argv[optind], run.spool) < 0 ||
	    moat_message_parse(&run.message, run.spool, 1024 * 1024) < 0) {
		fprintf(stderr, "moat check: cannot read %s: %s\n", argv[optind], strerror(errno));
		msg_spool_free(run.spool);
		return 65;
	}

	evthread_use_pthreads();
	run.base = event_base_new();
	run.ctx.base = run.base;
	run.ctx.workers = moat_worker_pool_new(run.base, 2);
	char err[512];
	const struct moat_resolver_conf *rc = moat_config_section(c, "resolver");
	run.ctx.resolver = rc ? moat_resolver_new(run.base, rc, err, sizeof(err)) : NULL;
	if (!run.ctx.resolver)
		fprintf(stderr, "moat check: %s; DNS lookups will fail\n",
			rc ? err : "no resolver configuration");
	/* SPF checks run in worker processes of this process's own */
	if (spf_pool_apply(run.base, c, run.ctx.resolver, 0, err, sizeof(err)) < 0)
		fprintf(stderr, "moat check: spf: %s\n", err);
	moat_filters_activate(c, run.base, run.ctx.resolver);
	moat_verdict_init(&run.sess);
	moat_verdict_init(&run.msg);

	const struct moat_stage_result *r = stage(&run, MOAT_STAGE_CONNECT, &run.sess);
	print_stage("connect", run.ctx.client_addr, r);
	if (refused(r))
		goto refused;
	r = stage(&run, MOAT_STAGE_HELO, &run.sess);
	print_stage("helo", run.ctx.helo, r);
	if (refused(r))
		goto refused;
	moat_verdict_add_all(&run.msg, &run.sess);
	r = stage(&run, MOAT_STAGE_MAIL, &run.msg);
	print_stage("mail", run.ctx.mail_from[0] ? run.ctx.mail_from : "<>", r);
	if (refused(r))
		goto refused;
	for (size_t i = 0; i < run.nrcpts; i++) {
		run.ctx.rcpt = run.rcpts[i];
		r = stage(&run, MOAT_STAGE_RCPT, &run.msg);
		print_stage("rcpt", run.rcpts[i], r);
		if (!refused(r))
			run.accepted[run.naccepted++] = run.rcpts[i];
	}
	run.ctx.rcpt = NULL;
	if (run.naccepted == 0) {
		printf("no recipient accepted: the message is not sent\n");
		goto refused;
	}
	run.ctx.message = &run.message;
	if (stream_message(&run) < 0) {
		fprintf(stderr, "moat check: cannot read the message back: %s\n", strerror(errno));
		status = 65;
		goto out;
	}
	r = stage(&run, MOAT_STAGE_EOM, &run.msg);
	print_stage("eom", NULL, r);
	moat_pipeline_score(c, &run.message, &run.msg);
	if (run.msg.decision.action == MOAT_ACTION_ACCEPT ||
	    run.msg.decision.action == MOAT_ACTION_ADD_HEADER) {
		char why[512];
		enum moat_action sa = moat_pipeline_seal(c, &run.ctx, &run.message, &run.msg, why,
							 sizeof(why));
		if (why[0])
			printf("seal: %s\n", why);
		if (sa != MOAT_ACTION_NONE)
			run.msg.decision.action = sa;
	}
	print_verdict(&run.msg);
	if (run.msg.decision.action == MOAT_ACTION_ACCEPT ||
	    run.msg.decision.action == MOAT_ACTION_ADD_HEADER) {
		int any = 0;
		for (size_t i = 0; i < run.msg.nedits; i++) {
			const struct moat_header_edit *e = &run.msg.edits[i];
			if (!any++)
				printf("header edits:\n");
			if (e->op == MOAT_HEADER_ADD)
				printf("  add     %s: %s\n", e->name, e->value);
			else if (e->op == MOAT_HEADER_REMOVE)
				printf("  remove  %s (%s)\n", e->name, e->index ? "one" : "all");
			else
				printf("  change  %s: %s\n", e->name, e->value);
		}
	}
	status = exit_for(run.msg.decision.action);
	goto out;
refused: {
	/* the verdict shown carries the decision that ended the stage */
	struct moat_verdict *shown = run.msg.nsymbols ? &run.msg : &run.sess;
	moat_verdict_total(&run.msg);
	shown->decision = r->decision;
	print_verdict(shown);
	status = exit_for(r->decision.action);
}
out:
	moat_filters_session_end(run.filter_state);
	moat_verdict_clear(&run.sess);
	moat_verdict_clear(&run.msg);
	moat_message_free(&run.message);
	msg_spool_free(run.spool);
	spf_pool_shutdown();
	moat_worker_pool_free(run.ctx.workers);
	moat_resolver_free(run.ctx.resolver);
	event_base_free(run.base);
	return status;
}
