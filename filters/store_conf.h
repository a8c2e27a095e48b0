/*
 * store_conf.h - the `store` section of moat.conf and the store of the
 * running process (store_conf.c).
 *
 * A daemon (moatd, the milter process) applies the section on its loop
 * at start and at each reload; filters find the current store in their
 * context (ctx->store), the control socket through
 * moat_store_current().
 */
#ifndef MOAT_STORE_CONF_H
#define MOAT_STORE_CONF_H

#include <stddef.h>

#include "store.h"

struct event_base;
struct moat_config;

/* Registers the `store` section (at start, with the filters). */
void moat_store_register(void);

/* Makes the store conf's section describes current, on base: a new one
 * when the section changed (the old one is freed once its operations in
 * flight have answered), else the current one stays, with what it holds.
 * Returns 0, or -1 with err (the current store stays). */
int moat_store_apply(struct event_base *base, const struct moat_config *conf, char *err,
		     size_t errlen);

/* The current store, or NULL before the first moat_store_apply(). Loop
 * thread. */
struct moat_store *moat_store_current(void);
/* "memory", "redis 127.0.0.1:6379", "redis unix:/run/redis.sock" into
 * buf. */
const char *moat_store_describe(char *buf, size_t len);

/* At exit: frees the current store. */
void moat_store_shutdown(void);

#endif
