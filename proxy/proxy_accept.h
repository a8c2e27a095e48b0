/*
 * proxy_accept.h - the start of a connection on a listener with
 * proxy_protocol = yes: the PROXY header is read, from proxy_protocol_from
 * only, before the connection becomes a session (proxy_accept.c).
 *
 * The connections still waiting for their header are owned here, in a
 * list the server holds (struct server's proxy_waits).
 */
#ifndef MOAT_PROXY_ACCEPT_H
#define MOAT_PROXY_ACCEPT_H

#include <event2/util.h>
#include <sys/socket.h>

struct moat_listener_conf;
struct server;

/* Takes fd; once the header is in, calls server_admit() with the client
 * it names. A connection from elsewhere, or without a valid header in
 * time, is closed and logged. */
void proxy_accept_start(struct server *srv, const struct moat_listener_conf *lc,
			evutil_socket_t fd, const struct sockaddr *peer, socklen_t peerlen);
/* Closes every connection still waiting (stop, exit). */
void proxy_accept_free_all(struct server *srv);

#endif
