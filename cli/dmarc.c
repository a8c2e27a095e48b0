/*
 * dmarc.c - `moat dmarc`:
 *
 *   moat dmarc DOMAIN
 *	the DMARC record that applies to mail From: DOMAIN (its own, else its
 *	organizational domain's), as the dmarc filter finds it through moat's
 *	resolver, and the policy moat reads from it. Exit 0 a record, 1 none,
 *	2 a DNS failure (temperror), 3 an unusable record (permerror).
 *
 *   moat dmarc report --domain DOMAIN [--since AGE] [--until AGE]
 *	the RFC 7489 aggregate report (XML, appendix C) of the results the
 *	dmarc filter kept (dmarc.report = yes) for policy domain DOMAIN, from
 *	AGE ago (default 1d; s, m, h, d) until now (or AGE ago). The data is
 *	read from the store section's Redis server: the memory backend lives
 *	inside moatd and cannot be read from here. Exit 0, 1 no data, 2 the
 *	store did not answer, 64 usage, 78 configuration.
 *
 * Owns the loop, resolver and store of the run.
 */
#include "dmarc.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../filters/dmarc.h"
#include "dmarc_align.h"
#include "dmarc_lookup.h"
#include "dmarc_report.h"
#include "resolver.h"
#include "spf_input.h"
#include "store.h"
#include "store_conf.h"

#define MAX_ROWS 200000

/* ---- moat dmarc DOMAIN --------------------------------------------------- */

struct show {
	struct event_base *base;
	int done, status;
	char from[256];
};

static void print_found(void *arg, const struct dmarc_found *f)
{
	struct show *s = arg;
	static const int code[] = {0, 1, 2, 3};
	int sub = strcmp(f->domain, s->from) != 0;

	if (f->status == DMARC_FOUND_RECORD || f->status == DMARC_FOUND_PERMERROR)
		printf("record: _dmarc.%s%s\n  %s\n", f->domain,
		       f->org ? " (organizational domain)" : "", f->txt);
	switch (f->status) {
	case DMARC_FOUND_RECORD: {
		const struct dmarc_record *r = &f->rec;
		printf("dmarc: p=%s sp=%s np=%s adkim=%s aspf=%s pct=%d%s%s\n",
		       dmarc_policy_name(r->p), r->sp ? dmarc_policy_name(r->sp) : "(p)",
		       r->np ? dmarc_policy_name(r->np) : "(sp)",
		       r->adkim == DMARC_STRICT ? "s" : "r", r->aspf == DMARC_STRICT ? "s" : "r",
		       r->pct, r->rua[0] ? " rua=" : "", r->rua);
		printf("policy for %s: %s\n", s->from,
		       dmarc_policy_name(dmarc_record_policy(r, sub, 0)));
		if (f->why[0])
			printf("note: %s\n", f->why);
		break;
	}
	case DMARC_FOUND_NONE:
		printf("dmarc: none (%s)\n", f->why);
		break;
	case DMARC_FOUND_TEMPERROR:
		printf("dmarc: temperror (%s)\n", f->why);
		break;
	default:
		printf("dmarc: permerror (%s)\n", f->why);
		break;
	}
	s->status = code[f->status];
	s->done = 1;
	event_base_loopbreak(s->base);
}

static int show(const struct moat_config *c, const char *domain)
{
	struct show s = {NULL, 0, 2, ""};
	char org[256], err[512];

	if (spf_domain_alabel(domain, s.from, sizeof(s.from)) < 0) {
		fprintf(stderr, "moat dmarc: \"%s\" is not a domain name\n", domain);
		return 64;
	}
	if (dmarc_org_domain(s.from, org, sizeof(org)) < 0) {
		fprintf(stderr, "moat dmarc: no public suffix list could be loaded\n");
		return 78;
	}
	const struct moat_resolver_conf *rc = moat_config_section(c, "resolver");
	s.base = event_base_new();
	struct moat_resolver *r = s.base && rc ? moat_resolver_new(s.base, rc, err, sizeof(err))
					       : NULL;
	if (!r) {
		fprintf(stderr, "moat dmarc: %s\n", rc ? err : "no resolver configuration");
		if (s.base)
			event_base_free(s.base);
		return 78;
	}
	printf("domain: %s\norganizational domain: %s\n", s.from, org);
	struct dmarc_lookup *l = dmarc_lookup_start(r, s.from, org, print_found, &s);
	if (!l)
		fprintf(stderr, "moat dmarc: out of memory\n");
	while (l && !s.done)
		event_base_loop(s.base, EVLOOP_ONCE);
	moat_resolver_free(r);
	event_base_free(s.base);
	return s.status;
}

/* ---- moat dmarc report ----------------------------------------------------- */

struct get {
	int done;
	enum moat_store_status st;
	char *value;
	size_t len;
	long long number;
};

static void on_get(void *arg, enum moat_store_status st, const char *value, size_t len,
		   long long number)
{
	struct get *g = arg;
	g->st = st;
	g->number = number;
	if (value && (g->value = malloc(len + 1))) {
		memcpy(g->value, value, len);
		g->value[len] = '\0';
		g->len = len;
	}
	g->done = 1;
}

/* One GET, waited for on base. Returns the status; *out (freed by the
 * caller) holds the value of an OK. */
static enum moat_store_status get(struct event_base *base, struct moat_store *s,
				  const char *key, char **out)
{
	struct get g = {0, MOAT_STORE_UNAVAILABLE, NULL, 0, 0};
	*out = NULL;
	if (!moat_store_get(s, key, on_get, &g))
		return MOAT_STORE_UNAVAILABLE;
	while (!g.done)
		event_base_loop(base, EVLOOP_ONCE);
	*out = g.value;
	return g.st;
}

/* "1d", "12h", "30m", "90s", "3600" into seconds; -1 if malformed. */
static long long age(const char *s)
{
	char *end;
	long long n = strtoll(s, &end, 10);
	long long unit = *end == 'd' ? 86400 : *end == 'h' ? 3600 : *end == 'm' ? 60 : 1;
	if (end == s || n < 0 || (*end && end[1]) || (*end && !strchr("dhms", *end)) ||
	    n > 3660LL * 86400 / unit)
		return -1;
	return n * unit;
}

static int report(const struct moat_config *c, int argc, char **argv)
{
	const char *domain = NULL;
	long long since = 86400, until = 0;
	char dom[256], err[512], key[400], d[300];

	for (int i = 2; i < argc; i++) {
		if (i + 1 < argc && strcmp(argv[i], "--domain") == 0)
			domain = argv[++i];
		else if (i + 1 < argc && strcmp(argv[i], "--since") == 0)
			since = age(argv[++i]);
		else if (i + 1 < argc && strcmp(argv[i], "--until") == 0)
			until = age(argv[++i]);
		else
			domain = NULL, i = argc;
	}
	if (!domain || since < 0 || until < 0 || until > since) {
		fprintf(stderr, "usage: moat dmarc report --domain DOMAIN [--since AGE] "
			"[--until AGE]   (AGE: 90s, 30m, 12h, 1d)\n");
		return 64;
	}
	if (spf_domain_alabel(domain, dom, sizeof(dom)) < 0) {
		fprintf(stderr, "moat dmarc report: \"%s\" is not a domain name\n", domain);
		return 64;
	}
	const struct dmarc_conf *dc = moat_config_section(c, "dmarc");
	struct event_base *base = event_base_new();
	if (!base || moat_store_apply(base, c, err, sizeof(err)) < 0) {
		fprintf(stderr, "moat dmarc report: %s\n", base ? err : "out of memory");
		if (base)
			event_base_free(base);
		return 78;
	}
	moat_store_describe(d, sizeof(d));
	if (strncmp(d, "redis", 5) != 0) {
		fprintf(stderr, "moat dmarc report: the store is the %.*s backend, which lives "
			"inside moatd: no other process can read its report data. Set store { "
			"backend = \"redis\" } (and dmarc { report = yes }) so that moatd keeps it "
			"where this command can read it.\n", (int)strcspn(d, " "), d);
		moat_store_shutdown();
		event_base_free(base);
		return 78;
	}
	struct moat_store *s = moat_store_current();
	/* the store connects in the background and answers "unavailable"
	 * until it is connected: wait up to 3 s for the first answer */
	for (int tries = 0; tries < 30; tries++) {
		char *v = NULL;
		dmarc_report_key(key, sizeof(key), 'n', dom, (long long)time(NULL), 0);
		enum moat_store_status st = get(base, s, key, &v);
		free(v);
		if (st != MOAT_STORE_UNAVAILABLE)
			break;
		struct timeval tv = {0, 100000};
		event_base_loopexit(base, &tv);
		event_base_dispatch(base);
	}
	long long now = (long long)time(NULL), begin = now - since, end = now - until;
	struct dmarc_report_row *rows = NULL;
	size_t n = 0, cap = 0;
	char *txt = NULL;
	int rc = 0;
	/* every UTC day the range touches */
	for (long long day = begin - begin % 86400; day <= end && rc == 0; day += 86400) {
		char *v = NULL;
		dmarc_report_key(key, sizeof(key), 'n', dom, day, 0);
		enum moat_store_status st = get(base, s, key, &v);
		if (st == MOAT_STORE_UNAVAILABLE) {
			fprintf(stderr, "moat dmarc report: the store (%s) did not answer\n", d);
			rc = 2;
			break;
		}
		long long count = v ? strtoll(v, NULL, 10) : 0;
		free(v);
		if (count <= 0)
			continue;
		dmarc_report_key(key, sizeof(key), 'p', dom, day, 0);
		if (get(base, s, key, &v) == MOAT_STORE_OK) {
			free(txt);
			txt = v;
		} else {
			free(v);
		}
		for (long long i = 1; i <= count && n < MAX_ROWS; i++) {
			dmarc_report_key(key, sizeof(key), 'r', dom, day, i);
			st = get(base, s, key, &v);
			if (st == MOAT_STORE_UNAVAILABLE) {
				fprintf(stderr, "moat dmarc report: the store (%s) did not answer\n", d);
				rc = 2;
				break;
			}
			if (n == cap) {
				size_t nc = cap ? cap * 2 : 64;
				struct dmarc_report_row *nr = realloc(rows, nc * sizeof(*rows));
				if (!nr) {
					free(v);
					rc = 2;
					break;
				}
				rows = nr;
				cap = nc;
			}
			if (v && dmarc_report_row_parse(v, strlen(v), &rows[n]) == 0 &&
			    rows[n].when >= begin && rows[n].when <= end)
				n++;
			free(v);
		}
	}
	if (rc == 0 && n == 0) {
		fprintf(stderr, "moat dmarc report: no report data for %s in that time\n", dom);
		rc = 1;
	}
	if (rc == 0) {
		char org[300], email[300], id[400];
		snprintf(org, sizeof(org), "%s", dc && dc->report_org_name && *dc->report_org_name
			 ? dc->report_org_name : c->hostname);
		if (dc && dc->report_email && *dc->report_email)
			snprintf(email, sizeof(email), "%s", dc->report_email);
		else
			snprintf(email, sizeof(email), "postmaster@%s", c->hostname);
		snprintf(id, sizeof(id), "%s.%lld.%lld@%s", dom, begin, end, c->hostname);
		struct dmarc_report_meta m = {org, email, id, begin, end};
		dmarc_report_xml(stdout, &m, dom, txt, rows, n);
	}
	free(txt);
	free(rows);
	moat_store_shutdown();
	event_base_free(base);
	return rc;
}

int moat_cli_dmarc(const struct moat_config *c, int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "report") == 0)
		return report(c, argc, argv);
	if (argc != 2 || argv[1][0] == '-') {
		fprintf(stderr, "usage: moat dmarc DOMAIN\n"
			"       moat dmarc report --domain DOMAIN [--since AGE] [--until AGE]\n");
		return 64;
	}
	return show(c, argv[1]);
}
