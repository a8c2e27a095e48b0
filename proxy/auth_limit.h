/*
 * auth_limit.h - failed AUTH attempts per client address, across
 * sessions, in a small table of fixed size.
 *
 * Each address has a counter and the start of its window; a full table
 * reuses the slot whose window is over, else the oldest one, so memory
 * stays bounded whatever clients do. Owned by the server; one loop
 * thread uses it.
 */
#ifndef MOAT_AUTH_LIMIT_H
#define MOAT_AUTH_LIMIT_H

#include <stddef.h>
#include <time.h>

struct auth_limit;

struct auth_limit *auth_limit_new(size_t slots);
void auth_limit_free(struct auth_limit *al);

/* 1 if addr failed limit times or more in the window that is still
 * open at now (window seconds from its first failure). */
int auth_limit_blocked(const struct auth_limit *al, const char *addr, long limit, long window,
		       time_t now);
/* Counts one failure of addr. */
void auth_limit_fail(struct auth_limit *al, const char *addr, long window, time_t now);

#endif
