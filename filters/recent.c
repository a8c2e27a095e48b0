/*
 * recent.c - the last hour per minute and the last verdicts (recent.h).
 *
 * Minutes are kept in a ring indexed by minute number modulo 60; a slot
 * whose minute is not the one asked for is stale and reads as zero, so
 * nothing has to run when time passes. Owns both rings.
 */
#include "recent.h"

#include <pthread.h>
#include <string.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static struct {
	long minute[MOAT_RECENT_MINUTES];	/* which minute the slot holds */
	unsigned count[MOAT_RECENT_MINUTES][MOAT_ACTION__COUNT];
	struct moat_recent_verdict last[MOAT_RECENT_VERDICTS];
	size_t next, n;
} r;

void moat_recent_add(const struct moat_recent_verdict *v)
{
	long min = (long)(v->when / 60);
	size_t slot = (size_t)(min % MOAT_RECENT_MINUTES);
	int a = (int)v->action >= 0 && v->action < MOAT_ACTION__COUNT ? (int)v->action : 0;

	pthread_mutex_lock(&lock);
	if (r.minute[slot] != min) {
		r.minute[slot] = min;
		memset(r.count[slot], 0, sizeof(r.count[slot]));
	}
	r.count[slot][a]++;
	r.last[r.next] = *v;
	r.next = (r.next + 1) % MOAT_RECENT_VERDICTS;
	if (r.n < MOAT_RECENT_VERDICTS)
		r.n++;
	pthread_mutex_unlock(&lock);
}

void moat_recent_minutes(time_t now, unsigned counts[MOAT_RECENT_MINUTES][MOAT_ACTION__COUNT])
{
	long cur = (long)(now / 60);
	pthread_mutex_lock(&lock);
	for (int i = 0; i < MOAT_RECENT_MINUTES; i++) {
		long min = cur - (MOAT_RECENT_MINUTES - 1) + i;
		size_t slot = (size_t)(min % MOAT_RECENT_MINUTES);
		if (min >= 0 && r.minute[slot] == min)
			memcpy(counts[i], r.count[slot], sizeof(counts[i]));
		else
			memset(counts[i], 0, sizeof(counts[i]));
	}
	pthread_mutex_unlock(&lock);
}

size_t moat_recent_verdicts(struct moat_recent_verdict *out, size_t max)
{
	size_t k = 0;
	pthread_mutex_lock(&lock);
	for (; k < r.n && k < max; k++)
		out[k] = r.last[(r.next + MOAT_RECENT_VERDICTS - 1 - k) % MOAT_RECENT_VERDICTS];
	pthread_mutex_unlock(&lock);
	return k;
}
