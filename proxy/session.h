/*
 * session.h - one client's SMTP session through the proxy.
 *
 * Created by the listener for each accepted connection; owns its client
 * bufferevent, its upstream connection, its held message and its
 * transaction; holds a reference to the configuration it started with.
 * Frees itself when the client leaves or the session ends.
 */
#ifndef MOAT_SESSION_H
#define MOAT_SESSION_H

#include <event2/util.h>
#include <sys/socket.h>

struct server;
struct moat_listener_conf;
struct session;

/* Takes ownership of fd. Returns NULL (fd closed) on failure. */
struct session *session_new(struct server *srv, const struct moat_listener_conf *lconf,
			    evutil_socket_t fd, const struct sockaddr *peer,
			    socklen_t peerlen);

/* Refuses a connection over a limit: 421 and close. */
void session_refuse(struct server *srv, evutil_socket_t fd, const char *text);

/* SIGTERM: an idle session ends now with 421 4.3.2; a transaction in
 * flight ends first (force: ends now too). */
void session_shutdown(struct session *s, int force);

/* moat came under stress: a session waiting for a command waits only
 * stress_client_timeout from now on. */
void session_stress(struct session *s);

struct session *session_next(struct session *s);
const char *session_client_addr(const struct session *s);

#endif
