/*
 * keycheck.c - `moat keycheck`: is the key published in DNS the public
 * half of a private key file?
 *
 *	moat [-o resolver.nameservers=...] keycheck -d DOMAIN -s SELECTOR
 *		[-k KEYFILE]
 *
 * Looks up SELECTOR._domainkey.DOMAIN TXT through moat's resolver (the
 * configured nameservers), parses each record as a DKIM key record
 * (filters/dkim_tags.h) and compares its p= (whitespace removed) with
 * the key file's public key (default ./SELECTOR.private), and k= with
 * its type. One line per finding, "WORD: text", WORD one of:
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
#include "dkim_tags.h"
#include "resolver.h"

#define EX_USAGE 64
#define EX_CONFIG 78

struct check {
	struct event_base *base;
	const char *name;	/* SELECTOR._domainkey.DOMAIN */
	const char *keyfile;
	enum dkim_key_type type;
	const char *p64;	/* the key file's public key */
	int done;
	int status;
};

/* Value of a tag without any whitespace: malloc'd. */
static char *squeeze(const struct dkim_tag *t)
{
	char *s = malloc(t->value_len + 1);
	size_t n = 0;

	if (!s)
		return NULL;
	for (size_t i = 0; i < t->value_len; i++)
		if (t->value[i] != ' ' && t->value[i] != '\t' && t->value[i] != '\r' &&
		    t->value[i] != '\n')
			s[n++] = t->value[i];
	s[n] = '\0';
	return s;
}

/* 1 if the colon-separated list value holds item. */
static int list_has(const struct dkim_tag *t, const char *item)
{
	size_t pos = 0, n;
	const char *it;

	while (dkim_tag_list_next(t->value, t->value_len, &pos, &it, &n))
		if (n == strlen(item) && strncmp(it, item, n) == 0)
			return 1;
	return 0;
}

/* Checks one record; prints its findings; returns 0 match, 1 not. */
static int check_record(const struct check *k, const char *rec, const char *label)
{
	struct dkim_tags tags;
	const char *why;

	if (dkim_tags_parse(rec, strlen(rec), &tags, &why) < 0) {
		printf("mismatch: %s%s is not a DKIM key record (%s)\n", k->name, label, why);
		return 1;
	}
	const struct dkim_tag *v = dkim_tags_get(&tags, "v"), *kt = dkim_tags_get(&tags, "k");
	const struct dkim_tag *p = dkim_tags_get(&tags, "p"), *t = dkim_tags_get(&tags, "t");
	const struct dkim_tag *h = dkim_tags_get(&tags, "h"), *s = dkim_tags_get(&tags, "s");
	if (v && (!dkim_tag_is(v, "DKIM1") || v != &tags.tag[0])) {
		printf("mismatch: %s%s: v=%.*s (a key record has v=DKIM1 first, or no v=)\n",
		       k->name, label, (int)v->value_len, v->value);
		return 1;
	}
	if (!p) {
		printf("mismatch: %s%s has no p= tag\n", k->name, label);
		return 1;
	}
	int bad = 0;
	if (t && list_has(t, "y"))
		printf("testing: %s%s has t=y: verifiers treat its signatures as unsigned mail\n",
		       k->name, label);
	if (t && list_has(t, "s"))
		printf("note: %s%s has t=s: i= must be exactly d=, no subdomain\n", k->name,
		       label);
	if (s && !list_has(s, "*") && !list_has(s, "email")) {
		printf("mismatch: %s%s: s=%.*s does not allow email\n", k->name, label,
		       (int)s->value_len, s->value);
		bad = 1;
	}
	if (h && !list_has(h, "sha256")) {
		printf("mismatch: %s%s: h=%.*s does not allow sha256\n", k->name, label,
		       (int)h->value_len, h->value);
		bad = 1;
	}
	char *pub = squeeze(p);
	if (!pub) {
		printf("error: out of memory\n");
		return 1;
	}
	const char *want = dkim_key_type_name(k->type);
	if (!pub[0]) {
		printf("revoked: %s%s has an empty p=: the key is revoked\n", k->name, label);
		bad = 1;
	} else if (kt ? !dkim_tag_is_nocase(kt, want) : k->type != DKIM_KEY_RSA) {
		printf("mismatch: %s%s has k=%.*s, %s is an %s key\n", k->name, label,
		       kt ? (int)kt->value_len : 3, kt ? kt->value : "rsa", k->keyfile, want);
		bad = 1;
	} else if (strcmp(pub, k->p64) != 0) {
		printf("mismatch: %s%s publishes another key than %s\n", k->name, label,
		       k->keyfile);
		bad = 1;
	} else if (!bad) {
		printf("match: %s%s publishes the public key of %s (%s)\n", k->name, label,
		       k->keyfile, want);
	}
	free(pub);
	return bad;
}

static void on_answer(void *arg, const struct moat_dns_answer *a)
{
	struct check *k = arg;

	k->done = 1;
	event_base_loopbreak(k->base);
	if (a->status == MOAT_DNS_NXDOMAIN || a->status == MOAT_DNS_NODATA) {
		printf("missing: no TXT record at %s (%s)\n", k->name,
		       moat_dns_status_name(a->status));
		k->status = 1;
		return;
	}
	if (a->status != MOAT_DNS_OK) {
		printf("error: looking up %s TXT failed: %s\n", k->name,
		       moat_dns_status_name(a->status));
		k->status = moat_dns_temporary(a->status) ? 2 : 1;
		return;
	}
	k->status = 0;
	if (a->n > 1) {
		printf("several: %s has %zu TXT records; verifiers may use any one of them\n",
		       k->name, a->n);
		k->status = 1;
	}
	for (size_t i = 0; i < a->n; i++) {
		char label[32] = "";
		if (a->n > 1)
			snprintf(label, sizeof(label), " (record %zu)", i + 1);
		if (check_record(k, a->txt[i], label))
			k->status = 1;
	}
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
	k.name = name;
	k.keyfile = keyfile ? keyfile : defkey;
	EVP_PKEY *pkey = dkim_keyfile_load(k.keyfile, &k.type, &bits, err, sizeof(err));
	char *p64 = pkey ? dkim_key_public_b64_new(pkey, err, sizeof(err)) : NULL;
	EVP_PKEY_free(pkey);
	if (!p64) {
		fprintf(stderr, "moat keycheck: %s\n", err);
		return EX_CONFIG;
	}
	k.p64 = p64;
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
