/*
 * dmarc.h - the DMARC filter (RFC 7489): ties the SPF and DKIM results
 * earlier filters recorded to the From: domain the reader sees.
 *
 * At the end of the message it finds the From domain (from_header.h),
 * discovers the domain's policy (dmarc_lookup.h), checks alignment
 * (dmarc_eval.h) and applies the policy as configured: reject (550
 * 5.7.1), quarantine (add_header, or a score), or only a score; per-domain
 * overrides; pct= sampling; never a refusal on a temperror. Results go to
 * symbols DMARC_*, Authentication-Results (dmarc=pass (p=reject dis=none)
 * header.from=example.org) and, when configured, the aggregate report
 * data in the store (dmarc_report.h).
 *
 * The `dmarc` section's struct; moat_filter_dmarc is what the pipeline
 * runs. It must be listed after spf and dkim in `filters`.
 */
#ifndef MOAT_DMARC_H
#define MOAT_DMARC_H

#include <stddef.h>

#include "dmarc_eval.h"
#include "dmarc_record.h"
#include "filter.h"

extern const struct moat_filter moat_filter_dmarc;
void dmarc_register(void);

#define DMARC_MAX_OVERRIDES 256

struct dmarc_override {
	char *domain;			/* lower case; matches it and its subdomains */
	enum dmarc_policy action;	/* NONE: score only */
};

struct dmarc_conf {
	struct moat_filter_common common;
	char *policy;			/* "apply", "score" */
	char *quarantine;		/* "add_header", "score" */
	char *bad_from;			/* "reject", "score" */
	struct moat_str_list overrides;	/* "DOMAIN ACTION" */
	double score_pass, score_fail_none, score_fail_quarantine, score_fail_reject;
	double score_none, score_temperror, score_permerror, score_bad_from;
	int report;			/* keep report data in the store */
	long report_days;
	char *report_org_name, *report_email;
	/* derived by prepare() */
	int apply, quarantine_header, bad_from_reject;
	size_t noverrides;
	struct dmarc_override *ovr;
};

/* What moat does with a message, from the result and the record. */
struct dmarc_decision {
	enum dmarc_policy published;	/* p= (or sp=) in effect for this From */
	enum dmarc_policy disposition;	/* what is done: none, quarantine, reject */
	int overridden;			/* an `overrides` entry decided */
	int sampled_out;		/* pct= spared the message the full policy */
	double score;
	const char *symbol;		/* "DMARC_FAIL"... */
};

/* The override entry for domain (itself or the nearest parent), or NULL. */
const struct dmarc_override *dmarc_override_find(const struct dmarc_conf *c, const char *domain);

/* The decision for a message with result res under record r (NULL when
 * there is none). subdomain: From is below the record's domain. roll: a
 * number in 0..99 for pct= sampling (the message is sampled in when
 * roll < pct). */
void dmarc_decide(const struct dmarc_conf *c, enum dmarc_result res, const struct dmarc_record *r,
		  int subdomain, const char *from, unsigned roll, struct dmarc_decision *out);

#endif
