/*
 * from_header.h - the author's address from the RFC5322.From field: the
 * domain DMARC evaluates (RFC 7489 3.1, 6.6.1) and the address the DKIM
 * signing table is looked up by. A message has it when it has exactly
 * one From field, holding exactly one address, whose domain is a valid
 * DNS name; every other case has its own status, so that a caller can
 * say why there is none.
 *
 * Pure functions over caller buffers; no state.
 */
#ifndef MOAT_FROM_HEADER_H
#define MOAT_FROM_HEADER_H

#include <stddef.h>

#include "message.h"

#define MOAT_FROM_DOMAIN_MAX 253	/* octets, no trailing dot */
#define MOAT_FROM_LOCAL_MAX 64		/* RFC 5321 4.5.3.1.1 */

enum moat_from_status {
	MOAT_FROM_OK = 0,
	MOAT_FROM_MISSING,		/* no From field */
	MOAT_FROM_SEVERAL_FIELDS,	/* more than one From field */
	MOAT_FROM_NO_ADDRESS,		/* a From without any address (empty, a group) */
	MOAT_FROM_SEVERAL_ADDRESSES,	/* a From with more than one address */
	MOAT_FROM_NO_DOMAIN,		/* an address without '@domain' */
	MOAT_FROM_BAD_DOMAIN,		/* a domain that is no valid DNS name (a literal,
					 * a single label...) */
	MOAT_FROM_TOO_LONG,		/* a value longer than moat reads (4096 octets):
					 * never judged by a prefix of it */
};

/* The address found; both members are "" unless the status is OK. */
struct moat_from {
	char domain[MOAT_FROM_DOMAIN_MAX + 1];	/* lower case, A-labels */
	char local[MOAT_FROM_LOCAL_MAX + 1];	/* lower case, for lookups; "" also
						 * when the domain is fine but the
						 * local part is not a plain one
						 * (empty, quoted, with comments or
						 * spaces, over 64 octets) */
};

/* The From address of message m (its fields as message.c splits them). */
enum moat_from_status moat_from_message(const struct moat_message *m, struct moat_from *out);

/* The same for a header block ("Name: value" fields, lines ending in LF
 * or CRLF, folded; it ends at an empty line or at hlen), such as the one
 * a message leaves with. A field's name may be followed by spaces before
 * its colon (obsolete syntax), as message.c allows. */
enum moat_from_status moat_from_block(const char *head, size_t hlen, struct moat_from *out);

/* The same for the value of one From field (after the colon, folding
 * included). A value longer than 4096 octets is MOAT_FROM_TOO_LONG. */
enum moat_from_status moat_from_value(const char *value, size_t vlen, struct moat_from *out);

/* What went wrong, for a reply text and the log: "the message has no
 * From header field"... */
const char *moat_from_problem(enum moat_from_status st);

#endif
