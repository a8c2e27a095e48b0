/*
 * auth_limit.c - a bounded table of failed AUTH attempts per client
 * address (auth_limit.h). Linear search: the table is small and only
 * AUTH commands touch it. Owns its slots.
 */
#include "auth_limit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct slot {
	char addr[64];
	long count;
	time_t first;		/* start of this address's window */
};

struct auth_limit {
	size_t n;
	struct slot *v;
};

struct auth_limit *auth_limit_new(size_t slots)
{
	struct auth_limit *al = calloc(1, sizeof(*al));
	if (!al || !(al->v = calloc(slots ? slots : 1, sizeof(*al->v)))) {
		free(al);
		return NULL;
	}
	al->n = slots ? slots : 1;
	return al;
}

void auth_limit_free(struct auth_limit *al)
{
	if (!al)
		return;
	free(al->v);
	free(al);
}

static struct slot *find(const struct auth_limit *al, const char *addr)
{
	for (size_t i = 0; i < al->n; i++)
		if (al->v[i].addr[0] && strcmp(al->v[i].addr, addr) == 0)
			return &al->v[i];
	return NULL;
}

int auth_limit_blocked(const struct auth_limit *al, const char *addr, long limit, long window,
		       time_t now)
{
	const struct slot *s = al && limit > 0 ? find(al, addr) : NULL;
	return s && now - s->first < window && s->count >= limit;
}

void auth_limit_fail(struct auth_limit *al, const char *addr, long window, time_t now)
{
	if (!al)
		return;
	struct slot *s = find(al, addr);
	if (s && now - s->first < window) {
		s->count++;
		return;
	}
	if (!s) {
		/* an empty slot, else one whose window is over, else the oldest */
		s = &al->v[0];
		for (size_t i = 0; i < al->n; i++) {
			struct slot *c = &al->v[i];
			if (!c->addr[0] || now - c->first >= window) {
				s = c;
				break;
			}
			if (c->first < s->first)
				s = c;
		}
		snprintf(s->addr, sizeof(s->addr), "%s", addr);
	}
	s->count = 1;
	s->first = now;
}
