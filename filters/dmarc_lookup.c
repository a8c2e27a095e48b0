/*
 * dmarc_lookup.c - DMARC policy discovery (RFC 7489 6.6.3): the TXT
 * records at _dmarc.<From domain>; when there is no DMARC record among
 * them (or no such name), those at _dmarc.<organizational domain>.
 * Records that do not start with v=DMARC1 are discarded; several DMARC
 * records at one name mean no policy at all. A DNS failure is a
 * temperror, never "no record".
 *
 * Owns each struct dmarc_lookup and its query in flight.
 */
#include "dmarc_lookup.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct dmarc_lookup {
	struct moat_resolver *resolver;
	struct moat_dns_query *q;
	char from[256], org[256];
	int at_org;
	dmarc_lookup_cb cb;
	void *arg;
};

void dmarc_lookup_answer(const char *const *txt, size_t n, struct dmarc_found *f, int *several)
{
	size_t found = 0, which = 0;
	char err[200];

	*several = 0;
	for (size_t i = 0; i < n; i++)
		if (dmarc_record_is_dmarc(txt[i])) {
			if (found++ == 0)
				which = i;
		}
	if (found == 0) {
		f->status = DMARC_FOUND_NONE;
		snprintf(f->why, sizeof(f->why), "no DMARC record at _dmarc.%s", f->domain);
		return;
	}
	if (found > 1) {
		*several = 1;
		f->status = DMARC_FOUND_NONE;
		snprintf(f->why, sizeof(f->why), "%zu DMARC records at _dmarc.%s: none applies "
			 "(RFC 7489 6.6.3)", found, f->domain);
		return;
	}
	snprintf(f->txt, sizeof(f->txt), "%s", txt[which]);
	if (dmarc_record_parse(txt[which], &f->rec, err, sizeof(err)) < 0) {
		f->status = DMARC_FOUND_PERMERROR;
		snprintf(f->why, sizeof(f->why), "bad DMARC record at _dmarc.%s: %s", f->domain, err);
		return;
	}
	f->status = DMARC_FOUND_RECORD;
	snprintf(f->why, sizeof(f->why), "%s%s%s%s", err, err[0] && f->rec.ignored[0] ? "; " : "",
		 f->rec.ignored[0] ? "ignored: " : "", f->rec.ignored);
}

static int ask(struct dmarc_lookup *l);

static void finish(struct dmarc_lookup *l, struct dmarc_found *f)
{
	dmarc_lookup_cb cb = l->cb;
	void *arg = l->arg;
	free(l);
	cb(arg, f);
}

static void on_answer(void *arg, const struct moat_dns_answer *a)
{
	struct dmarc_lookup *l = arg;
	struct dmarc_found f;
	int several = 0;

	l->q = NULL;
	memset(&f, 0, sizeof(f));
	snprintf(f.domain, sizeof(f.domain), "%s", l->at_org ? l->org : l->from);
	f.org = l->at_org;
	if (a->status == MOAT_DNS_OK) {
		dmarc_lookup_answer(a->txt, a->n, &f, &several);
	} else if (a->status == MOAT_DNS_NXDOMAIN || a->status == MOAT_DNS_NODATA) {
		f.status = DMARC_FOUND_NONE;
		snprintf(f.why, sizeof(f.why), "no DMARC record at _dmarc.%s", f.domain);
	} else {
		f.status = DMARC_FOUND_TEMPERROR;
		snprintf(f.why, sizeof(f.why), "DNS lookup of _dmarc.%s failed: %s", f.domain,
			 moat_dns_status_name(a->status));
	}
	if (f.status == DMARC_FOUND_NONE && !several && !l->at_org && strcmp(l->from, l->org) != 0) {
		l->at_org = 1;
		if (ask(l) == 0)
			return;
		f.status = DMARC_FOUND_TEMPERROR;
		snprintf(f.why, sizeof(f.why), "out of memory");
	}
	finish(l, &f);
}

static int ask(struct dmarc_lookup *l)
{
	char name[300];
	snprintf(name, sizeof(name), "_dmarc.%s", l->at_org ? l->org : l->from);
	l->q = moat_resolver_query(l->resolver, name, MOAT_DNS_TXT, 0, on_answer, l);
	return l->q ? 0 : -1;
}

struct dmarc_lookup *dmarc_lookup_start(struct moat_resolver *r, const char *from,
					const char *org, dmarc_lookup_cb cb, void *arg)
{
	struct dmarc_lookup *l = calloc(1, sizeof(*l));
	if (!l)
		return NULL;
	l->resolver = r;
	snprintf(l->from, sizeof(l->from), "%s", from);
	snprintf(l->org, sizeof(l->org), "%s", org && *org ? org : from);
	l->cb = cb;
	l->arg = arg;
	/* _dmarc.NAME must fit in 253 octets; the organizational domain,
	 * a few labels, always does */
	l->at_org = strlen(l->from) > 253 - 7 && strcmp(l->from, l->org) != 0;
	if (ask(l) < 0) {
		free(l);
		return NULL;
	}
	return l;
}

void dmarc_lookup_cancel(struct dmarc_lookup *l)
{
	if (!l)
		return;
	if (l->q)
		moat_dns_cancel(l->q);
	free(l);
}
