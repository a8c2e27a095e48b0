/*
 * dmarc_lookup.h - DMARC policy discovery (RFC 7489 6.6.3) through moat's
 * resolver: _dmarc.<From domain>, else _dmarc.<organizational domain>.
 *
 * A lookup owns its DNS query until its callback ran or it was
 * cancelled; the callback runs once, on the loop, never from inside
 * dmarc_lookup_start().
 */
#ifndef MOAT_DMARC_LOOKUP_H
#define MOAT_DMARC_LOOKUP_H

#include "dmarc_record.h"
#include "resolver.h"

enum dmarc_found_status {
	DMARC_FOUND_RECORD = 0,	/* one usable record */
	DMARC_FOUND_NONE,	/* no record (or several: RFC 7489 6.6.3 step 5) */
	DMARC_FOUND_TEMPERROR,	/* DNS failed: try again later */
	DMARC_FOUND_PERMERROR,	/* a DMARC record, but unusable */
};

struct dmarc_found {
	enum dmarc_found_status status;
	struct dmarc_record rec;	/* RECORD */
	char domain[256];	/* the domain whose _dmarc record was used or failed */
	int org;		/* the record is the organizational domain's */
	char txt[1024];		/* the record as published (RECORD, PERMERROR) */
	char why[640];		/* NONE, TEMPERROR, PERMERROR; notes for RECORD */
};

typedef void (*dmarc_lookup_cb)(void *arg, const struct dmarc_found *f);

struct dmarc_lookup;

/* Starts policy discovery for from (the From domain) whose organizational
 * domain is org. Returns NULL only when out of memory. */
struct dmarc_lookup *dmarc_lookup_start(struct moat_resolver *r, const char *from,
					const char *org, dmarc_lookup_cb cb, void *arg);
void dmarc_lookup_cancel(struct dmarc_lookup *l);

/* What a TXT answer at _dmarc.domain says (the pure part of a lookup,
 * for the tests): RECORD, NONE (no DMARC record among them: ask the next
 * domain), NONE with several (stop), or PERMERROR. */
void dmarc_lookup_answer(const char *const *txt, size_t n, struct dmarc_found *f, int *several);

#endif
