/*
 * milter_session.c - one MTA connection as the milter sees it: the
 * libmilter callbacks, turned into the pipeline's stages.
 *
 * Each callback runs on the connection's own libmilter thread. Facts come
 * from the callback's arguments and the MTA's macros (client address and
 * name from xxfi_connect, {daemon_name}, {tls_version}, {cipher},
 * {auth_authen}, the queue id i); headers and body chunks are written as
 * they arrive into a msg_spool, as the proxy holds them: "Name:value"
 * CRLF (the value with its leading space, SMFIP_HDR_LEADSPC), a blank
 * line, the body in CRLF. A stage is handed to the loop thread as a job
 * (milter_loop.h) and the callback waits on a condition variable for its
 * result; the pipeline only ever runs on the loop thread. The connection
 * data is touched by one side at a time: by the callback thread between
 * stages, by the loop thread while a stage runs (busy).
 *
 * A stage that outlives every filter's timeout (the loop is stuck), no
 * memory, or a loop that is gone, all get the milter section's
 * default_action, never a crash of the MTA's mail flow. The connection
 * is freed on the loop thread (its close job), after any stage.
 *
 * Owns the connection's state (struct msess), its spool and verdicts.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>

#include "debuglog.h"
#include "filter.h"
#include "log.h"
#include "message.h"
#include "milter_loop.h"
#include "msg_spool.h"
#include "msglog.h"
#include "pipeline.h"
#include "store_conf.h"
#include "verdict.h"

#define MAX_HEADER_BLOCK (1024 * 1024)
#define WAIT_SLACK 10		/* seconds beyond the filters' timeouts */

struct msess {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct moat_config *conf;	/* the one this connection started with */
	char id[16];
	char listener[64];		/* {daemon_name}, or "milter" */
	char client_addr[64];
	int client_port;
	char client_name[256];
	char *helo, *tls_version, *tls_cipher, *auth_user;
	unsigned long pflags;		/* negotiated protocol steps */
	unsigned long aflags;		/* negotiated actions */
	long wait_limit;		/* seconds a callback waits for a stage */
	/* transaction */
	int in_tx;
	char *mail_from;
	char *rcpt_pending;
	char **rcpts;
	size_t nrcpts, rcpt_cap;
	struct msg_spool *spool;
	int spool_errno, too_big, oom;
	int last_cr;			/* the last octet spooled was CR */
	struct timespec tx_start;
	struct moat_message message;
	/* sealing (DKIM signatures) after scoring, on the loop */
	enum moat_action seal_action;
	char seal_why[512];
	/* verdicts, as in the proxy */
	struct moat_verdict sess_v, msg_v;
	struct {
		int exempt;
		struct moat_decision decision, would;
	} conn_v;
	double stage_ms[MOAT_STAGE__COUNT];
	void *filter_state[MOAT_MAX_FILTERS];
	struct moat_msgctx ctx;
	/* the stage in flight (guarded by mu) */
	struct milter_job job;
	enum moat_stage stage;
	int busy, done;
	struct moat_stage_result res;
	struct moat_pipeline_run *prun;	/* loop thread only */
	struct milter_job close_job;
};

static long n_sessions, n_in_tx;

long milter_sessions(void)
{
	return __atomic_load_n(&n_sessions, __ATOMIC_SEQ_CST);
}

long milter_sessions_in_tx(void)
{
	return __atomic_load_n(&n_in_tx, __ATOMIC_SEQ_CST);
}

/* ---- warnings given once per process ------------------------------------ */

enum { W_DAEMON_NAME, W_QUEUE_ID, W_LEADSPC, W_ACTIONS, W_SYMLIST, W__COUNT };
static int warned[W__COUNT];

static void warn_once(int which, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void warn_once(int which, const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	if (__atomic_exchange_n(&warned[which], 1, __ATOMIC_SEQ_CST))
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	moat_log(LOG_WARNING, "milter: %s (logged once)", buf);
}

/* ---- small helpers ------------------------------------------------------ */

static void make_id(char *buf, size_t len)
{
	unsigned char r[6] = {0};
	if (getrandom(r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r)) {
		unsigned long t = (unsigned long)time(NULL) ^ (unsigned long)(size_t)buf;
		memcpy(r, &t, sizeof(r));
	}
	snprintf(buf, len, "%02X%02X%02X%02X%02X%02X", r[0], r[1], r[2], r[3], r[4], r[5]);
}

static void str_set(char **dst, const char *src)
{
	free(*dst);
	*dst = src ? strdup(src) : NULL;
}

/* A macro's value, or NULL when the MTA did not send it (or sent it
 * empty). */
static const char *macro(SMFICTX *ctx, const char *name)
{
	const char *v = smfi_getsymval(ctx, (char *)name);
	return v && *v ? v : NULL;
}

/* "<a@b>" -> "a@b" */
static char *strip_path(const char *arg)
{
	size_t n = arg ? strlen(arg) : 0;
	if (n >= 2 && arg[0] == '<' && arg[n - 1] == '>')
		return strndup(arg + 1, n - 2);
	return strdup(arg ? arg : "");
}

static struct msess *sess(SMFICTX *ctx)
{
	return smfi_getpriv(ctx);
}

/* ---- actions -------------------------------------------------------------- */

/* The reply for REJECT or TEMPFAIL: code and the text's "x.y.z" code
 * split off for smfi_setreply(). */
static sfsistat set_reply(SMFICTX *ctx, int reject, int code, const char *text)
{
	char rcode[8], xcode[16], msg[300];
	const char *t = text ? text : "";
	char cls = reject ? '5' : '4';
	if (code / 100 != (reject ? 5 : 4))
		code = reject ? 550 : 451;
	snprintf(rcode, sizeof(rcode), "%d", code);
	snprintf(xcode, sizeof(xcode), "%s", reject ? "5.7.1" : "4.7.1");
	size_t n = strcspn(t, " ");
	if (n >= 5 && n < sizeof(xcode) && (t[0] == '4' || t[0] == '5') && t[1] == '.') {
		if (t[0] == cls) {	/* else the class would contradict the code */
			memcpy(xcode, t, n);
			xcode[n] = '\0';
		}
		t += n;
		while (*t == ' ')
			t++;
	}
	/* smfi_setreply() takes no CR/LF; '%' would be read as a format */
	size_t o = 0;
	for (; *t && o + 2 < sizeof(msg); t++) {
		if (*t == '%')
			msg[o++] = '%';
		msg[o++] = (*t == '\r' || *t == '\n') ? ' ' : *t;
	}
	msg[o] = '\0';
	if (smfi_setreply(ctx, rcode, xcode, o ? msg : NULL) != MI_SUCCESS)
		moat_log(LOG_WARNING, "milter: the reply %s %s %s could not be set", rcode, xcode, msg);
	return reject ? SMFIS_REJECT : SMFIS_TEMPFAIL;
}

/* The milter itself failed (no memory, the loop unreachable or stuck):
 * default_action, as Postfix's milter_default_action. */
static sfsistat failed(SMFICTX *ctx, const struct msess *s, const char *why)
{
	struct moat_config *c = s ? NULL : milter_config_get();
	const struct moat_milter_conf *mc = moat_config_milter(s ? s->conf : c);
	enum moat_milter_default a = mc->default_id;
	moat_log(LOG_ERR, "milter: session=%s: %s; default_action=%s", s ? s->id : "-", why,
		 mc->default_action);
	if (c)
		moat_config_unref(c);
	switch (a) {
	case MOAT_MILTER_ACCEPT:
		return SMFIS_ACCEPT;
	case MOAT_MILTER_REJECT:
		return set_reply(ctx, 1, 550, "5.3.0 Mail filter failure");
	default:
		return set_reply(ctx, 0, 451, "4.3.0 Temporary mail filter failure, try again later");
	}
}

/* ---- stages on the loop thread ----------------------------------------- */

static struct moat_verdict *stage_verdict(struct msess *s)
{
	return s->stage <= MOAT_STAGE_HELO ? &s->sess_v : &s->msg_v;
}

static void stage_done(void *arg, const struct moat_stage_result *r)
{
	struct msess *s = arg;
	s->prun = NULL;
	s->stage_ms[s->stage] += r->ms;
	if (s->stage == MOAT_STAGE_EOM) {
		moat_pipeline_score(s->conf, &s->message, &s->msg_v);
		s->seal_action = MOAT_ACTION_NONE;
		s->seal_why[0] = '\0';
		enum moat_action a = s->msg_v.decision.action;
		if (a == MOAT_ACTION_ACCEPT || a == MOAT_ACTION_ADD_HEADER)
			s->seal_action = moat_pipeline_seal(s->conf, &s->ctx, &s->message,
							    &s->msg_v, s->seal_why,
							    sizeof(s->seal_why));
		moat_pipeline_done(s->conf, &s->ctx, &s->msg_v);
	}
	pthread_mutex_lock(&s->mu);
	s->res = *r;
	s->done = 1;
	s->busy = 0;
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

static void stage_run(struct milter_job *job)
{
	struct msess *s = (struct msess *)(void *)((char *)job - offsetof(struct msess, job));
	struct moat_stage_result r;
	s->ctx.base = milter_loop_base();
	s->ctx.workers = milter_loop_workers();
	s->ctx.resolver = milter_loop_resolver();	/* a reload may replace it */
	s->ctx.store = moat_store_current();
	if (moat_pipeline_run(s->conf, s->stage, &s->ctx, stage_verdict(s), stage_done, s,
			      &s->prun, &r))
		stage_done(s, &r);
}

static void update_ctx(struct msess *s)
{
	s->ctx.helo = s->helo;
	s->ctx.tls_version = s->tls_version;
	s->ctx.tls_cipher = s->tls_cipher;
	s->ctx.auth_user = s->auth_user;
	s->ctx.mail_from = s->mail_from;
	s->ctx.rcpt = s->rcpt_pending;
	s->ctx.rcpts = (const char *const *)s->rcpts;
	s->ctx.nrcpts = s->nrcpts;
	s->ctx.message = s->message.spool ? &s->message : NULL;
	moat_debuglog_apply(&s->ctx, s->conf);	/* debug section: trace to the log */
}

/* Runs stage on the loop thread and waits for it. Returns 0 with *r, or
 * -1 (the milter failed: apply default_action) with why set. */
static int run_stage(struct msess *s, enum moat_stage stage, struct moat_stage_result *r,
		     const char **why)
{
	struct timespec dl;
	pthread_mutex_lock(&s->mu);
	if (s->busy) {
		pthread_mutex_unlock(&s->mu);
		*why = "an earlier stage of this connection is still running";
		return -1;
	}
	s->busy = 1;
	s->done = 0;
	s->stage = stage;
	pthread_mutex_unlock(&s->mu);
	update_ctx(s);
	s->job.run = stage_run;
	if (milter_loop_post(&s->job) < 0) {
		pthread_mutex_lock(&s->mu);
		s->busy = 0;
		pthread_mutex_unlock(&s->mu);
		*why = "the filter loop has stopped";
		return -1;
	}
	clock_gettime(CLOCK_MONOTONIC, &dl);
	dl.tv_sec += s->wait_limit;
	pthread_mutex_lock(&s->mu);
	while (!s->done)
		if (pthread_cond_timedwait(&s->cv, &s->mu, &dl) == ETIMEDOUT)
			break;
	int ok = s->done;
	if (ok)
		*r = s->res;
	pthread_mutex_unlock(&s->mu);
	if (!ok)
		*why = "a stage outlived every filter's timeout (the filter loop is stuck)";
	return ok ? 0 : -1;
}

static int refused(const struct moat_stage_result *r)
{
	return r->decision.action == MOAT_ACTION_REJECT ||
	       r->decision.action == MOAT_ACTION_TEMPFAIL;
}

/* A filter's reject or tempfail at a stage, as the proxy's
 * decision_reply(): logged, then the MTA's reply. */
static sfsistat decision_reply(SMFICTX *ctx, struct msess *s, enum moat_stage stage,
			       const struct moat_decision *d)
{
	int reject = d->action == MOAT_ACTION_REJECT, code;
	const char *text;
	moat_decision_reply(d, stage == MOAT_STAGE_CONNECT, &code, &text);
	moat_log(LOG_INFO, "session=%s client=%s: %s by filter %s at stage %s: %d %s", s->id,
		 s->client_addr, reject ? "rejected" : "tempfailed", d->filter ? d->filter : "-",
		 moat_stage_name((enum moat_stage)d->stage), code, text);
	return set_reply(ctx, reject, code, text);
}

/* ---- the transaction ---------------------------------------------------- */

static void tx_reset(struct msess *s)
{
	if (s->in_tx)
		__atomic_sub_fetch(&n_in_tx, 1, __ATOMIC_SEQ_CST);
	s->in_tx = 0;
	str_set(&s->mail_from, NULL);
	str_set(&s->rcpt_pending, NULL);
	for (size_t i = 0; i < s->nrcpts; i++)
		free(s->rcpts[i]);
	s->nrcpts = 0;
	moat_message_free(&s->message);
	msg_spool_free(s->spool);
	s->spool = NULL;
	s->spool_errno = s->too_big = s->oom = s->last_cr = 0;
	moat_verdict_clear(&s->msg_v);
	for (int i = MOAT_STAGE_MAIL; i < MOAT_STAGE__COUNT; i++)
		s->stage_ms[i] = 0;
}

/* Only when no stage runs (else the loop thread reads the data). */
static int idle(struct msess *s)
{
	pthread_mutex_lock(&s->mu);
	int b = s->busy;
	pthread_mutex_unlock(&s->mu);
	return !b;
}

static void log_message(SMFICTX *ctx, struct msess *s, int code, const char *reply)
{
	struct timespec now;
	const char *qid = macro(ctx, "i");
	if (!qid)
		warn_once(W_QUEUE_ID, "the MTA sends no queue id (macro i) at end of message: log "
			  "lines show queue_id=-; Postfix: milter_end_of_data_macros = i");
	clock_gettime(CLOCK_MONOTONIC, &now);
	struct moat_msglog m = {
		.session_id = s->id,
		.listener = s->listener,
		.client_addr = s->client_addr,
		.helo = s->helo,
		.mail_from = s->mail_from,
		.rcpts = (const char *const *)s->rcpts,
		.nrcpts = s->nrcpts,
		.size = s->spool ? msg_spool_size(s->spool) : 0,
		.code = code,
		.reply = reply,
		.reply_len = strlen(reply),
		.queue_id = qid,
		.v = &s->msg_v,
		.stage_ms = s->stage_ms,
		.seconds = (double)(now.tv_sec - s->tx_start.tv_sec) +
			   (double)(now.tv_nsec - s->tx_start.tv_nsec) / 1e9,
		/* from the MTA's macros ({tls_version}, {cipher}, {auth_authen}) */
		.tls_version = s->tls_version,
		.tls_cipher = s->tls_cipher,
		.auth_user = s->auth_user,
	};
	moat_msglog(&m);
}

/* Ends the message with a reply of moat's own (not a filter's). */
static sfsistat end_message(SMFICTX *ctx, struct msess *s, int code, const char *text)
{
	char full[320];
	snprintf(full, sizeof(full), "%d %s", code, text);
	log_message(ctx, s, code, full);
	sfsistat st = set_reply(ctx, code / 100 == 5, code, text);
	tx_reset(s);	/* text may be the verdict's */
	return st;
}

/* Appends to the spool, LF made CRLF (an MTA may pass LF line ends). */
static void spool_put(struct msess *s, const char *buf, size_t len)
{
	if (s->spool_errno || s->too_big || s->oom)
		return;
	if (!s->spool) {
		s->spool = msg_spool_new(s->conf->spool_directory,
					 (size_t)s->conf->message_memory_limit);
		if (!s->spool) {
			s->oom = 1;
			return;
		}
		update_ctx(s);
		moat_pipeline_data(s->conf, &s->ctx, NULL, 0);	/* a message starts */
	}
	size_t start = 0;
	for (size_t i = 0; i <= len; i++) {
		int lf = i < len && buf[i] == '\n' && !(i ? buf[i - 1] == '\r' : s->last_cr);
		if (i < len && !lf)
			continue;
		size_t n = i - start;
		if (msg_spool_size(s->spool) + n + (size_t)lf > (size_t)s->conf->message_size_limit) {
			s->too_big = 1;
			return;
		}
		if ((n && msg_spool_write(s->spool, buf + start, n) < 0) ||
		    (lf && msg_spool_write(s->spool, "\r", 1) < 0)) {
			s->spool_errno = errno ? errno : EIO;
			return;
		}
		if (n)
			moat_pipeline_data(s->conf, &s->ctx, buf + start, n);
		if (lf)
			moat_pipeline_data(s->conf, &s->ctx, "\r", 1);
		start = i;	/* the LF itself goes with the next piece */
	}
	if (len)
		s->last_cr = buf[len - 1] == '\r';
}

/* ---- header edits --------------------------------------------------------- */

/* The value as sent to the MTA: with the leading space when the MTA
 * passes values as they are (SMFIP_HDR_LEADSPC), and folded lines
 * ("\r\n\t", as Authentication-Results has them) joined by a bare LF,
 * the MTAs' own line end inside a header value. */
static char *edit_value(const struct msess *s, const char *v)
{
	const char *in = v ? v : "";
	char *out = malloc(strlen(in) + 2), *o = out;
	if (!out)
		return NULL;
	if (s->pflags & SMFIP_HDR_LEADSPC)
		*o++ = ' ';
	for (; *in; in++)
		if (!(in[0] == '\r' && in[1] == '\n'))
			*o++ = *in;
	*o = '\0';
	return out;
}

/* Applies the verdict's header edits as moat_message_edited_header()
 * would: first the changes and removals of received fields, last
 * occurrence first so indexes stay right, then the added fields at the
 * top (index 0, 1, ...) in the order added. Returns 0 or -1. */
static int apply_edits(SMFICTX *ctx, struct msess *s)
{
	const struct moat_message *m = &s->message;
	const struct moat_verdict *v = &s->msg_v;
	int rc = 0;
	struct moat_header_mark *marks = calloc(m->nheaders ? m->nheaders : 1, sizeof(*marks));

	if (!marks)
		return -1;
	moat_message_mark_edits(m, v, marks);
	for (size_t i = m->nheaders; i-- > 0;) {
		const struct moat_header *h = &m->headers[i];
		int occurrence = marks[i].occurrence, removed = marks[i].removed;
		const char *changed = marks[i].changed;
		if (!removed && !changed)
			continue;
		if (!(s->aflags & SMFIF_CHGHDRS)) {
			warn_once(W_ACTIONS, "the MTA does not let moat change or remove headers "
				  "(SMFIF_CHGHDRS); such edits are skipped");
			continue;
		}
		char name[256];
		size_t n = h->name_len < sizeof(name) - 1 ? h->name_len : sizeof(name) - 1;
		memcpy(name, h->name, n);
		name[n] = '\0';
		char *val = removed ? NULL : edit_value(s, changed);
		if ((!removed && !val) ||
		    smfi_chgheader(ctx, name, occurrence, val) != MI_SUCCESS)
			rc = -1;
		free(val);
	}
	int at = 0;
	for (size_t e = 0; e < v->nedits; e++) {
		const struct moat_header_edit *ed = &v->edits[e];
		if (ed->op != MOAT_HEADER_ADD)
			continue;
		if (!(s->aflags & SMFIF_ADDHDRS)) {
			warn_once(W_ACTIONS, "the MTA does not let moat add headers (SMFIF_ADDHDRS); "
				  "such edits are skipped");
			continue;
		}
		char *val = edit_value(s, ed->value);
		if (!val || smfi_insheader(ctx, at++, ed->name, val) != MI_SUCCESS)
			rc = -1;
		free(val);
	}
	free(marks);
	return rc;
}

/* ---- callbacks ---------------------------------------------------------------- */

static void close_run(struct milter_job *job);

/* The connection's state, made at the first callback. */
static struct msess *sess_new(SMFICTX *ctx)
{
	struct msess *s = calloc(1, sizeof(*s));
	pthread_condattr_t ca;
	if (!s)
		return NULL;
	s->conf = milter_config_get();
	pthread_mutex_init(&s->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->cv, &ca);
	pthread_condattr_destroy(&ca);
	make_id(s->id, sizeof(s->id));
	snprintf(s->listener, sizeof(s->listener), "milter");
	snprintf(s->client_name, sizeof(s->client_name), "[UNAVAILABLE]");
	s->close_job.run = close_run;
	/* every filter may use its whole timeout, one after another */
	s->wait_limit = WAIT_SLACK;
	for (size_t i = 0; i < s->conf->filters.n; i++) {
		const struct moat_filter_common *fc = moat_config_section(s->conf, s->conf->filters.v[i]);
		if (fc)
			s->wait_limit += fc->timeout;
	}
	s->ctx.session_id = s->id;
	s->ctx.listener = s->listener;
	s->ctx.role = MOAT_ROLE_INBOUND;
	s->ctx.client_addr = s->client_addr;
	s->ctx.client_name = s->client_name;
	s->ctx.filter_state = s->filter_state;
	smfi_setpriv(ctx, s);
	__atomic_add_fetch(&n_sessions, 1, __ATOMIC_SEQ_CST);
	return s;
}

/* Frees the connection on the loop thread (or on the calling one when
 * the loop has stopped): filters' session state lives on the loop. */
static void close_run(struct milter_job *job)
{
	struct msess *s = (struct msess *)(void *)((char *)job - offsetof(struct msess, close_job));
	moat_pipeline_cancel(s->prun);
	s->prun = NULL;
	tx_reset(s);
	moat_verdict_clear(&s->sess_v);
	moat_filters_session_end(s->filter_state);
	free(s->rcpts);
	free(s->helo);
	free(s->tls_version);
	free(s->tls_cipher);
	free(s->auth_user);
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->cv);
	moat_config_unref(s->conf);
	free(s);
	__atomic_sub_fetch(&n_sessions, 1, __ATOMIC_SEQ_CST);
}

static sfsistat cb_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1,
			     unsigned long f2, unsigned long f3, unsigned long *pf0,
			     unsigned long *pf1, unsigned long *pf2, unsigned long *pf3)
{
	struct msess *s = sess(ctx) ? sess(ctx) : sess_new(ctx);
	unsigned long want_a = SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_QUARANTINE | SMFIF_SETSYMLIST;
	unsigned long want_p = SMFIP_NOUNKNOWN | SMFIP_NODATA | SMFIP_HDR_LEADSPC |
			       SMFIP_NR_HDR | SMFIP_NR_EOH | SMFIP_NR_BODY;
	(void)f2;
	(void)f3;
	*pf0 = f0 & want_a;
	*pf1 = f1 & want_p;
	*pf2 = *pf3 = 0;
	if ((f0 & (SMFIF_ADDHDRS | SMFIF_CHGHDRS)) != (SMFIF_ADDHDRS | SMFIF_CHGHDRS))
		warn_once(W_ACTIONS, "the MTA does not offer to add and change headers (actions "
			  "0x%lx): moat's headers and removals are skipped", f0);
	if (!(f1 & SMFIP_HDR_LEADSPC))
		warn_once(W_LEADSPC, "the MTA does not pass header values as they are "
			  "(SMFIP_HDR_LEADSPC): filters see \"Name: value\"");
	if (s) {
		s->pflags = *pf1;
		s->aflags = *pf0;
	}
	if (s && (f0 & SMFIF_SETSYMLIST)) {
		/* Ask for the macros moat uses; an MTA that honours this sends
		 * them whatever its milter_*_macros say. */
		if (smfi_setsymlist(ctx, SMFIM_CONNECT, "j {daemon_name} {client_addr}") != MI_SUCCESS ||
		    smfi_setsymlist(ctx, SMFIM_HELO, "{tls_version} {cipher}") != MI_SUCCESS ||
		    smfi_setsymlist(ctx, SMFIM_ENVFROM,
				    "i {auth_authen} {auth_type} {tls_version} {cipher}") != MI_SUCCESS ||
		    smfi_setsymlist(ctx, SMFIM_EOM, "i") != MI_SUCCESS)
			warn_once(W_SYMLIST, "could not ask the MTA for macros (smfi_setsymlist)");
	}
	return SMFIS_CONTINUE;
}

static sfsistat cb_connect(SMFICTX *ctx, char *hostname, _SOCK_ADDR *sa)
{
	struct msess *s = sess(ctx) ? sess(ctx) : sess_new(ctx);
	struct moat_stage_result r;
	const char *why;
	if (!s)
		return failed(ctx, NULL, "out of memory");
	if (sa && sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
		inet_ntop(AF_INET, &in->sin_addr, s->client_addr, sizeof(s->client_addr));
		s->client_port = ntohs(in->sin_port);
	} else if (sa && sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
		inet_ntop(AF_INET6, &in6->sin6_addr, s->client_addr, sizeof(s->client_addr));
		s->client_port = ntohs(in6->sin6_port);
	}
	/* else: no network client (local submission): no address */
	if (hostname && *hostname && hostname[0] != '[')
		snprintf(s->client_name, sizeof(s->client_name), "%s", hostname);
	const char *dn = macro(ctx, "{daemon_name}");
	if (dn)
		snprintf(s->listener, sizeof(s->listener), "%s", dn);
	else
		warn_once(W_DAEMON_NAME, "the MTA sends no {daemon_name} at connect: log lines show "
			  "listener=milter; Postfix: milter_connect_macros = j {daemon_name} ...");
	s->ctx.client_port = s->client_port;
	moat_log(LOG_INFO, "connect session=%s listener=%s client=%s:%d milter mta=%s", s->id,
		 s->listener, s->client_addr[0] ? s->client_addr : "-", s->client_port,
		 macro(ctx, "j") ? macro(ctx, "j") : "-");
	if (run_stage(s, MOAT_STAGE_CONNECT, &r, &why) < 0)
		return failed(ctx, s, why);
	if (refused(&r)) {
		/* as the proxy's greeting: 554 or 421 whatever the filter chose */
		struct moat_decision d = r.decision;
		d.code = d.action == MOAT_ACTION_REJECT ? 554 : 421;
		return decision_reply(ctx, s, MOAT_STAGE_CONNECT, &d);
	}
	s->conn_v.exempt = s->sess_v.exempt;
	s->conn_v.decision = s->sess_v.decision;
	s->conn_v.would = s->sess_v.would;
	return SMFIS_CONTINUE;
}

/* TLS facts: Postfix sends them at HELO (and, when asked, at MAIL). */
static void read_tls(SMFICTX *ctx, struct msess *s)
{
	const char *v = macro(ctx, "{tls_version}");
	if (v)
		str_set(&s->tls_version, v);
	if ((v = macro(ctx, "{cipher}")))
		str_set(&s->tls_cipher, v);
}

static sfsistat cb_helo(SMFICTX *ctx, char *helo)
{
	struct msess *s = sess(ctx);
	struct moat_stage_result r;
	const char *why;
	if (!s)
		return failed(ctx, NULL, "out of memory");
	if (!idle(s))
		return failed(ctx, s, "an earlier stage of this connection is still running");
	tx_reset(s);
	str_set(&s->helo, helo ? helo : "");
	read_tls(ctx, s);
	/* a new HELO replaces what the last one decided, not the connect's */
	moat_verdict_drop_stage(&s->sess_v, MOAT_STAGE_HELO);
	s->sess_v.exempt = s->conn_v.exempt;
	s->sess_v.decision = s->conn_v.decision;
	s->sess_v.would = s->conn_v.would;
	if (run_stage(s, MOAT_STAGE_HELO, &r, &why) < 0)
		return failed(ctx, s, why);
	if (refused(&r)) {
		str_set(&s->helo, NULL);
		return decision_reply(ctx, s, MOAT_STAGE_HELO, &r.decision);
	}
	return SMFIS_CONTINUE;
}

static sfsistat cb_envfrom(SMFICTX *ctx, char **argv)
{
	struct msess *s = sess(ctx);
	struct moat_stage_result r;
	const char *why;
	if (!s)
		return failed(ctx, NULL, "out of memory");
	if (!idle(s))
		return failed(ctx, s, "an earlier stage of this connection is still running");
	tx_reset(s);
	read_tls(ctx, s);
	const char *auth = macro(ctx, "{auth_authen}");
	str_set(&s->auth_user, auth);
	clock_gettime(CLOCK_MONOTONIC, &s->tx_start);
	s->mail_from = strip_path(argv ? argv[0] : NULL);
	if (!s->mail_from)
		return failed(ctx, s, "out of memory");
	s->in_tx = 1;
	__atomic_add_fetch(&n_in_tx, 1, __ATOMIC_SEQ_CST);
	moat_verdict_add_all(&s->msg_v, &s->sess_v);
	if (run_stage(s, MOAT_STAGE_MAIL, &r, &why) < 0)
		return failed(ctx, s, why);
	if (refused(&r)) {
		sfsistat st = decision_reply(ctx, s, MOAT_STAGE_MAIL, &r.decision);
		tx_reset(s);
		return st;
	}
	return SMFIS_CONTINUE;
}

static sfsistat cb_envrcpt(SMFICTX *ctx, char **argv)
{
	struct msess *s = sess(ctx);
	struct moat_stage_result r;
	const char *why;
	if (!s)
		return failed(ctx, NULL, "out of memory");
	if (!idle(s) || !s->in_tx)
		return failed(ctx, s, !s->in_tx ? "RCPT outside a transaction"
				      : "an earlier stage of this connection is still running");
	s->rcpt_pending = strip_path(argv ? argv[0] : NULL);
	if (!s->rcpt_pending)
		return failed(ctx, s, "out of memory");
	if (run_stage(s, MOAT_STAGE_RCPT, &r, &why) < 0)
		return failed(ctx, s, why);
	if (refused(&r)) {
		str_set(&s->rcpt_pending, NULL);
		return decision_reply(ctx, s, MOAT_STAGE_RCPT, &r.decision);
	}
	if (s->nrcpts == s->rcpt_cap) {
		size_t cap = s->rcpt_cap ? s->rcpt_cap * 2 : 8;
		char **n = realloc(s->rcpts, cap * sizeof(*n));
		if (!n)
			return failed(ctx, s, "out of memory");
		s->rcpts = n;
		s->rcpt_cap = cap;
	}
	s->rcpts[s->nrcpts++] = s->rcpt_pending;
	s->rcpt_pending = NULL;
	return SMFIS_CONTINUE;
}

static sfsistat no_reply(const struct msess *s, unsigned long flag)
{
	return s && (s->pflags & flag) ? SMFIS_NOREPLY : SMFIS_CONTINUE;
}

static sfsistat cb_header(SMFICTX *ctx, char *name, char *value)
{
	struct msess *s = sess(ctx);
	if (s && s->in_tx && idle(s)) {
		name = name ? name : "";
		value = value ? value : "";
		spool_put(s, name, strlen(name));
		spool_put(s, (s->pflags & SMFIP_HDR_LEADSPC) ? ":" : ": ",
			  (s->pflags & SMFIP_HDR_LEADSPC) ? 1 : 2);
		spool_put(s, value, strlen(value));
		spool_put(s, "\r\n", 2);
	}
	return no_reply(s, SMFIP_NR_HDR);
}

static sfsistat cb_eoh(SMFICTX *ctx)
{
	struct msess *s = sess(ctx);
	if (s && s->in_tx && idle(s))
		spool_put(s, "\r\n", 2);
	return no_reply(s, SMFIP_NR_EOH);
}

static sfsistat cb_body(SMFICTX *ctx, unsigned char *chunk, size_t len)
{
	struct msess *s = sess(ctx);
	if (s && s->in_tx && idle(s))
		spool_put(s, (const char *)chunk, len);
	return no_reply(s, SMFIP_NR_BODY);
}

static sfsistat cb_eom(SMFICTX *ctx)
{
	struct msess *s = sess(ctx);
	struct moat_stage_result r;
	const char *why;
	if (!s)
		return failed(ctx, NULL, "out of memory");
	if (!idle(s) || !s->in_tx)
		return failed(ctx, s, !s->in_tx ? "end of message outside a transaction"
				      : "an earlier stage of this connection is still running");
	if (!s->spool && !s->too_big && !s->spool_errno && !s->oom) {
		s->spool = msg_spool_new(s->conf->spool_directory,
					 (size_t)s->conf->message_memory_limit);
		if (!s->spool)
			s->oom = 1;
		else
			moat_pipeline_data(s->conf, &s->ctx, NULL, 0);
	}
	if (s->oom) {
		sfsistat st = failed(ctx, s, "out of memory");
		tx_reset(s);
		return st;
	}
	if (s->too_big)
		return end_message(ctx, s, 552, "5.3.4 Message size exceeds fixed limit");
	if (s->spool_errno) {
		moat_log(LOG_ERR, "session=%s: cannot hold message in %s: %s", s->id,
			 s->conf->spool_directory, strerror(s->spool_errno));
		return end_message(ctx, s, 452, "4.3.1 Insufficient system storage");
	}
	int prc = moat_message_parse(&s->message, s->spool, MAX_HEADER_BLOCK);
	if (prc == MOAT_MESSAGE_TOO_BIG)
		return end_message(ctx, s, 552, "5.3.4 Message header too large");
	if (prc < 0)
		return end_message(ctx, s, 451, "4.3.0 Cannot read the message back, try again later");
	if (run_stage(s, MOAT_STAGE_EOM, &r, &why) < 0) {
		/* the stage may still run: leave the transaction to it */
		return failed(ctx, s, why);
	}
	/* moat_pipeline_score() ran on the loop, after the stage */
	const struct moat_decision *d = &s->msg_v.decision;
	sfsistat st = SMFIS_CONTINUE;
	if (d->action == MOAT_ACTION_REJECT || d->action == MOAT_ACTION_TEMPFAIL) {
		int code;
		const char *text;
		moat_decision_reply(d, 0, &code, &text);
		return end_message(ctx, s, code, text);
	}
	if (d->action == MOAT_ACTION_DISCARD) {
		moat_log(LOG_NOTICE, "session=%s: message discarded by %s (score %.2f): the MTA "
			 "drops it", s->id, d->filter ? d->filter : "-", s->msg_v.score);
		log_message(ctx, s, 250, "milter: discard");
		tx_reset(s);
		return SMFIS_DISCARD;
	}
	if (s->seal_why[0])
		moat_log(LOG_WARNING, "session=%s: %s%s", s->id, s->seal_why,
			 s->seal_action == MOAT_ACTION_NONE ? " (the message goes on without it)" : "");
	if (s->seal_action == MOAT_ACTION_REJECT)
		return end_message(ctx, s, 550, "5.7.1 Message could not be processed");
	if (s->seal_action == MOAT_ACTION_TEMPFAIL)
		return end_message(ctx, s, 451, "4.7.1 Message could not be processed, try again later");
	if (apply_edits(ctx, s) < 0)
		moat_log(LOG_WARNING, "session=%s: the MTA refused a header edit", s->id);
	if (d->action == MOAT_ACTION_ADD_HEADER && s->conf && moat_config_milter(s->conf)->quarantine_add_header) {
		char reason[128];
		snprintf(reason, sizeof(reason), "moat: score %.2f (add_header)", s->msg_v.score);
		if (!(s->aflags & SMFIF_QUARANTINE) || smfi_quarantine(ctx, reason) != MI_SUCCESS)
			moat_log(LOG_WARNING, "session=%s: could not quarantine the message", s->id);
		else
			moat_log(LOG_INFO, "session=%s: message quarantined: %s", s->id, reason);
	}
	log_message(ctx, s, 250, "milter: continue");
	tx_reset(s);
	return st;
}

static sfsistat cb_abort(SMFICTX *ctx)
{
	struct msess *s = sess(ctx);
	if (s && idle(s))
		tx_reset(s);
	return SMFIS_CONTINUE;
}

static sfsistat cb_close(SMFICTX *ctx)
{
	struct msess *s = sess(ctx);
	if (!s)
		return SMFIS_CONTINUE;
	smfi_setpriv(ctx, NULL);
	if (milter_loop_post(&s->close_job) < 0 && idle(s))
		close_run(&s->close_job);	/* no loop any more: free it here */
	/* else a stage still runs on a stopped loop: the process is ending;
	 * leaving the connection is safer than freeing it under that stage */
	return SMFIS_CONTINUE;
}

struct smfiDesc milter_desc = {
	.xxfi_name = "moat",
	.xxfi_version = SMFI_VERSION,
	.xxfi_flags = SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_QUARANTINE | SMFIF_SETSYMLIST,
	.xxfi_connect = cb_connect,
	.xxfi_helo = cb_helo,
	.xxfi_envfrom = cb_envfrom,
	.xxfi_envrcpt = cb_envrcpt,
	.xxfi_header = cb_header,
	.xxfi_eoh = cb_eoh,
	.xxfi_body = cb_body,
	.xxfi_eom = cb_eom,
	.xxfi_abort = cb_abort,
	.xxfi_close = cb_close,
	.xxfi_negotiate = cb_negotiate,
};
