/*
 * status_page.c - the HTML status page (status_page.h).
 *
 * One self-contained document: an inline style sheet, an inline SVG bar
 * chart of the last 60 minutes (one stacked bar a minute, a colour per
 * action), and tables. Every value that came from a client (addresses,
 * senders, symbol names) is HTML-escaped. Owns nothing.
 */
#include "status_page.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "metrics.h"
#include "recent.h"
#include "server.h"
#include "store_conf.h"

#define TOP_SYMBOLS 15
#define CHART_W 600
#define CHART_H 120

static const enum moat_action shown[] = {MOAT_ACTION_ACCEPT, MOAT_ACTION_ADD_HEADER,
					 MOAT_ACTION_TEMPFAIL, MOAT_ACTION_REJECT,
					 MOAT_ACTION_DISCARD};
#define NSHOWN (sizeof(shown) / sizeof(shown[0]))

void status_facts_read(struct server *srv, time_t started, struct status_facts *f)
{
	memset(f, 0, sizeof(*f));
	f->srv = srv;
	f->now = time(NULL);
	f->started = started;
	if (srv->resolver) {
		moat_resolver_stats(srv->resolver, &f->dns);
		f->have_dns = 1;
	}
	struct moat_store *st = moat_store_current();
	if (st) {
		f->have_store = 1;
		f->store_stats = st->stats;
		moat_store_describe(f->store, sizeof(f->store));
	}
}

/* Appends s HTML-escaped. */
static void esc(struct evbuffer *out, const char *s)
{
	for (const char *p = s ? s : ""; *p; p++) {
		switch (*p) {
		case '<': evbuffer_add(out, "&lt;", 4); break;
		case '>': evbuffer_add(out, "&gt;", 4); break;
		case '&': evbuffer_add(out, "&amp;", 5); break;
		case '"': evbuffer_add(out, "&quot;", 6); break;
		case '\'': evbuffer_add(out, "&#39;", 5); break;
		default: evbuffer_add(out, p, 1);
		}
	}
}

static const char style[] =
	"body{font:14px/1.4 system-ui,sans-serif;margin:1.5em auto;max-width:72em;padding:0 1em;"
	"color:#222;background:#fafafa}"
	"h1{font-size:1.5em;margin:0}h2{font-size:1.1em;margin:1.5em 0 .4em;border-bottom:1px solid #ccc}"
	"table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.2em .5em;"
	"border-bottom:1px solid #e4e4e4;vertical-align:top}td.n,th.n{text-align:right}"
	".meta{color:#666}.sym{font-family:monospace;font-size:.9em;word-break:break-all}"
	".accept{color:#1a7f37}.add_header{color:#9a6700}.tempfail{color:#bc4c00}"
	".reject{color:#cf222e}.discard{color:#6e7781}"
	"rect.accept{fill:#2da44e}rect.add_header{fill:#d4a72c}rect.tempfail{fill:#fb8f44}"
	"rect.reject{fill:#cf222e}rect.discard{fill:#8c959f}"
	".ok{color:#1a7f37}.bad{color:#cf222e}svg{background:#fff;border:1px solid #ddd}";

static void chart(struct evbuffer *out, unsigned counts[MOAT_RECENT_MINUTES][MOAT_ACTION__COUNT])
{
	unsigned max = 1;
	for (int i = 0; i < MOAT_RECENT_MINUTES; i++) {
		unsigned t = 0;
		for (size_t k = 0; k < NSHOWN; k++)
			t += counts[i][shown[k]];
		if (t > max)
			max = t;
	}
	int bw = CHART_W / MOAT_RECENT_MINUTES;
	evbuffer_add_printf(out, "<svg id=\"chart\" role=\"img\" width=\"%d\" height=\"%d\" "
			    "viewBox=\"0 0 %d %d\" xmlns=\"http://www.w3.org/2000/svg\">"
			    "<title>Verdicts a minute, last hour (highest: %u)</title>",
			    CHART_W, CHART_H + 14, CHART_W, CHART_H + 14, max);
	for (int i = 0; i < MOAT_RECENT_MINUTES; i++) {
		double y = CHART_H;
		for (size_t k = 0; k < NSHOWN; k++) {
			unsigned n = counts[i][shown[k]];
			if (!n)
				continue;
			double hgt = (double)n * CHART_H / max;
			y -= hgt;
			evbuffer_add_printf(out, "<rect class=\"%s\" x=\"%d\" y=\"%.1f\" width=\"%d\" "
					    "height=\"%.1f\"><title>%d min ago: %u %s</title></rect>",
					    moat_action_name(shown[k]), i * bw, y, bw - 1, hgt,
					    MOAT_RECENT_MINUTES - 1 - i, n, moat_action_name(shown[k]));
		}
	}
	evbuffer_add_printf(out, "<text x=\"0\" y=\"%d\" font-size=\"10\">-60 min</text>"
			    "<text x=\"%d\" y=\"%d\" font-size=\"10\" text-anchor=\"end\">now</text>"
			    "</svg>", CHART_H + 12, CHART_W, CHART_H + 12);
}

static void last_hour(struct evbuffer *out, const struct status_facts *f)
{
	static unsigned counts[MOAT_RECENT_MINUTES][MOAT_ACTION__COUNT];
	unsigned total[MOAT_ACTION__COUNT] = {0};
	moat_recent_minutes(f->now, counts);
	for (int i = 0; i < MOAT_RECENT_MINUTES; i++)
		for (int a = 0; a < MOAT_ACTION__COUNT; a++)
			total[a] += counts[i][a];
	evbuffer_add_printf(out, "<section id=\"hour\"><h2>Last hour</h2><table><tr>");
	for (size_t k = 0; k < NSHOWN; k++)
		evbuffer_add_printf(out, "<th class=\"n %s\">%s</th>", moat_action_name(shown[k]),
				    moat_action_name(shown[k]));
	evbuffer_add_printf(out, "<th class=\"n\">connections</th><th class=\"n\">open now</th>"
			    "<th class=\"n\">refused</th></tr><tr>");
	for (size_t k = 0; k < NSHOWN; k++)
		evbuffer_add_printf(out, "<td class=\"n\" id=\"hour-%s\">%u</td>",
				    moat_action_name(shown[k]), total[shown[k]]);
	evbuffer_add_printf(out, "<td class=\"n\" id=\"connections\">%llu</td>"
			    "<td class=\"n\" id=\"sessions\">%zu</td>"
			    "<td class=\"n\" id=\"refused\">%llu</td></tr></table>"
			    "<p class=\"meta\">Verdicts: messages received (their msg log line) and "
			    "connections, HELOs, senders and recipients refused by a filter.</p>",
			    f->srv->n_accepted, f->srv->nsessions, f->srv->n_refused);
	chart(out, counts);
	evbuffer_add_printf(out, "</section>");
}

static int by_value_desc(const void *a, const void *b)
{
	const struct moat_metric_value *x = a, *y = b;
	return x->value < y->value ? 1 : x->value > y->value ? -1 : strcmp(x->l1, y->l1);
}

static void top_symbols(struct evbuffer *out)
{
	static struct moat_metric_value v[512];
	size_t n = moat_metrics_values(MOAT_M_SYMBOLS, v, sizeof(v) / sizeof(v[0]));
	qsort(v, n, sizeof(v[0]), by_value_desc);
	evbuffer_add_printf(out, "<section id=\"symbols\"><h2>Top symbols (since start)</h2>");
	if (!n) {
		evbuffer_add_printf(out, "<p class=\"meta\">None yet.</p></section>");
		return;
	}
	evbuffer_add_printf(out, "<table><tr><th>symbol</th><th class=\"n\">count</th></tr>");
	for (size_t i = 0; i < n && i < TOP_SYMBOLS; i++) {
		evbuffer_add_printf(out, "<tr><td class=\"sym\">");
		esc(out, v[i].l1);
		evbuffer_add_printf(out, "</td><td class=\"n\">%.0f</td></tr>", v[i].value);
	}
	evbuffer_add_printf(out, "</table></section>");
}

static void health(struct evbuffer *out, const struct status_facts *f)
{
	struct server *srv = f->srv;
	evbuffer_add_printf(out, "<section id=\"health\"><h2>Dependencies</h2><table>"
			    "<tr><th>what</th><th>state</th><th>details (since start)</th></tr>");
	if (f->have_dns)
		evbuffer_add_printf(out, "<tr id=\"dns\"><td>DNS resolver</td><td class=\"%s\">%s</td>"
				    "<td>%llu queries, %llu failures, %llu timeouts, %zu in flight, "
				    "%llu from the shared cache</td></tr>",
				    f->dns.failures + f->dns.timeouts ? "bad" : "ok",
				    f->dns.failures + f->dns.timeouts ? "errors seen" : "ok",
				    f->dns.queries, f->dns.failures, f->dns.timeouts, f->dns.in_flight,
				    f->dns.cache_hits);
	if (f->have_store) {
		evbuffer_add_printf(out, "<tr id=\"store\"><td>store ");
		esc(out, f->store);
		evbuffer_add_printf(out, "</td><td class=\"%s\">%s</td><td>%llu operations, %llu "
				    "unavailable, %llu outages</td></tr>",
				    f->store_stats.down ? "bad" : "ok", f->store_stats.down ? "down" : "up",
				    f->store_stats.ops, f->store_stats.unavailable,
				    f->store_stats.outages);
	}
	for (size_t i = 0; i < srv->nlisteners; i++) {
		const struct listener *l = srv->listeners[i];
		char up[128];
		moat_addr_format((const struct sockaddr *)&l->upstream.ss, up, sizeof(up));
		evbuffer_add_printf(out, "<tr class=\"upstream\"><td>upstream of listener ");
		esc(out, l->name);
		evbuffer_add_printf(out, " (");
		esc(out, up);
		evbuffer_add_printf(out, ")</td><td class=\"%s\">%s</td><td>%s</td></tr>",
				    l->up.known ? "ok" : "bad", l->up.known ? "answered" : "unknown",
				    l->up.known ? "capabilities known from EHLO"
						: "no EHLO answer yet (probe or session)");
	}
	struct moat_metric_value v[32];
	size_t n = moat_metrics_values(MOAT_M_UPSTREAM_ERRORS, v, 32);
	for (size_t i = 0; i < n; i++) {
		evbuffer_add_printf(out, "<tr class=\"upstream-error\"><td>upstream errors</td>"
				    "<td class=\"bad\">");
		esc(out, v[i].l1);
		evbuffer_add_printf(out, "</td><td>%.0f</td></tr>", v[i].value);
	}
	evbuffer_add_printf(out, "</table></section>");
}

static void dry_run(struct evbuffer *out)
{
	struct moat_metric_value v[256];
	size_t n = moat_metrics_values(MOAT_M_FILTER_WOULD, v, 256);
	evbuffer_add_printf(out, "<section id=\"dryrun\"><h2>Dry-run: what would have been "
			    "done</h2>");
	if (!n) {
		evbuffer_add_printf(out, "<p class=\"meta\">Nothing held back.</p></section>");
		return;
	}
	evbuffer_add_printf(out, "<table><tr><th>filter</th><th>would</th><th class=\"n\">count"
			    "</th></tr>");
	for (size_t i = 0; i < n; i++) {
		evbuffer_add_printf(out, "<tr class=\"would\"><td class=\"filter\">");
		esc(out, v[i].l1);
		evbuffer_add_printf(out, "</td><td class=\"action ");
		esc(out, v[i].l2);
		evbuffer_add_printf(out, "\">");
		esc(out, v[i].l2);
		evbuffer_add_printf(out, "</td><td class=\"n count\">%.0f</td></tr>", v[i].value);
	}
	evbuffer_add_printf(out, "</table><p class=\"meta\">Per filter in dry-run, since start: "
			    "the decisions it would have taken (its own, or its on_error action) "
			    "and that were not applied; the log has each one as \"dry-run: filter "
			    "NAME would ACTION\".</p></section>");
}

static void verdicts(struct evbuffer *out)
{
	static struct moat_recent_verdict v[MOAT_RECENT_VERDICTS];
	size_t n = moat_recent_verdicts(v, MOAT_RECENT_VERDICTS);
	evbuffer_add_printf(out, "<section id=\"verdicts\"><h2>Last %d verdicts</h2>",
			    MOAT_RECENT_VERDICTS);
	if (!n) {
		evbuffer_add_printf(out, "<p class=\"meta\">None yet.</p></section>");
		return;
	}
	evbuffer_add_printf(out, "<table><tr><th>time (UTC)</th><th>session</th><th>client</th>"
			    "<th>from</th><th>stage</th><th>action</th><th class=\"n\">code</th>"
			    "<th class=\"n\">score</th><th>symbols</th></tr>");
	for (size_t i = 0; i < n; i++) {
		char when[32];
		struct tm tm;
		const char *a = moat_action_name(v[i].action);
		gmtime_r(&v[i].when, &tm);
		strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
		evbuffer_add_printf(out, "<tr class=\"verdict\"><td>%s</td><td class=\"session\">", when);
		esc(out, v[i].session);
		evbuffer_add_printf(out, "</td><td class=\"client\">");
		esc(out, v[i].client);
		evbuffer_add_printf(out, "</td><td class=\"from\">");
		esc(out, v[i].from);
		evbuffer_add_printf(out, "</td><td class=\"stage\">%s</td><td class=\"action %s\">%s"
				    "</td><td class=\"n\">%d</td><td class=\"n\">%.2f</td>"
				    "<td class=\"sym\">", v[i].stage, a, a, v[i].code, v[i].score);
		esc(out, v[i].symbols[0] ? v[i].symbols : "-");
		evbuffer_add_printf(out, "</td></tr>");
	}
	evbuffer_add_printf(out, "</table></section>");
}

void status_page_write(struct evbuffer *out, const struct status_facts *f)
{
	char now[32], since[32];
	struct tm tm;
	gmtime_r(&f->now, &tm);
	strftime(now, sizeof(now), "%Y-%m-%d %H:%M:%S UTC", &tm);
	gmtime_r(&f->started, &tm);
	strftime(since, sizeof(since), "%Y-%m-%d %H:%M:%S UTC", &tm);
	evbuffer_add_printf(out, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
			    "<meta name=\"viewport\" content=\"width=device-width\">"
			    "<title>moat status</title><style>%s</style></head><body><header>"
			    "<h1>moat status: ", style);
	esc(out, f->srv->conf ? f->srv->conf->hostname : "");
	evbuffer_add_printf(out, "</h1><p class=\"meta\">moatd %s, running since %s; page of %s. "
			    "Metrics: <a href=\"/metrics\">/metrics</a>.</p></header>",
			    MOAT_VERSION, since, now);
	last_hour(out, f);
	verdicts(out);
	top_symbols(out);
	health(out, f);
	dry_run(out);
	evbuffer_add_printf(out, "</body></html>\n");
}
