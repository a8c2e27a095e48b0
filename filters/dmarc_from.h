/*
 * dmarc_from.h - the RFC5322.From domain DMARC evaluates (RFC 7489 3.1,
 * 6.6.1): the message must have exactly one From field, holding exactly
 * one address, with a domain.
 *
 * Pure functions over caller buffers; no state.
 */
#ifndef MOAT_DMARC_FROM_H
#define MOAT_DMARC_FROM_H

#include <stddef.h>

#include "message.h"

#define DMARC_DOMAIN_MAX 253

enum dmarc_from_status {
	DMARC_FROM_OK = 0,
	DMARC_FROM_MISSING,		/* no From field */
	DMARC_FROM_SEVERAL_FIELDS,	/* more than one From field */
	DMARC_FROM_NO_ADDRESS,		/* a From without any address (empty, a group) */
	DMARC_FROM_SEVERAL_ADDRESSES,	/* a From with more than one address */
	DMARC_FROM_NO_DOMAIN,		/* an address without '@domain' */
	DMARC_FROM_BAD_DOMAIN,		/* a domain that is no valid DNS name (a literal...) */
};

/* The From domain of message m, lower case in A-label form, into domain
 * (>= DMARC_DOMAIN_MAX + 1 octets; "" unless OK). */
enum dmarc_from_status dmarc_from_domain(const struct moat_message *m, char *domain,
					 size_t len);

/* The same for the value of one From field (after the colon, folding
 * included). */
enum dmarc_from_status dmarc_from_value(const char *value, size_t vlen, char *domain,
					size_t len);

/* What went wrong, for a reply text and the log: "the message has no
 * From header field"... */
const char *dmarc_from_problem(enum dmarc_from_status st);

#endif
