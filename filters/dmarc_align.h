/*
 * dmarc_align.h - identifier alignment (RFC 7489 3.1): the organizational
 * domain of a name, and whether an authenticated domain (SPF's MAIL FROM,
 * a DKIM d=) is aligned with the From domain, relaxed or strict.
 *
 * The public suffix list is loaded once per process (libpsl: the
 * system's list, else the one built into libpsl) and never changes.
 */
#ifndef MOAT_DMARC_ALIGN_H
#define MOAT_DMARC_ALIGN_H

#include <stddef.h>

#include "dmarc_record.h"

/* The organizational domain of domain (lower case, A-labels, no trailing
 * dot) into out: one label below its public suffix; the domain itself
 * when it is a public suffix or has no suffix the list knows. This is
 * the one place the organizational domain is decided (DMARCbis replaces
 * the list with a DNS tree walk). Returns 0, or -1 when out is too
 * small or the list cannot be loaded (out = domain then). */
int dmarc_org_domain(const char *domain, char *out, size_t len);

/* 1 if the public suffix list could be loaded; where it came from
 * ("the system list", "libpsl's built-in list") in *source. */
int dmarc_psl_loaded(const char **source);

/* 1 if id (an authenticated domain) is aligned with from: equal, or in
 * relaxed mode with the same organizational domain. Case-insensitive. */
int dmarc_aligned(const char *id, const char *from, enum dmarc_mode mode);

#endif
