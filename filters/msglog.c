/*
 * msglog.c - format and write the per-message log line (msglog.h).
 *
 * result is what the client was told: accepted (2xx, or discarded when
 * the verdict says so), tempfailed (4xx) or rejected (5xx). Owns nothing.
 */
#include "msglog.h"

#include <stdio.h>
#include <string.h>

#include "log.h"
#include "metrics.h"

static void log_quoted(char *out, size_t len, const char *in, size_t inlen)
{
	size_t o = 0;
	for (size_t i = 0; in && i < inlen && o + 2 < len; i++) {
		unsigned char c = (unsigned char)in[i];
		if (c == '\r' || c == '\n')
			break;
		out[o++] = (c == '"' || c < 0x20 || c == 0x7f) ? '\'' : (char)c;
	}
	out[o] = '\0';
}

void moat_msglog(const struct moat_msglog *m)
{
	char rcpts[2048], rtext[512], syms[1024], stages[256], tls[512], auth[320];
	size_t off = 0, so = 0;
	int code = m->code;
	struct moat_verdict *v = m->v;
	const char *result = code / 100 == 5 ? "rejected" : code / 100 == 4 ? "tempfailed"
			     : v->decision.action == MOAT_ACTION_DISCARD ? "discarded"
			     : "accepted";

	const char *action = moat_action_name(v->decision.action ? v->decision.action
					      : code / 100 == 2 ? MOAT_ACTION_ACCEPT
					      : MOAT_ACTION_NONE);

	moat_verdict_total(v);
	moat_verdict_symbols_text(v, syms, sizeof(syms));
	for (int i = 0; i < MOAT_STAGE__COUNT && so < sizeof(stages); i++)
		so += (size_t)snprintf(stages + so, sizeof(stages) - so, "%s%s:%.1f", i ? "," : "",
				       moat_stage_name((enum moat_stage)i), m->stage_ms[i]);
	rcpts[0] = '\0';
	for (size_t i = 0; i < m->nrcpts && off + 4 < sizeof(rcpts); i++)
		off += (size_t)snprintf(rcpts + off, sizeof(rcpts) - off, "%s<%s>",
					i ? "," : "", m->rcpts[i]);
	log_quoted(rtext, sizeof(rtext), m->reply, m->reply_len);
	tls[0] = '\0';
	if (m->tls_version) {
		char peer[300];
		log_quoted(peer, sizeof(peer), m->tls_peer_subject,
			   m->tls_peer_subject ? strlen(m->tls_peer_subject) : 0);
		char bits[24] = "";
		if (m->tls_bits > 0)	/* the milter's MTA does not say */
			snprintf(bits, sizeof(bits), " bits=%d", m->tls_bits);
		snprintf(tls, sizeof(tls), " tls=%s cipher=%s%s%s%s%s", m->tls_version,
			 m->tls_cipher ? m->tls_cipher : "-", bits,
			 peer[0] ? " tls_peer=\"" : "", peer, peer[0] ? "\"" : "");
	}
	if (m->auth_user) {
		char user[300];
		log_quoted(user, sizeof(user), m->auth_user, strlen(m->auth_user));
		snprintf(auth, sizeof(auth), " auth=%s", user[0] ? user : "-");
	} else {
		auth[0] = '\0';
	}
	moat_log(LOG_INFO, "msg session=%s listener=%s client=%s helo=%s from=<%s> rcpts=%s "
		 "nrcpt=%zu size=%zu result=%s status=%d reply=\"%s\" queue_id=%s score=%.2f "
		 "action=%s%s%s symbols=%s stages_ms=%s time=%.3f%s%s",
		 m->session_id, m->listener, m->client_addr, m->helo ? m->helo : "-",
		 m->mail_from ? m->mail_from : "", rcpts[0] ? rcpts : "-", m->nrcpts,
		 m->size, result, code, rtext,
		 m->queue_id && *m->queue_id ? m->queue_id : "-", v->score, action,
		 v->would.action ? " would=" : "",
		 v->would.action ? moat_action_name(v->would.action) : "",
		 syms[0] ? syms : "-", stages, m->seconds, tls, auth);
	moat_metrics_message(m, action);	/* the same facts, counted */
}
