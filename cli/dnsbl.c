/*
 * dnsbl.c - `moat dnsbl ADDR|NAME`: look an address (client lists) or a
 * name or address's domain (helo, sender and from lists) up in every
 * configured zone of the `dnsbl` section, through moat's resolver, and
 * show what the filter would make of each answer.
 *
 * Each zone's lookup and its RFC 5782 test points are asked in parallel
 * (filters/dnsbl.h does both); one block is printed per zone, in
 * configuration order:
 *
 *	zone bl.example (lookup client, action reject)
 *	  query:  5.0.0.127.bl.example
 *	  status: listed
 *	  codes:  127.0.0.2
 *	  txt:    "Listed for tests"
 *	  health: ok
 *	  symbol: DNSBL_BL_EXAMPLE 5.00
 *	  reject: 554 5.7.1 Service unavailable; ... (at each RCPT)
 *
 * status is one of: listed, not listed, dns failure (...), refused code,
 * broken zone (...), skipped (...). Exit status: 1 if a usable zone lists
 * it, else 2 if a lookup failed, else 0; 64 usage, 78 configuration.
 * Owns the loop, the resolver and the lookups of the run.
 */
#include "dnsbl.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../filters/dnsbl.h"
#include "resolver.h"

struct zone_run {
	const struct dnsbl_zone *z;
	char qname[DNSBL_NAME_MAX + 1];
	int skipped;
	int have;
	struct dnsbl_result res;
	enum dnsbl_health health;
	char why[300];
	size_t *pending;
};

static void on_result(void *arg, const struct dnsbl_result *r)
{
	struct zone_run *zr = arg;
	zr->res = *r;
	zr->have = 1;
	(*zr->pending)--;
}

static void on_health(void *arg, const struct dnsbl_zone *z, enum dnsbl_health h, const char *why)
{
	struct zone_run *zr = arg;
	(void)z;
	zr->health = h;
	snprintf(zr->why, sizeof(zr->why), "%s", why);
	(*zr->pending)--;
}

/* Which value a zone of kind k looks up for the argument; NULL: none. */
static const char *value_for(enum dnsbl_kind k, int is_ip, const char *arg, const char *domain)
{
	if (k == DNSBL_CLIENT)
		return is_ip ? arg : NULL;
	if (is_ip)
		return NULL;
	return k == DNSBL_HELO && strchr(arg, '@') ? NULL : domain;
}

static void print_block(const struct zone_run *zr, const char *value, int dry_run)
{
	const struct dnsbl_zone *z = zr->z;
	const struct dnsbl_result *r = &zr->res;
	int broken = zr->health == DNSBL_HEALTH_BROKEN || r->status == DNSBL_OUT_OF_RANGE;
	char text[DNSBL_TEXT_MAX + 1];

	printf("zone %s (lookup %s, action %s)\n", z->name, dnsbl_kind_name(z->kind),
	       z->reject ? "reject" : "score");
	printf("  query:  %s\n", zr->qname);
	if (zr->skipped) {
		printf("  status: skipped (no query name for \"%s\")\n\n", value);
		return;
	}
	if (broken)
		printf("  status: broken zone (%s); its answers are ignored\n",
		       zr->health == DNSBL_HEALTH_BROKEN ? zr->why : "it answers outside 127.0.0.0/8");
	else if (r->status == DNSBL_FAILED)
		printf("  status: dns failure (%s)\n", moat_dns_status_name(r->dns));
	else if (r->status == DNSBL_REFUSED)
		printf("  status: refused code (the list refuses queries from this resolver)\n");
	else
		printf("  status: %s\n", dnsbl_status_name(r->status));
	if (r->codes[0])
		printf("  codes:  %s\n", r->codes);
	if (r->txt[0])
		printf("  txt:    \"%s\"\n", r->txt);
	printf("  health: %s%s%s%s\n", dnsbl_health_name(zr->health), zr->why[0] ? " (" : "",
	       zr->why, zr->why[0] ? ")" : "");
	if (!broken && r->status == DNSBL_LISTED) {
		printf("  symbol: %s %.2f\n", z->symbol, r->score);
		if (z->reject) {
			dnsbl_reply_text(z, value, r->txt, text, sizeof(text));
			printf("  reject: 554 %s (%s)%s\n", text,
			       z->kind == DNSBL_FROM ? "at end of message" : "at each RCPT",
			       dry_run ? " [dry-run: would reject]" : "");
		} else {
			printf("  reject: no (action score)\n");
		}
	} else if (!broken && r->status == DNSBL_FAILED) {
		printf("  symbol: DNSBL_TEMPFAIL 0.00\n  reject: no\n");
	} else {
		printf("  symbol: none\n  reject: no\n");
	}
	printf("\n");
}

int moat_cli_dnsbl(const struct moat_config *c, int argc, char **argv)
{
	char err[512], domain[DNSBL_NAME_MAX + 1];
	unsigned char a[16];

	if (argc != 2 || !argv[1][0]) {
		fprintf(stderr, "usage: moat dnsbl ADDRESS|NAME|user@domain\n");
		return 64;
	}
	const char *arg = argv[1];
	const struct dnsbl_conf *dc = moat_config_section(c, "dnsbl");
	const struct moat_resolver_conf *rc = moat_config_section(c, "resolver");
	if (!dc || !rc) {
		fprintf(stderr, "moat dnsbl: no dnsbl or resolver section\n");
		return 78;
	}
	int is_ip = inet_pton(AF_INET, arg, a) == 1 || inet_pton(AF_INET6, arg, a) == 1;
	if (strchr(arg, '@')) {
		if (dnsbl_addr_domain(arg, domain, sizeof(domain)) < 0) {
			fprintf(stderr, "moat dnsbl: \"%s\": no domain to look up\n", arg);
			return 64;
		}
	} else {
		snprintf(domain, sizeof(domain), "%s", arg);
	}

	int enabled = 0;
	for (size_t i = 0; i < c->filters.n; i++)
		enabled |= strcmp(c->filters.v[i], "dnsbl") == 0;
	if (!enabled)
		printf("note: \"dnsbl\" is not in `filters`: moatd does not use these zones\n");
	int dry_run = c->dry_run || dc->common.dry_run;

	struct zone_run *runs = calloc(dc->nzones ? dc->nzones : 1, sizeof(*runs));
	struct event_base *base = event_base_new();
	struct moat_resolver *r = base && runs ? moat_resolver_new(base, rc, err, sizeof(err)) : NULL;
	if (!r) {
		fprintf(stderr, "moat dnsbl: %s\n", base && runs ? err : "out of memory");
		free(runs);
		if (base)
			event_base_free(base);
		return 78;
	}

	size_t pending = 0, nrun = 0;
	for (size_t i = 0; i < dc->nzones; i++) {
		const struct dnsbl_zone *z = &dc->zones[i];
		const char *value = value_for(z->kind, is_ip, arg, domain);
		struct zone_run *zr = &runs[nrun];
		if (!value)
			continue;
		nrun++;
		zr->z = z;
		zr->pending = &pending;
		int ok = z->kind == DNSBL_CLIENT
			 ? dnsbl_ip_query(value, z->name, zr->qname, sizeof(zr->qname)) > 0
			 : dnsbl_name_query(value, z->name, zr->qname, sizeof(zr->qname)) == 0;
		if (!ok) {
			zr->skipped = 1;
			continue;
		}
		if (dnsbl_lookup_start(r, z, zr->qname, 0, on_result, zr))
			pending++;
		else
			zr->res.status = DNSBL_FAILED;
		if (dnsbl_probe_start(r, z, on_health, zr))
			pending++;
	}
	while (pending)
		event_base_loop(base, EVLOOP_ONCE);

	int listed = 0, failed = 0;
	if (!nrun)
		printf("no %s zone configured for \"%s\"\n", is_ip ? "client" : "helo, sender or from",
		       arg);
	for (size_t i = 0; i < nrun; i++) {
		const struct zone_run *zr = &runs[i];
		const char *value = value_for(zr->z->kind, is_ip, arg, domain);
		print_block(zr, value, dry_run);
		if (zr->skipped || zr->health == DNSBL_HEALTH_BROKEN)
			continue;
		listed |= zr->res.status == DNSBL_LISTED;
		failed |= zr->res.status == DNSBL_FAILED;
	}
	moat_resolver_free(r);
	event_base_free(base);
	free(runs);
	return listed ? 1 : failed ? 2 : 0;
}
