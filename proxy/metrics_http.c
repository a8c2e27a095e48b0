/*
 * metrics_http.c - the monitoring listener (metrics_http.h): evhttp on
 * moatd's loop, the access check, /metrics and /status.
 *
 * /metrics is the registry of filters/metrics.h followed by what only
 * the daemon knows, read at each scrape: connections, the resolver's
 * counters, the store's health, what each listener's upstream is known
 * to offer, and moat_build_info. Only GET and HEAD are served, requests
 * are small and time out after 10 seconds.
 *
 * Owns the evhttp object and its bound socket.
 */
#include "metrics_http.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "config.h"
#include "log.h"
#include "metrics.h"
#include "server.h"
#include "status_page.h"

struct metrics_http {
	struct event_base *base;
	struct server *srv;
	struct evhttp *http;
	struct evhttp_bound_socket *bound;
	struct moat_addr addr;		/* where bound listens */
	time_t started;
};

/* The counters and gauges of the daemon itself. */
static void write_daemon(struct evbuffer *out, const struct status_facts *f)
{
	struct server *srv = f->srv;
	char lbl[512], e1[160], e2[160];

	moat_metrics_write_one(out, "moat_connections_total", "counter",
			       "SMTP connections accepted (before any limit).", "",
			       (double)srv->n_accepted);
	moat_metrics_write_one(out, "moat_connections_refused_total", "counter",
			       "SMTP connections refused by max_connections or a per-client limit.",
			       "", (double)srv->n_refused);
	moat_metrics_write_one(out, "moat_connections_current", "gauge",
			       "SMTP sessions open now.", "", (double)srv->nsessions);
	if (f->have_dns) {
		static const struct {
			const char *name, *help;
			size_t off;
		} dns[] = {
			{"moat_dns_queries_total", "DNS queries started by the resolver.",
			 offsetof(struct moat_resolver_stats, queries)},
			{"moat_dns_answers_total", "DNS queries answered (any status).",
			 offsetof(struct moat_resolver_stats, answers)},
			{"moat_dns_nxdomain_total", "DNS answers saying the name does not exist.",
			 offsetof(struct moat_resolver_stats, nxdomain)},
			{"moat_dns_failures_total", "DNS queries that failed (SERVFAIL, refused, errors).",
			 offsetof(struct moat_resolver_stats, failures)},
			{"moat_dns_timeouts_total", "DNS queries with no answer before their deadline.",
			 offsetof(struct moat_resolver_stats, timeouts)},
			{"moat_dns_shared_cache_hits_total",
			 "DNS answers taken from the shared cache in the store (resolver.shared_cache).",
			 offsetof(struct moat_resolver_stats, cache_hits)},
			{"moat_dns_shared_cache_stores_total",
			 "DNS answers written to the shared cache in the store.",
			 offsetof(struct moat_resolver_stats, cache_stores)},
		};
		for (size_t i = 0; i < sizeof(dns) / sizeof(dns[0]); i++)
			moat_metrics_write_one(out, dns[i].name, "counter", dns[i].help, "",
					       (double)*(const unsigned long long *)(const void *)
					       ((const char *)&f->dns + dns[i].off));
		moat_metrics_write_one(out, "moat_dns_in_flight", "gauge",
				       "DNS queries waiting for an answer now.", "",
				       (double)f->dns.in_flight);
	}
	if (f->have_store) {
		snprintf(lbl, sizeof(lbl), "backend=\"%s\"",
			 moat_metrics_escape(f->store, e1, sizeof(e1)));
		moat_metrics_write_one(out, "moat_store_up", "gauge",
				       "1 while the store (memory or Redis) answers.", lbl,
				       f->store_stats.down ? 0 : 1);
		moat_metrics_write_one(out, "moat_store_operations_total", "counter",
				       "Store operations started.", lbl, (double)f->store_stats.ops);
		moat_metrics_write_one(out, "moat_store_unavailable_total", "counter",
				       "Store operations answered unavailable (down, past the deadline).",
				       lbl, (double)f->store_stats.unavailable);
		moat_metrics_write_one(out, "moat_store_outages_total", "counter",
				       "Times the store stopped answering.", lbl,
				       (double)f->store_stats.outages);
	}
	for (size_t i = 0; i < srv->nlisteners; i++) {
		const struct listener *l = srv->listeners[i];
		char up[128];
		moat_addr_format((const struct sockaddr *)&l->upstream.ss, up, sizeof(up));
		snprintf(lbl, sizeof(lbl), "listener=\"%s\",upstream=\"%s\"",
			 moat_metrics_escape(l->name, e1, sizeof(e1)),
			 moat_metrics_escape(up, e2, sizeof(e2)));
		moat_metrics_write_one(out, "moat_upstream_known", "gauge",
				       i ? NULL : "1 once the listener's upstream answered EHLO (a probe or a session).",
				       lbl, l->up.known);
	}
	moat_metrics_write_one(out, "moat_start_time_seconds", "gauge",
			       "When moatd started, in seconds since the epoch.", "",
			       (double)f->started);
	snprintf(lbl, sizeof(lbl), "version=\"%s\"",
		 moat_metrics_escape(MOAT_VERSION, e1, sizeof(e1)));
	moat_metrics_write_one(out, "moat_build_info", "gauge", "moatd's version.", lbl, 1);
}

static void send_buffer(struct evhttp_request *req, const char *type, struct evbuffer *body)
{
	struct evkeyvalq *hd = evhttp_request_get_output_headers(req);
	evhttp_add_header(hd, "Content-Type", type);
	evhttp_add_header(hd, "Cache-Control", "no-store");
	evhttp_add_header(hd, "X-Content-Type-Options", "nosniff");
	evhttp_add_header(hd, "Content-Security-Policy",
			  "default-src 'none'; style-src 'unsafe-inline'");
	evhttp_send_reply(req, HTTP_OK, "OK", body);
}

static void on_request(struct evhttp_request *req, void *arg)
{
	struct metrics_http *h = arg;
	struct evhttp_connection *conn = evhttp_request_get_connection(req);
	const struct sockaddr *sa = conn ? evhttp_connection_get_addr(conn) : NULL;
	const struct moat_config *c = h->srv->conf;
	char addr[64] = "";

	if (sa)
		moat_addr_host(sa, addr, sizeof(addr));
	if (!sa || !moat_net_match(c->metrics_nets, c->nmetrics_nets, addr)) {
		evhttp_send_error(req, 403, "Forbidden");
		return;
	}
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
	int metrics = path && strcmp(path, "/metrics") == 0;
	int status = path && (strcmp(path, "/") == 0 || strcmp(path, "/status") == 0);
	if (!metrics && !status) {
		evhttp_send_error(req, HTTP_NOTFOUND, "Not Found");
		return;
	}
	struct evbuffer *body = evbuffer_new();
	if (!body) {
		evhttp_send_error(req, HTTP_INTERNAL, "Out of memory");
		return;
	}
	struct status_facts f;
	status_facts_read(h->srv, h->started, &f);
	if (metrics) {
		moat_metrics_write(body);
		write_daemon(body, &f);
		send_buffer(req, "text/plain; version=0.0.4; charset=utf-8", body);
	} else {
		status_page_write(body, &f);
		send_buffer(req, "text/html; charset=utf-8", body);
	}
	evbuffer_free(body);
}

struct metrics_http *metrics_http_new(struct event_base *base, struct server *srv)
{
	struct metrics_http *h = calloc(1, sizeof(*h));
	if (!h)
		return NULL;
	h->base = base;
	h->srv = srv;
	h->started = time(NULL);
	return h;
}

static void unbind(struct metrics_http *h)
{
	if (h->bound)
		evhttp_del_accept_socket(h->http, h->bound);	/* closes the listener */
	h->bound = NULL;
	memset(&h->addr, 0, sizeof(h->addr));
}

int metrics_http_apply(struct metrics_http *h, const struct moat_config *conf, char *err,
		       size_t errlen)
{
	return metrics_http_listen(h, conf->metrics_listen, &conf->metrics_addr, err, errlen);
}

int metrics_http_listen(struct metrics_http *h, const char *listen, const struct moat_addr *ma,
			char *err, size_t errlen)
{
	char a[128];
	if (!h)
		return 0;
	if (!listen || !*listen) {
		unbind(h);
		return 0;
	}
	if (h->bound && moat_addr_equal(&h->addr, ma))
		return 0;
	if (!h->http) {
		h->http = evhttp_new(h->base);
		if (!h->http) {
			snprintf(err, errlen, "metrics_listen: cannot create the HTTP server");
			return -1;
		}
		evhttp_set_allowed_methods(h->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
		evhttp_set_timeout(h->http, 10);
		evhttp_set_max_headers_size(h->http, 16384);
		evhttp_set_max_body_size(h->http, 1024);
		evhttp_set_gencb(h->http, on_request, h);
	}
	struct evconnlistener *evl = evconnlistener_new_bind(
		h->base, NULL, NULL,
		LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC |
		(ma->ss.ss_family == AF_INET6 ? LEV_OPT_BIND_IPV6ONLY : 0),
		64, (const struct sockaddr *)&ma->ss, (int)ma->len);
	if (!evl) {
		snprintf(err, errlen, "metrics_listen: cannot listen on %s: %s",
			 moat_addr_format((const struct sockaddr *)&ma->ss, a, sizeof(a)),
			 evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
		return -1;
	}
	struct evhttp_bound_socket *b = evhttp_bind_listener(h->http, evl);
	if (!b) {
		evconnlistener_free(evl);
		snprintf(err, errlen, "metrics_listen: cannot serve HTTP on %s", listen);
		return -1;
	}
	unbind(h);
	h->bound = b;
	h->addr = *ma;
	moat_log(LOG_INFO, "metrics and status page on http://%s/", listen);
	return 0;
}

void metrics_http_free(struct metrics_http *h)
{
	if (!h)
		return;
	if (h->http)
		evhttp_free(h->http);	/* and its bound sockets */
	free(h);
}
