/*
 * rep.c - `moat rep get|set|clear ADDRESS|NETWORK|DOMAIN`: the
 * reputation counts and the marks set by hand that moatd holds, read,
 * set or deleted through moatd's control socket (ctl.c); when moatd
 * cannot be reached (or no control_socket is set) and the store is
 * Redis, the same on Redis directly (filters/reputation.c on a loop of
 * this process). The embedded store lives inside moatd: only the
 * control socket reaches it.
 *
 *	get NAME (show NAME is the same)   one line per name: "ip 192.0.2.1
 *	    ham=3.0 spam=0.0 ham_now=3 spam_now=0 ham_prev=0 spam_prev=0
 *	    window=604800 manual=none verdict=good" (an address also shows
 *	    its network)
 *	set NAME good|bad|neutral [--ttl DAYS]   a mark by hand, which
 *	    replaces what was learned of the name (no expiry without --ttl)
 *	clear NAME   deletes the name's counts and its mark
 *
 * Exit status: 0, 1 error (the store did not take a mark, a name not
 * understood), 2 moatd not reached (and no Redis to go to), 64 usage,
 * 78 the store cannot be set up. Owns the loop and store of a direct
 * run.
 */
#include "rep.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "reputation.h"
#include "store.h"
#include "store_conf.h"

#define CONNECT_TRIES 30	/* 100 ms each: the store connects in the background */

struct req {
	const char *verb;	/* "get", "set", "clear" */
	const char *what;
	enum moat_rep_mark mark;
	long days;
};

static int usage(void)
{
	fprintf(stderr, "usage: moat rep [-s SOCKET] get|show ADDRESS|NETWORK|DOMAIN\n"
			"       moat rep [-s SOCKET] set ADDRESS|NETWORK|DOMAIN good|bad|neutral "
			"[--ttl DAYS]\n"
			"       moat rep [-s SOCKET] clear ADDRESS|NETWORK|DOMAIN\n");
	return 64;
}

/* argv after "rep" (and -s): the request, or -1. */
static int parse(int argc, char **argv, struct req *r)
{
	if (argc < 3 || strlen(argv[2]) > 300 || strpbrk(argv[2], " \t\r\n"))
		return -1;
	r->verb = argv[1];
	r->what = argv[2];
	if (strcmp(r->verb, "show") == 0)
		r->verb = "get";
	if (strcmp(r->verb, "get") == 0 || strcmp(r->verb, "clear") == 0)
		return argc == 3 ? 0 : -1;
	if (strcmp(r->verb, "set") != 0 || (argc != 4 && argc != 6))
		return -1;
	long long unused;
	r->mark = moat_rep_mark_parse(argv[3], strlen(argv[3]), &unused);
	if (r->mark == MOAT_REP_MARK_NONE || strchr(argv[3], ' '))
		return -1;
	if (argc == 6) {
		char *end;
		if (strcmp(argv[4], "--ttl") != 0)
			return -1;
		r->days = strtol(argv[5], &end, 10);
		if (!argv[5][0] || *end || r->days < 1 || r->days > MOAT_REP_MARK_MAX_DAYS)
			return -1;
	}
	return 0;
}

/* ---- on Redis directly ---------------------------------------------------- */

struct direct {
	int done, ok;
	enum moat_store_status st;
	char *text;
};

static void on_probe(void *arg, enum moat_store_status st, const char *value, size_t len,
		     long long number)
{
	struct direct *d = arg;
	(void)value;
	(void)len;
	(void)number;
	d->st = st;
	d->done = 1;
}

static void on_answer(void *arg, int ok, const char *text)
{
	struct direct *d = arg;
	d->ok = ok;
	d->text = strdup(text);
	d->done = 1;
}

static void run_until_done(struct event_base *base, struct direct *d)
{
	while (!d->done)
		event_base_loop(base, EVLOOP_ONCE);
}

/* Waits (a little) until the store answers at all. */
static void wait_connected(struct event_base *base, struct moat_store *s)
{
	for (int i = 0; i < CONNECT_TRIES; i++) {
		struct direct d = {0};
		if (!moat_store_get(s, "rep:-", on_probe, &d))
			return;
		run_until_done(base, &d);
		if (d.st != MOAT_STORE_UNAVAILABLE)
			return;
		struct timeval tv = {0, 100000};
		event_base_loopexit(base, &tv);
		event_base_dispatch(base);
	}
}

static int direct(const struct moat_config *c, const struct req *r, const char *unreached)
{
	char err[300], desc[300];
	struct direct d = {0};
	struct event_base *base = event_base_new();
	if (!base || moat_store_apply(base, c, err, sizeof(err)) < 0) {
		fprintf(stderr, "moat rep: %s\n", base ? err : "out of memory");
		if (base)
			event_base_free(base);
		return 78;
	}
	if (strncmp(moat_store_describe(desc, sizeof(desc)), "redis", 5) != 0) {
		if (unreached)
			fprintf(stderr, "moat: cannot reach moatd at %s, and its store is the embedded "
				"one, inside moatd\n", unreached);
		else
			fprintf(stderr, "moat: control_socket is not set in %s (or use -s), and the "
				"store is the embedded one, inside moatd\n", c->path);
		moat_store_shutdown();
		event_base_free(base);
		return 2;
	}
	struct moat_store *s = moat_store_current();
	wait_connected(base, s);
	const void *rconf = moat_config_section(c, "reputation");
	int rc;
	if (strcmp(r->verb, "set") == 0)
		rc = moat_rep_set(s, r->what, r->mark, r->days, on_answer, &d, err, sizeof(err));
	else
		rc = (r->verb[0] == 'c' ? moat_rep_clear : moat_rep_show)(s, rconf, r->what,
									 on_answer, &d, err,
									 sizeof(err));
	if (rc == 0)
		run_until_done(base, &d);
	moat_store_shutdown();
	event_base_free(base);
	if (rc < 0) {
		fprintf(stderr, "moat rep: %s\n", err);
		return 1;
	}
	fputs(d.text ? d.text : "", d.ok ? stdout : stderr);
	free(d.text);
	return d.ok ? 0 : 1;
}

int moat_cli_rep(const struct moat_config *c, int argc, char **argv)
{
	char line[600];
	struct req r = {0};
	const char *path = NULL;
	int have_s = argc >= 3 && strcmp(argv[1], "-s") == 0;
	if (have_s || !c || (c->control_socket && *c->control_socket))
		path = moat_ctl_socket(c, &argc, &argv);
	if (parse(argc, argv, &r) < 0)
		return usage();
	if (!path && !c)
		return 2;
	if (path) {
		if (strcmp(r.verb, "set") == 0)
			snprintf(line, sizeof(line), "rep set %s %s %ld", r.what,
				 moat_rep_mark_name(r.mark), r.days);
		else
			snprintf(line, sizeof(line), "rep %s %s", r.verb, r.what);
		int rc = moat_ctl_ask(path, line, c != NULL);
		if (rc != MOAT_CTL_UNREACHABLE)
			return rc;
	}
	return direct(c, &r, path);
}
