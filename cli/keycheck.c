/*
 * keycheck.c - `moat keycheck`: is the key published in DNS the public
 * half of a private key file?
 *
 *	moat [-o resolver.nameservers=...] keycheck -d DOMAIN -s SELECTOR
 *		[-k KEYFILE]
 *
 * Looks up SELECTOR._domainkey.DOMAIN TXT through moat's resolver (the
 * configured nameservers) and compares each record with the key file's
 * public key (default ./SELECTOR.private), as filters/dkim_keymatch.h
 * does for `moatd -t -D` too. One line per finding, "WORD: text", WORD
 * one of:
 *	match	the record publishes this key
 *	mismatch	another key, another k=, a record that does not parse
 *	revoked	p= is empty
 *	missing	no record (NXDOMAIN, or no TXT record)
 *	several	more than one TXT record: verifiers may take any
 *	testing	t=y: verifiers treat the signatures as absent
 *	note	other flags (t=s, s=, h=)
 *	error	the lookup failed
 * Exit status: 0 one record and it matches, 1 mismatch, revoked,
 * missing or several records, 2 a temporary DNS failure, 64 usage,
 * 78 configuration or key file.
 * Owns the loop, the resolver and the key of the run.
 */
#include "keycheck.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dkim_keyfile.h"
#include "dkim_keymatch.h"
#include "resolver.h"

#define EX_USAGE 64
#define EX_CONFIG 78

struct check {
	struct event_base *base;
	struct dkim_keymatch key;
	int done;
	int status;
};

static void print_finding(void *arg, const char *word, const char *text)
{
	(void)arg;
	printf("%s: %s\n", word, text);
}

static void on_answer(void *arg, const struct moat_dns_answer *a)
{
	struct check *k = arg;

	k->done = 1;
	event_base_loopbreak(k->base);
	k->status = dkim_keymatch_answer(&k->key, a, print_finding, NULL);
}

int moat_cli_keycheck(const struct moat_config *c, int argc, char **argv)
{
	const char *domain = NULL, *selector = NULL, *keyfile = NULL;
	char err[512], name[1024], defkey[1024];
	struct check k = {0};
	int opt, bits;

	optind = 1;
	while ((opt = getopt(argc, argv, "d:s:k:")) != -1) {
		switch (opt) {
		case 'd': domain = optarg; break;
		case 's': selector = optarg; break;
		case 'k': keyfile = optarg; break;
		default:
			fprintf(stderr, "usage: moat keycheck -d DOMAIN -s SELECTOR [-k KEYFILE]\n");
			return EX_USAGE;
		}
	}
	if (optind != argc || !domain || !selector || strlen(domain) + strlen(selector) > 400) {
		fprintf(stderr, "usage: moat keycheck -d DOMAIN -s SELECTOR [-k KEYFILE]\n");
		return EX_USAGE;
	}
	snprintf(name, sizeof(name), "%s._domainkey.%s", selector, domain);
	snprintf(defkey, sizeof(defkey), "./%s.private", selector);
	k.key.name = name;
	k.key.keyfile = keyfile ? keyfile : defkey;
	EVP_PKEY *pkey = dkim_keyfile_load(k.key.keyfile, &k.key.type, &bits, err, sizeof(err));
	char *p64 = pkey ? dkim_key_public_b64_new(pkey, err, sizeof(err)) : NULL;
	EVP_PKEY_free(pkey);
	if (!p64) {
		fprintf(stderr, "moat keycheck: %s\n", err);
		return EX_CONFIG;
	}
	k.key.p64 = p64;
	k.status = 2;

	const struct moat_resolver_conf *rc = moat_config_section(c, "resolver");
	k.base = event_base_new();
	struct moat_resolver *r = k.base && rc ? moat_resolver_new(k.base, rc, err, sizeof(err))
					       : NULL;
	if (!r) {
		fprintf(stderr, "moat keycheck: %s\n", rc ? err : "no resolver configuration");
		if (k.base)
			event_base_free(k.base);
		free(p64);
		return EX_CONFIG;
	}
	if (!moat_resolver_query(r, name, MOAT_DNS_TXT, 0, on_answer, &k)) {
		fprintf(stderr, "moat keycheck: out of memory\n");
	} else {
		while (!k.done)
			event_base_loop(k.base, EVLOOP_ONCE);
	}
	moat_resolver_free(r);
	event_base_free(k.base);
	free(p64);
	return k.status;
}
