/*
 * test_dmarc.c - unit tests of the DMARC filter's pure parts: record
 * parsing (filters/dmarc_record.c), organizational domains with the
 * system's public suffix list and alignment (filters/dmarc_align.c), the
 * result (filters/dmarc_eval.c), policy discovery's answer handling
 * (filters/dmarc_lookup.c), the decision (filters/dmarc.c) and report
 * rows and XML (filters/dmarc_report.c). The From domain:
 * test_from_header.c. Through the proxy: tests/integration/test_dmarc.py.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dmarc.h"
#include "dmarc_align.h"
#include "dmarc_eval.h"
#include "dmarc_lookup.h"
#include "dmarc_record.h"
#include "dmarc_report.h"
#include "unit.h"

/* ---- records ---- */

TEST(record_basic)
{
	struct dmarc_record r;
	char err[200];
	CHECK(dmarc_record_parse("v=DMARC1; p=reject; sp=quarantine; adkim=s; aspf=r; pct=20; "
				 "rua=mailto:agg@example.org; fo=1", &r, err, sizeof(err)) == 0);
	CHECK(r.p == DMARC_POLICY_REJECT && r.sp == DMARC_POLICY_QUARANTINE);
	CHECK(r.adkim == DMARC_STRICT && r.aspf == DMARC_RELAXED && r.pct == 20);
	CHECK(strcmp(r.rua, "mailto:agg@example.org") == 0);
	CHECK(r.ignored[0] == '\0');
	CHECK(dmarc_record_policy(&r, 0, 0) == DMARC_POLICY_REJECT);
	CHECK(dmarc_record_policy(&r, 1, 0) == DMARC_POLICY_QUARANTINE);
	/* defaults, white space, case of tag names and words */
	CHECK(dmarc_record_parse("v = DMARC1 ;P=None;", &r, err, sizeof(err)) == 0);
	CHECK(r.p == DMARC_POLICY_NONE && r.sp == DMARC_POLICY_UNSET && r.pct == 100);
	CHECK(r.adkim == DMARC_RELAXED && r.aspf == DMARC_RELAXED);
	CHECK(dmarc_record_policy(&r, 1, 0) == DMARC_POLICY_NONE);
	/* np= (RFC 9091) */
	CHECK(dmarc_record_parse("v=DMARC1; p=none; np=reject", &r, err, sizeof(err)) == 0);
	CHECK(dmarc_record_policy(&r, 1, 1) == DMARC_POLICY_REJECT);
	CHECK(dmarc_record_policy(&r, 1, 0) == DMARC_POLICY_NONE);
}

TEST(record_is_dmarc)
{
	CHECK(dmarc_record_is_dmarc("v=DMARC1; p=none"));
	CHECK(dmarc_record_is_dmarc("v=DMARC1"));
	CHECK(!dmarc_record_is_dmarc("v=dmarc1; p=none"));	/* the value is case-sensitive */
	CHECK(!dmarc_record_is_dmarc("p=none; v=DMARC1"));	/* v= first */
	CHECK(!dmarc_record_is_dmarc("v=spf1 -all"));
	CHECK(!dmarc_record_is_dmarc("v=DMARC10; p=none"));
	CHECK(!dmarc_record_is_dmarc(""));
}

TEST(record_errors)
{
	struct dmarc_record r;
	char err[200];
	CHECK(dmarc_record_parse("v=DMARC1", &r, err, sizeof(err)) == DMARC_RECORD_INVALID);
	CHECK(strstr(err, "no p="));
	CHECK(dmarc_record_parse("v=DMARC1; p=bounce", &r, err, sizeof(err)) ==
	      DMARC_RECORD_INVALID);
	CHECK(dmarc_record_parse("v=DMARC1; p=reject; sp=maybe", &r, err, sizeof(err)) ==
	      DMARC_RECORD_INVALID);
	/* a bad p= with a valid rua=: as if p=none (RFC 7489 6.6.3) */
	CHECK(dmarc_record_parse("v=DMARC1; p=bounce; rua=mailto:a@example.org", &r, err,
				 sizeof(err)) == 0);
	CHECK(r.p == DMARC_POLICY_NONE && r.p_from_rua);
	/* bad optional values are ignored in favour of defaults */
	CHECK(dmarc_record_parse("v=DMARC1; p=quarantine; pct=150; adkim=x; foo=bar; rua=nope",
				 &r, err, sizeof(err)) == 0);
	CHECK(r.pct == 100 && r.adkim == DMARC_RELAXED && r.rua[0] == '\0');
	CHECK(strstr(r.ignored, "pct=150") && strstr(r.ignored, "foo=bar"));
	CHECK(dmarc_record_parse("v=DMARC1; p=reject; pct=0", &r, err, sizeof(err)) == 0 &&
	      r.pct == 0);
	CHECK(dmarc_record_parse("v=DMARC1; p=reject; pct=-1", &r, err, sizeof(err)) == 0 &&
	      r.pct == 100);
	/* a repeated tag: the first counts */
	CHECK(dmarc_record_parse("v=DMARC1; p=none; p=reject", &r, err, sizeof(err)) == 0 &&
	      r.p == DMARC_POLICY_NONE);
}

TEST(lookup_answers)
{
	struct dmarc_found f;
	int several;
	const char *one[] = {"v=spf1 -all", "v=DMARC1; p=reject"};
	const char *two[] = {"v=DMARC1; p=reject", "v=DMARC1; p=none"};
	const char *none[] = {"google-site-verification=x"};
	const char *bad[] = {"v=DMARC1; p=silly"};

	memset(&f, 0, sizeof(f));
	snprintf(f.domain, sizeof(f.domain), "example.org");
	dmarc_lookup_answer(one, 2, &f, &several);
	CHECK(f.status == DMARC_FOUND_RECORD && !several && f.rec.p == DMARC_POLICY_REJECT);
	dmarc_lookup_answer(two, 2, &f, &several);
	CHECK(f.status == DMARC_FOUND_NONE && several);
	dmarc_lookup_answer(none, 1, &f, &several);
	CHECK(f.status == DMARC_FOUND_NONE && !several);
	dmarc_lookup_answer(bad, 1, &f, &several);
	CHECK(f.status == DMARC_FOUND_PERMERROR && strstr(f.why, "_dmarc.example.org"));
}

/* ---- organizational domains and alignment ---- */

TEST(org_domain_psl)
{
	char o[256];
	CHECK(dmarc_psl_loaded(NULL));
	CHECK(dmarc_org_domain("a.b.example.co.uk", o, sizeof(o)) == 0 &&
	      strcmp(o, "example.co.uk") == 0);
	CHECK(dmarc_org_domain("mail.Example.ORG", o, sizeof(o)) == 0 &&
	      strcmp(o, "example.org") == 0);
	CHECK(dmarc_org_domain("example.org", o, sizeof(o)) == 0 && strcmp(o, "example.org") == 0);
	CHECK(dmarc_org_domain("x.y.example.com.au", o, sizeof(o)) == 0 &&
	      strcmp(o, "example.com.au") == 0);
	CHECK(dmarc_org_domain("co.uk", o, sizeof(o)) == 0 && strcmp(o, "co.uk") == 0);
	CHECK(dmarc_org_domain("a.xn--bcher-kva.example", o, sizeof(o)) == 0 &&
	      strcmp(o, "xn--bcher-kva.example") == 0);
	CHECK(dmarc_org_domain("example.org", o, 5) == -1);
}

TEST(alignment)
{
	CHECK(dmarc_aligned("example.org", "example.org", DMARC_STRICT));
	CHECK(dmarc_aligned("Example.ORG", "example.org", DMARC_STRICT));
	CHECK(!dmarc_aligned("mail.example.org", "example.org", DMARC_STRICT));
	CHECK(dmarc_aligned("mail.example.org", "example.org", DMARC_RELAXED));
	CHECK(dmarc_aligned("example.org", "news.example.org", DMARC_RELAXED));
	CHECK(dmarc_aligned("a.example.co.uk", "b.example.co.uk", DMARC_RELAXED));
	CHECK(!dmarc_aligned("example.co.uk", "other.co.uk", DMARC_RELAXED));
	CHECK(!dmarc_aligned("evil.example", "example.org", DMARC_RELAXED));
	CHECK(!dmarc_aligned("", "example.org", DMARC_RELAXED));
}

/* ---- the result ---- */

static void auth(struct moat_verdict *v, const char *m, const char *r, const char *p)
{
	moat_verdict_auth(v, "test", m, r, p, "");
}

TEST(evaluate)
{
	struct moat_verdict v;
	struct dmarc_auth a;
	struct dmarc_record rec;
	struct dmarc_eval e;
	char err[200];

	moat_verdict_init(&v);
	auth(&v, "spf", "pass", "smtp.mailfrom=bounce.example.org");
	auth(&v, "dkim", "fail", "header.d=example.org header.s=s1 header.b=abc");
	auth(&v, "dkim", "pass", "header.d=other.example header.s=s2 header.b=def");
	dmarc_auth_collect(&v, &a);
	CHECK(strcmp(a.spf_domain, "bounce.example.org") == 0 && !a.spf_helo);
	CHECK(a.ndkim == 2 && strcmp(a.dkim[1].selector, "s2") == 0);
	/* relaxed: SPF's subdomain aligns */
	dmarc_record_parse("v=DMARC1; p=reject", &rec, err, sizeof(err));
	dmarc_evaluate(&a, "example.org", &rec, &e);
	CHECK(e.result == DMARC_RES_PASS && e.spf_aligned && !e.dkim_aligned);
	/* strict SPF: fail (the passing DKIM is another domain's) */
	dmarc_record_parse("v=DMARC1; p=reject; aspf=s", &rec, err, sizeof(err));
	dmarc_evaluate(&a, "example.org", &rec, &e);
	CHECK(e.result == DMARC_RES_FAIL && !e.spf_aligned);
	CHECK(strstr(e.why, "spf=pass mailfrom=bounce.example.org not aligned"));
	moat_verdict_clear(&v);

	/* DKIM aligned although SPF fails (forwarded mail) */
	moat_verdict_init(&v);
	auth(&v, "spf", "fail", "smtp.mailfrom=forwarder.example");
	auth(&v, "dkim", "pass", "header.d=example.org header.s=s1 header.b=abc");
	dmarc_auth_collect(&v, &a);
	dmarc_record_parse("v=DMARC1; p=reject; adkim=s", &rec, err, sizeof(err));
	dmarc_evaluate(&a, "example.org", &rec, &e);
	CHECK(e.result == DMARC_RES_PASS && e.dkim_aligned && strcmp(e.dkim_domain, "example.org") == 0);
	dmarc_evaluate(&a, "sub.example.org", &rec, &e);
	CHECK(e.result == DMARC_RES_FAIL);
	moat_verdict_clear(&v);

	/* a temporary error for an aligned domain: temperror, not fail */
	moat_verdict_init(&v);
	auth(&v, "spf", "temperror", "smtp.mailfrom=example.org");
	dmarc_auth_collect(&v, &a);
	dmarc_record_parse("v=DMARC1; p=reject", &rec, err, sizeof(err));
	dmarc_evaluate(&a, "example.org", &rec, &e);
	CHECK(e.result == DMARC_RES_TEMPERROR);
	moat_verdict_clear(&v);

	/* the null sender: the HELO identity */
	moat_verdict_init(&v);
	auth(&v, "spf", "pass", "smtp.helo=mx.example.org");
	dmarc_auth_collect(&v, &a);
	CHECK(a.spf_helo && strcmp(a.spf_domain, "mx.example.org") == 0);
	dmarc_evaluate(&a, "example.org", &rec, &e);
	CHECK(e.result == DMARC_RES_PASS);
	moat_verdict_clear(&v);

	/* nothing at all */
	moat_verdict_init(&v);
	dmarc_auth_collect(&v, &a);
	dmarc_evaluate(&a, "example.org", &rec, &e);
	CHECK(e.result == DMARC_RES_FAIL);
	moat_verdict_clear(&v);
}

/* ---- the decision ---- */

TEST(decide)
{
	struct dmarc_conf c;
	struct dmarc_record rec;
	struct dmarc_decision d;
	struct dmarc_override ovr[2] = {{(char *)"lists.example.org", DMARC_POLICY_NONE},
					{(char *)"strict.example", DMARC_POLICY_REJECT}};
	char err[200];

	memset(&c, 0, sizeof(c));
	c.apply = 1;
	c.quarantine_header = 1;
	c.score_pass = -1;
	c.score_fail_none = 1;
	c.score_fail_quarantine = 4;
	c.score_fail_reject = 6;
	c.ovr = ovr;
	c.noverrides = 2;
	dmarc_record_parse("v=DMARC1; p=reject; sp=quarantine; pct=50", &rec, err, sizeof(err));
	dmarc_decide(&c, DMARC_RES_FAIL, &rec, 0, "example.org", 10, &d);
	CHECK(d.disposition == DMARC_POLICY_REJECT && d.score == 6 && !d.sampled_out);
	/* outside pct=: reject becomes quarantine (RFC 7489 6.6.4) */
	dmarc_decide(&c, DMARC_RES_FAIL, &rec, 0, "example.org", 50, &d);
	CHECK(d.disposition == DMARC_POLICY_QUARANTINE && d.sampled_out && d.score == 4);
	/* a subdomain: sp= */
	dmarc_decide(&c, DMARC_RES_FAIL, &rec, 1, "a.example.org", 10, &d);
	CHECK(d.published == DMARC_POLICY_QUARANTINE && d.disposition == DMARC_POLICY_QUARANTINE);
	dmarc_decide(&c, DMARC_RES_FAIL, &rec, 1, "a.example.org", 60, &d);
	CHECK(d.disposition == DMARC_POLICY_NONE && d.score == 1);
	/* never refused: pass, temperror */
	dmarc_decide(&c, DMARC_RES_PASS, &rec, 0, "example.org", 0, &d);
	CHECK(d.disposition == DMARC_POLICY_NONE && d.score == -1 &&
	      strcmp(d.symbol, "DMARC_PASS") == 0);
	dmarc_decide(&c, DMARC_RES_TEMPERROR, &rec, 0, "example.org", 0, &d);
	CHECK(d.disposition == DMARC_POLICY_NONE && strcmp(d.symbol, "DMARC_TEMPERROR") == 0);
	/* overrides: the domain and its subdomains */
	dmarc_decide(&c, DMARC_RES_FAIL, &rec, 1, "x.lists.example.org", 0, &d);
	CHECK(d.disposition == DMARC_POLICY_NONE && d.overridden);
	CHECK(dmarc_override_find(&c, "strict.example") == &ovr[1]);
	CHECK(dmarc_override_find(&c, "example.org") == NULL);
	/* quarantine as a score only; policy score */
	c.quarantine_header = 0;
	dmarc_decide(&c, DMARC_RES_FAIL, &rec, 1, "a.example.org", 10, &d);
	CHECK(d.disposition == DMARC_POLICY_NONE && d.score == 4);
	c.apply = 0;
	dmarc_decide(&c, DMARC_RES_FAIL, &rec, 0, "example.org", 10, &d);
	CHECK(d.disposition == DMARC_POLICY_NONE && d.score == 6);
}

/* ---- reports ---- */

TEST(report_rows_and_xml)
{
	struct dmarc_report_row r, back;
	char line[4096];
	memset(&r, 0, sizeof(r));
	r.when = 1764000000;
	snprintf(r.ip, sizeof(r.ip), "192.0.2.1");
	snprintf(r.header_from, sizeof(r.header_from), "example.org");
	snprintf(r.envelope_from, sizeof(r.envelope_from), "bounce.example.org");
	snprintf(r.spf_result, sizeof(r.spf_result), "pass");
	r.spf_aligned = 1;
	r.disposition = DMARC_POLICY_NONE;
	r.ndkim = 1;
	snprintf(r.dkim[0].domain, sizeof(r.dkim[0].domain), "example.org");
	snprintf(r.dkim[0].selector, sizeof(r.dkim[0].selector), "s<1>");
	snprintf(r.dkim[0].result, sizeof(r.dkim[0].result), "fail");
	CHECK(dmarc_report_row_format(&r, line, sizeof(line)) == 0);
	CHECK(!strchr(line, '\n'));
	CHECK(dmarc_report_row_parse(line, strlen(line), &back) == 0);
	CHECK(back.when == r.when && strcmp(back.ip, r.ip) == 0 && back.spf_aligned == 1);
	CHECK(back.ndkim == 1 && strcmp(back.dkim[0].selector, "s<1>") == 0);
	CHECK(dmarc_report_row_parse("1\t2\tx", 5, &back) == -1);
	CHECK(dmarc_report_row_parse("garbage", 7, &back) == -1);

	char key[300];
	dmarc_report_key(key, sizeof(key), 'r', "example.org", 1764000000, 3);
	CHECK(strcmp(key, "dmarc:r:example.org:20251124:3") == 0);

	struct dmarc_report_row rows[3] = {r, r, r};
	snprintf(rows[2].ip, sizeof(rows[2].ip), "192.0.2.2");
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	struct dmarc_report_meta m = {"moat.example", "postmaster@moat.example", "id-1",
				      1763900000, 1764000000};
	dmarc_report_xml(f, &m, "example.org", "v=DMARC1; p=reject; adkim=s", rows, 3);
	fclose(f);
	CHECK(buf && strstr(buf, "<count>2</count>") && strstr(buf, "<count>1</count>"));
	CHECK(strstr(buf, "<p>reject</p>") && strstr(buf, "<adkim>s</adkim>"));
	CHECK(strstr(buf, "<selector>s&lt;1&gt;</selector>"));
	CHECK(strstr(buf, "<scope>mfrom</scope>") && strstr(buf, "<begin>1763900000</begin>"));
	free(buf);
}

int main(void)
{
	RUN(record_basic);
	RUN(record_is_dmarc);
	RUN(record_errors);
	RUN(lookup_answers);
	RUN(org_domain_psl);
	RUN(alignment);
	RUN(evaluate);
	RUN(decide);
	RUN(report_rows_and_xml);
	return unit_done();
}
