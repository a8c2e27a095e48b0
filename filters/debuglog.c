/*
 * debuglog.c - the `debug` section and the per-message debug log
 * (debuglog.h): which sessions are traced, and the log line each
 * traced line becomes:
 *
 *	session=ID: trace STAGE FILTER: LINE
 *
 * at LOG_INFO, so that it reaches a default syslog set-up while it is
 * asked for and costs nothing (one network match a stage) otherwise.
 *
 * Owns the section's declaration; its data (the parsed networks)
 * belongs to the configuration.
 */
#include "debuglog.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "net.h"

struct debuglog_conf {
	struct moat_str_list clients;
	struct moat_str_list senders;
	/* derived */
	struct moat_net *nets;
	size_t nnets;
};

#define D(field) offsetof(struct debuglog_conf, field)
static const struct moat_opt debuglog_opts[] = {
	{"clients", MOAT_OPT_STR_LIST, D(clients), 0, "{}", 0, 0, 0, NULL,
	 "Client networks whose sessions are traced to the log, e.g. {\"192.0.2.7\", "
	 "\"2001:db8::/64\"}: every stage's trace lines (what each filter looked up, what it "
	 "got, why it scored, as moat check --trace prints them), at level info."},
	{"senders", MOAT_OPT_STR_LIST, D(senders), 0, "{}", 0, 0, 0, NULL,
	 "Envelope senders whose messages are traced to the log, from MAIL on: addresses "
	 "(alice@example.org) or domains (example.org), without case."},
};

static void debuglog_release(void *data)
{
	struct debuglog_conf *c = data;
	free(c->nets);
	c->nets = NULL;
	c->nnets = 0;
}

static int debuglog_prepare(void *data, struct moat_section_ctx *ctx)
{
	struct debuglog_conf *c = data;
	char err[300];
	int bad = 0;

	c->nets = calloc(c->clients.n + 1, sizeof(*c->nets));
	if (!c->nets) {
		moat_section_error(ctx, "clients", "out of memory");
		return -1;
	}
	for (size_t i = 0; i < c->clients.n; i++) {
		if (moat_net_parse(c->clients.v[i], &c->nets[c->nnets], err, sizeof(err)) < 0) {
			moat_section_error(ctx, "clients", "%s", err);
			bad = -1;
		} else {
			c->nnets++;
		}
	}
	for (size_t i = 0; i < c->senders.n; i++) {
		const char *s = c->senders.v[i], *at = strchr(s, '@');
		if (!*s || (at && (at == s || !at[1] || strchr(at + 1, '@'))) || strchr(s, ' ')) {
			moat_section_error(ctx, "senders", "expected an address (alice@example.org) "
					   "or a domain (example.org), got \"%s\"", s);
			bad = -1;
		}
	}
	return bad;
}

static const struct moat_section_def debuglog_section = {
	.name = "debug",
	.doc = "The per-message debug log: sessions and messages traced to the log.",
	.opts = debuglog_opts,
	.nopts = sizeof(debuglog_opts) / sizeof(debuglog_opts[0]),
	.size = sizeof(struct debuglog_conf),
	.prepare = debuglog_prepare,
	.release = debuglog_release,
};

void moat_debuglog_register(void)
{
	moat_config_register_section(&debuglog_section);
}

static void log_trace(void *arg, const char *filter, enum moat_stage stage, const char *line)
{
	const char *session = arg;
	moat_log(LOG_INFO, "session=%s: trace %s %s: %s", session ? session : "-",
		 moat_stage_name(stage), filter, line);
}

/* 1 if sender (the envelope's, "" for <>) is one of the list's addresses
 * or is at one of its domains. */
static int sender_listed(const struct moat_str_list *l, const char *sender)
{
	const char *at = sender ? strrchr(sender, '@') : NULL;

	for (size_t i = 0; at && i < l->n; i++) {
		const char *e = l->v[i];
		if (strchr(e, '@') ? strcasecmp(e, sender) == 0 : strcasecmp(e, at + 1) == 0)
			return 1;
	}
	return 0;
}

void moat_debuglog_apply(struct moat_msgctx *ctx, const struct moat_config *c)
{
	const struct debuglog_conf *d = c ? moat_config_section(c, "debug") : NULL;

	if (ctx->trace && ctx->trace != log_trace)
		return;
	int on = d && ((d->nnets && ctx->client_addr &&
			moat_net_match(d->nets, d->nnets, ctx->client_addr)) ||
		       sender_listed(&d->senders, ctx->mail_from));
	ctx->trace = on ? log_trace : NULL;
	ctx->trace_arg = on ? (void *)ctx->session_id : NULL;
}
