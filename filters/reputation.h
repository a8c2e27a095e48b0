/*
 * reputation.h - the reputation filter (reputation.c): what moat learned
 * from earlier mail of a client address, its network and the domains
 * that authenticated it, as scored symbols; the reading and clearing of
 * those counts and the marks operators set by hand, for the control
 * socket and the CLI (`moat rep get|set|clear`); and the client's
 * standing, for other filters (greylisting).
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

/* A mark an operator set by hand on a name (`moat rep set`). */
enum moat_rep_mark {
	MOAT_REP_MARK_NONE = 0,
	MOAT_REP_MARK_GOOD,
	MOAT_REP_MARK_BAD,
	MOAT_REP_MARK_NEUTRAL,	/* no opinion, whatever was learned */
};
#define MOAT_REP_MARK_MAX_DAYS 3650

/* A mark's stored value: "good", "bad" or "neutral", optionally a space
 * and its expiry (unix time) into *expires (else 0). NONE if it is not
 * one. */
enum moat_rep_mark moat_rep_mark_parse(const char *v, size_t len, long long *expires);
/* "none", "good", "bad", "neutral". */
const char *moat_rep_mark_name(enum moat_rep_mark m);

/* Answer of moat_rep_show()/moat_rep_clear()/moat_rep_set(): ok is 0
 * when what was asked was not done (a mark the store did not take);
 * text holds one line per name ("ip 192.0.2.1 ham=3.0 spam=0.0 ...
 * manual=none verdict=good"), borrowed for the call. */
typedef void (*moat_rep_cb)(void *arg, int ok, const char *text);

/* Reads (show) or deletes (clear) the counts of what: an IP address
 * (show: and its network), a network "ADDR/24" or "ADDR/64", or a
 * domain; rconf is the reputation section of the running configuration
 * (moat_config_section(c, "reputation")). Returns 0 and cb runs later,
 * on the loop; or -1 with err (what is not understood, no memory). */
int moat_rep_show(struct moat_store *s, const void *rconf, const char *what, moat_rep_cb cb,
		  void *arg, char *err, size_t errlen);
int moat_rep_clear(struct moat_store *s, const void *rconf, const char *what, moat_rep_cb cb,
		   void *arg, char *err, size_t errlen);

/* Marks what (an address, a network, a domain) by hand, for ttl_days
 * days (0: until cleared; clear deletes the mark with the counts).
 * Returns 0 and cb runs later, on the loop; or -1 with err. */
int moat_rep_set(struct moat_store *s, const char *what, enum moat_rep_mark mark, long ttl_days,
		 moat_rep_cb cb, void *arg, char *err, size_t errlen);

/* Whether the client address ip stands good: it or its network is
 * marked good or rated good by its counts, and neither is bad (rconf:
 * the reputation section). cb(arg, good) runs later, on the loop (good
 * is 0 when the store did not answer). Returns 0, or -1 (no store, not
 * an address, no memory: cb never runs). */
int moat_rep_client_good(struct moat_store *s, const void *rconf, const char *ip,
			 void (*cb)(void *arg, int good), void *arg);

#endif
