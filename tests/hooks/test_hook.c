/*
 * test_hook.c - a filter that exists only for the test suite: it is
 * linked into build/san/moatd-hooktest (never into moatd) and registers
 * itself at start. It exercises every way a stage hook can answer:
 *
 *   connect  client 127.0.0.66            554 5.7.1, at once
 *   MAIL     local part "hook-hang"       never in time: answers after
 *                                         3 s, past any short hook_timeout
 *   RCPT     local part "hook-reject*"    550 5.7.1 after a 50 ms timer
 *   RCPT     local part "hook-tempfail*"  451 4.7.1 from a worker thread
 *   EOM      header "X-Test-Hook: reject" 550 5.7.1, at once
 *
 * Owns each pending answer's record until it is delivered.
 */
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "hook.h"
#include "msg_spool.h"
#include "worker.h"

struct later {
	struct moat_hook_call *call;
	struct event *ev;
	int code;
	const char *text;
};

static void later_fire(evutil_socket_t fd, short what, void *arg)
{
	struct later *l = arg;
	(void)fd;
	(void)what;
	if (l->code)
		moat_hook_call_reply(l->call, l->code, l->text);
	moat_hook_done(l->call, l->code ? MOAT_HOOK_REPLY : MOAT_HOOK_CONTINUE);
	event_free(l->ev);
	free(l);
}

static enum moat_hook_status answer_later(const struct moat_msgctx *ctx,
					  struct moat_hook_call *call, long ms,
					  int code, const char *text)
{
	struct later *l = calloc(1, sizeof(*l));
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	if (!l)
		return MOAT_HOOK_CONTINUE;
	l->call = call;
	l->code = code;
	l->text = text;
	l->ev = evtimer_new(ctx->base, later_fire, l);
	evtimer_add(l->ev, &tv);
	return MOAT_HOOK_WAIT;
}

static int local_part_starts(const char *addr, const char *prefix)
{
	return addr && strncmp(addr, prefix, strlen(prefix)) == 0;
}

static enum moat_hook_status on_connect(const struct moat_msgctx *ctx,
					struct moat_hook_call *call)
{
	if (strcmp(ctx->client_addr, "127.0.0.66") == 0) {
		moat_hook_call_reply(call, 554, "5.7.1 refused by test hook");
		return MOAT_HOOK_REPLY;
	}
	return MOAT_HOOK_CONTINUE;
}

static enum moat_hook_status on_mail(const struct moat_msgctx *ctx,
				     struct moat_hook_call *call)
{
	if (local_part_starts(ctx->mail_from, "hook-hang"))
		return answer_later(ctx, call, 3000, 550, "5.7.1 too late to matter");
	return MOAT_HOOK_CONTINUE;
}

static void tempfail_work(void *arg)
{
	(void)arg;
	usleep(50 * 1000);	/* blocking work, off the loop */
}

static void tempfail_done(void *arg)
{
	struct moat_hook_call *call = arg;
	moat_hook_call_reply(call, 451, "4.7.1 deferred by test hook");
	moat_hook_done(call, MOAT_HOOK_REPLY);
}

static enum moat_hook_status on_rcpt(const struct moat_msgctx *ctx,
				     struct moat_hook_call *call)
{
	if (local_part_starts(ctx->rcpt, "hook-reject"))
		return answer_later(ctx, call, 50, 550, "5.7.1 rejected by test hook");
	if (local_part_starts(ctx->rcpt, "hook-tempfail") &&
	    moat_worker_submit(ctx->workers, tempfail_work, tempfail_done, call) == 0)
		return MOAT_HOOK_WAIT;
	return MOAT_HOOK_CONTINUE;
}

/* Looks for a header "X-Test-Hook: reject": name case-insensitive,
 * value possibly folded onto the next lines. */
static int wants_reject(char *hdrs)
{
	/* unfold: CRLF followed by space or tab continues the field */
	char *w = hdrs;
	for (char *r = hdrs; *r; r++) {
		if (r[0] == '\r' && r[1] == '\n' && (r[2] == ' ' || r[2] == '\t')) {
			r++;
			continue;
		}
		*w++ = *r;
	}
	*w = '\0';
	for (char *line = hdrs; line && *line;) {
		char *next = strstr(line, "\r\n");
		if (next)
			*next = '\0';
		if (strncasecmp(line, "X-Test-Hook:", 12) == 0) {
			char *v = line + 12;
			while (*v == ' ' || *v == '\t')
				v++;
			if (strncasecmp(v, "reject", 6) == 0)
				return 1;
		}
		line = next ? next + 2 : NULL;
	}
	return 0;
}

static enum moat_hook_status on_eom(const struct moat_msgctx *ctx,
				    struct moat_hook_call *call)
{
	char buf[65536];
	ssize_t n = msg_spool_read(ctx->message, 0, buf, sizeof(buf) - 1);
	if (n <= 0)
		return MOAT_HOOK_CONTINUE;
	buf[n] = '\0';
	char *end = strstr(buf, "\r\n\r\n");	/* headers only */
	if (end)
		end[2] = '\0';
	if (wants_reject(buf)) {
		moat_hook_call_reply(call, 550, "5.7.1 message rejected by test hook");
		return MOAT_HOOK_REPLY;
	}
	return MOAT_HOOK_CONTINUE;
}

static const struct moat_hook test_hook = {
	.name = "test",
	.stage = {
		[MOAT_STAGE_CONNECT] = on_connect,
		[MOAT_STAGE_MAIL] = on_mail,
		[MOAT_STAGE_RCPT] = on_rcpt,
		[MOAT_STAGE_EOM] = on_eom,
	},
};

__attribute__((constructor)) static void test_hook_register(void)
{
	moat_hook_register(&test_hook);
}
