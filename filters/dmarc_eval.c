/*
 * dmarc_eval.c - the DMARC result of a message from the authentication
 * results SPF and DKIM recorded before (RFC 7489 4.2, 6.6.2).
 *
 * pass: SPF passed for the MAIL FROM domain (the HELO domain for the null
 * sender, which is what SPF checks then) or a DKIM signature passed, with
 * that domain aligned to the From domain (aspf=, adkim=). Otherwise fail,
 * except that a temporary SPF or DKIM error for an aligned domain makes
 * the result temperror: the domain might have passed, and a temperror is
 * never a reason to refuse mail.
 *
 * Owns nothing.
 */
#include "dmarc_eval.h"

#include <stdio.h>
#include <string.h>

#include "dmarc_align.h"

const char *dmarc_result_name(enum dmarc_result r)
{
	static const char *const names[DMARC_RES__COUNT] = {"none", "pass", "fail", "temperror",
							    "permerror"};
	return (unsigned)r < DMARC_RES__COUNT ? names[r] : "permerror";
}

/* The value of property key ("header.d") in props, into out. */
static int prop(const char *props, const char *key, char *out, size_t len)
{
	size_t k = strlen(key);
	for (const char *p = props; p && *p;) {
		p += strspn(p, " \t");
		if (strncmp(p, key, k) == 0 && p[k] == '=') {
			size_t n = strcspn(p + k + 1, " \t;");
			if (n >= len)
				return -1;
			memcpy(out, p + k + 1, n);
			out[n] = '\0';
			return 0;
		}
		p += strcspn(p, " \t");
	}
	return -1;
}

static void copy(char *dst, size_t len, const char *src)
{
	snprintf(dst, len, "%s", src ? src : "");
}

void dmarc_auth_collect(const struct moat_verdict *v, struct dmarc_auth *out)
{
	memset(out, 0, sizeof(*out));
	for (size_t i = 0; v && i < v->nauth; i++) {
		const struct moat_auth_result *a = &v->auth[i];
		if (strcmp(a->method, "spf") == 0) {
			if (prop(a->props, "smtp.mailfrom", out->spf_domain,
				 sizeof(out->spf_domain)) == 0) {
				out->spf_helo = 0;
			} else if (prop(a->props, "smtp.helo", out->spf_domain,
					sizeof(out->spf_domain)) == 0) {
				out->spf_helo = 1;
			} else {
				continue;
			}
			/* a local part (an address as the property) is not the domain */
			char *at = strrchr(out->spf_domain, '@');
			if (at)
				memmove(out->spf_domain, at + 1, strlen(at + 1) + 1);
			copy(out->spf_result, sizeof(out->spf_result), a->result);
		} else if (strcmp(a->method, "dkim") == 0) {
			struct dmarc_dkim d;
			memset(&d, 0, sizeof(d));
			if (prop(a->props, "header.d", d.domain, sizeof(d.domain)) < 0)
				continue;
			if (prop(a->props, "header.s", d.selector, sizeof(d.selector)) < 0)
				d.selector[0] = '\0';
			copy(d.result, sizeof(d.result), a->result);
			size_t slot = out->ndkim;
			if (slot == DMARC_MAX_DKIM) {
				/* full: a pass replaces a result that is not one */
				if (strcmp(d.result, "pass") != 0)
					continue;
				for (slot = 0; slot < DMARC_MAX_DKIM; slot++)
					if (strcmp(out->dkim[slot].result, "pass") != 0)
						break;
				if (slot == DMARC_MAX_DKIM)
					continue;
			} else {
				out->ndkim++;
			}
			out->dkim[slot] = d;
		}
	}
}

void dmarc_evaluate(const struct dmarc_auth *a, const char *from, const struct dmarc_record *r,
		    struct dmarc_eval *out)
{
	int temp = 0;
	char spf_note[300] = "", dkim_note[300] = "";

	memset(out, 0, sizeof(*out));
	if (a->spf_domain[0] && dmarc_aligned(a->spf_domain, from, r->aspf)) {
		if (strcmp(a->spf_result, "pass") == 0)
			out->spf_aligned = 1;
		else if (strcmp(a->spf_result, "temperror") == 0)
			temp = 1;
	}
	if (a->spf_domain[0])
		snprintf(spf_note, sizeof(spf_note), "spf=%s %s=%s%s", a->spf_result,
			 a->spf_helo ? "helo" : "mailfrom", a->spf_domain,
			 strcmp(a->spf_result, "pass") != 0 ? ""
			 : out->spf_aligned ? " aligned" : " not aligned");
	else
		snprintf(spf_note, sizeof(spf_note), "no spf result");
	size_t o = 0;
	for (size_t i = 0; i < a->ndkim; i++) {
		const struct dmarc_dkim *d = &a->dkim[i];
		int al = dmarc_aligned(d->domain, from, r->adkim);
		if (al && strcmp(d->result, "pass") == 0 && !out->dkim_aligned) {
			out->dkim_aligned = 1;
			copy(out->dkim_domain, sizeof(out->dkim_domain), d->domain);
		} else if (al && strcmp(d->result, "temperror") == 0) {
			temp = 1;
		}
		if (o < sizeof(dkim_note))
			o += (size_t)snprintf(dkim_note + o, sizeof(dkim_note) - o,
					      "%sdkim=%s d=%s%s", o ? ", " : "", d->result, d->domain,
					      strcmp(d->result, "pass") != 0 ? ""
					      : al ? " aligned" : " not aligned");
	}
	if (a->ndkim == 0)
		snprintf(dkim_note, sizeof(dkim_note), "no dkim signature");
	if (out->spf_aligned || out->dkim_aligned)
		out->result = DMARC_RES_PASS;
	else if (temp)
		out->result = DMARC_RES_TEMPERROR;
	else
		out->result = DMARC_RES_FAIL;
	snprintf(out->why, sizeof(out->why), "%.120s; %.120s", spf_note, dkim_note);
}
