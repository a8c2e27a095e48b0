/*
 * spf.c - `moat spf CLIENT-IP SENDER [HELO]`: one SPF check through the
 * same preparation (filters/spf.h), worker pool and worker process
 * (filters/spf_pool.h, spf_worker.h) as the daemon's filter, the
 * worker's lookups going through moat's resolver as configured, and
 * what the filter would make of it.
 *
 * SENDER "" is the null sender (the HELO identity is checked then, as
 * postmaster@HELO). Output, one "name: value" per line after the first:
 *
 *	spf=fail smtp.mailfrom=example.org      (RFC 8601 result, always first)
 *	identity: mailfrom
 *	mechanism: -all
 *	explanation: example.org does not designate 192.0.2.1 ...   (fail)
 *	problem: ...                            (errors, limits hit)
 *	lookups: 3 terms, 0 void
 *	helo-result: pass (mechanism a)         (check_helo, non-null sender)
 *	symbol: SPF_FAIL 8.00
 *	action: none | reject 550 5.7.23 ... | tempfail 451 4.7.24 ...
 *	Received-SPF: fail (...) client-ip=...
 *
 * Exit status: 0 pass, 1 fail, 2 softfail, 3 neutral, 4 none,
 * 5 temperror, 6 permerror; 64 usage, 78 configuration.
 * Owns the loop, the resolver and the pool of the run.
 */
#include "spf.h"

#include <event2/event.h>
#include <stdio.h>
#include <string.h>

#include "../filters/spf.h"
#include "resolver.h"
#include "spf_pool.h"

struct run {
	struct event_base *base;
	int done;
	struct spf_proto_result res;
};

static void on_result(void *arg, const struct spf_proto_result *res)
{
	struct run *r = arg;
	r->res = *res;
	r->done = 1;
	event_base_loopbreak(r->base);
}

static void print(const struct spf_conf *sc, const struct spf_prepared *pr,
		  const struct spf_proto_result *res, const char *receiver)
{
	const struct spf_proto_identity *id = spf_primary(pr, res);
	enum spf_result r = (enum spf_result)id->result;
	char props[SPF_SENDER_MAX + 32], hdr[2048];
	struct spf_action act;

	spf_auth_props(pr, props, sizeof(props));
	printf("spf=%s %s\n", spf_result_name(r), props);
	printf("identity: %s\n", pr->identity);
	printf("mechanism: %s\n", id->mechanism[0] ? id->mechanism : "-");
	if (id->explanation[0])
		printf("explanation: %s\n", id->explanation);
	if (id->problem[0])
		printf("problem: %s\n", id->problem);
	printf("lookups: %u terms, %u void\n", id->terms, id->voids);
	if (pr->helo_checked && res && res->helo.done)
		printf("helo-result: %s (mechanism %s)%s%s\n",
		       spf_result_name((enum spf_result)res->helo.result),
		       res->helo.mechanism[0] ? res->helo.mechanism : "-",
		       res->helo.problem[0] ? ": " : "", res->helo.problem);
	spf_action_for(sc, pr, id, &act);
	printf("symbol: %s %.2f\n", spf_symbol(r, 0), act.score);
	if (act.action == MOAT_ACTION_NONE)
		printf("action: none\n");
	else
		printf("action: %s %d %s%s\n", moat_action_name(act.action), act.code, act.text,
		       sc->common.dry_run ? " [dry-run]" : "");
	spf_received_spf(hdr, sizeof(hdr), pr, id, receiver);
	printf("Received-SPF: %s\n", hdr);
}

int moat_cli_spf(const struct moat_config *c, int argc, char **argv)
{
	const struct spf_conf *sc = moat_config_section(c, "spf");
	const struct moat_resolver_conf *rc = moat_config_section(c, "resolver");
	struct spf_pool_settings s;
	struct spf_prepared pr;
	struct run run;
	char err[512];

	if (argc < 3 || argc > 4) {
		fprintf(stderr, "usage: moat spf CLIENT-IP SENDER [HELO]   (SENDER \"\": the null "
			"sender)\n");
		return 64;
	}
	if (!sc || spf_pool_settings_from_config(c, &s, err, sizeof(err)) < 0) {
		fprintf(stderr, "moat spf: %s\n", sc ? err : "no spf section");
		return 78;
	}
	if (spf_prepare(argv[1], argv[2], argc > 3 ? argv[3] : NULL, sc->check_helo, &pr) < 0) {
		fprintf(stderr, "moat spf: \"%s\": expected an IPv4 or IPv6 address\n", argv[1]);
		return 64;
	}
	memset(&run, 0, sizeof(run));
	if (!pr.check.flags) {
		print(sc, &pr, NULL, s.conf.receiver);
		return pr.primary.result;
	}
	s.workers = 1;
	run.base = event_base_new();
	if (!run.base) {
		fprintf(stderr, "moat spf: cannot create the event loop\n");
		return 70;
	}
	struct moat_resolver *res = rc ? moat_resolver_new(run.base, rc, err, sizeof(err)) : NULL;
	if (!res)	/* the check still runs: its lookups fail (temperror) */
		fprintf(stderr, "moat spf: %s; DNS lookups will fail\n",
			rc ? err : "no resolver configuration");
	struct spf_pool *pool = spf_pool_new(run.base, &s, err, sizeof(err));
	spf_pool_set_resolver(pool, res);
	if (pool && spf_pool_submit(pool, &pr.check, on_result, &run)) {
		while (!run.done)
			event_base_loop(run.base, EVLOOP_ONCE);
	} else {
		/* no worker: the same temperror a dead worker gives */
		memset(&run.res, 0, sizeof(run.res));
		struct spf_proto_identity *ids[2] = {&run.res.mailfrom, &run.res.helo};
		for (int i = 0; i < 2; i++) {
			if (!(pr.check.flags & (i ? SPF_CHECK_HELO : SPF_CHECK_MAILFROM)))
				continue;
			ids[i]->done = 1;
			ids[i]->result = SPF_RES_TEMPERROR;
			spf_text_sanitize(pool ? "out of memory" : err, ids[i]->problem,
					  sizeof(ids[i]->problem));
		}
	}
	print(sc, &pr, &run.res, s.conf.receiver);
	spf_pool_free(pool);	/* before the resolver it borrows */
	moat_resolver_free(res);
	event_base_free(run.base);
	fflush(stdout);
	return spf_primary(&pr, &run.res)->result;
}
