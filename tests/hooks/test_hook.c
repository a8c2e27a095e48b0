/*
 * test_hook.c - a filter that exists only for the test suite: it is
 * linked into build/san/moatd-hooktest and build/san/moat-hooktest (never
 * into moatd or moat) and registers itself as filter "test" at start; a
 * test enables it with `filters = {"test"}`. It exercises every way a
 * filter can answer:
 *
 *   connect  client 127.0.0.66            reject 554 5.7.1, at once
 *   MAIL     local part "hook-hang"       waits 3 s, past a short timeout
 *   RCPT     local part "hook-reject*"    reject 550 5.7.1 after a 50 ms timer
 *   RCPT     local part "hook-tempfail*"  tempfail 451 4.7.1 from a worker thread
 *   EOM      header X-Test-Hook: reject   reject 550 5.7.1, at once
 *            X-Test-Hook: error           the filter fails (on_error applies)
 *            X-Test-Hook: discard         discard
 *            X-Test-Score: N              symbol TEST_SCORE scoring N
 *            X-Test-Remove: ...           removed (header edit)
 *            X-Test-Add: yes              X-Test-Seen: yes added (header edit)
 *
 * Owns each pending answer's record until it is delivered.
 */
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "filter.h"
#include "worker.h"

struct test_conf {
	struct moat_filter_common common;
};

struct later {
	struct moat_filter_call *call;
	struct event *ev;
	enum moat_action action;
	int code;
	const char *text;
};

static void later_fire(evutil_socket_t fd, short what, void *arg)
{
	struct later *l = arg;
	(void)fd;
	(void)what;
	if (l->action != MOAT_ACTION_NONE)
		moat_call_decide(l->call, l->action, l->code, "%s", l->text);
	moat_call_done(l->call, MOAT_FILTER_CONTINUE);
	event_free(l->ev);
	free(l);
}

static enum moat_filter_status answer_later(struct moat_filter_call *call, long ms,
					    enum moat_action action, int code, const char *text)
{
	struct later *l = calloc(1, sizeof(*l));
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	if (!l)
		return MOAT_FILTER_ERROR;
	l->call = call;
	l->action = action;
	l->code = code;
	l->text = text;
	l->ev = evtimer_new(moat_call_ctx(call)->base, later_fire, l);
	evtimer_add(l->ev, &tv);
	return MOAT_FILTER_WAIT;
}

static int starts(const char *addr, const char *prefix)
{
	return addr && strncmp(addr, prefix, strlen(prefix)) == 0;
}

static enum moat_filter_status on_connect(struct moat_filter_call *call)
{
	if (strcmp(moat_call_ctx(call)->client_addr, "127.0.0.66") == 0)
		moat_call_decide(call, MOAT_ACTION_REJECT, 554, "5.7.1 refused by test hook");
	return MOAT_FILTER_CONTINUE;
}

static enum moat_filter_status on_mail(struct moat_filter_call *call)
{
	if (starts(moat_call_ctx(call)->mail_from, "hook-hang"))
		return answer_later(call, 3000, MOAT_ACTION_REJECT, 550, "5.7.1 too late to matter");
	return MOAT_FILTER_CONTINUE;
}

static void tempfail_work(void *arg)
{
	(void)arg;
	usleep(50 * 1000);	/* blocking work, off the loop */
}

static void tempfail_done(void *arg)
{
	struct moat_filter_call *call = arg;
	moat_call_decide(call, MOAT_ACTION_TEMPFAIL, 451, "4.7.1 deferred by test hook");
	moat_call_done(call, MOAT_FILTER_CONTINUE);
}

static enum moat_filter_status on_rcpt(struct moat_filter_call *call)
{
	const struct moat_msgctx *ctx = moat_call_ctx(call);
	if (starts(ctx->rcpt, "hook-reject"))
		return answer_later(call, 50, MOAT_ACTION_REJECT, 550, "5.7.1 rejected by test hook");
	if (starts(ctx->rcpt, "hook-tempfail") &&
	    moat_worker_submit(ctx->workers, tempfail_work, tempfail_done, call) == 0)
		return MOAT_FILTER_WAIT;
	return MOAT_FILTER_CONTINUE;
}

/* The unfolded value of the first field called name, in buf. */
static const char *field(const struct moat_message *m, const char *name, char *buf, size_t len)
{
	const struct moat_header *h = moat_message_header(m, name, 1);
	size_t o = 0;
	if (!h)
		return NULL;
	for (size_t i = 0; i < h->value_len && o + 1 < len; i++) {
		char c = h->value[i];
		if (c == '\r' || c == '\n')
			continue;
		if ((c == ' ' || c == '\t') && o == 0)
			continue;
		buf[o++] = c == '\t' ? ' ' : c;
	}
	while (o && buf[o - 1] == ' ')
		o--;
	buf[o] = '\0';
	return buf;
}

static enum moat_filter_status on_eom(struct moat_filter_call *call)
{
	const struct moat_message *m = moat_call_ctx(call)->message;
	char v[256];

	if (moat_message_header(m, "X-Test-Add", 1))
		moat_call_header_add(call, "X-Test-Seen", "yes");
	if (moat_message_header(m, "X-Test-Remove", 1))
		moat_call_header_remove(call, "X-Test-Remove", 0);
	if (field(m, "X-Test-Score", v, sizeof(v)))
		moat_call_symbol(call, "TEST_SCORE", strtod(v, NULL), "X-Test-Score: %s", v);
	if (!field(m, "X-Test-Hook", v, sizeof(v)))
		return MOAT_FILTER_CONTINUE;
	if (strncasecmp(v, "reject", 6) == 0)
		moat_call_decide(call, MOAT_ACTION_REJECT, 550, "5.7.1 message rejected by test hook");
	else if (strncasecmp(v, "discard", 7) == 0)
		moat_call_decide(call, MOAT_ACTION_DISCARD, 0, NULL);
	else if (strncasecmp(v, "error", 5) == 0) {
		moat_call_error(call, "asked to fail by X-Test-Hook");
		return MOAT_FILTER_ERROR;
	}
	return MOAT_FILTER_CONTINUE;
}

static const struct moat_filter test_filter = {
	.name = "test",
	.doc = "A filter for the test suite only.",
	.conf_size = sizeof(struct test_conf),
	.stage = {
		[MOAT_STAGE_CONNECT] = on_connect,
		[MOAT_STAGE_MAIL] = on_mail,
		[MOAT_STAGE_RCPT] = on_rcpt,
		[MOAT_STAGE_EOM] = on_eom,
	},
};

__attribute__((constructor)) static void test_filter_register(void)
{
	moat_filter_register(&test_filter);
}
