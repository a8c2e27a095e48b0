/*
 * dmarc_report.h - aggregate report data (RFC 7489 7.2, appendix C): one
 * row per evaluated message, kept in the store, and the XML report made
 * from the rows of one domain.
 *
 * Keys (docs/redis-keys.md): "dmarc:n:DOMAIN:DAY" counts the rows of
 * a policy domain on a UTC day (YYYYMMDD); "dmarc:r:DOMAIN:DAY:N" holds
 * row N (1-based), "dmarc:p:DOMAIN:DAY" the last policy record seen. All
 * expire after report_days.
 *
 * Rows are written to the store of the filter's context; the reader
 * (moat dmarc report, cli/dmarc.c) fetches them and calls
 * dmarc_report_xml().
 */
#ifndef MOAT_DMARC_REPORT_H
#define MOAT_DMARC_REPORT_H

#include <stddef.h>
#include <stdio.h>
#include <time.h>

#include "dmarc_eval.h"
#include "dmarc_record.h"

struct moat_store;

struct dmarc_report_row {
	long long when;			/* Unix time */
	char ip[48];			/* the client */
	char header_from[256];
	char envelope_from[256];	/* the SPF domain (MAIL FROM, or HELO) */
	enum dmarc_policy disposition;
	int dkim_aligned, spf_aligned;	/* policy_evaluated dkim / spf: pass or fail */
	char reason[32];		/* "", "sampled_out", "local_policy" */
	char spf_result[16];
	int spf_helo;
	size_t ndkim;
	struct dmarc_dkim dkim[DMARC_MAX_DKIM];
};

/* Row <-> one line of text (tab-separated, no tabs or newlines inside). */
int dmarc_report_row_format(const struct dmarc_report_row *r, char *out, size_t len);
int dmarc_report_row_parse(const char *line, size_t len, struct dmarc_report_row *r);

/* Records one row for the policy domain (the domain whose _dmarc record
 * applied; txt: that record) in store, kept days. Fire and forget: the
 * store answers later, on the loop; nothing waits for it. */
void dmarc_report_add(struct moat_store *store, long days, const char *domain, const char *txt,
		      const struct dmarc_report_row *row);

/* The XML aggregate report (RFC 7489 appendix C) of rows (the policy
 * record txt, as last seen) for domain between begin and end. */
struct dmarc_report_meta {
	const char *org_name, *email, *report_id;
	long long begin, end;
};
void dmarc_report_xml(FILE *out, const struct dmarc_report_meta *m, const char *domain,
		      const char *txt, const struct dmarc_report_row *rows, size_t n);

/* Key names: kind 'n' (row count), 'r' (row n), 'p' (policy record) of
 * domain on the UTC day of when. */
void dmarc_report_key(char *out, size_t len, char kind, const char *domain, long long when,
		      long long n);

#endif
