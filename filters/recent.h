/*
 * recent.h - what happened lately, for the status page: the verdicts of
 * the last hour counted per minute and action (a ring of 60 minutes),
 * and the last MOAT_RECENT_VERDICTS verdicts themselves (who, what
 * action, score, symbols; never message contents).
 *
 * Fed by metrics.c's events; like the registry it belongs to its
 * process and takes a mutex. Owns both rings; what it returns is copied.
 */
#ifndef MOAT_RECENT_H
#define MOAT_RECENT_H

#include <stddef.h>
#include <time.h>

#include "verdict.h"

#define MOAT_RECENT_MINUTES 60
#define MOAT_RECENT_VERDICTS 50

struct moat_recent_verdict {
	time_t when;
	char session[32];
	char client[64];
	char from[160];		/* the envelope sender; "-" before MAIL */
	char stage[8];		/* "eom" for a message that was received */
	enum moat_action action;
	int code;		/* what the client was told */
	double score;
	char symbols[512];	/* "NAME(score),..." */
};

/* Counts one verdict in its minute and keeps it among the last ones. */
void moat_recent_add(const struct moat_recent_verdict *v);
/* counts[i][action] for the minute i minutes before now's minute
 * reversed: counts[0] is 59 minutes ago, counts[59] the current one. */
void moat_recent_minutes(time_t now, unsigned counts[MOAT_RECENT_MINUTES][MOAT_ACTION__COUNT]);
/* Copies the last verdicts, newest first; returns how many. */
size_t moat_recent_verdicts(struct moat_recent_verdict *out, size_t max);

#endif
