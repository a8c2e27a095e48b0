/*
 * upstream_probe.c - learn what each listener's upstream offers before
 * any client asks: EHLO at start, on reload and every
 * upstream_probe_interval seconds.
 *
 * moat answers EHLO before it has an upstream session, so it advertises
 * what the last probe (or the last real upstream session) saw. Owns each
 * probe record until its upstream answers or fails.
 */
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "server.h"
#include "tls.h"
#include "upstream.h"

struct probe {
	struct server *srv;
	char *listener;
	struct upstream *up;
};

static void on_probe(void *arg, enum upstream_status st, const struct smtp_reply *r)
{
	struct probe *p = arg;
	if (st == UPSTREAM_OK) {
		server_learn_caps(p->srv, p->listener, upstream_caps(p->up));
	} else {
		const char *why = upstream_error(p->up);
		if (r)
			moat_log(LOG_WARNING, "listener=%s: upstream capability probe failed: %s%s%s (reply %d)",
				 p->listener, upstream_status_text(st), *why ? ": " : "", why, r->code);
		else
			moat_log(LOG_WARNING, "listener=%s: upstream capability probe failed: %s%s%s",
				 p->listener, upstream_status_text(st), *why ? ": " : "", why);
	}
	upstream_close(p->up);
	free(p->listener);
	free(p);
}

void server_probe_all(struct server *srv)
{
	const struct moat_config *c = srv->conf;
	for (size_t i = 0; i < c->nlisteners; i++) {
		const struct moat_listener_conf *lc = &c->listeners[i];
		struct listener *l = server_find_listener(srv, lc->name);
		char name[256];
		struct probe *p = calloc(1, sizeof(*p));
		if (!p)
			return;
		/* with the listener's upstream_tls, as sessions do: some
		 * upstreams offer AUTH only after STARTTLS */
		struct upstream_params up = {
			.addr = c->listeners[i].upstream_addr,
			.ehlo_name = c->hostname,
			.connect_timeout = c->upstream_connect_timeout,
			.timeout = c->upstream_timeout,
			.data_timeout = c->upstream_data_timeout,
			.xclient = 0,
			.client_addr = "127.0.0.1",
			.tls_level = lc->upstream_tls_level,
			.tls_verify = lc->upstream_tls_verify_id,
			.tls_ctx = l ? l->tls_client : NULL,
			.tls_name = tls_upstream_name(lc, name, sizeof(name)),
			.proxy_version = lc->upstream_proxy_version,
		};
		p->srv = srv;
		p->listener = strdup(c->listeners[i].name);
		p->up = upstream_new(srv->base, &up);
		if (!p->listener || !p->up) {
			free(p->listener);
			free(p);
			return;
		}
		upstream_open(p->up, on_probe, p);
	}
}
