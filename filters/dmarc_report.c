/*
 * dmarc_report.c - aggregate report data (RFC 7489 7.2): one row per
 * evaluated message in the store, and the appendix C XML report made
 * from a domain's rows. Key names: dmarc_report.h and
 * docs/redis-keys.md.
 *
 * A row is written with two operations: INCR of the day's counter gives
 * its number, then SET of the row under that number. Both are fire and
 * forget; a store that cannot answer loses the row, never the mail.
 *
 * Owns one struct pending per row between the two operations.
 */
#include "dmarc_report.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"

#define ROW_MAX 4096

void dmarc_report_key(char *out, size_t len, char kind, const char *domain, long long when,
		      long long n)
{
	time_t t = (time_t)when;
	struct tm tm;
	char day[16];
	gmtime_r(&t, &tm);
	strftime(day, sizeof(day), "%Y%m%d", &tm);
	if (kind == 'r')
		snprintf(out, len, "dmarc:r:%s:%s:%lld", domain, day, n);
	else
		snprintf(out, len, "dmarc:%c:%s:%s", kind, domain, day);
}

/* Text without tabs, newlines or other controls. */
static const char *clean(const char *s, char *buf, size_t len)
{
	size_t o = 0;
	for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p && o + 1 < len; p++)
		buf[o++] = *p < 0x20 || *p == 0x7f ? '?' : (char)*p;
	buf[o] = '\0';
	return o ? buf : "-";
}

int dmarc_report_row_format(const struct dmarc_report_row *r, char *out, size_t len)
{
	char a[300], b[300], c[300], d[64];
	int o = snprintf(out, len, "1\t%lld\t%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\t%d\t%zu",
			 r->when, clean(r->ip, a, sizeof(a)), clean(r->header_from, b, sizeof(b)),
			 clean(r->envelope_from, c, sizeof(c)), (int)r->disposition,
			 r->dkim_aligned, r->spf_aligned, clean(r->reason, d, sizeof(d)),
			 clean(r->spf_result, a, sizeof(a)), r->spf_helo, r->ndkim);
	for (size_t i = 0; i < r->ndkim && o > 0 && (size_t)o < len; i++)
		o += snprintf(out + o, len - (size_t)o, "\t%s\t%s\t%s",
			      clean(r->dkim[i].domain, a, sizeof(a)),
			      clean(r->dkim[i].selector, b, sizeof(b)),
			      clean(r->dkim[i].result, c, sizeof(c)));
	return o > 0 && (size_t)o < len ? 0 : -1;
}

/* The next tab-separated field of *p (up to end) into out ("-" is ""). */
static int field(const char **p, const char *end, char *out, size_t len)
{
	const char *s = *p;
	if (s > end)
		return -1;
	const char *t = memchr(s, '\t', (size_t)(end - s));
	size_t n = (size_t)((t ? t : end) - s);
	if (n >= len)
		return -1;
	memcpy(out, s, n);
	out[n] = '\0';
	if (strcmp(out, "-") == 0)
		out[0] = '\0';
	*p = t ? t + 1 : end + 1;
	return 0;
}

static int num(const char **p, const char *end, long long lo, long long hi, long long *v)
{
	char buf[32], *e;
	if (field(p, end, buf, sizeof(buf)) < 0 || !buf[0])
		return -1;
	*v = strtoll(buf, &e, 10);
	return *e || *v < lo || *v > hi ? -1 : 0;
}

int dmarc_report_row_parse(const char *line, size_t len, struct dmarc_report_row *r)
{
	const char *p = line, *end = line + len;
	long long v, when, dis, da, sa, helo, nd;
	char reason[sizeof(r->reason)];

	memset(r, 0, sizeof(*r));
	if (num(&p, end, 1, 1, &v) < 0 || num(&p, end, 0, (long long)1 << 40, &when) < 0 ||
	    field(&p, end, r->ip, sizeof(r->ip)) < 0 ||
	    field(&p, end, r->header_from, sizeof(r->header_from)) < 0 ||
	    field(&p, end, r->envelope_from, sizeof(r->envelope_from)) < 0 ||
	    num(&p, end, 0, DMARC_POLICY_REJECT, &dis) < 0 || num(&p, end, 0, 1, &da) < 0 ||
	    num(&p, end, 0, 1, &sa) < 0 || field(&p, end, reason, sizeof(reason)) < 0 ||
	    field(&p, end, r->spf_result, sizeof(r->spf_result)) < 0 ||
	    num(&p, end, 0, 1, &helo) < 0 || num(&p, end, 0, DMARC_MAX_DKIM, &nd) < 0)
		return -1;
	r->when = when;
	r->disposition = (enum dmarc_policy)dis;
	r->dkim_aligned = (int)da;
	r->spf_aligned = (int)sa;
	memcpy(r->reason, reason, sizeof(r->reason));
	r->spf_helo = (int)helo;
	r->ndkim = (size_t)nd;
	for (size_t i = 0; i < r->ndkim; i++)
		if (field(&p, end, r->dkim[i].domain, sizeof(r->dkim[i].domain)) < 0 ||
		    field(&p, end, r->dkim[i].selector, sizeof(r->dkim[i].selector)) < 0 ||
		    field(&p, end, r->dkim[i].result, sizeof(r->dkim[i].result)) < 0)
			return -1;
	return p >= end ? 0 : -1;
}

/* ---- writing ------------------------------------------------------------- */

struct pending {
	struct moat_store *store;
	long ttl;
	char domain[256];
	long long when;
	char row[];
};

static void on_number(void *arg, enum moat_store_status st, const char *value, size_t len,
		      long long number)
{
	struct pending *pd = arg;
	char key[400];
	(void)value;
	(void)len;
	if (st == MOAT_STORE_OK && number > 0) {
		dmarc_report_key(key, sizeof(key), 'r', pd->domain, pd->when, number);
		moat_store_set(pd->store, key, pd->row, strlen(pd->row), pd->ttl, NULL, NULL);
	}
	free(pd);
}

void dmarc_report_add(struct moat_store *store, long days, const char *domain, const char *txt,
		      const struct dmarc_report_row *row)
{
	char line[ROW_MAX], key[400];
	long ttl = days * 86400;

	if (!store || dmarc_report_row_format(row, line, sizeof(line)) < 0)
		return;
	struct pending *pd = malloc(sizeof(*pd) + strlen(line) + 1);
	if (!pd)
		return;
	pd->store = store;
	pd->ttl = ttl;
	pd->when = row->when;
	snprintf(pd->domain, sizeof(pd->domain), "%s", domain);
	memcpy(pd->row, line, strlen(line) + 1);
	dmarc_report_key(key, sizeof(key), 'p', domain, row->when, 0);
	if (txt && *txt)
		moat_store_set(store, key, txt, strlen(txt), ttl, NULL, NULL);
	dmarc_report_key(key, sizeof(key), 'n', domain, row->when, 0);
	if (!moat_store_incr(store, key, 1, ttl, on_number, pd))
		free(pd);
}

/* ---- the XML report ------------------------------------------------------ */

static void xml_text(FILE *out, const char *s)
{
	for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
		switch (*p) {
		case '&':
			fputs("&amp;", out);
			break;
		case '<':
			fputs("&lt;", out);
			break;
		case '>':
			fputs("&gt;", out);
			break;
		case '"':
			fputs("&quot;", out);
			break;
		default:
			if (*p >= 0x20 && *p < 0x7f)
				fputc(*p, out);
			else
				fputc('?', out);
		}
	}
}

static void el(FILE *out, int indent, const char *name, const char *v)
{
	fprintf(out, "%*s<%s>", indent, "", name);
	xml_text(out, v);
	fprintf(out, "</%s>\n", name);
}

/* RFC 7489 appendix C's result types: what SPF and DKIM may say there. */
static const char *result_in(const char *r, const char *const *allowed)
{
	for (size_t i = 0; allowed[i]; i++)
		if (r && strcmp(r, allowed[i]) == 0)
			return r;
	return allowed[0];
}

static int same_row(const struct dmarc_report_row *a, const struct dmarc_report_row *b)
{
	if (strcmp(a->ip, b->ip) || strcmp(a->header_from, b->header_from) ||
	    strcmp(a->envelope_from, b->envelope_from) || a->disposition != b->disposition ||
	    a->dkim_aligned != b->dkim_aligned || a->spf_aligned != b->spf_aligned ||
	    strcmp(a->reason, b->reason) || strcmp(a->spf_result, b->spf_result) ||
	    a->spf_helo != b->spf_helo || a->ndkim != b->ndkim)
		return 0;
	for (size_t i = 0; i < a->ndkim; i++)
		if (strcmp(a->dkim[i].domain, b->dkim[i].domain) ||
		    strcmp(a->dkim[i].selector, b->dkim[i].selector) ||
		    strcmp(a->dkim[i].result, b->dkim[i].result))
			return 0;
	return 1;
}

void dmarc_report_xml(FILE *out, const struct dmarc_report_meta *m, const char *domain,
		      const char *txt, const struct dmarc_report_row *rows, size_t n)
{
	static const char *const dkim_res[] = {"none", "pass", "fail", "policy", "neutral",
					       "temperror", "permerror", NULL};
	static const char *const spf_res[] = {"none", "neutral", "pass", "fail", "softfail",
					      "temperror", "permerror", NULL};
	struct dmarc_record rec;
	char err[200], buf[64];
	int have = txt && *txt && dmarc_record_parse(txt, &rec, err, sizeof(err)) == 0;

	fprintf(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<feedback>\n");
	fprintf(out, "  <version>1.0</version>\n  <report_metadata>\n");
	el(out, 4, "org_name", m->org_name);
	el(out, 4, "email", m->email);
	el(out, 4, "report_id", m->report_id);
	fprintf(out, "    <date_range>\n      <begin>%lld</begin>\n      <end>%lld</end>\n"
		"    </date_range>\n  </report_metadata>\n", m->begin, m->end);
	fprintf(out, "  <policy_published>\n");
	el(out, 4, "domain", domain);
	if (have) {
		el(out, 4, "adkim", rec.adkim == DMARC_STRICT ? "s" : "r");
		el(out, 4, "aspf", rec.aspf == DMARC_STRICT ? "s" : "r");
		el(out, 4, "p", dmarc_policy_name(rec.p));
		el(out, 4, "sp", dmarc_policy_name(rec.sp != DMARC_POLICY_UNSET ? rec.sp : rec.p));
		snprintf(buf, sizeof(buf), "%d", rec.pct);
		el(out, 4, "pct", buf);
	} else {
		el(out, 4, "p", "none");
		el(out, 4, "sp", "none");
		el(out, 4, "pct", "100");
	}
	fprintf(out, "  </policy_published>\n");
	char *done = calloc(n ? n : 1, 1);
	for (size_t i = 0; done && i < n; i++) {
		if (done[i])
			continue;
		const struct dmarc_report_row *r = &rows[i];
		size_t count = 0;
		for (size_t j = i; j < n; j++)
			if (!done[j] && same_row(r, &rows[j])) {
				done[j] = 1;
				count++;
			}
		fprintf(out, "  <record>\n    <row>\n");
		el(out, 6, "source_ip", r->ip);
		fprintf(out, "      <count>%zu</count>\n      <policy_evaluated>\n", count);
		el(out, 8, "disposition", dmarc_policy_name(r->disposition));
		el(out, 8, "dkim", r->dkim_aligned ? "pass" : "fail");
		el(out, 8, "spf", r->spf_aligned ? "pass" : "fail");
		if (r->reason[0]) {
			fprintf(out, "        <reason>\n");
			el(out, 10, "type", r->reason);
			fprintf(out, "        </reason>\n");
		}
		fprintf(out, "      </policy_evaluated>\n    </row>\n    <identifiers>\n");
		el(out, 6, "header_from", r->header_from);
		fprintf(out, "    </identifiers>\n    <auth_results>\n");
		for (size_t k = 0; k < r->ndkim; k++) {
			fprintf(out, "      <dkim>\n");
			el(out, 8, "domain", r->dkim[k].domain);
			if (r->dkim[k].selector[0])
				el(out, 8, "selector", r->dkim[k].selector);
			el(out, 8, "result", result_in(r->dkim[k].result, dkim_res));
			fprintf(out, "      </dkim>\n");
		}
		fprintf(out, "      <spf>\n");
		el(out, 8, "domain", r->envelope_from);
		el(out, 8, "scope", r->spf_helo ? "helo" : "mfrom");
		el(out, 8, "result", result_in(r->spf_result, spf_res));
		fprintf(out, "      </spf>\n    </auth_results>\n  </record>\n");
	}
	free(done);
	fprintf(out, "</feedback>\n");
}
