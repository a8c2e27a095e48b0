/*
 * dmarc_eval.h - the DMARC result of one message (RFC 7489 4.2, 6.6.2):
 * the SPF and DKIM results earlier filters recorded, checked for
 * alignment with the From domain under the policy record's modes.
 *
 * Pure functions over caller structs; no state.
 */
#ifndef MOAT_DMARC_EVAL_H
#define MOAT_DMARC_EVAL_H

#include <stddef.h>

#include "dmarc_record.h"
#include "verdict.h"

#define DMARC_MAX_DKIM 8	/* DKIM results kept per message */

enum dmarc_result {
	DMARC_RES_NONE = 0,	/* no policy record */
	DMARC_RES_PASS,
	DMARC_RES_FAIL,
	DMARC_RES_TEMPERROR,
	DMARC_RES_PERMERROR,
	DMARC_RES__COUNT
};

const char *dmarc_result_name(enum dmarc_result r);	/* "pass"... (RFC 8601) */

/* What SPF and DKIM said, copied from a verdict's authentication results. */
struct dmarc_auth {
	char spf_domain[256];	/* "" when SPF did not run */
	char spf_result[16];	/* "pass", "fail"... */
	int spf_helo;		/* the HELO identity was checked (null sender) */
	size_t ndkim;
	struct dmarc_dkim {
		char domain[256];
		char selector[64];
		char result[16];
	} dkim[DMARC_MAX_DKIM];
};

/* Reads the "spf" and "dkim" entries of v (props "smtp.mailfrom=D" or
 * "smtp.helo=D"; "header.d=D header.s=S ..."). At most DMARC_MAX_DKIM
 * DKIM results are kept, passes first. */
void dmarc_auth_collect(const struct moat_verdict *v, struct dmarc_auth *out);

struct dmarc_eval {
	enum dmarc_result result;
	int spf_aligned;	/* SPF passed for a domain aligned with From */
	int dkim_aligned;	/* a DKIM signature passed for an aligned d= */
	char dkim_domain[256];	/* that d= */
	char why[256];		/* one line, for the symbol's reason */
};

/* The result for From domain from under record r. */
void dmarc_evaluate(const struct dmarc_auth *a, const char *from, const struct dmarc_record *r,
		    struct dmarc_eval *out);

#endif
