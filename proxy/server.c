/*
 * server.c - listeners, connection limits, reload and shutdown of the
 * proxy daemon.
 *
 * Owns the listener objects (with their libevent listeners) and the
 * reference to the current configuration. Each accepted connection
 * becomes a session (smtp_session.c) after the connection limits are
 * checked (in total here, per client in client_limits.c; on a PROXY
 * protocol listener once proxy_accept.c has read the real client); a reload keeps the sockets of listeners whose address did not
 * change and what their upstream is known to offer, and reads the TLS
 * certificates again (keeping the old ones when the new cannot be read).
 */
#include "server.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "auth_limit.h"
#include "client_limits.h"
#include "log.h"
#include "proxy_accept.h"
#include "resolver.h"
#include "session.h"
#include "tls.h"
#include "worker.h"

#define AUTH_LIMIT_SLOTS 1024
#define CLIENT_LIMIT_ENTRIES 200000

static const struct moat_listener_conf *find_lconf(const struct moat_config *c, const char *name)
{
	for (size_t i = 0; i < c->nlisteners; i++)
		if (strcmp(c->listeners[i].name, name) == 0)
			return &c->listeners[i];
	return NULL;
}

struct listener *server_find_listener(struct server *srv, const char *name)
{
	for (size_t i = 0; i < srv->nlisteners; i++)
		if (strcmp(srv->listeners[i]->name, name) == 0)
			return srv->listeners[i];
	return NULL;
}

void server_learn_caps(struct server *srv, const char *listener, const struct smtp_caps *caps)
{
	struct listener *l = server_find_listener(srv, listener);
	if (!l)
		return;
	if (l->up.known && memcmp(&l->up.caps, caps, sizeof(*caps)) != 0) {
		char a[256], b[256];
		moat_log(LOG_NOTICE, "listener=%s: upstream capabilities changed: %s -> %s",
			 listener, smtp_caps_format(&l->up.caps, a, sizeof(a)),
			 smtp_caps_format(caps, b, sizeof(b)));
	}
	l->up.known = 1;
	l->up.caps = *caps;
}

int server_stressed(const struct server *srv)
{
	const struct moat_config *c = srv->conf;
	return c->stress_threshold > 0 &&
	       (long)srv->nsessions * 100 >= c->max_connections * c->stress_threshold;
}

/* Logs the moments moat comes under stress and leaves it. */
static void note_stress(struct server *srv)
{
	int now = server_stressed(srv);
	if (now == srv->stressed)
		return;
	srv->stressed = now;
	if (now) {
		moat_log(LOG_WARNING, "under stress: %zu sessions, stress_threshold %ld%% of "
			 "max_connections %ld reached; client_timeout is now %lds", srv->nsessions,
			 srv->conf->stress_threshold, srv->conf->max_connections,
			 srv->conf->stress_client_timeout);
		for (struct session *s = srv->sessions; s; s = session_next(s))
			session_stress(s);
	} else
		moat_log(LOG_NOTICE, "no longer under stress: %zu sessions", srv->nsessions);
}

static const char *const client_refusal[] = {
	[CLIENT_TOO_MANY] = "too many connections from your address",
	[CLIENT_TOO_FAST] = "too many connections from your address in a minute",
	[CLIENT_TOO_MANY_ERRORS] = "too many errors from your address",
};
static const char *const client_limit_name[] = {
	[CLIENT_TOO_MANY] = "max_connections_per_client",
	[CLIENT_TOO_FAST] = "max_connection_rate",
	[CLIENT_TOO_MANY_ERRORS] = "max_client_errors",
};

void server_admit(struct server *srv, const char *name, evutil_socket_t fd,
		  const struct sockaddr *sa, socklen_t salen)
{
	const struct moat_config *c = srv->conf;
	const struct moat_listener_conf *lc = find_lconf(c, name);
	struct client_limit_conf lim;
	struct client_key key;
	char addr[64], net[80], text[128];
	time_t now = time(NULL);

	if (srv->stopping || !lc) {
		evutil_closesocket(fd);
		return;
	}
	moat_addr_host(sa, addr, sizeof(addr));
	client_limit_conf_from(c, &lim);
	int keyed = client_key_make(sa, c->client_ipv4_prefix, c->client_ipv6_prefix, &key) == 0;
	if (keyed) {
		enum client_verdict v = client_limits_admit(srv->clients, &key, &lim, now);
		if (v != CLIENT_OK) {
			long n = v == CLIENT_TOO_MANY ? lim.max_concurrent
				 : v == CLIENT_TOO_FAST ? lim.max_rate : lim.max_errors;
			moat_log(LOG_WARNING, "listener=%s client=%s: refused: %s (%ld) reached by %s",
				 name, addr, client_limit_name[v], n,
				 client_key_format(&key, c->client_ipv4_prefix, c->client_ipv6_prefix,
						   net, sizeof(net)));
			srv->n_refused++;
			snprintf(text, sizeof(text), "Error: %s, try again later", client_refusal[v]);
			session_refuse(srv, fd, text);
			return;
		}
	}
	if (!session_new(srv, lc, fd, sa, salen) && keyed)
		client_limits_release(srv->clients, &key, now);
	note_stress(srv);
}

static void accept_cb(struct evconnlistener *evl, evutil_socket_t fd, struct sockaddr *sa,
		      int salen, void *arg)
{
	struct listener *l = arg;
	struct server *srv = l->srv;
	const struct moat_config *c = srv->conf;
	const struct moat_listener_conf *lc = find_lconf(c, l->name);
	char addr[64];

	(void)evl;
	if (srv->stopping || !lc) {
		evutil_closesocket(fd);
		return;
	}
	srv->n_accepted++;
	moat_addr_host(sa, addr, sizeof(addr));
	if ((long)srv->nsessions >= c->max_connections) {
		moat_log(LOG_WARNING, "listener=%s client=%s: refused: max_connections (%ld) reached",
			 l->name, addr, c->max_connections);
		srv->n_refused++;
		session_refuse(srv, fd, "Error: too many connections, try again later");
		return;
	}
	if (lc->proxy_protocol)
		proxy_accept_start(srv, lc, fd, sa, (socklen_t)salen);
	else
		server_admit(srv, l->name, fd, sa, (socklen_t)salen);
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct listener *l = arg;
	(void)fd;
	(void)what;
	if (l->evl)
		evconnlistener_enable(l->evl);
}

static void accept_error_cb(struct evconnlistener *evl, void *arg)
{
	struct listener *l = arg;
	int err = EVUTIL_SOCKET_ERROR();
	struct timeval tv = {1, 0};
	moat_log(LOG_ERR, "listener=%s: accept: %s; pausing for a second", l->name,
		 evutil_socket_error_to_string(err));
	evconnlistener_disable(evl);
	evtimer_add(l->retry, &tv);
}

static void listener_free(struct listener *l)
{
	if (!l)
		return;
	if (l->evl)
		evconnlistener_free(l->evl);
	if (l->retry)
		event_free(l->retry);
	tls_server_unref(l->tls);
	SSL_CTX_free(l->tls_client);
	free(l->name);
	free(l);
}

static struct listener *listener_new(struct server *srv, const struct moat_listener_conf *lc)
{
	struct listener *l = calloc(1, sizeof(*l));
	if (!l)
		return NULL;
	l->srv = srv;
	l->name = strdup(lc->name);
	l->addr = lc->listen_addr;
	l->upstream = lc->upstream_addr;
	l->retry = evtimer_new(srv->base, retry_cb, l);
	if (!l->name || !l->retry) {
		listener_free(l);
		return NULL;
	}
	return l;
}

/* Reads lc's certificates into l. On a reload, a listener whose files
 * cannot be read keeps what it had, and the log says why. */
static int listener_tls(struct server *srv, struct listener *l,
			const struct moat_listener_conf *lc, char *err, size_t errlen)
{
	struct listener *old = server_find_listener(srv, lc->name);
	char why[512];

	if (lc->tls_level != MOAT_TLS_NONE) {
		l->tls = tls_server_new(lc, why, sizeof(why));
		if (!l->tls && old && old->tls) {
			moat_log(LOG_ERR, "listener=%s: TLS certificate not reloaded: %s; the one loaded "
				 "before stays", lc->name, why);
			l->tls = tls_server_ref(old->tls);
		} else if (!l->tls) {
			snprintf(err, errlen, "listener %s: %s", lc->name, why);
			return -1;
		}
	}
	if (lc->upstream_tls_level != MOAT_TLS_NONE) {
		l->tls_client = tls_client_ctx_new(lc, why, sizeof(why));
		if (!l->tls_client && old && old->tls_client) {
			moat_log(LOG_ERR, "listener=%s: upstream TLS settings not reloaded: %s; the "
				 "ones loaded before stay", lc->name, why);
			SSL_CTX_up_ref(old->tls_client);
			l->tls_client = old->tls_client;
		} else if (!l->tls_client) {
			snprintf(err, errlen, "listener %s: upstream_tls: %s", lc->name, why);
			return -1;
		}
	}
	return 0;
}

int server_apply_config(struct server *srv, struct moat_config *conf, char *err, size_t errlen)
{
	size_t n = conf->nlisteners;
	struct listener **nl = calloc(n ? n : 1, sizeof(*nl));
	struct listener **reuse = calloc(n ? n : 1, sizeof(*reuse));
	char a[128];

	if (!nl || !reuse) {
		snprintf(err, errlen, "out of memory");
		free(nl);
		free(reuse);
		return -1;
	}
	/* Pass 1: create every new listener, binding only new addresses. */
	for (size_t i = 0; i < n; i++) {
		const struct moat_listener_conf *lc = &conf->listeners[i];
		for (size_t j = 0; j < srv->nlisteners; j++) {
			struct listener *old = srv->listeners[j];
			if (old->evl && moat_addr_equal(&old->addr, &lc->listen_addr))
				reuse[i] = old;
		}
		nl[i] = listener_new(srv, lc);
		if (!nl[i]) {
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
		if (listener_tls(srv, nl[i], lc, err, errlen) < 0)
			goto fail;
		if (reuse[i])
			continue;
		nl[i]->evl = evconnlistener_new_bind(srv->base, accept_cb, nl[i],
						     LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE |
						     LEV_OPT_CLOSE_ON_EXEC |
						     (lc->listen_addr.ss.ss_family == AF_INET6 ?
						      LEV_OPT_BIND_IPV6ONLY : 0), 511,
						     (struct sockaddr *)&lc->listen_addr.ss,
						     (int)lc->listen_addr.len);
		if (!nl[i]->evl) {
			snprintf(err, errlen, "listener %s: cannot listen on %s: %s", lc->name,
				 moat_addr_format((struct sockaddr *)&lc->listen_addr.ss, a, sizeof(a)),
				 strerror(errno));
			goto fail;
		}
		evconnlistener_set_error_cb(nl[i]->evl, accept_error_cb);
	}
	/* Pass 2: commit. Move reused sockets, keep known upstream caps. */
	for (size_t i = 0; i < n; i++) {
		if (reuse[i]) {
			nl[i]->evl = reuse[i]->evl;
			reuse[i]->evl = NULL;
			evconnlistener_set_cb(nl[i]->evl, accept_cb, nl[i]);
			evconnlistener_set_error_cb(nl[i]->evl, accept_error_cb);
		}
		for (size_t j = 0; j < srv->nlisteners; j++) {
			struct listener *old = srv->listeners[j];
			if (strcmp(old->name, nl[i]->name) == 0 &&
			    moat_addr_equal(&old->upstream, &nl[i]->upstream))
				nl[i]->up = old->up;
		}
		moat_log(LOG_INFO, "listener=%s: %s on %s, upstream %s", nl[i]->name,
			 reuse[i] ? "kept" : "listening", conf->listeners[i].listen,
			 conf->listeners[i].upstream);
		if (nl[i]->tls)
			moat_log(LOG_INFO, "listener=%s: TLS certificate %s sha256=%s%s", nl[i]->name,
				 conf->listeners[i].tls_cert_file, tls_server_fingerprint(nl[i]->tls),
				 conf->listeners[i].tls_wrappermode ? " (implicit TLS)" : "");
	}
	if (!srv->auth_fail)
		srv->auth_fail = auth_limit_new(AUTH_LIMIT_SLOTS);
	if (!srv->clients)
		srv->clients = client_limits_new(CLIENT_LIMIT_ENTRIES);
	for (size_t j = 0; j < srv->nlisteners; j++)
		listener_free(srv->listeners[j]);
	free(srv->listeners);
	free(reuse);
	srv->listeners = nl;
	srv->nlisteners = n;
	if (srv->conf)
		moat_config_unref(srv->conf);
	srv->conf = moat_config_ref(conf);
	return 0;
fail:
	for (size_t i = 0; i < n; i++)
		listener_free(nl[i]);
	free(nl);
	free(reuse);
	return -1;
}

int server_apply_resolver(struct server *srv, const struct moat_config *conf,
			  char *err, size_t errlen)
{
	const struct moat_resolver_conf *rc = moat_config_section(conf, "resolver");
	const struct moat_resolver_conf *old = srv->resolver_conf;
	if (!rc) {
		snprintf(err, errlen, "no resolver configuration");
		return -1;
	}
	if (!(srv->resolver && old && moat_resolver_conf_equal(old, rc))) {
		struct moat_resolver *r = moat_resolver_new(srv->base, rc, err, errlen);
		if (!r)
			return -1;
		moat_resolver_retire(srv->resolver);
		srv->resolver = r;
	}
	moat_config_unref(srv->resolver_owner);
	srv->resolver_owner = moat_config_ref((struct moat_config *)conf);
	srv->resolver_conf = rc;
	return 0;
}

static void shutdown_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct server *srv = arg;
	(void)fd;
	(void)what;
	if (srv->nsessions)
		moat_log(LOG_NOTICE, "shutdown_timeout reached: closing %zu sessions", srv->nsessions);
	struct session *s = srv->sessions;
	while (s) {
		struct session *next = session_next(s);
		session_shutdown(s, 1);
		s = next;
	}
}

void server_stop(struct server *srv)
{
	if (srv->stopping)
		return;
	srv->stopping = 1;
	moat_log(LOG_INFO, "stopping: %zu sessions open", srv->nsessions);
	for (size_t i = 0; i < srv->nlisteners; i++)
		if (srv->listeners[i]->evl) {
			evconnlistener_free(srv->listeners[i]->evl);
			srv->listeners[i]->evl = NULL;
		}
	if (srv->probe_timer)
		evtimer_del(srv->probe_timer);
	proxy_accept_free_all(srv);
	struct session *s = srv->sessions;
	while (s) {
		struct session *next = session_next(s);
		session_shutdown(s, 0);
		s = next;
	}
	if (srv->nsessions == 0) {
		event_base_loopexit(srv->base, NULL);
		return;
	}
	struct timeval tv = {srv->conf->shutdown_timeout, 0};
	srv->shutdown_timer = evtimer_new(srv->base, shutdown_timer_cb, srv);
	if (srv->shutdown_timer)
		evtimer_add(srv->shutdown_timer, &tv);
}

void server_session_gone(struct server *srv, struct session *s)
{
	(void)s;
	note_stress(srv);
	if (srv->stopping && srv->nsessions == 0)
		event_base_loopexit(srv->base, NULL);
}

void server_free(struct server *srv)
{
	for (size_t i = 0; i < srv->nlisteners; i++)
		listener_free(srv->listeners[i]);
	free(srv->listeners);
	srv->listeners = NULL;
	srv->nlisteners = 0;
	if (srv->shutdown_timer)
		event_free(srv->shutdown_timer);
	if (srv->probe_timer)
		event_free(srv->probe_timer);
	auth_limit_free(srv->auth_fail);
	srv->auth_fail = NULL;
	proxy_accept_free_all(srv);
	client_limits_free(srv->clients);
	srv->clients = NULL;
	moat_worker_pool_free(srv->workers);
	moat_resolver_free(srv->resolver);
	srv->resolver = NULL;
	moat_config_unref(srv->resolver_owner);
	srv->resolver_owner = NULL;
	moat_config_unref(srv->conf);
	srv->conf = NULL;
}
