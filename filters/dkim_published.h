/*
 * dkim_published.h - the signing keys of a configuration against their
 * DNS records, for `moatd -t -D`: every key of the `dkim` section is
 * looked up at SELECTOR._domainkey.DOMAIN through a resolver made from
 * the `resolver` section, and compared as `moat keycheck` compares
 * (dkim_keymatch.h).
 */
#ifndef MOAT_DKIM_PUBLISHED_H
#define MOAT_DKIM_PUBLISHED_H

#include <stddef.h>

#include "config.h"

/* One finding about key (the key subsection's title): word and text as
 * dkim_keymatch.h says. */
typedef void (*dkim_published_say)(void *arg, const char *key, const char *word,
				   const char *text);

/* Checks every key of c's dkim section, the lookups all at once, and
 * hands each finding to say. Returns the number of keys whose record is
 * missing, does not match, is revoked, is not alone, or could not be
 * looked up; -1 with err when nothing could be checked (no resolver).
 * Runs an event loop of its own until every lookup has answered (each
 * within the resolver's timeout). */
int dkim_published_check(const struct moat_config *c, dkim_published_say say, void *arg,
			 char *err, size_t errlen);

#endif
