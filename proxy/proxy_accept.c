/*
 * proxy_accept.c - the start of a connection on a listener with
 * proxy_protocol = yes: only from proxy_protocol_from, and a valid PROXY
 * header (v1 or v2) within PROXY_TIMEOUT seconds, else the connection
 * is closed and one line logged. The header is peeked at and only its
 * own octets are consumed, so what the client sent after it (a TLS
 * ClientHello, a pregreet) stays for the session; then server_admit()
 * goes on with the client the header names (or the connection's own
 * peer for LOCAL/UNKNOWN headers, as health checks send).
 *
 * Owns the connections still waiting for their header (a list in the
 * server), each with its socket and event.
 */
#include "proxy_accept.h"

#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "log.h"
#include "net.h"
#include "proxy_proto.h"
#include "server.h"

#define PROXY_TIMEOUT 10

struct proxy_wait {
	struct proxy_wait *next, *prev;
	struct server *srv;
	char listener[64];
	char peer_text[64];
	evutil_socket_t fd;
	struct event *ev;
	struct sockaddr_storage peer;
	socklen_t peerlen;
	time_t start;
};

static void wait_free(struct proxy_wait *w, int close_fd)
{
	if (w->prev)
		w->prev->next = w->next;
	else
		w->srv->proxy_waits = w->next;
	if (w->next)
		w->next->prev = w->prev;
	if (w->ev)
		event_free(w->ev);
	if (close_fd)
		evutil_closesocket(w->fd);
	free(w);
}

static void drop(struct proxy_wait *w, const char *why)
{
	moat_log(LOG_NOTICE, "listener=%s proxy=%s: connection closed: %s", w->listener,
		 w->peer_text, why);
	w->srv->n_refused++;
	wait_free(w, 1);
}

static void wait_cb(evutil_socket_t fd, short what, void *arg)
{
	struct proxy_wait *w = arg;
	unsigned char buf[PROXY_HDR_MAX];
	struct proxy_hdr h;
	const char *why;

	if ((what & EV_TIMEOUT) || time(NULL) - w->start >= PROXY_TIMEOUT) {
		drop(w, "no complete PROXY protocol header within 10 seconds");
		return;
	}
	ssize_t n = recv(fd, buf, sizeof(buf), MSG_PEEK);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (n <= 0) {
		drop(w, n == 0 ? "closed before a PROXY protocol header" : strerror(errno));
		return;
	}
	long len = proxy_proto_parse(buf, (size_t)n, &h, &why);
	if (len == PROXY_NEED_MORE && (size_t)n < sizeof(buf))
		return;		/* EV_ET: called again when more arrives */
	if (len <= 0) {
		char msg[160];
		snprintf(msg, sizeof(msg), "bad PROXY protocol header: %s",
			 len == PROXY_NEED_MORE ? "too long" : why);
		drop(w, msg);
		return;
	}
	if (recv(fd, buf, (size_t)len, 0) != (ssize_t)len) {
		drop(w, "cannot read the PROXY protocol header");
		return;
	}
	struct server *srv = w->srv;
	char listener[64];
	snprintf(listener, sizeof(listener), "%s", w->listener);
	struct sockaddr_storage peer = h.has_addr ? h.src : w->peer;
	socklen_t peerlen = h.has_addr ? h.srclen : w->peerlen;
	char a[64];
	moat_log(LOG_INFO, "listener=%s proxy=%s: PROXY v%d: client %s", listener, w->peer_text,
		 h.version, h.has_addr ? moat_addr_format((struct sockaddr *)&peer, a, sizeof(a))
				       : "(the connection's own)");
	wait_free(w, 0);
	server_admit(srv, listener, fd, (struct sockaddr *)&peer, peerlen);
}

void proxy_accept_start(struct server *srv, const struct moat_listener_conf *lc,
			evutil_socket_t fd, const struct sockaddr *peer, socklen_t peerlen)
{
	char addr[64];
	struct timeval tv = {PROXY_TIMEOUT, 0};

	moat_addr_host(peer, addr, sizeof(addr));
	if (!moat_net_match(lc->proxy_from, lc->nproxy_from, addr)) {
		moat_log(LOG_WARNING, "listener=%s client=%s: refused: not in proxy_protocol_from, "
			 "connection closed", lc->name, addr);
		srv->n_refused++;
		evutil_closesocket(fd);
		return;
	}
	struct proxy_wait *w = calloc(1, sizeof(*w));
	if (!w || (size_t)peerlen > sizeof(w->peer)) {
		free(w);
		evutil_closesocket(fd);
		return;
	}
	w->srv = srv;
	w->fd = fd;
	w->start = time(NULL);
	memcpy(&w->peer, peer, peerlen);
	w->peerlen = peerlen;
	snprintf(w->listener, sizeof(w->listener), "%s", lc->name);
	snprintf(w->peer_text, sizeof(w->peer_text), "%s", addr);
	evutil_make_socket_nonblocking(fd);
	w->ev = event_new(srv->base, fd, EV_READ | EV_PERSIST | EV_ET, wait_cb, w);
	w->next = srv->proxy_waits;
	if (w->next)
		w->next->prev = w;
	srv->proxy_waits = w;
	if (!w->ev || event_add(w->ev, &tv) < 0) {
		wait_free(w, 1);
		return;
	}
	/* the header may be here already: with EV_ET nothing would say so */
	wait_cb(fd, EV_READ, w);
}

void proxy_accept_free_all(struct server *srv)
{
	while (srv->proxy_waits)
		wait_free(srv->proxy_waits, 1);
}
