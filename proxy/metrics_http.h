/*
 * metrics_http.h - moatd's HTTP listener for monitoring (metrics_http.c):
 * GET /metrics (Prometheus text format) and GET /status (status_page.h)
 * on metrics_listen, for clients in metrics_allow only (others: 403).
 *
 * libevent's evhttp serves it on moatd's loop. It reads the process's
 * metrics registry (filters/metrics.h) and the server's own state
 * (connections, the resolver, the store, the upstreams); it changes
 * nothing.
 */
#ifndef MOAT_METRICS_HTTP_H
#define MOAT_METRICS_HTTP_H

#include <stddef.h>

struct event_base;
struct metrics_http;
struct moat_addr;
struct moat_config;
struct server;

/* A listener on base for srv, listening nowhere yet. NULL: no memory. */
struct metrics_http *metrics_http_new(struct event_base *base, struct server *srv);
/* Listens where conf's metrics_listen says (start, reload): a changed
 * address is bound before the old one is closed; "" closes it. Returns
 * 0, or -1 with err (the old socket stays). */
int metrics_http_apply(struct metrics_http *h, const struct moat_config *conf, char *err,
		       size_t errlen);
/* The same for an address of the caller's (the milter process's own
 * metrics_listen): listen is the address as written, ma parsed. */
int metrics_http_listen(struct metrics_http *h, const char *listen, const struct moat_addr *ma,
			char *err, size_t errlen);
void metrics_http_free(struct metrics_http *h);

#endif
