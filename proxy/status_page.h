/*
 * status_page.h - the read-only HTML status page (status_page.c):
 * throughput and actions over the last hour, top symbols, dependency
 * health, dry-run decisions and the last verdicts. Plain HTML and CSS
 * with an inline SVG chart: no script, nothing loaded from elsewhere.
 *
 * Owns nothing: it renders what it is given and what filters/metrics.h
 * and filters/recent.h hold.
 */
#ifndef MOAT_STATUS_PAGE_H
#define MOAT_STATUS_PAGE_H

#include <time.h>

#include "resolver.h"
#include "store.h"

struct evbuffer;
struct server;

/* What the server knows of itself and its dependencies. */
struct status_facts {
	struct server *srv;
	time_t now, started;
	int have_dns;
	struct moat_resolver_stats dns;
	int have_store;
	char store[160];		/* "memory", "redis 127.0.0.1:6379" */
	struct moat_store_stats store_stats;
};

/* Fills f from srv and the process's store. */
void status_facts_read(struct server *srv, time_t started, struct status_facts *f);
/* Appends the page. */
void status_page_write(struct evbuffer *out, const struct status_facts *f);

#endif
