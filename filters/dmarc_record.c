/*
 * dmarc_record.c - parsing DMARC policy records (RFC 7489 6.3, 6.4;
 * np= from RFC 9091). What a record says is in dmarc_record.h.
 *
 * The record is "tag=value" pairs separated by ';' with optional white
 * space; v=DMARC1 must come first. Syntax errors in optional tags are
 * ignored in favour of their defaults (RFC 7489 6.3); only a missing or
 * bad p= (or a bad sp=) makes the record unusable, and even that is
 * forgiven as p=none when rua= holds a reporting URI (6.6.3).
 *
 * Owns nothing.
 */
#include "dmarc_record.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "ascii.h"

#define MAX_TAG 32

static int wsp(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

const char *dmarc_policy_name(enum dmarc_policy p)
{
	switch (p) {
	case DMARC_POLICY_NONE:
		return "none";
	case DMARC_POLICY_QUARANTINE:
		return "quarantine";
	case DMARC_POLICY_REJECT:
		return "reject";
	default:
		return "unset";
	}
}

/* One "tag=value" of s (up to ';' or the end): name and value trimmed.
 * Returns where the next pair starts, or NULL at the end. *ok = 0 when
 * the pair is malformed (no '=', an empty or non-alphanumeric name). */
static const char *next_pair(const char *s, char *name, size_t nlen, const char **val,
			     size_t *vlen, int *ok)
{
	const char *end = strchr(s, ';');
	const char *stop = end ? end : s + strlen(s);
	const char *p = s;
	size_t n = 0;

	*ok = 1;
	while (p < stop && wsp(*p))
		p++;
	while (p < stop && ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			    (*p >= '0' && *p <= '9'))) {
		if (n + 1 < nlen)
			name[n++] = (char)ascii_lower((unsigned char)*p);
		p++;
	}
	name[n] = '\0';
	while (p < stop && wsp(*p))
		p++;
	if (n == 0 || p >= stop || *p != '=') {
		/* an empty pair (a trailing ';', white space) is no error */
		const char *q = s;
		while (q < stop && wsp(*q))
			q++;
		*ok = q == stop && n == 0 ? 2 : 0;
		*val = stop;
		*vlen = 0;
		return end ? end + 1 : NULL;
	}
	p++;
	while (p < stop && wsp(*p))
		p++;
	const char *ve = stop;
	while (ve > p && wsp(ve[-1]))
		ve--;
	*val = p;
	*vlen = (size_t)(ve - p);
	return end ? end + 1 : NULL;
}

int dmarc_record_is_dmarc(const char *txt)
{
	char name[MAX_TAG];
	const char *v;
	size_t vlen;
	int ok;

	if (!txt)
		return 0;
	next_pair(txt, name, sizeof(name), &v, &vlen, &ok);
	/* RFC 7489 6.4: "v" *WSP "=" *WSP "DMARC1", the value case-sensitive */
	return ok == 1 && strcmp(name, "v") == 0 && vlen == 6 && memcmp(v, "DMARC1", 6) == 0;
}

static int word(const char *v, size_t len, const char *w)
{
	return strlen(w) == len && strncasecmp(v, w, len) == 0;
}

static enum dmarc_policy policy_word(const char *v, size_t len)
{
	if (word(v, len, "none"))
		return DMARC_POLICY_NONE;
	if (word(v, len, "quarantine"))
		return DMARC_POLICY_QUARANTINE;
	if (word(v, len, "reject"))
		return DMARC_POLICY_REJECT;
	return DMARC_POLICY_UNSET;
}

static void note(struct dmarc_record *r, const char *name, const char *v, size_t vlen)
{
	size_t used = strlen(r->ignored);
	if (used + 4 < sizeof(r->ignored))
		snprintf(r->ignored + used, sizeof(r->ignored) - used, "%s%s=%.*s", used ? " " : "",
			 name, (int)(vlen > 40 ? 40 : vlen), v);
}

/* rua=: a comma-separated list of URIs; valid when at least one has a
 * scheme (RFC 3986: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) ":") and
 * something after it. */
static int rua_valid(const char *v, size_t len)
{
	size_t i = 0;
	while (i < len) {
		while (i < len && (wsp(v[i]) || v[i] == ','))
			i++;
		size_t s = i;
		while (i < len && ((v[i] >= 'a' && v[i] <= 'z') || (v[i] >= 'A' && v[i] <= 'Z') ||
				   (i > s && ((v[i] >= '0' && v[i] <= '9') || v[i] == '+' ||
					      v[i] == '-' || v[i] == '.'))))
			i++;
		if (i > s && i + 1 < len && v[i] == ':' && v[i + 1] != ',' && !wsp(v[i + 1]))
			return 1;
		while (i < len && v[i] != ',')
			i++;
	}
	return 0;
}

int dmarc_record_parse(const char *txt, struct dmarc_record *r, char *err, size_t errlen)
{
	char name[MAX_TAG];
	const char *v, *s;
	size_t vlen;
	int ok, seen_p = 0, bad_p = 0, bad_sp = 0, n = 0;
	unsigned seen = 0;	/* tags seen, for duplicates */

	memset(r, 0, sizeof(*r));
	r->pct = 100;
	if (err && errlen)
		err[0] = '\0';
	if (!dmarc_record_is_dmarc(txt)) {
		snprintf(err, errlen, "not a DMARC record (v=DMARC1 must come first)");
		return DMARC_RECORD_INVALID;
	}
	for (s = txt; s; n++) {
		s = next_pair(s, name, sizeof(name), &v, &vlen, &ok);
		if (ok == 2)
			continue;
		if (!ok) {
			note(r, "?", v, vlen);
			continue;
		}
		if (n == 0)
			continue;	/* v=DMARC1 */
		static const char *const known[] = {"p", "sp", "np", "pct", "adkim", "aspf", "rua",
						    "ruf", "fo", "rf", "ri", "v", NULL};
		int k = 0;
		while (known[k] && strcmp(known[k], name) != 0)
			k++;
		if (!known[k]) {
			note(r, name, v, vlen);		/* unknown tags are ignored */
			continue;
		}
		if (seen & (1u << k)) {
			note(r, name, v, vlen);		/* a repeated tag: the first counts */
			continue;
		}
		seen |= 1u << k;
		if (strcmp(name, "p") == 0) {
			seen_p = 1;
			r->p = policy_word(v, vlen);
			bad_p = r->p == DMARC_POLICY_UNSET;
		} else if (strcmp(name, "sp") == 0) {
			r->sp = policy_word(v, vlen);
			bad_sp = r->sp == DMARC_POLICY_UNSET;
		} else if (strcmp(name, "np") == 0) {
			r->np = policy_word(v, vlen);
			if (r->np == DMARC_POLICY_UNSET)
				note(r, name, v, vlen);
		} else if (strcmp(name, "adkim") == 0 || strcmp(name, "aspf") == 0) {
			enum dmarc_mode *m = name[1] == 'd' ? &r->adkim : &r->aspf;
			if (word(v, vlen, "s"))
				*m = DMARC_STRICT;
			else if (!word(v, vlen, "r"))
				note(r, name, v, vlen);
		} else if (strcmp(name, "pct") == 0) {
			int pct = 0;
			size_t i;
			for (i = 0; i < vlen && i < 4 && v[i] >= '0' && v[i] <= '9'; i++)
				pct = pct * 10 + (v[i] - '0');
			if (vlen == 0 || i != vlen || pct > 100)
				note(r, name, v, vlen);
			else
				r->pct = pct;
		} else if (strcmp(name, "rua") == 0) {
			if (rua_valid(v, vlen))
				snprintf(r->rua, sizeof(r->rua), "%.*s",
					 (int)(vlen > DMARC_RUA_MAX ? DMARC_RUA_MAX : vlen), v);
			else
				note(r, name, v, vlen);
		} else if (strcmp(name, "v") == 0) {
			note(r, name, v, vlen);		/* v= again, not first */
		}
		/* ruf=, fo=, rf=, ri=: failure reports and intervals, not used */
	}
	if (!seen_p || bad_p || bad_sp) {
		const char *why = !seen_p ? "no p= tag" : bad_p ? "p= is not none, quarantine or reject"
							 : "sp= is not none, quarantine or reject";
		if (!r->rua[0]) {
			snprintf(err, errlen, "%s", why);
			return DMARC_RECORD_INVALID;
		}
		/* RFC 7489 6.6.3: as if p=none, for the reports rua= asks for */
		r->p = DMARC_POLICY_NONE;
		if (bad_sp)
			r->sp = DMARC_POLICY_UNSET;
		r->p_from_rua = 1;
		snprintf(err, errlen, "%s; taken as p=none (rua= is set)", why);
	}
	return DMARC_RECORD_OK;
}

enum dmarc_policy dmarc_record_policy(const struct dmarc_record *r, int subdomain,
				      int nonexistent)
{
	if (nonexistent && r->np != DMARC_POLICY_UNSET)
		return r->np;
	if (subdomain && r->sp != DMARC_POLICY_UNSET)
		return r->sp;
	return r->p;
}
