/*
 * spf_input.h - what moat hands to libspf2, bounded and normalised first:
 * the client address, the MAIL FROM address and the HELO name.
 *
 * libspf2 is old C with a CVE history (CVE-2021-20314, CVE-2021-33912,
 * CVE-2021-33913: overflows in macro expansion of attacker-chosen
 * names). Nothing reaches it that breaks the limits of RFC 1035 and RFC
 * 5321: a domain of at most 253 octets in labels of 1 to 63 LDH octets
 * (and '_'), a local part of at most 64 printable ASCII octets.
 * Internationalised domains are converted to A-labels first (libidn2,
 * IDNA2008 with UTS #46 non-transitional mapping; RFC 8616 section 3).
 * What does not fit gets its result here, and libspf2 never sees it:
 * a malformed or single-label domain is "none" (RFC 7208 4.3), an
 * over-long or control-character local part is "permerror".
 *
 * Pure functions over caller buffers; no state. Public for the worker,
 * the filter, the unit tests and the fuzz target.
 */
#ifndef MOAT_SPF_INPUT_H
#define MOAT_SPF_INPUT_H

#include <stddef.h>

#define SPF_DOMAIN_MAX 253	/* octets, no trailing dot */
#define SPF_LABEL_MAX 63
#define SPF_LOCAL_MAX 64	/* RFC 5321 4.5.3.1.1 */
#define SPF_SENDER_MAX (SPF_LOCAL_MAX + 1 + SPF_DOMAIN_MAX)
#define SPF_IP_MAX 46		/* INET6_ADDRSTRLEN */
#define SPF_EXP_MAX 200		/* explanation text kept, after sanitising */

/* How an identity fared before libspf2. */
enum spf_input_status {
	SPF_INPUT_OK = 0,
	SPF_INPUT_NONE,		/* malformed domain: result "none" */
	SPF_INPUT_PERMERROR,	/* unusable local part: result "permerror" */
};

/* A domain (trailing dot allowed, U-labels allowed) into its A-label
 * form, lower case, without the trailing dot: at least two labels of 1
 * to 63 octets [A-Za-z0-9_-], 253 octets in all. Returns 0, or -1 (the
 * domain is malformed) with out = "". outlen >= SPF_DOMAIN_MAX + 1. */
int spf_domain_alabel(const char *in, char *out, size_t outlen);

/* The MAIL FROM address (without <>; "" is the null sender) into
 * "local@domain" for libspf2 (the domain as spf_domain_alabel() makes
 * it) and the domain alone. An empty local part becomes "postmaster"
 * (RFC 7208 4.3); a non-ASCII (SMTPUTF8) one too, as libspf2 cannot
 * expand it safely in %{l}: it only changes what local-part macros see.
 * Returns SPF_INPUT_OK, NONE (no usable domain; also for the null
 * sender: the caller checks the HELO identity then) or PERMERROR (a
 * local part over 64 octets or with control characters). Buffers:
 * out >= SPF_SENDER_MAX + 1, domain >= SPF_DOMAIN_MAX + 1. */
enum spf_input_status spf_sender_prepare(const char *sender, char *out, size_t outlen,
					 char *domain, size_t domainlen);

/* The HELO name as an identity: a domain as spf_domain_alabel() makes
 * it. Address literals and malformed names return -1 (no HELO check). */
int spf_helo_prepare(const char *helo, char *out, size_t outlen);

/* A client address ("192.0.2.1", "2001:db8::1", "::ffff:192.0.2.1")
 * in canonical text; IPv4-mapped IPv6 becomes IPv4. Returns 4 or 6, or
 * -1. outlen >= SPF_IP_MAX. */
int spf_ip_normalize(const char *in, char *out, size_t outlen);

/* Text from DNS (an explanation) for a reply or a header: printable
 * ASCII only (runs of spaces, CR, LF and other controls become one
 * space, non-ASCII octets are removed), trimmed, at most min(outlen - 1, SPF_EXP_MAX) octets.
 * Returns the length. */
size_t spf_text_sanitize(const char *in, char *out, size_t outlen);

#endif
