/*
 * dmarc_record.h - DMARC policy records (RFC 7489 6.3, 6.4; np= from RFC
 * 9091): which TXT strings are DMARC records, and what one says.
 *
 * Pure functions over caller buffers; no state.
 */
#ifndef MOAT_DMARC_RECORD_H
#define MOAT_DMARC_RECORD_H

#include <stddef.h>

enum dmarc_policy {
	DMARC_POLICY_UNSET = 0,		/* tag absent */
	DMARC_POLICY_NONE,
	DMARC_POLICY_QUARANTINE,
	DMARC_POLICY_REJECT,
};

enum dmarc_mode { DMARC_RELAXED = 0, DMARC_STRICT };

#define DMARC_RUA_MAX 512	/* octets of rua= kept */

struct dmarc_record {
	enum dmarc_policy p, sp, np;	/* sp, np: UNSET when absent */
	enum dmarc_mode adkim, aspf;	/* default relaxed */
	int pct;			/* 0..100, default 100 */
	char rua[DMARC_RUA_MAX + 1];	/* as published (bounded), or "" */
	int p_from_rua;			/* p was missing or invalid: p=none
					 * because rua= is valid (RFC 7489 6.6.3) */
	char ignored[160];		/* tags or values ignored, for the log */
};

enum dmarc_record_status {
	DMARC_RECORD_OK = 0,
	DMARC_RECORD_INVALID = -1,	/* no valid p= (or a bad sp=) and no rua=:
					 * no DMARC processing (permerror) */
};

/* 1 if txt (one TXT record, its strings joined) is a DMARC record: its
 * first tag is v=DMARC1 (RFC 7489 6.6.3 step 2). */
int dmarc_record_is_dmarc(const char *txt);

/* Parses a DMARC record. Unknown tags and bad values of optional tags
 * are ignored (named in r->ignored); tag names and policy words are
 * case-insensitive. Returns DMARC_RECORD_OK, or DMARC_RECORD_INVALID
 * with err saying why. */
int dmarc_record_parse(const char *txt, struct dmarc_record *r, char *err, size_t errlen);

const char *dmarc_policy_name(enum dmarc_policy p);	/* "none", "quarantine"... */

/* The policy for a message whose From domain found this record: p= for
 * the domain itself; for a subdomain (the record is its organizational
 * domain's) sp= if present, else p=; np= instead when the From domain
 * does not exist (RFC 9091) and np= is present. */
enum dmarc_policy dmarc_record_policy(const struct dmarc_record *r, int subdomain,
				      int nonexistent);

#endif
