/*
 * reputation.h - the reputation filter (reputation.c): what moat learned
 * from earlier mail of a client address, its network and the domains
 * that authenticated it, as scored symbols; and the reading and clearing
 * of those counts for the control socket (`moat rep show|clear`).
 */
#ifndef MOAT_REPUTATION_H
#define MOAT_REPUTATION_H

#include <stddef.h>

#include "filter.h"

struct moat_store;

extern const struct moat_filter moat_filter_reputation;

/* The network an address counts in: "192.0.2.0/24", "2001:db8:1:2::/64".
 * Returns 0, or -1 if ip is not an address. */
int moat_rep_net(const char *ip, char *out, size_t len);

/* The domains v's authentication results vouch for: the SPF-pass
 * MAIL FROM domain and each DKIM-pass d=, lower-cased, each once. Fills
 * at most max names of REP_NAME_MAX octets; returns how many. */
#define MOAT_REP_NAME_MAX 256
size_t moat_rep_auth_domains(const struct moat_verdict *v, char (*out)[MOAT_REP_NAME_MAX],
			     size_t max);

/* Answer of moat_rep_show()/moat_rep_clear(): text holds one line per
 * name ("ip 192.0.2.1 ham=3.0 spam=0.0 ... verdict=good"), borrowed for
 * the call. */
typedef void (*moat_rep_cb)(void *arg, const char *text);

/* Reads (show) or deletes (clear) the counts of what: an IP address
 * (show: and its network), a network "ADDR/24" or "ADDR/64", or a
 * domain; rconf is the reputation section of the running configuration
 * (moat_config_section(c, "reputation")). Returns 0 and cb runs later,
 * on the loop; or -1 with err (what is not understood, no memory). */
int moat_rep_show(struct moat_store *s, const void *rconf, const char *what, moat_rep_cb cb,
		  void *arg, char *err, size_t errlen);
int moat_rep_clear(struct moat_store *s, const void *rconf, const char *what, moat_rep_cb cb,
		   void *arg, char *err, size_t errlen);

#endif
