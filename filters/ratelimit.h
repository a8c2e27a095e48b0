/*
 * ratelimit.h - the ratelimit filter (ratelimit.c): messages per client
 * address, network, sender and authenticated user, and recipients, per
 * fixed time window, counted in the store (shared by every moat
 * instance on the same Redis); and the parsing of one limit.
 */
#ifndef MOAT_RATELIMIT_H
#define MOAT_RATELIMIT_H

#include <stddef.h>

#include "filter.h"

extern const struct moat_filter moat_filter_ratelimit;

/* What a limit counts. */
enum moat_ratelimit_kind {
	MOAT_RL_CLIENT = 0,	/* messages (MAIL) per client address */
	MOAT_RL_NET,		/* messages per client /24 (IPv4) or /64 (IPv6) */
	MOAT_RL_SENDER,		/* messages per MAIL FROM address (not <>) */
	MOAT_RL_AUTH,		/* messages per authenticated user */
	MOAT_RL_RCPT,		/* recipients per authenticated user, else per address */
	MOAT_RL__COUNT
};

struct moat_ratelimit {
	enum moat_ratelimit_kind kind;
	long long limit;	/* at most this many per window */
	long window;		/* seconds */
	enum moat_action action;	/* TEMPFAIL, REJECT, or NONE: score */
	double score;		/* NONE: the symbol's score */
};

#define MOAT_RL_WINDOW_MAX 2592000	/* 30 days */

/* Parses "KIND LIMIT/WINDOW [tempfail|reject|score N]": KIND client,
 * net, sender, auth or rcpt; WINDOW a number of seconds, optionally
 * with a unit s, m, h or d ("100/1h", "10/90s", "500/d"). Returns 0, or
 * -1 with err. */
int moat_ratelimit_parse(const char *spec, struct moat_ratelimit *out, char *err,
			 size_t errlen);

/* "client", "net", "sender", "auth", "rcpt". */
const char *moat_ratelimit_kind_name(enum moat_ratelimit_kind k);

#endif
