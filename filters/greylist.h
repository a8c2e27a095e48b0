/*
 * greylist.h - the greylist filter (greylist.c): a recipient from a
 * (client network, sender, recipient) triple not seen before is
 * tempfailed (451 4.7.1) until the client retries after a delay; the
 * triple is then remembered. Its key (greylist.c, docs/redis-keys.md)
 * and the decision on one stored value are here for the unit tests.
 */
#ifndef MOAT_GREYLIST_H
#define MOAT_GREYLIST_H

#include <stddef.h>

#include "filter.h"

extern const struct moat_filter moat_filter_greylist;

/* The store key of a triple: "gl:NET:SENDER:RECIPIENT", addresses
 * lower-cased, the null sender as "<>". Returns 0, or -1 (not an
 * address, a name too long or with spaces). */
int moat_greylist_key(const char *client_addr, const char *sender, const char *rcpt, char *out,
		      size_t len);

/* What a triple's stored value (NULL: none) says at time now. */
enum moat_greylist_state {
	MOAT_GL_NEW,		/* first sight: greylist, remember now */
	MOAT_GL_EARLY,		/* retried before the delay: greylist (*wait s left) */
	MOAT_GL_PASS,		/* waited long enough, or passed before */
};
enum moat_greylist_state moat_greylist_judge(const char *value, size_t len, long long now,
					     long delay, long *wait);

#endif
