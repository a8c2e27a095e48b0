/*
 * smtp_session.c - the client side of the proxy: one SMTP session from
 * greeting to QUIT.
 *
 * moat greets, answers HELO/EHLO and DATA's 354 itself; it opens the
 * upstream connection at the first MAIL, relays MAIL and RCPT and gives
 * the client the upstream's replies; it reads the whole message into a
 * msg_spool (the smuggling-safe decoder of smtp_data.c decides where it
 * ends) and relays it only then, so the client's final reply is always
 * the upstream's. The filter pipeline runs at each stage
 * (filters/pipeline.h) and decides what becomes of the message.
 *
 * Before the greeting moat may pause (greet_pause); a client that talks
 * before it is a pregreet client (postscreen's test), rejected, scored
 * (session symbol PREGREET) or logged by pregreet_action. Errors count
 * per session (max_errors) and per client (client_limits.h); under
 * stress (server_stressed()) a command line must be complete within
 * stress_client_timeout seconds, however its bytes trickle in.
 *
 * States are explicit (enum state). Commands are dispatched through
 * commands[], each with the states it is valid in. Every continuation
 * (an upstream reply, a filter's answer) goes back through a deferred
 * resume event, so no callback re-enters the command loop.
 *
 * STARTTLS (tls.h does the contexts): after "220 Ready", whatever the
 * client pipelined behind STARTTLS is discarded and logged (CVE-2011-0411
 * class), the TLS layer goes over the socket, and once the handshake is
 * done the session starts over (RFC 3207 4.2: HELO is forgotten). With
 * tls_wrappermode the handshake comes first, then the greeting. AUTH is
 * offered only over TLS, when the upstream offers it, and relayed: the
 * client's response lines are read in S_AUTH, never parsed as commands
 * and never logged; the upstream's 235 makes the session authenticated
 * (sasl.h finds the user name). Failures are counted per session and
 * per address (auth_limit.h).
 *
 * Owns: the client bufferevent, the upstream, the spool, the
 * transaction's strings, a config reference, a reference to the
 * listener's certificates.
 */
#include "session.h"

#include <errno.h>
#include <fcntl.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/crypto.h>
#include <openssl/ssl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/uio.h>
#include <time.h>

#include "auth_limit.h"
#include "client_limits.h"
#include "debuglog.h"
#include "filter.h"
#include "message.h"
#include "pipeline.h"
#include "store_conf.h"
#include "verdict.h"
#include "log.h"
#include "msg_spool.h"
#include "msglog.h"
#include "server.h"
#include "smtp_cmd.h"
#include "smtp_data.h"
#include "smtp_reply.h"
#include "sasl.h"
#include "tls.h"
#include "upstream.h"

enum state {
	S_GREETING,	/* connect filters running */
	S_CMD,		/* reading commands */
	S_WAIT,		/* a command waits for the upstream or the filters */
	S_DATA,		/* reading the message */
	S_CLOSING,	/* flushing the last reply */
	S_STARTTLS,	/* sending 220 to STARTTLS, then TLS */
	S_TLS,		/* TLS handshake (STARTTLS or implicit TLS) */
	S_AUTH,		/* reading a client's response in an AUTH exchange */
};

#define OUT_PAUSE (64 * 1024)	/* stop reading commands above this */
#define IN_HIGH (64 * 1024)

struct session {
	struct server *srv;
	struct moat_config *conf;
	const struct moat_listener_conf *lconf;
	struct session *next, *prev;
	char id[16];
	char client_addr[64];
	int client_port;
	struct sockaddr_storage peer, local;	/* the client's, and moat's end */
	struct client_key ckey;		/* its network, for client_limits.h */
	struct event *greet_ev;		/* greet_pause */
	struct event *deadline_ev;	/* under stress: a whole command in time */
	struct bufferevent *bev;
	struct event *resume_ev;
	struct event *final_ev;		/* bounds end of data -> final reply */
	/* A plain socket's replies are written by flush_cb() at the end of
	 * the loop pass that queued them; EV_WRITE is on only while the
	 * socket cannot take them all (no epoll changes per reply). */
	struct event *flush_ev;
	int direct;
	int bulk;	/* in read_cb after a full read: more may be waiting */
	enum state state;
	int esmtp;
	char *helo;
	struct smtp_caps adv;		/* what EHLO advertised */
	int discarding;			/* inside an over-long command line */
	long nerrors, ncommands;
	int drain;			/* shutdown: end after this transaction */
	/* transaction */
	int in_tx;
	char *mail_from;
	char *upstream_line;		/* MAIL/RCPT line to send */
	char *size_param;		/* "SIZE=n" from MAIL, or NULL */
	char *rcpt_pending;		/* RCPT address being decided */
	char **rcpts;
	size_t nrcpts, rcpt_cap;
	struct msg_spool *spool;
	struct smtp_data_decoder dec;
	int spool_errno;		/* a spool write failed */
	int too_big;
	struct timespec tx_start;
	/* services */
	struct upstream *up;
	void (*after_open)(struct session *);
	struct moat_pipeline_run *prun;
	enum moat_stage pstage;
	void (*pcont)(struct session *, const struct moat_stage_result *);
	struct moat_verdict sess_v;	/* connect and HELO symbols */
	struct {			/* sess_v after the connect stage, */
		int exempt;		/* restored at each HELO/EHLO */
		struct moat_decision decision, would;
	} conn_v;
	struct moat_verdict msg_v;	/* this message's verdict */
	struct moat_message message;	/* parsed at end of data */
	char *edited_head;		/* header block as passed on */
	size_t edited_len;
	double stage_ms[MOAT_STAGE__COUNT];
	void *filter_state[MOAT_MAX_FILTERS];
	struct moat_msgctx ctx;
	/* TLS and AUTH */
	struct tls_server *tls_srv;	/* the listener's certificates, or NULL */
	SSL *tls_pending;		/* S_STARTTLS: for the handshake */
	int tls;			/* the handshake is done */
	struct tls_info tls_info;
	char *auth_user;		/* after 235: the name, "" if unknown */
	long auth_failures;
	unsigned auth_mech;		/* the exchange under way, or 0 */
	unsigned auth_step;		/* client responses in it so far */
	int auth_cancel;		/* the client sent "*" */
	int auth_named;			/* auth_name holds the user name */
	char auth_name[256];
	char *auth_line;		/* AUTH command for the upstream (wiped) */
};

static void session_free(struct session *s);
static void process(struct session *s);

/* ---- small helpers ---------------------------------------------------- */

static void make_id(char *buf, size_t len)
{
	unsigned char r[6];
	static unsigned counter;
	if (getrandom(r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r)) {
		unsigned long t = (unsigned long)time(NULL) ^ (++counter * 2654435761u);
		memcpy(r, &t, sizeof(r) < sizeof(t) ? sizeof(r) : sizeof(t));
	}
	snprintf(buf, len, "%02X%02X%02X%02X%02X%02X", r[0], r[1], r[2], r[3], r[4], r[5]);
}

static void set_read_timeout(struct session *s, long sec)
{
	struct timeval rt = {sec, 0}, wt = {s->conf->client_timeout, 0};
	bufferevent_set_timeouts(s->bev, sec > 0 ? &rt : NULL, &wt);
}

static void resume_later(struct session *s)
{
	event_active(s->resume_ev, EV_TIMEOUT, 0);
}

/* Output was queued: write it once this loop pass is done with it. */
static void out_added_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
	struct session *s = arg;
	(void)buf;
	if (info->n_added && s->direct)
		event_active(s->flush_ev, EV_TIMEOUT, 0);
}

static void write_cb(struct bufferevent *bev, void *arg);

/* Writes the queued output to the socket now. What the socket does not
 * take (or an error) is left to libevent, as without direct writes; a
 * drained buffer goes on as libevent's write callback would. */
static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;
	struct evbuffer *out;
	(void)fd;
	(void)what;
	if (!s->direct || !s->bev)
		return;
	out = bufferevent_get_output(s->bev);
	if (evbuffer_get_length(out) == 0 || (bufferevent_get_enabled(s->bev) & EV_WRITE))
		return;
	/* libevent keeps the start of a socket bufferevent's output frozen
	 * except while it writes itself: so do we */
	evbuffer_unfreeze(out, 1);
	evbuffer_write(out, bufferevent_getfd(s->bev));
	evbuffer_freeze(out, 1);
	if (evbuffer_get_length(out) > 0) {
		bufferevent_enable(s->bev, EV_WRITE);
		return;
	}
	write_cb(s->bev, s);
}

static void close_after_flush(struct session *s)
{
	s->state = S_CLOSING;
	bufferevent_disable(s->bev, EV_READ);
	if (evbuffer_get_length(bufferevent_get_output(s->bev)) == 0)
		session_free(s);
	/* else write_cb frees it once the reply is out */
}

/* Sends one reply line. Codes >= 400 count as errors (max_errors). */
static void reply(struct session *s, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void reply(struct session *s, int code, const char *fmt, ...)
{
	char text[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	evbuffer_add_printf(bufferevent_get_output(s->bev), "%d %s\r\n", code, text);
	if (code >= 400) {
		struct client_limit_conf lim;
		s->nerrors++;
		client_limit_conf_from(s->conf, &lim);
		client_limits_error(s->srv->clients, &s->ckey, &lim, time(NULL));
	}
}

/* Relays the upstream's reply as it came (the parser sanitised it). A
 * 421 becomes 451: the upstream connection is gone, not the session. */
static void relay_reply(struct session *s, const struct smtp_reply *r)
{
	struct evbuffer *out = bufferevent_get_output(s->bev);
	if (r->code == 421) {
		size_t n;
		const char *t = smtp_reply_last_text(r, &n);
		evbuffer_add_printf(out, "451 %s %.*s\r\n",
				    r->enhanced[0] ? r->enhanced : "4.4.2", (int)n, t);
	} else {
		evbuffer_add(out, r->text, r->text_len);
	}
	if (r->code >= 400)
		s->nerrors++;
}

static void str_set(char **dst, const char *src)
{
	free(*dst);
	*dst = src ? strdup(src) : NULL;
}

static void tx_reset(struct session *s)
{
	s->in_tx = 0;
	str_set(&s->mail_from, NULL);
	str_set(&s->upstream_line, NULL);
	str_set(&s->size_param, NULL);
	str_set(&s->rcpt_pending, NULL);
	for (size_t i = 0; i < s->nrcpts; i++)
		free(s->rcpts[i]);
	s->nrcpts = 0;
	moat_message_free(&s->message);
	free(s->edited_head);
	s->edited_head = NULL;
	msg_spool_free(s->spool);
	s->spool = NULL;
	s->spool_errno = 0;
	s->too_big = 0;
	moat_verdict_clear(&s->msg_v);
	for (int i = MOAT_STAGE_MAIL; i < MOAT_STAGE__COUNT; i++)
		s->stage_ms[i] = 0;
}

static void update_ctx(struct session *s)
{
	s->ctx.helo = s->helo;
	s->ctx.mail_from = s->mail_from;
	s->ctx.rcpt = s->rcpt_pending;
	s->ctx.rcpts = (const char *const *)s->rcpts;
	s->ctx.nrcpts = s->nrcpts;
	s->ctx.message = s->message.spool ? &s->message : NULL;
	s->ctx.resolver = s->srv->resolver;	/* a reload may replace it */
	s->ctx.store = moat_store_current();	/* likewise */
	s->ctx.tls_version = s->tls ? s->tls_info.version : NULL;
	s->ctx.tls_cipher = s->tls ? s->tls_info.cipher : NULL;
	s->ctx.tls_bits = s->tls ? s->tls_info.bits : 0;
	s->ctx.tls_peer_subject = s->tls && s->tls_info.peer_subject[0] ? s->tls_info.peer_subject
								      : NULL;
	s->ctx.auth_user = s->auth_user;
	moat_debuglog_apply(&s->ctx, s->conf);	/* debug section: trace to the log */
}

static void drop_upstream(struct session *s)
{
	upstream_close(s->up);
	s->up = NULL;
}

/* How long to wait for the client's next command: shorter while moat is
 * under stress (stress_threshold). */
static long command_timeout(const struct session *s)
{
	long t = s->conf->client_timeout;
	if (server_stressed(s->srv) && s->conf->stress_client_timeout < t)
		t = s->conf->stress_client_timeout;
	return t;
}

static void timed_out(struct session *s);

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;
	(void)fd;
	(void)what;
	if (s->state == S_CMD)
		timed_out(s);
}

/* Under stress the next command line must be complete within
 * stress_client_timeout, however slowly its bytes trickle in (a read
 * timeout alone restarts with every byte). */
static void arm_deadline(struct session *s)
{
	struct timeval tv = {s->conf->stress_client_timeout, 0};
	if (!server_stressed(s->srv)) {
		if (s->deadline_ev)
			evtimer_del(s->deadline_ev);
		return;
	}
	if (!s->deadline_ev)
		s->deadline_ev = evtimer_new(s->srv->base, deadline_cb, s);
	if (s->deadline_ev)
		evtimer_add(s->deadline_ev, &tv);
}

/* After a command finished asynchronously: back to reading commands. */
static void command_done(struct session *s)
{
	if (s->state == S_CLOSING)
		return;
	s->state = S_CMD;
	set_read_timeout(s, command_timeout(s));
	arm_deadline(s);
	resume_later(s);
}

/* ---- the per-message log line --------------------------------------- */

/* The queue id in the upstream's final reply, by queue_id_pattern's
 * first group; "-" when it does not match. */
static void queue_id(const regex_t *re, const char *text, size_t len, char *out, size_t outlen)
{
	char line[1024];
	regmatch_t m[2];
	size_t n = len < sizeof(line) - 1 ? len : sizeof(line) - 1;
	memcpy(line, text, n);
	line[n] = '\0';
	snprintf(out, outlen, "-");
	if (!re || regexec(re, line, 2, m, 0) != 0 || m[1].rm_so < 0 || m[1].rm_eo <= m[1].rm_so)
		return;
	size_t k = (size_t)(m[1].rm_eo - m[1].rm_so);
	if (k >= outlen)
		k = outlen - 1;
	memcpy(out, line + m[1].rm_so, k);
	out[k] = '\0';
	for (size_t i = 0; i < k; i++)	/* it goes into a key=value log line */
		if (out[i] <= ' ' || out[i] == '"' || out[i] == 0x7f)
			out[i] = '_';
}

/* The msg line (filters/msglog.h), with the queue id from the
 * upstream's reply. */
static void log_message(struct session *s, int code, const char *text, size_t textlen)
{
	char qid[64];
	struct timespec now;
	queue_id(s->conf->queue_id_re, text, textlen, qid, sizeof(qid));
	clock_gettime(CLOCK_MONOTONIC, &now);
	struct moat_msglog m = {
		.session_id = s->id,
		.listener = s->lconf->name,
		.client_addr = s->client_addr,
		.helo = s->helo,
		.mail_from = s->mail_from,
		.rcpts = (const char *const *)s->rcpts,
		.nrcpts = s->nrcpts,
		.size = s->spool ? msg_spool_size(s->spool) : 0,
		.code = code,
		.reply = text,
		.reply_len = textlen,
		.queue_id = qid,
		.v = &s->msg_v,
		.stage_ms = s->stage_ms,
		.seconds = (double)(now.tv_sec - s->tx_start.tv_sec) +
			   (double)(now.tv_nsec - s->tx_start.tv_nsec) / 1e9,
		.tls_version = s->tls ? s->tls_info.version : NULL,
		.tls_cipher = s->tls ? s->tls_info.cipher : NULL,
		.tls_bits = s->tls ? s->tls_info.bits : 0,
		.tls_peer_subject = s->tls ? s->tls_info.peer_subject : NULL,
		.auth_user = s->auth_user,
	};
	moat_msglog(&m);
	s->srv->n_messages++;
}

/* Ends a transaction with a reply of moat's own, logging it. */
static void end_message(struct session *s, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void end_message(struct session *s, int code, const char *fmt, ...)
{
	char text[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	reply(s, code, "%s", text);
	char full[600];
	int n = snprintf(full, sizeof(full), "%d %s", code, text);
	log_message(s, code, full, n > 0 ? (size_t)n : 0);
	tx_reset(s);
	/* The upstream took MAIL and RCPT for this message: a fresh
	 * connection for the next one is simpler and safer than RSET. */
	drop_upstream(s);
}

/* ---- upstream connection -------------------------------------------- */

static unsigned must_match =
	SMTP_EXT_8BITMIME | SMTP_EXT_SMTPUTF8 | SMTP_EXT_DSN | SMTP_EXT_ENHANCEDSTATUSCODES;

static void on_upstream_open(void *arg, enum upstream_status st, const struct smtp_reply *r)
{
	struct session *s = arg;
	void (*next)(struct session *) = s->after_open;

	s->after_open = NULL;
	if (st == UPSTREAM_ETLS) {
		moat_log(LOG_ERR, "session=%s listener=%s: upstream_tls = encrypt but the upstream %s %s; "
			 "mail is tempfailed until it offers TLS", s->id, s->lconf->name,
			 s->lconf->upstream, upstream_error(s->up));
		drop_upstream(s);
		reply(s, 451, "4.7.5 Upstream TLS unavailable, try again later");
		tx_reset(s);
		command_done(s);
		return;
	}
	if (st == UPSTREAM_EXCLIENT) {
		char why[160];
		if (r && r->code / 100 != 2)
			snprintf(why, sizeof(why), "refused XCLIENT with %d", r->code);
		else
			snprintf(why, sizeof(why), "does not offer XCLIENT with the ADDR attribute");
		moat_log(LOG_ERR, "session=%s listener=%s: xclient = yes but the upstream %s %s; "
			 "mail is tempfailed until it does (Postfix: smtpd_authorized_xclient_hosts)",
			 s->id, s->lconf->name, s->lconf->upstream, why);
		drop_upstream(s);
		reply(s, 451, "4.3.5 Service temporarily unavailable (upstream configuration)");
		tx_reset(s);
		command_done(s);
		return;
	}
	if (st != UPSTREAM_OK) {
		if (r)
			moat_log(LOG_WARNING, "session=%s listener=%s: upstream %s: %s, reply %d",
				 s->id, s->lconf->name, s->lconf->upstream, upstream_status_text(st),
				 r->code);
		else
			moat_log(LOG_WARNING, "session=%s listener=%s: upstream %s: %s",
				 s->id, s->lconf->name, s->lconf->upstream, upstream_status_text(st));
		drop_upstream(s);
		reply(s, 451, "4.4.1 Upstream mail server unavailable, try again later");
		tx_reset(s);
		command_done(s);
		return;
	}
	const struct smtp_caps *c = upstream_caps(s->up);
	server_learn_caps(s->srv, s->lconf->name, c);
	if (upstream_tls(s->up))
		moat_log(LOG_INFO, "session=%s listener=%s: upstream TLS %s", s->id, s->lconf->name,
			 upstream_tls(s->up));
	if (s->auth_user && (!s->lconf->xclient || !(c->xclient & SMTP_XCLIENT_LOGIN) ||
			     !*s->auth_user))
		moat_log(LOG_WARNING, "session=%s listener=%s: the client authenticated, but this new "
			 "upstream connection cannot say so (needs xclient = yes, the upstream's XCLIENT "
			 "LOGIN and a known user name); the upstream treats it as unauthenticated",
			 s->id, s->lconf->name);
	unsigned missing = s->adv.ext & must_match & ~c->ext;
	if (missing || (c->size && c->size < s->adv.size)) {
		char buf[256];
		moat_log(LOG_WARNING, "session=%s listener=%s: the upstream's capabilities changed "
			 "since EHLO was answered (now: %s); tempfailing this transaction",
			 s->id, s->lconf->name, smtp_caps_format(c, buf, sizeof(buf)));
		drop_upstream(s);
		reply(s, 451, "4.3.0 Upstream capabilities changed, try again");
		tx_reset(s);
		command_done(s);
		return;
	}
	next(s);
}

/* Runs next(s) with a ready upstream, opening one if needed. */
static void with_upstream(struct session *s, void (*next)(struct session *))
{
	if (upstream_ready(s->up)) {
		next(s);
		return;
	}
	drop_upstream(s);
	struct listener *l = server_find_listener(s->srv, s->lconf->name);
	char tls_name[256];
	struct upstream_params p = {
		.addr = s->lconf->upstream_addr,
		.ehlo_name = s->conf->hostname,
		.connect_timeout = s->conf->upstream_connect_timeout,
		.timeout = s->conf->upstream_timeout,
		.data_timeout = s->conf->upstream_data_timeout,
		.xclient = s->lconf->xclient,
		.client_addr = s->client_addr,
		.client_port = s->client_port,
		.client_name = "[UNAVAILABLE]",
		.client_helo = s->helo,
		.client_esmtp = s->esmtp,
		.client_login = s->auth_user,
		.tls_level = s->lconf->upstream_tls_level,
		.tls_verify = s->lconf->upstream_tls_verify_id,
		.tls_ctx = l ? l->tls_client : NULL,
		.tls_name = tls_upstream_name(s->lconf, tls_name, sizeof(tls_name)),
		.proxy_version = s->lconf->upstream_proxy_version,
		.proxy_src = s->peer,
		.proxy_dst = s->local,
	};
	s->up = upstream_new(s->srv->base, &p);
	if (!s->up) {
		reply(s, 451, "4.3.0 Out of memory");
		tx_reset(s);
		command_done(s);
		return;
	}
	s->after_open = next;
	upstream_open(s->up, on_upstream_open, s);
}

/* ---- the filter pipeline ------------------------------------------ */

typedef void (*stage_cont_fn)(struct session *, const struct moat_stage_result *);

static void on_stage_done(void *arg, const struct moat_stage_result *r)
{
	struct session *s = arg;
	s->prun = NULL;
	s->stage_ms[s->pstage] += r->ms;
	s->pcont(s, r);
}

/* The verdict a stage adds to: the session's before MAIL, the message's
 * after. */
static struct moat_verdict *stage_verdict(struct session *s, enum moat_stage stage)
{
	return stage <= MOAT_STAGE_HELO ? &s->sess_v : &s->msg_v;
}

/* Runs the filters of stage, then calls cont(s, result): at once when
 * they answer at once, else later from the loop. */
static void run_stage(struct session *s, enum moat_stage stage, stage_cont_fn cont)
{
	struct moat_stage_result r;
	update_ctx(s);
	s->pstage = stage;
	s->pcont = cont;
	if (moat_pipeline_run(s->conf, stage, &s->ctx, stage_verdict(s, stage), on_stage_done, s,
			      &s->prun, &r)) {
		s->stage_ms[stage] += r.ms;
		cont(s, &r);
		return;
	}
	s->state = S_WAIT;
	set_read_timeout(s, 0);
}

/* The reply for a filter's reject or tempfail at a stage. */
static void decision_reply(struct session *s, const struct moat_decision *d)
{
	int reject = d->action == MOAT_ACTION_REJECT, code;
	const char *text;
	moat_decision_reply(d, s->pstage == MOAT_STAGE_CONNECT, &code, &text);
	moat_log(LOG_INFO, "session=%s client=%s: %s by filter %s at stage %s: %d %s", s->id,
		 s->client_addr, reject ? "rejected" : "tempfailed", d->filter ? d->filter : "-",
		 moat_stage_name((enum moat_stage)d->stage), code, text);
	reply(s, code, "%s", text);
}

static int stage_refused(const struct moat_stage_result *r)
{
	return r->decision.action == MOAT_ACTION_REJECT || r->decision.action == MOAT_ACTION_TEMPFAIL;
}

/* ---- commands ------------------------------------------------------- */

static int valid_helo(const char *arg, size_t len)
{
	if (len == 0 || len > 255)
		return 0;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)arg[i] <= ' ')
			return 0;
	return 1;
}

static void advertise(struct session *s)
{
	struct listener *l = server_find_listener(s->srv, s->lconf->name);
	memset(&s->adv, 0, sizeof(s->adv));
	s->adv.ext = SMTP_EXT_PIPELINING | SMTP_EXT_SIZE;
	s->adv.size = (unsigned long)s->conf->message_size_limit;
	if (l && l->up.known) {
		s->adv.ext |= l->up.caps.ext & must_match;
		if (l->up.caps.size && l->up.caps.size < s->adv.size)
			s->adv.size = l->up.caps.size;
		/* AUTH never on a plain connection: credentials in clear */
		if (s->tls && s->lconf->auth && (l->up.caps.ext & SMTP_EXT_AUTH)) {
			s->adv.auth = l->up.caps.auth;
			if (s->adv.auth)
				s->adv.ext |= SMTP_EXT_AUTH;
		}
	}
}

static void helo_continue(struct session *s, const struct moat_stage_result *r)
{
	struct evbuffer *out = bufferevent_get_output(s->bev);
	if (stage_refused(r)) {
		str_set(&s->helo, NULL);
		decision_reply(s, &r->decision);
		command_done(s);
		return;
	}
	if (!s->esmtp) {
		reply(s, 250, "%s", s->conf->hostname);
		command_done(s);
		return;
	}
	advertise(s);
	evbuffer_add_printf(out, "250-%s\r\n250-PIPELINING\r\n250-SIZE %lu\r\n",
			    s->conf->hostname, s->adv.size);
	if (s->adv.ext & SMTP_EXT_8BITMIME)
		evbuffer_add_printf(out, "250-8BITMIME\r\n");
	if (s->adv.ext & SMTP_EXT_SMTPUTF8)
		evbuffer_add_printf(out, "250-SMTPUTF8\r\n");
	if (s->adv.ext & SMTP_EXT_DSN)
		evbuffer_add_printf(out, "250-DSN\r\n");
	if (s->adv.ext & SMTP_EXT_ENHANCEDSTATUSCODES)
		evbuffer_add_printf(out, "250-ENHANCEDSTATUSCODES\r\n");
	if (s->tls_srv && !s->tls)
		evbuffer_add_printf(out, "250-STARTTLS\r\n");
	if (s->adv.auth) {
		char mechs[128];
		evbuffer_add_printf(out, "250-AUTH %s\r\n",
				    sasl_mechs_format(s->adv.auth, mechs, sizeof(mechs)));
	}
	evbuffer_add_printf(out, "250 HELP\r\n");
	command_done(s);
}

static void cmd_helo(struct session *s, const struct smtp_cmd *c)
{
	if (!valid_helo(c->arg, c->arg_len)) {
		reply(s, 501, "5.5.4 Syntax: %s hostname", c->name);
		return;
	}
	/* HELO resets the transaction (RFC 5321 4.1.4); the upstream was
	 * told the old HELO name, so the next MAIL opens a fresh one. */
	tx_reset(s);
	drop_upstream(s);
	free(s->helo);
	s->helo = strndup(c->arg, c->arg_len);
	s->esmtp = c->verb == SMTP_VERB_EHLO;
	/* a new HELO replaces what the last one decided, not the connect's */
	moat_verdict_drop_stage(&s->sess_v, MOAT_STAGE_HELO);
	s->sess_v.exempt = s->conn_v.exempt;
	s->sess_v.decision = s->conn_v.decision;
	s->sess_v.would = s->conn_v.would;
	run_stage(s, MOAT_STAGE_HELO, helo_continue);
}

/* Checks the ESMTP parameters of MAIL or RCPT against what was
 * advertised and appends the ones to pass on to line. Returns 0, or -1
 * after replying. */
static int check_params(struct session *s, const struct smtp_path *p, int is_mail,
			char *line, size_t len)
{
	size_t off = strlen(line);
	for (size_t i = 0; i < p->nparams; i++) {
		const char *k = p->params[i].keyword, *v = p->params[i].value;
		unsigned need = 0;
		int ok = 0;
		if (!s->esmtp) {
			reply(s, 555, "5.5.4 Parameters need EHLO");
			return -1;
		}
		if (is_mail && strcmp(k, "SIZE") == 0) {
			char *end;
			unsigned long n = v ? strtoul(v, &end, 10) : 0;
			if (!v || !*v || *end) {
				reply(s, 501, "5.5.4 Bad SIZE parameter");
				return -1;
			}
			if (n > s->adv.size) {
				reply(s, 552, "5.3.4 Message size exceeds fixed limit");
				return -1;
			}
			need = SMTP_EXT_SIZE, ok = 1;
		} else if (is_mail && strcmp(k, "BODY") == 0) {
			need = SMTP_EXT_8BITMIME;
			ok = v && (strcasecmp(v, "7BIT") == 0 || strcasecmp(v, "8BITMIME") == 0);
		} else if (is_mail && strcmp(k, "SMTPUTF8") == 0) {
			need = SMTP_EXT_SMTPUTF8, ok = v == NULL;
		} else if (is_mail && strcmp(k, "RET") == 0) {
			need = SMTP_EXT_DSN;
			ok = v && (strcasecmp(v, "FULL") == 0 || strcasecmp(v, "HDRS") == 0);
		} else if (is_mail && strcmp(k, "ENVID") == 0) {
			need = SMTP_EXT_DSN, ok = v && *v;
		} else if (!is_mail && (strcmp(k, "NOTIFY") == 0 || strcmp(k, "ORCPT") == 0)) {
			need = SMTP_EXT_DSN, ok = v && *v;
		}
		if (!ok || !(s->adv.ext & need)) {
			reply(s, 555, "5.5.4 Unsupported option: %s", k);
			return -1;
		}
		if (need == SMTP_EXT_SIZE) {	/* added at send time, see mail_send() */
			char sz[48];
			snprintf(sz, sizeof(sz), "SIZE=%s", v);
			str_set(&s->size_param, sz);
			continue;
		}
		int n = snprintf(line + off, len - off, " %s%s%s", k, v ? "=" : "", v ? v : "");
		if (n < 0 || (size_t)n >= len - off) {
			reply(s, 501, "5.5.4 Too many parameters");
			return -1;
		}
		off += (size_t)n;
	}
	return 0;
}

static void on_mail_reply(void *arg, enum upstream_status st, const struct smtp_reply *r)
{
	struct session *s = arg;
	if (st != UPSTREAM_OK) {
		moat_log(LOG_WARNING, "session=%s: upstream %s at MAIL: %s", s->id,
			 s->lconf->upstream, upstream_status_text(st));
		drop_upstream(s);
		reply(s, 451, "4.4.1 Upstream mail server unavailable, try again later");
		tx_reset(s);
	} else {
		relay_reply(s, r);
		if (r->code / 100 == 2) {
			s->in_tx = 1;
		} else {
			tx_reset(s);
			if (!upstream_ready(s->up))
				drop_upstream(s);
		}
	}
	command_done(s);
}

/* SIZE is moat's own to advertise and enforce: it is passed on only
 * when this upstream offers it too. */
static void mail_send(struct session *s)
{
	if (s->size_param && (upstream_caps(s->up)->ext & SMTP_EXT_SIZE)) {
		size_t n = strlen(s->upstream_line) + strlen(s->size_param) + 2;
		char *line = malloc(n);
		if (line) {
			snprintf(line, n, "%s %s", s->upstream_line, s->size_param);
			free(s->upstream_line);
			s->upstream_line = line;
		}
	}
	upstream_command(s->up, s->upstream_line, on_mail_reply, s);
}

static void mail_continue(struct session *s, const struct moat_stage_result *r)
{
	if (stage_refused(r)) {
		decision_reply(s, &r->decision);
		tx_reset(s);
		command_done(s);
		return;
	}
	s->state = S_WAIT;
	set_read_timeout(s, 0);
	with_upstream(s, mail_send);
}

static void cmd_mail(struct session *s, const struct smtp_cmd *c)
{
	struct smtp_path p;
	char line[1200];
	int rc;

	if (!s->helo) {
		reply(s, 503, "5.5.1 Error: send HELO/EHLO first");
		return;
	}
	if (s->in_tx) {
		reply(s, 503, "5.5.1 Error: nested MAIL command");
		return;
	}
	str_set(&s->size_param, NULL);
	rc = smtp_path_parse(c->arg, c->arg_len, 1, &p);
	if (rc == SMTP_PATH_ENOMEM) {
		reply(s, 451, "4.3.0 Out of memory, try again later");
		return;
	}
	if (rc == SMTP_PATH_EADDR) {
		reply(s, 501, "5.1.7 Bad sender address syntax");
		return;
	}
	if (rc == SMTP_PATH_EPARAM) {
		reply(s, 555, "5.5.4 Bad MAIL parameter syntax");
		return;
	}
	if (rc != SMTP_PATH_OK) {
		reply(s, 501, "5.5.4 Syntax: MAIL FROM:<address>");
		return;
	}
	snprintf(line, sizeof(line), "MAIL FROM:<%s>", p.addr);
	if (check_params(s, &p, 1, line, sizeof(line)) < 0) {
		smtp_path_free(&p);
		return;
	}
	clock_gettime(CLOCK_MONOTONIC, &s->tx_start);
	str_set(&s->mail_from, p.addr);
	str_set(&s->upstream_line, line);
	smtp_path_free(&p);
	moat_verdict_clear(&s->msg_v);
	moat_verdict_add_all(&s->msg_v, &s->sess_v);
	run_stage(s, MOAT_STAGE_MAIL, mail_continue);
}

static void on_rcpt_reply(void *arg, enum upstream_status st, const struct smtp_reply *r)
{
	struct session *s = arg;
	if (st != UPSTREAM_OK) {
		moat_log(LOG_WARNING, "session=%s: upstream %s at RCPT: %s", s->id,
			 s->lconf->upstream, upstream_status_text(st));
		drop_upstream(s);
		reply(s, 451, "4.4.2 Upstream connection lost, try again later");
		tx_reset(s);
	} else {
		relay_reply(s, r);
		if (r->code / 100 == 2) {
			if (s->nrcpts == s->rcpt_cap) {
				size_t cap = s->rcpt_cap ? s->rcpt_cap * 2 : 8;
				char **n = realloc(s->rcpts, cap * sizeof(*n));
				if (n) {
					s->rcpts = n;
					s->rcpt_cap = cap;
				}
			}
			if (s->nrcpts < s->rcpt_cap) {
				s->rcpts[s->nrcpts++] = s->rcpt_pending;
				s->rcpt_pending = NULL;
			}
		}
		if (!upstream_ready(s->up)) {	/* 421: the upstream left */
			drop_upstream(s);
			tx_reset(s);
		}
	}
	str_set(&s->rcpt_pending, NULL);
	command_done(s);
}

static void rcpt_continue(struct session *s, const struct moat_stage_result *r)
{
	if (stage_refused(r)) {
		decision_reply(s, &r->decision);
		str_set(&s->rcpt_pending, NULL);
		command_done(s);
		return;
	}
	if (!upstream_ready(s->up)) {
		drop_upstream(s);
		reply(s, 451, "4.4.2 Upstream connection lost, try again later");
		tx_reset(s);
		command_done(s);
		return;
	}
	s->state = S_WAIT;
	set_read_timeout(s, 0);
	upstream_command(s->up, s->upstream_line, on_rcpt_reply, s);
}

static void cmd_rcpt(struct session *s, const struct smtp_cmd *c)
{
	struct smtp_path p;
	char line[1200];
	int rc;

	if (!s->in_tx) {
		reply(s, 503, "5.5.1 Error: need MAIL command");
		return;
	}
	if ((long)s->nrcpts >= s->conf->max_recipients) {
		reply(s, 452, "4.5.3 Error: too many recipients");
		return;
	}
	rc = smtp_path_parse(c->arg, c->arg_len, 0, &p);
	if (rc == SMTP_PATH_ENOMEM) {
		reply(s, 451, "4.3.0 Out of memory, try again later");
		return;
	}
	if (rc == SMTP_PATH_EADDR) {
		reply(s, 501, "5.1.3 Bad recipient address syntax");
		return;
	}
	if (rc == SMTP_PATH_EPARAM) {
		reply(s, 555, "5.5.4 Bad RCPT parameter syntax");
		return;
	}
	if (rc != SMTP_PATH_OK || p.addr[0] == '\0') {
		if (rc == SMTP_PATH_OK)
			smtp_path_free(&p);
		reply(s, 501, "5.5.4 Syntax: RCPT TO:<address>");
		return;
	}
	snprintf(line, sizeof(line), "RCPT TO:<%s>", p.addr);
	if (check_params(s, &p, 0, line, sizeof(line)) < 0) {
		smtp_path_free(&p);
		return;
	}
	str_set(&s->rcpt_pending, p.addr);
	str_set(&s->upstream_line, line);
	smtp_path_free(&p);
	run_stage(s, MOAT_STAGE_RCPT, rcpt_continue);
}

/* RFC 5322 date for Received: */
static void rfc5322_date(char *buf, size_t len)
{
	time_t now = time(NULL);
	struct tm tm;
	localtime_r(&now, &tm);
	strftime(buf, len, "%a, %d %b %Y %H:%M:%S %z", &tm);
}

static void cmd_data(struct session *s, const struct smtp_cmd *c)
{
	if (c->arg_len) {
		reply(s, 501, "5.5.4 Syntax: DATA");
		return;
	}
	if (!s->in_tx) {
		reply(s, 503, "5.5.1 Error: need MAIL command");
		return;
	}
	if (s->nrcpts == 0) {
		reply(s, 554, "5.5.1 Error: no valid recipients");
		return;
	}
	s->spool = msg_spool_new(s->conf->spool_directory, (size_t)s->conf->message_memory_limit);
	if (!s->spool) {
		reply(s, 451, "4.3.0 Out of memory");
		return;
	}
	if (!s->lconf->xclient) {
		/* The upstream cannot learn the client any other way. */
		char hdr[1024], date[64];
		rfc5322_date(date, sizeof(date));
		int n = snprintf(hdr, sizeof(hdr),
				 "Received: from %s (%s [%s])\r\n\tby %s (moat) with %s id %s;\r\n\t%s\r\n",
				 s->helo, "unknown", s->client_addr, s->conf->hostname,
				 s->esmtp ? "ESMTP" : "SMTP", s->id, date);
		if (n > 0 && msg_spool_write(s->spool, hdr, (size_t)n) < 0)
			s->spool_errno = errno ? errno : EIO;
	}
	update_ctx(s);
	moat_pipeline_data(s->conf, &s->ctx, NULL, 0);	/* a message starts */
	smtp_data_decoder_init(&s->dec, (size_t)s->conf->max_text_line);
	reply(s, 354, "End data with <CR><LF>.<CR><LF>");
	s->state = S_DATA;
	set_read_timeout(s, s->conf->data_timeout);
}

static void cmd_rset(struct session *s, const struct smtp_cmd *c)
{
	(void)c;
	if (s->in_tx && s->up) {
		/* Cheaper and simpler than an upstream RSET round trip: the
		 * next MAIL opens a fresh upstream session. */
		drop_upstream(s);
	}
	tx_reset(s);
	reply(s, 250, "2.0.0 Ok");
}

static void cmd_noop(struct session *s, const struct smtp_cmd *c)
{
	(void)c;
	reply(s, 250, "2.0.0 Ok");
}

static void cmd_quit(struct session *s, const struct smtp_cmd *c)
{
	(void)c;
	reply(s, 221, "2.0.0 Bye");
	close_after_flush(s);
}

static void cmd_help(struct session *s, const struct smtp_cmd *c)
{
	(void)c;
	reply(s, 214, "2.0.0 Commands: HELO EHLO MAIL RCPT DATA RSET NOOP QUIT");
}

static void cmd_refused(struct session *s, const struct smtp_cmd *c)
{
	reply(s, 502, "5.5.1 Error: %s is disabled", c->name);
}

static void cmd_not_offered(struct session *s, const struct smtp_cmd *c)
{
	reply(s, 502, "5.5.1 Error: %s not implemented", c->name);
}

/* ---- STARTTLS ----------------------------------------------------- */

static void event_cb(struct bufferevent *bev, short what, void *arg);
static void read_cb(struct bufferevent *bev, void *arg);
static void write_cb(struct bufferevent *bev, void *arg);

/* Puts the client connection under TLS, on fd (OpenSSL reads and writes
 * the socket itself: no filter layer, so callbacks never run inside a
 * write, as with plain sockets), and waits for the handshake. Returns -1
 * if it could not (ssl is gone, and fd may be). */
static int tls_begin(struct session *s, SSL *ssl, evutil_socket_t fd)
{
	struct bufferevent *tb = bufferevent_openssl_socket_new(s->srv->base, fd, ssl,
								BUFFEREVENT_SSL_ACCEPTING,
								BEV_OPT_CLOSE_ON_FREE);
	/* Out of memory: libevent freed ssl (CLOSE_ON_FREE) and may have
	 * closed fd; leaking it beats closing it twice. */
	s->bev = tb;
	if (!tb)
		return -1;
	bufferevent_openssl_set_allow_dirty_shutdown(tb, 1);
	bufferevent_setcb(tb, read_cb, write_cb, event_cb, s);
	bufferevent_setwatermark(tb, EV_READ, 0, IN_HIGH);
	bufferevent_enable(tb, EV_READ | EV_WRITE);
	s->state = S_TLS;
	set_read_timeout(s, s->conf->client_timeout);
	return 0;
}

static void greet_continue(struct session *s, const struct moat_stage_result *r);

/* The handshake is done. After STARTTLS the client starts over (RFC
 * 3207 4.2): HELO, what EHLO advertised and any transaction are
 * forgotten. With implicit TLS the session begins now. */
static void tls_established(struct session *s)
{
	tls_info_get(bufferevent_openssl_get_ssl(s->bev), &s->tls_info);
	s->tls = 1;
	moat_log(LOG_INFO, "session=%s client=%s: TLS %s cipher=%s bits=%d%s%s%s", s->id,
		 s->client_addr, s->tls_info.version, s->tls_info.cipher, s->tls_info.bits,
		 s->tls_info.peer_subject[0] ? " peer=\"" : "", s->tls_info.peer_subject,
		 s->tls_info.peer_subject[0] ? "\"" : "");
	if (s->lconf->tls_wrappermode) {
		s->state = S_GREETING;
		set_read_timeout(s, 0);
		run_stage(s, MOAT_STAGE_CONNECT, greet_continue);
		return;
	}
	tx_reset(s);
	drop_upstream(s);
	str_set(&s->helo, NULL);
	s->esmtp = 0;
	s->discarding = 0;
	memset(&s->adv, 0, sizeof(s->adv));
	moat_verdict_drop_stage(&s->sess_v, MOAT_STAGE_HELO);
	s->sess_v.exempt = s->conn_v.exempt;
	s->sess_v.decision = s->conn_v.decision;
	s->sess_v.would = s->conn_v.would;
	command_done(s);
}

static void cmd_not_offered(struct session *s, const struct smtp_cmd *c);

static void discard_pipelined(struct session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	size_t junk = evbuffer_get_length(in);
	if (junk) {
		moat_log(LOG_NOTICE, "session=%s client=%s: %zu octets pipelined after STARTTLS, "
			 "before the TLS handshake; discarded", s->id, s->client_addr, junk);
		evbuffer_drain(in, junk);
	}
}

static void cmd_starttls(struct session *s, const struct smtp_cmd *c)
{
	if (!s->tls_srv) {
		cmd_not_offered(s, c);
		return;
	}
	if (s->tls) {
		reply(s, 554, "5.5.1 Error: TLS already active");
		return;
	}
	if (c->arg_len) {
		reply(s, 501, "5.5.4 Syntax: STARTTLS");
		return;
	}
	if (s->in_tx) {
		reply(s, 503, "5.5.1 Error: MAIL transaction in progress");
		return;
	}
	SSL *ssl = tls_server_ssl_new(s->tls_srv);
	if (!ssl) {
		reply(s, 454, "4.7.0 TLS not available due to local problem");
		return;
	}
	reply(s, 220, "2.0.0 Ready to start TLS");
	/* Nothing sent before the handshake may count as sent inside it
	 * (CVE-2011-0411): a man in the middle could have added it. Once
	 * the 220 is out, write_cb hands the socket to TLS. */
	discard_pipelined(s);
	bufferevent_disable(s->bev, EV_READ);
	s->tls_pending = ssl;
	s->state = S_STARTTLS;
}

/* write_cb: the 220 to STARTTLS is out; the socket goes to TLS (a
 * duplicate of it: the plain bufferevent closes its own). */
static void tls_switch(struct session *s)
{
	SSL *ssl = s->tls_pending;
	evutil_socket_t fd = fcntl(bufferevent_getfd(s->bev), F_DUPFD_CLOEXEC, 0);

	s->tls_pending = NULL;
	discard_pipelined(s);
	s->direct = 0;
	bufferevent_free(s->bev);
	s->bev = NULL;
	if (fd < 0 || tls_begin(s, ssl, fd) < 0) {
		if (fd < 0) {
			SSL_free(ssl);
			moat_log(LOG_ERR, "session=%s client=%s: cannot start TLS: %s", s->id,
				 s->client_addr, strerror(errno));
		} else {
			moat_log(LOG_ERR, "session=%s client=%s: cannot start TLS: out of memory",
				 s->id, s->client_addr);
		}
		session_free(s);
	}
}

/* ---- AUTH ---------------------------------------------------------- */

/* Ends the AUTH exchange under way; what it held is wiped. */
static void auth_end(struct session *s)
{
	s->auth_mech = 0;
	s->auth_step = 0;
	s->auth_cancel = 0;
	s->auth_named = 0;
	OPENSSL_cleanse(s->auth_name, sizeof(s->auth_name));
	if (s->auth_line) {
		OPENSSL_cleanse(s->auth_line, strlen(s->auth_line));
		free(s->auth_line);
		s->auth_line = NULL;
	}
}

/* Notes the user name one client response carries. */
static void auth_note(struct session *s, const char *b64, size_t len)
{
	char name[256];
	if (sasl_user_from_response(s->auth_mech, s->auth_step, b64, len, name, sizeof(name)) == 1) {
		memcpy(s->auth_name, name, sizeof(name));
		s->auth_named = 1;
	}
	OPENSSL_cleanse(name, sizeof(name));
	s->auth_step++;
}

static void auth_failed(struct session *s)
{
	time_t now = time(NULL);
	s->auth_failures++;
	auth_limit_fail(s->srv->auth_fail, s->client_addr, s->conf->auth_failure_window, now);
	if (s->auth_failures >= s->conf->auth_max_failures) {
		moat_log(LOG_NOTICE, "session=%s client=%s: %ld failed AUTH attempts "
			 "(auth_max_failures); disconnecting", s->id, s->client_addr,
			 s->auth_failures);
		drop_upstream(s);
		reply(s, 421, "4.7.0 %s Error: too many failed authentications", s->conf->hostname);
		close_after_flush(s);
	}
}

static void on_auth_reply(void *arg, enum upstream_status st, const struct smtp_reply *r)
{
	struct session *s = arg;
	const char *mech = sasl_mech_name(s->auth_mech);

	if (st != UPSTREAM_OK) {
		moat_log(LOG_WARNING, "session=%s: upstream %s during AUTH: %s", s->id,
			 s->lconf->upstream, upstream_status_text(st));
		drop_upstream(s);
		auth_end(s);
		reply(s, 454, "4.7.0 Temporary authentication failure, try again later");
		command_done(s);
		return;
	}
	if (r->code == 334) {
		/* a challenge: the client's next line is a response */
		relay_reply(s, r);
		s->state = S_AUTH;
		set_read_timeout(s, s->conf->client_timeout);
		resume_later(s);
		return;
	}
	relay_reply(s, r);
	if (r->code == 235) {
		str_set(&s->auth_user, s->auth_named ? s->auth_name : "");
		moat_log(LOG_INFO, "session=%s client=%s: authenticated mechanism=%s user=%s", s->id,
			 s->client_addr, mech ? mech : "-", *s->auth_user ? s->auth_user : "-");
	} else if (!s->auth_cancel) {
		moat_log(LOG_NOTICE, "session=%s client=%s: authentication failed mechanism=%s "
			 "reply=%d", s->id, s->client_addr, mech ? mech : "-", r->code);
		auth_end(s);
		auth_failed(s);
		if (s->state == S_CLOSING)
			return;
	}
	auth_end(s);
	if (!upstream_ready(s->up))
		drop_upstream(s);
	command_done(s);
}

static void auth_send(struct session *s)
{
	if (!(upstream_caps(s->up)->auth & s->auth_mech)) {
		moat_log(LOG_WARNING, "session=%s listener=%s: the upstream no longer offers AUTH %s",
			 s->id, s->lconf->name, sasl_mech_name(s->auth_mech));
		auth_end(s);
		reply(s, 454, "4.7.0 Temporary authentication failure, try again later");
		command_done(s);
		return;
	}
	upstream_command(s->up, s->auth_line, on_auth_reply, s);
	OPENSSL_cleanse(s->auth_line, strlen(s->auth_line));
}

static void cmd_auth(struct session *s, const struct smtp_cmd *c)
{
	if (!s->adv.auth) {
		if (!s->tls && s->tls_srv && s->lconf->auth)
			reply(s, 530, "5.7.0 Must issue a STARTTLS command first");
		else
			cmd_not_offered(s, c);
		return;
	}
	if (s->auth_user) {
		reply(s, 503, "5.5.1 Error: already authenticated");
		return;
	}
	if (s->in_tx) {
		reply(s, 503, "5.5.1 Error: MAIL transaction in progress");
		return;
	}
	if (auth_limit_blocked(s->srv->auth_fail, s->client_addr,
			       s->conf->auth_max_failures_per_client, s->conf->auth_failure_window,
			       time(NULL))) {
		moat_log(LOG_NOTICE, "session=%s client=%s: AUTH refused: auth_max_failures_per_client "
			 "(%ld in %lds) reached", s->id, s->client_addr,
			 s->conf->auth_max_failures_per_client, s->conf->auth_failure_window);
		reply(s, 421, "4.7.0 %s Error: too many failed authentications from your address, "
		      "try again later", s->conf->hostname);
		close_after_flush(s);
		return;
	}
	size_t ml = 0;
	while (ml < c->arg_len && c->arg[ml] != ' ')
		ml++;
	const char *ir = c->arg + ml;
	size_t irl = c->arg_len - ml;
	while (irl && *ir == ' ')
		ir++, irl--;
	unsigned mech = sasl_mech_lookup(c->arg, ml);
	if (!mech || !(s->adv.auth & mech)) {
		reply(s, 504, "5.5.4 Unsupported authentication mechanism");
		return;
	}
	if (irl && (!sasl_response_valid(ir, irl) || (irl == 1 && *ir == '*'))) {
		reply(s, 501, "5.5.2 Error: invalid initial response (base64 expected)");
		return;
	}
	auth_end(s);
	s->auth_mech = mech;
	if (irl)
		auth_note(s, ir, irl);
	size_t n = strlen(sasl_mech_name(mech)) + irl + 8;
	if (!(s->auth_line = malloc(n))) {
		reply(s, 454, "4.7.0 Temporary authentication failure (out of memory)");
		auth_end(s);
		return;
	}
	snprintf(s->auth_line, n, "AUTH %s%s%.*s", sasl_mech_name(mech), irl ? " " : "",
		 (int)irl, ir);
	s->state = S_WAIT;
	set_read_timeout(s, 0);
	with_upstream(s, auth_send);
}

/* One line of an AUTH exchange from the client (S_AUTH): relayed, never
 * parsed as a command, never logged. Returns 1 if the state changed, 0
 * if more input is needed. */
static int process_auth(struct session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	size_t eol_len = 0;
	struct evbuffer_ptr eol = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_CRLF_STRICT);
	if (eol.pos < 0) {
		if (evbuffer_get_length(in) <= SASL_MAX_LINE + 2)
			return 0;
		evbuffer_drain(in, evbuffer_get_length(in));
		drop_upstream(s);
		auth_end(s);
		s->discarding = 1;
		reply(s, 500, "5.5.6 Authentication exchange line is too long");
		s->state = S_CMD;
		return 1;
	}
	size_t len = (size_t)eol.pos;
	char *line = len <= SASL_MAX_LINE ? malloc(len + 1) : NULL;
	if (!line) {
		evbuffer_drain(in, len + eol_len);
		drop_upstream(s);
		auth_end(s);
		reply(s, 500, "5.5.6 Authentication exchange line is too long");
		s->state = S_CMD;
		return 1;
	}
	evbuffer_remove(in, line, len);
	evbuffer_drain(in, eol_len);
	line[len] = '\0';
	if (!sasl_response_valid(line, len)) {
		/* the upstream is mid-exchange: dropping it cancels that */
		drop_upstream(s);
		auth_end(s);
		reply(s, 501, "5.5.2 Error: invalid authentication response (base64 expected)");
		s->state = S_CMD;
	} else if (!upstream_ready(s->up)) {
		drop_upstream(s);
		auth_end(s);
		reply(s, 454, "4.7.0 Temporary authentication failure, try again later");
		s->state = S_CMD;
	} else {
		if (len == 1 && line[0] == '*')
			s->auth_cancel = 1;
		else
			auth_note(s, line, len);
		s->state = S_WAIT;
		set_read_timeout(s, 0);
		upstream_command(s->up, line, on_auth_reply, s);
	}
	OPENSSL_cleanse(line, len);
	free(line);
	return 1;
}

/* Commands refused with 530 on a listener with tls = encrypt until the
 * client has done STARTTLS. */
static const enum smtp_verb needs_tls[] = {
	SMTP_VERB_MAIL, SMTP_VERB_RCPT, SMTP_VERB_DATA, SMTP_VERB_AUTH, SMTP_VERB_BDAT,
};

static int tls_missing(const struct session *s, enum smtp_verb verb)
{
	if (s->tls || s->lconf->tls_level != MOAT_TLS_ENCRYPT)
		return 0;
	for (size_t i = 0; i < sizeof(needs_tls) / sizeof(needs_tls[0]); i++)
		if (needs_tls[i] == verb)
			return 1;
	return 0;
}

static const struct {
	enum smtp_verb verb;
	void (*handler)(struct session *, const struct smtp_cmd *);
} commands[] = {
	{SMTP_VERB_HELO, cmd_helo},
	{SMTP_VERB_EHLO, cmd_helo},
	{SMTP_VERB_MAIL, cmd_mail},
	{SMTP_VERB_RCPT, cmd_rcpt},
	{SMTP_VERB_DATA, cmd_data},
	{SMTP_VERB_RSET, cmd_rset},
	{SMTP_VERB_NOOP, cmd_noop},
	{SMTP_VERB_QUIT, cmd_quit},
	{SMTP_VERB_HELP, cmd_help},
	/* policy: address probing and queue runs are not for strangers */
	{SMTP_VERB_VRFY, cmd_refused},
	{SMTP_VERB_EXPN, cmd_refused},
	{SMTP_VERB_ETRN, cmd_refused},
	{SMTP_VERB_STARTTLS, cmd_starttls},
	{SMTP_VERB_AUTH, cmd_auth},
	/* not advertised; a client's XCLIENT/XFORWARD is never relayed */
	{SMTP_VERB_BDAT, cmd_not_offered},
	{SMTP_VERB_XCLIENT, cmd_not_offered},
	{SMTP_VERB_XFORWARD, cmd_not_offered},
};

static void dispatch(struct session *s, const char *line, size_t len)
{
	struct smtp_cmd c;

	if (++s->ncommands > s->conf->max_commands) {
		reply(s, 421, "4.7.0 %s Error: too many commands", s->conf->hostname);
		close_after_flush(s);
		return;
	}
	if (smtp_cmd_parse(line, len, &c) < 0) {
		if (memchr(line, '\n', len))
			reply(s, 500, "5.5.2 Error: bare <LF> received; lines end with <CR><LF>");
		else
			reply(s, 500, "5.5.2 Error: bad characters in command");
		return;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (commands[i].verb == c.verb) {
			if (tls_missing(s, c.verb)) {
				reply(s, 530, "5.7.0 Must issue a STARTTLS command first");
				return;
			}
			commands[i].handler(s, &c);
			return;
		}
	reply(s, 502, "5.5.2 Error: command not recognized");
}

/* ---- the message ------------------------------------------------------ */

static int spool_out(void *arg, const char *buf, size_t len)
{
	struct session *s = arg;
	if (s->spool_errno || s->too_big)
		return 0;	/* keep decoding to find the end */
	if (msg_spool_size(s->spool) + len > (size_t)s->conf->message_size_limit) {
		s->too_big = 1;
		return 0;
	}
	if (msg_spool_write(s->spool, buf, len) < 0)
		s->spool_errno = errno ? errno : EIO;
	else
		moat_pipeline_data(s->conf, &s->ctx, buf, len);
	return 0;
}

static void on_final_reply(void *arg, enum upstream_status st, const struct smtp_reply *r)
{
	struct session *s = arg;
	evtimer_del(s->final_ev);
	if (st != UPSTREAM_OK) {
		moat_log(LOG_WARNING, "session=%s: upstream %s during DATA: %s", s->id,
			 s->lconf->upstream, upstream_status_text(st));
		drop_upstream(s);
		end_message(s, 451, "4.4.2 Upstream connection lost, message not delivered, try again later");
	} else {
		relay_reply(s, r);
		size_t n;
		const char *t = smtp_reply_last_text(r, &n);
		char full[600];
		int code = r->code == 421 ? 451 : r->code;	/* as relay_reply() */
		int k = snprintf(full, sizeof(full), "%d %s%s%.*s", code, r->enhanced,
				 r->enhanced[0] ? " " : "", (int)n, t);
		log_message(s, code, full, k > 0 ? (size_t)k : 0);
		tx_reset(s);
		if (!upstream_ready(s->up))
			drop_upstream(s);
	}
	command_done(s);
}

#define MAX_HEADER_BLOCK (1024 * 1024)

static void eom_continue(struct session *s, const struct moat_stage_result *r)
{
	(void)r;	/* its decision is in s->msg_v too */
	moat_pipeline_score(s->conf, &s->message, &s->msg_v);
	moat_pipeline_done(s->conf, &s->ctx, &s->msg_v);
	const struct moat_decision *d = &s->msg_v.decision;
	if (d->action == MOAT_ACTION_REJECT || d->action == MOAT_ACTION_TEMPFAIL) {
		int code;
		const char *text;
		evtimer_del(s->final_ev);
		s->pstage = MOAT_STAGE_EOM;
		moat_decision_reply(d, 0, &code, &text);
		end_message(s, code, "%s", text);
		command_done(s);
		return;
	}
	if (d->action == MOAT_ACTION_DISCARD) {
		evtimer_del(s->final_ev);
		moat_log(LOG_NOTICE, "session=%s: message discarded by %s (score %.2f): the client "
			 "gets 250, the upstream nothing", s->id, d->filter ? d->filter : "-",
			 s->msg_v.score);
		s->srv->n_discarded++;
		end_message(s, 250, "2.0.0 Ok");
		command_done(s);
		return;
	}
	char why[512];
	enum moat_action sa = moat_pipeline_seal(s->conf, &s->ctx, &s->message, &s->msg_v, why,
						 sizeof(why));
	if (why[0])
		moat_log(LOG_WARNING, "session=%s: %s%s", s->id, why,
			 sa == MOAT_ACTION_NONE ? " (the message goes on without it)" : "");
	if (sa == MOAT_ACTION_REJECT || sa == MOAT_ACTION_TEMPFAIL) {
		evtimer_del(s->final_ev);
		if (sa == MOAT_ACTION_REJECT)
			end_message(s, 550, "5.7.1 Message could not be processed");
		else
			end_message(s, 451, "4.7.1 Message could not be processed, try again later");
		command_done(s);
		return;
	}
	if (moat_message_edited_header(&s->message, &s->msg_v, &s->edited_head,
				       &s->edited_len) < 0) {
		evtimer_del(s->final_ev);
		end_message(s, 451, "4.3.0 Out of memory, try again later");
		command_done(s);
		return;
	}
	if (!upstream_ready(s->up)) {
		evtimer_del(s->final_ev);
		drop_upstream(s);
		end_message(s, 451, "4.4.2 Upstream connection lost, try again later");
		command_done(s);
		return;
	}
	s->state = S_WAIT;
	set_read_timeout(s, 0);
	upstream_send_message(s->up, s->edited_head, s->edited_len, s->spool,
			      s->message.body_offset, on_final_reply, s);
}

static void data_end(struct session *s)
{
	s->state = S_WAIT;
	set_read_timeout(s, 0);
	if (s->dec.flags & (SMTP_DATA_BARE_LF | SMTP_DATA_BARE_CR | SMTP_DATA_NUL)) {
		moat_log(LOG_NOTICE, "session=%s client=%s: message with%s%s%s refused",
			 s->id, s->client_addr, s->dec.flags & SMTP_DATA_BARE_LF ? " bare LF" : "",
			 s->dec.flags & SMTP_DATA_BARE_CR ? " bare CR" : "",
			 s->dec.flags & SMTP_DATA_NUL ? " NUL" : "");
		end_message(s, 550, "5.5.2 Message contains bare CR, bare LF or NUL (RFC 5321 2.3.8), refused");
		command_done(s);
		return;
	}
	if (s->too_big) {
		end_message(s, 552, "5.3.4 Message size exceeds fixed limit");
		command_done(s);
		return;
	}
	if (s->dec.flags & SMTP_DATA_LONG_LINE) {
		end_message(s, 552, "5.3.4 Message has a line longer than %ld octets",
			    s->conf->max_text_line);
		command_done(s);
		return;
	}
	if (s->spool_errno) {
		moat_log(LOG_ERR, "session=%s: cannot hold message in %s: %s", s->id,
			 s->conf->spool_directory, strerror(s->spool_errno));
		end_message(s, 452, "4.3.1 Insufficient system storage");
		command_done(s);
		return;
	}
	/* The client waits for its final reply for 10 minutes (RFC 5321
	 * 4.5.3.2.6): filters, the upstream's DATA and its final reply
	 * together get upstream_data_timeout (at most 540 s). */
	struct timeval tv = {s->conf->upstream_data_timeout, 0};
	evtimer_add(s->final_ev, &tv);
	int prc = moat_message_parse(&s->message, s->spool, MAX_HEADER_BLOCK);
	if (prc == MOAT_MESSAGE_TOO_BIG) {
		evtimer_del(s->final_ev);
		end_message(s, 552, "5.3.4 Message header too large (more than %d octets or %d fields)",
			    MAX_HEADER_BLOCK, MOAT_MAX_HEADER_FIELDS);
		command_done(s);
		return;
	}
	if (prc < 0) {
		evtimer_del(s->final_ev);
		end_message(s, 451, "4.3.0 Cannot read the message back, try again later");
		command_done(s);
		return;
	}
	run_stage(s, MOAT_STAGE_EOM, eom_continue);
}

static void final_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;
	(void)fd;
	(void)what;
	if (s->state != S_WAIT || !s->spool)
		return;
	moat_log(LOG_WARNING, "session=%s: no final reply within upstream_data_timeout (%lds); "
		 "tempfailing the message", s->id, s->conf->upstream_data_timeout);
	moat_pipeline_cancel(s->prun);
	s->prun = NULL;
	end_message(s, 451, "4.4.2 Upstream too slow, message not delivered, try again later");
	command_done(s);
}

/* Feeds client input to the DATA decoder. Returns 1 if the message
 * ended (state changed), 0 if more input is needed. */
/* libevent 2.1 reads at most 4096 octets per readiness (with an ioctl
 * first): a message body waiting in the socket is read here instead, in
 * one readv per DATA_READ octets. Returns what was read (0: nothing,
 * or EOF or an error, which libevent's next read then reports). */
#define DATA_READ (64 * 1024)
static ssize_t read_direct_(struct session *s, struct evbuffer *in)
{
	struct evbuffer_iovec v[2];
	int nv = evbuffer_reserve_space(in, DATA_READ, v, 2);
	if (nv <= 0)
		return 0;
	if (v[0].iov_len >= DATA_READ) {
		v[0].iov_len = DATA_READ;
		nv = 1;
	}
	else if (nv == 2 && v[0].iov_len + v[1].iov_len > DATA_READ)
		v[1].iov_len = DATA_READ - v[0].iov_len;
	ssize_t n = readv(bufferevent_getfd(s->bev), (struct iovec *)v, nv);
	if (n <= 0) {
		evbuffer_commit_space(in, v, 0);
		return 0;
	}
	for (int i = 0; i < nv; i++) {
		size_t take = (size_t)n < v[i].iov_len ? (size_t)n : v[i].iov_len;
		if (i > 0 && take == 0) {
			nv = i;
			break;
		}
		v[i].iov_len = take;
		n -= (ssize_t)take;
	}
	evbuffer_commit_space(in, v, nv);
	size_t got = 0;
	for (int i = 0; i < nv; i++)
		got += v[i].iov_len;
	return (ssize_t)got;
}

/* libevent keeps the end of a socket bufferevent's input frozen except
 * while it reads itself: so do we. */
static ssize_t read_direct(struct session *s, struct evbuffer *in)
{
	evbuffer_unfreeze(in, 0);
	ssize_t n = read_direct_(s, in);
	evbuffer_freeze(in, 0);
	return n;
}

static int process_data(struct session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	for (;;) {
		if (evbuffer_get_length(in) == 0) {
			if (!s->bulk || !s->direct)
				break;
			ssize_t n = read_direct(s, in);
			s->bulk = n == DATA_READ;
			if (n <= 0)
				break;
		}
		struct evbuffer_iovec v;
		size_t consumed = 0;
		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			break;
		int rc = smtp_data_feed(&s->dec, v.iov_base, v.iov_len, &consumed, spool_out, s);
		evbuffer_drain(in, consumed);
		if (rc == SMTP_DATA_END) {
			data_end(s);
			return 1;
		}
	}
	return 0;
}

/* ---- the input loop --------------------------------------------------- */

/* Handles whatever input is buffered, as far as the state allows. */
static void process(struct session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	struct evbuffer *out = bufferevent_get_output(s->bev);
	size_t max = (size_t)s->conf->max_command_line;

	for (;;) {
		if (s->state == S_DATA) {
			if (!process_data(s))
				return;
			continue;
		}
		if (s->state == S_AUTH) {
			if (!process_auth(s))
				return;
			continue;
		}
		if (s->state != S_CMD)
			return;
		if (s->drain && !s->in_tx) {
			reply(s, 421, "4.3.2 %s Service shutting down, closing connection",
			      s->conf->hostname);
			close_after_flush(s);
			return;
		}
		if (s->nerrors >= s->conf->max_errors) {
			reply(s, 421, "4.7.0 %s Error: too many errors", s->conf->hostname);
			close_after_flush(s);
			return;
		}
		if (evbuffer_get_length(out) > OUT_PAUSE)
			return;	/* write_cb resumes once the client reads */
		size_t eol_len = 0;
		/* Only CRLF ends a command line (as only CRLF.CRLF ends DATA):
		 * a bare LF stays inside the line, which is then refused. */
		struct evbuffer_ptr eol = evbuffer_search_eol(in, NULL, &eol_len,
							      EVBUFFER_EOL_CRLF_STRICT);
		if (eol.pos < 0) {
			if (evbuffer_get_length(in) > max) {
				if (!s->discarding)
					reply(s, 500, "5.5.2 Error: line too long");
				s->discarding = 1;
				evbuffer_drain(in, evbuffer_get_length(in));
			}
			return;
		}
		size_t len = (size_t)eol.pos;
		if (s->discarding || len + 2 > max) {
			evbuffer_drain(in, len + eol_len);
			if (!s->discarding)
				reply(s, 500, "5.5.2 Error: line too long");
			s->discarding = 0;
			continue;
		}
		char *line = malloc(len + 1);
		if (!line)
			return;
		evbuffer_remove(in, line, len);
		evbuffer_drain(in, eol_len);
		line[len] = '\0';
		dispatch(s, line, len);
		free(line);
		if (s->state == S_CMD)
			arm_deadline(s);
	}
}

static void resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;
	(void)fd;
	(void)what;
	s->bulk = 0;
	process(s);
}

static void read_cb(struct bufferevent *bev, void *arg)
{
	struct session *s = arg;
	s->bulk = evbuffer_get_length(bufferevent_get_input(bev)) >= 4096;
	process(s);
	/* s may be gone: nothing after process() */
}

static void write_cb(struct bufferevent *bev, void *arg)
{
	struct session *s = arg;
	if (s->direct && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		bufferevent_disable(bev, EV_WRITE);	/* not pending: no syscall */
	s->bulk = 0;
	if (s->state == S_CLOSING)
		session_free(s);
	else if (s->state == S_STARTTLS)
		tls_switch(s);
	else if (s->state == S_CMD)
		process(s);
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct session *s = arg;
	(void)bev;
	if (what & BEV_EVENT_CONNECTED) {
		if (s->state == S_TLS)
			tls_established(s);
		return;
	}
	if (s->state == S_TLS) {
		char why[256];
		if (what & BEV_EVENT_TIMEOUT) {
			snprintf(why, sizeof(why), "timed out");
		} else {
			unsigned long e = bufferevent_get_openssl_error(s->bev);
			tls_error_text(bufferevent_openssl_get_ssl(s->bev), e, why, sizeof(why));
			while (bufferevent_get_openssl_error(s->bev))
				;
		}
		moat_log(LOG_INFO, "session=%s client=%s: TLS handshake failed: %s", s->id,
			 s->client_addr, why);
		session_free(s);
		return;
	}
	if ((what & BEV_EVENT_TIMEOUT) && s->state != S_CLOSING) {
		timed_out(s);
		return;
	}
	/* EOF or error: the client is gone. */
	if (s->state == S_DATA || s->in_tx)
		moat_log(LOG_INFO, "session=%s client=%s: client left during a transaction%s",
			 s->id, s->client_addr, s->state == S_DATA ? " (in DATA)" : "");
	session_free(s);
}

/* The client took too long: a read timeout, or the command deadline
 * under stress. */
static void timed_out(struct session *s)
{
	moat_log(LOG_INFO, "session=%s client=%s: timeout %s", s->id, s->client_addr,
		 s->state == S_DATA ? "in DATA" : s->state == S_WAIT ? "sending a reply"
		 : "waiting for a command");
	/* Whatever was under way stops: the client is told 421 and
	 * will retry, so nothing of this transaction may go on. */
	moat_pipeline_cancel(s->prun);
	s->prun = NULL;
	drop_upstream(s);
	evtimer_del(s->final_ev);
	if (s->deadline_ev)
		evtimer_del(s->deadline_ev);
	/* The 421 gets a bounded time to leave: a client that does not
	 * read must not hold the session (and its slot) forever. */
	struct timeval wt = {10, 0};
	bufferevent_set_timeouts(s->bev, NULL, &wt);
	reply(s, 421, "4.4.2 %s Error: timeout exceeded", s->conf->hostname);
	bufferevent_enable(s->bev, EV_WRITE);
	close_after_flush(s);
}

/* ---- life cycle ------------------------------------------------------- */

static void greet(struct session *s);
static void greet_pause_cb(evutil_socket_t fd, short what, void *arg);

static void greet_continue(struct session *s, const struct moat_stage_result *r)
{
	if (stage_refused(r)) {
		/* Refused at the greeting, the connection closes: 554 or 421
		 * (RFC 5321 3.1, 4.2.4), whatever code the filter chose. */
		struct moat_decision d = r->decision;
		d.code = d.action == MOAT_ACTION_REJECT ? 554 : 421;
		decision_reply(s, &d);
		close_after_flush(s);
		return;
	}
	if (s->conf->greet_pause > 0 && !s->greet_ev) {
		/* greet later; what the client says meanwhile is a pregreet */
		struct timeval tv = {s->conf->greet_pause, 0};
		s->greet_ev = evtimer_new(s->srv->base, greet_pause_cb, s);
		if (s->greet_ev && evtimer_add(s->greet_ev, &tv) == 0)
			return;
	}
	greet(s);
}

/* Sends the greeting, unless the client has talked first (postscreen's
 * pregreet test): then pregreet_action applies and what it sent is
 * dropped, as it was not an answer to anything. */
static void greet(struct session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	size_t early = evbuffer_get_length(in);
	char scratch[4096];
	ssize_t n;

	/* without a pause the bytes may still be in the socket: read them
	 * out (a plain socket only; under TLS they are records, not talk) */
	while (!s->tls && !s->lconf->tls_wrappermode && early < 65536 &&
	       (n = recv(bufferevent_getfd(s->bev), scratch, sizeof(scratch), MSG_DONTWAIT)) > 0)
		early += (size_t)n;
	if (early > 0) {
		const char *action = s->conf->pregreet_action;
		moat_log(LOG_NOTICE, "session=%s client=%s: pregreet: %zu octet(s) before the "
			 "greeting; pregreet_action=%s", s->id, s->client_addr, early, action);
		evbuffer_drain(in, early);
		if (strcmp(action, "reject") == 0) {
			reply(s, 554, "5.5.1 %s Error: talked before the greeting", s->conf->hostname);
			close_after_flush(s);
			return;
		}
		if (strcmp(action, "score") == 0)
			moat_verdict_symbol(&s->sess_v, "moatd", MOAT_STAGE_CONNECT, s->conf->dry_run,
					    "PREGREET", s->conf->pregreet_score,
					    "client talked before the greeting");
	}
	s->conn_v.exempt = s->sess_v.exempt;
	s->conn_v.decision = s->sess_v.decision;
	s->conn_v.would = s->sess_v.would;
	reply(s, 220, "%s ESMTP moat", s->conf->hostname);
	command_done(s);
}

static void greet_pause_cb(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;
	(void)fd;
	(void)what;
	if (s->state == S_GREETING)	/* not closing meanwhile (SIGTERM) */
		greet(s);
}

struct session *session_new(struct server *srv, const struct moat_listener_conf *lconf,
			    evutil_socket_t fd, const struct sockaddr *peer, socklen_t peerlen)
{
	struct session *s = calloc(1, sizeof(*s));
	if (!s) {
		evutil_closesocket(fd);
		return NULL;
	}
	s->srv = srv;
	s->conf = moat_config_ref(srv->conf);
	s->lconf = lconf;
	make_id(s->id, sizeof(s->id));
	moat_addr_host(peer, s->client_addr, sizeof(s->client_addr));
	s->client_port = moat_addr_port(peer);
	if ((size_t)peerlen <= sizeof(s->peer))
		memcpy(&s->peer, peer, peerlen);
	socklen_t locallen = sizeof(s->local);
	if (getsockname(fd, (struct sockaddr *)&s->local, &locallen) < 0)
		s->local.ss_family = 0;
	if (client_key_make(peer, s->conf->client_ipv4_prefix, s->conf->client_ipv6_prefix,
			    &s->ckey) < 0)
		s->ckey.family = 0;
	if (lconf->tls_level != MOAT_TLS_NONE) {
		struct listener *l = server_find_listener(srv, lconf->name);
		s->tls_srv = tls_server_ref(l ? l->tls : NULL);
	}
	SSL *ssl = NULL;
	if (lconf->tls_wrappermode && !(ssl = tls_server_ssl_new(s->tls_srv)))
		s->bev = NULL;
	else if (!lconf->tls_wrappermode)
		s->bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
	s->resume_ev = event_new(srv->base, -1, 0, resume_cb, s);
	s->final_ev = evtimer_new(srv->base, final_deadline_cb, s);
	s->flush_ev = ssl ? NULL : event_new(srv->base, -1, 0, flush_cb, s);
	if (ssl && s->resume_ev && s->final_ev && tls_begin(s, ssl, fd) < 0)
		fd = -1;	/* tls_begin() may have taken it */
	else if (ssl && !s->bev)
		SSL_free(ssl);
	if (!s->bev || !s->resume_ev || !s->final_ev || (!ssl && !s->flush_ev)) {
		if (s->flush_ev)
			event_free(s->flush_ev);
		if (s->final_ev)
			event_free(s->final_ev);
		if (!s->bev && fd >= 0)
			evutil_closesocket(fd);
		if (s->bev)
			bufferevent_free(s->bev);
		if (s->resume_ev)
			event_free(s->resume_ev);
		tls_server_unref(s->tls_srv);
		moat_config_unref(s->conf);
		free(s);
		return NULL;
	}
	s->next = srv->sessions;
	if (s->next)
		s->next->prev = s;
	srv->sessions = s;
	srv->nsessions++;

	s->ctx.session_id = s->id;
	s->ctx.listener = lconf->name;
	s->ctx.role = lconf->role_id;
	s->ctx.client_addr = s->client_addr;
	s->ctx.client_port = s->client_port;
	s->ctx.client_name = "[UNAVAILABLE]";
	s->ctx.base = srv->base;
	s->ctx.workers = srv->workers;
	s->ctx.filter_state = s->filter_state;

	moat_log(LOG_INFO, "connect session=%s listener=%s client=%s:%d", s->id, lconf->name,
		 s->client_addr, s->client_port);
	if (ssl)
		return s;	/* implicit TLS: the handshake first (tls_established()) */
	bufferevent_setcb(s->bev, read_cb, write_cb, event_cb, s);
	bufferevent_setwatermark(s->bev, EV_READ, 0, IN_HIGH);
	s->direct = 1;
	evbuffer_add_cb(bufferevent_get_output(s->bev), out_added_cb, s);
	bufferevent_disable(s->bev, EV_WRITE);	/* on by default in a new one */
	bufferevent_enable(s->bev, EV_READ);
	s->state = S_GREETING;
	set_read_timeout(s, 0);
	run_stage(s, MOAT_STAGE_CONNECT, greet_continue);
	return s;
}

void session_refuse(struct server *srv, evutil_socket_t fd, const char *text)
{
	char buf[512];
	int n = snprintf(buf, sizeof(buf), "421 4.7.0 %s %s\r\n", srv->conf->hostname, text);
	/* A fresh socket's send buffer takes this at once; do not wait. */
	if (n > 0 && send(fd, buf, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
		/* nothing more to do for a client we refuse */
	}
	evutil_closesocket(fd);
}

static void session_free(struct session *s)
{
	struct server *srv = s->srv;
	moat_log(LOG_INFO, "disconnect session=%s client=%s commands=%ld errors=%ld",
		 s->id, s->client_addr, s->ncommands, s->nerrors);
	moat_pipeline_cancel(s->prun);
	drop_upstream(s);
	tx_reset(s);
	moat_verdict_clear(&s->sess_v);
	moat_filters_session_end(s->filter_state);
	auth_end(s);
	free(s->auth_user);
	if (s->tls_pending)
		SSL_free(s->tls_pending);
	tls_server_unref(s->tls_srv);
	free(s->rcpts);
	free(s->helo);
	if (s->bev && s->tls)
		SSL_shutdown(bufferevent_openssl_get_ssl(s->bev));	/* close_notify */
	if (s->bev)
		bufferevent_free(s->bev);
	event_free(s->resume_ev);
	event_free(s->final_ev);
	if (s->flush_ev)
		event_free(s->flush_ev);
	if (s->greet_ev)
		event_free(s->greet_ev);
	if (s->deadline_ev)
		event_free(s->deadline_ev);
	if (s->ckey.family)
		client_limits_release(srv->clients, &s->ckey, time(NULL));
	if (s->prev)
		s->prev->next = s->next;
	else
		srv->sessions = s->next;
	if (s->next)
		s->next->prev = s->prev;
	srv->nsessions--;
	moat_config_unref(s->conf);
	free(s);
	server_session_gone(srv, NULL);
}

void session_shutdown(struct session *s, int force)
{
	if (s->state == S_CLOSING)
		return;
	s->drain = 1;
	if (force || (s->state == S_CMD && !s->in_tx)) {
		moat_pipeline_cancel(s->prun);
		s->prun = NULL;
		drop_upstream(s);
		reply(s, 421, "4.3.2 %s Service shutting down, closing connection",
		      s->conf->hostname);
		close_after_flush(s);
	}
}

void session_stress(struct session *s)
{
	if (s->state == S_CMD) {
		set_read_timeout(s, command_timeout(s));
		arm_deadline(s);
	}
}

struct session *session_next(struct session *s)
{
	return s->next;
}

const char *session_client_addr(const struct session *s)
{
	return s->client_addr;
}
