/*
 * server.h - the proxy daemon's state: listeners, sessions, the current
 * configuration, what each upstream offers, and the counters.
 *
 * One struct server per process, owned by moatd.c. It owns its
 * listeners and the list of live sessions (each session frees itself and
 * unlinks through server_session_gone()).
 */
#ifndef MOAT_SERVER_H
#define MOAT_SERVER_H

#include <event2/util.h>
#include <stddef.h>
#include <sys/socket.h>

#include "config.h"
#include "smtp_reply.h"

struct auth_limit;
struct client_limits;
struct event_base;
struct evconnlistener;
struct moat_worker_pool;
struct proxy_wait;
struct session;
struct ssl_ctx_st;
struct tls_server;

/* What one listener's upstream offers, learned by probing and by every
 * upstream connection. Kept across reloads while the upstream address
 * stays the same. */
struct upstream_caps_state {
	int known;
	struct smtp_caps caps;
};

struct listener {
	char *name;
	struct moat_addr addr;
	struct moat_addr upstream;
	struct evconnlistener *evl;
	struct upstream_caps_state up;
	struct server *srv;
	struct event *retry;	/* re-enables accept after EMFILE and the like */
	struct tls_server *tls;	/* certificates for clients (tls, tls_wrappermode) */
	struct ssl_ctx_st *tls_client;	/* towards the upstream (upstream_tls) */
};

struct server {
	struct event_base *base;
	struct moat_config *conf;	/* current; sessions hold their own ref */
	struct moat_worker_pool *workers;
	struct moat_resolver *resolver;	/* current; sessions use it per query */
	const void *resolver_conf;	/* its configuration, inside... */
	struct moat_config *resolver_owner;	/* ...this config (a reference) */
	struct listener **listeners;
	size_t nlisteners;
	struct session *sessions;	/* doubly linked through session */
	size_t nsessions;
	int stopping;
	struct event *shutdown_timer;
	struct event *probe_timer;
	struct auth_limit *auth_fail;	/* failed AUTH per client address */
	struct client_limits *clients;	/* connections, rate, errors per client */
	struct proxy_wait *proxy_waits;	/* connections still sending a PROXY header */
	int stressed;			/* stress_threshold reached (logged once) */
	unsigned long long n_accepted, n_refused, n_messages, n_discarded;
};

/* Opens the listeners of conf (taking a reference) and reads their TLS
 * certificates. With an existing set (a reload), listeners whose address
 * is unchanged keep their socket, and a listener whose certificate files
 * cannot be read keeps the certificate it had (logged). Returns 0, or -1
 * with a reason in err (old set untouched). */
int server_apply_config(struct server *srv, struct moat_config *conf,
			char *err, size_t errlen);

/* Creates the resolver for conf, or keeps the current one if its
 * configuration did not change. Returns 0, or -1 with err. */
int server_apply_resolver(struct server *srv, const struct moat_config *conf,
			  char *err, size_t errlen);

/* SIGTERM: stop accepting, close idle sessions, let transactions finish
 * up to shutdown_timeout. The loop exits when the last session is gone. */
void server_stop(struct server *srv);
void server_free(struct server *srv);

struct listener *server_find_listener(struct server *srv, const char *name);
/* Records what an upstream offered (from a probe or a session). */
void server_learn_caps(struct server *srv, const char *listener,
		       const struct smtp_caps *caps);

/* Starts a capability probe of every listener's upstream
 * (upstream_probe.c). */
void server_probe_all(struct server *srv);

/* A connection on listener name from peer (the real client, after a
 * PROXY header): the per-client limits, then a session. Takes fd. */
void server_admit(struct server *srv, const char *name, evutil_socket_t fd,
		  const struct sockaddr *peer, socklen_t peerlen);
/* 1 while the sessions reach stress_threshold percent of max_connections. */
int server_stressed(const struct server *srv);

/* Sessions report their end here. */
void server_session_gone(struct server *srv, struct session *s);

#endif
