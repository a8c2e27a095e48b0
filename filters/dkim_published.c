/*
 * dkim_published.c - a configuration's DKIM keys against their DNS
 * records (dkim_published.h): one TXT lookup a key, all in flight at
 * once on a loop of its own, each answer compared by dkim_keymatch.c.
 *
 * Owns, during the call, the loop, the resolver, and each key's p=
 * value and name.
 */
#include "dkim_published.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dkim.h"
#include "dkim_keyfile.h"
#include "dkim_keymatch.h"
#include "resolver.h"

struct one {
	struct run *run;
	const char *title;		/* the key subsection */
	char name[600];			/* SELECTOR._domainkey.DOMAIN */
	struct dkim_keymatch key;
	char *p64;
};

struct run {
	dkim_published_say say;
	void *arg;
	size_t pending;
	int problems;
};

static void say_key(void *arg, const char *word, const char *text)
{
	struct one *o = arg;
	o->run->say(o->run->arg, o->title, word, text);
}

static void on_answer(void *arg, const struct moat_dns_answer *a)
{
	struct one *o = arg;

	o->run->pending--;
	if (dkim_keymatch_answer(&o->key, a, say_key, o) != 0)
		o->run->problems++;
}

int dkim_published_check(const struct moat_config *c, dkim_published_say say, void *arg,
			 char *err, size_t errlen)
{
	const struct dkim_conf *dc = moat_config_section(c, "dkim");
	const struct moat_resolver_conf *rc = moat_config_section(c, "resolver");
	const struct dkim_key_conf *items = dc ? dc->items.v : NULL;
	struct run run = {say, arg, 0, 0};

	if (!dc || dc->nkeys == 0)
		return 0;
	if (!rc) {
		snprintf(err, errlen, "no resolver section");
		return -1;
	}
	struct one *ones = calloc(dc->nkeys, sizeof(*ones));
	struct event_base *base = ones ? event_base_new() : NULL;
	struct moat_resolver *r = base ? moat_resolver_new(base, rc, err, errlen) : NULL;
	if (!r) {
		if (!base)
			snprintf(err, errlen, "out of memory");
		if (base)
			event_base_free(base);
		free(ones);
		return -1;
	}
	for (size_t i = 0; i < dc->nkeys; i++) {
		const struct dkim_sign_key *k = dc->keys[i];
		struct one *o = &ones[i];
		char why[256];
		int bits;
		o->run = &run;
		/* a loaded configuration has every key it declares, in order */
		o->title = dc->nkeys == dc->items.n ? items[i].name : k->selector;
		snprintf(o->name, sizeof(o->name), "%s._domainkey.%s", k->selector, k->domain);
		o->key.name = o->name;
		o->key.keyfile = dc->nkeys == dc->items.n ? items[i].file : "the key file";
		o->p64 = dkim_key_public_b64_new(k->pkey, why, sizeof(why));
		if (!o->p64 || dkim_key_info(k->pkey, &o->key.type, &bits, why, sizeof(why)) < 0) {
			say(arg, o->title, "error", why);
			run.problems++;
			continue;
		}
		o->key.p64 = o->p64;
		run.pending++;
		if (!moat_resolver_query(r, o->name, MOAT_DNS_TXT, 0, on_answer, o)) {
			run.pending--;
			say(arg, o->title, "error", "out of memory");
			run.problems++;
		}
	}
	while (run.pending > 0)
		event_base_loop(base, EVLOOP_ONCE);
	moat_resolver_free(r);
	event_base_free(base);
	for (size_t i = 0; i < dc->nkeys; i++)
		free(ones[i].p64);
	free(ones);
	return run.problems;
}
