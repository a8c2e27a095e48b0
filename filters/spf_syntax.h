/*
 * spf_syntax.h - a strict RFC 7208 syntax check of one SPF record.
 *
 * libspf2 1.2.10 compiles many records that RFC 7208 section 12's ABNF
 * rejects (an all-numeric or missing toplabel, an empty domain-spec,
 * '%' followed by anything but '{', '%', '_', '-', macro letters c, r
 * and t outside exp= text, duplicate redirect= or exp=, "exists:" with
 * a CIDR length, "ip4:1.2.3.4/032", "redirect:" used as a mechanism, an
 * unknown modifier whose value is not a macro-string, non-ASCII or
 * control octets). RFC 7208 4.6 makes each of those a permerror. The
 * SPF worker runs every record libspf2 fetches through this check (see
 * spf_worker.c) and turns the result into permerror when it fails.
 *
 * A pure function: no allocation, no global state.
 */
#ifndef MOAT_SPF_SYNTAX_H
#define MOAT_SPF_SYNTAX_H

#include <stddef.h>

/* Checks the len octets at rec (a TXT record's character-strings
 * joined, NULs included) against RFC 7208's "record" rule (section 12,
 * with the rules of 4.6.1, 5, 6 and 7.1). Returns 0 if it is valid;
 * -1 if not, with a short printable reason in why (may be NULL). */
int spf_syntax_check(const char *rec, size_t len, char *why, size_t whylen);

#endif
