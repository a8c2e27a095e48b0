/*
 * from_header.c - the author's address from the RFC5322.From field (RFC
 * 7489 3.1 and 6.6.1), and why there is none.
 *
 * The field is read as an RFC 5322 address-list: comments and quoted
 * strings are skipped (display names may hold '@', ',' or '<'), commas
 * separate addresses only outside angle brackets (an obsolete route
 * "<@relay,@relay:user@domain>" is one address), and a group's name and
 * its ';' are dropped. Messages that give nothing definite (no From,
 * several, several addresses, none with a domain) are reported as such,
 * each with its own status, so the caller can say why it refuses.
 *
 * Owns nothing.
 */
#include "from_header.h"

#include <string.h>

#include "ascii.h"
#include "spf_input.h"

#define MAX_VALUE 4096

const char *moat_from_problem(enum moat_from_status st)
{
	switch (st) {
	case MOAT_FROM_OK:
		return "the From header field is fine";
	case MOAT_FROM_MISSING:
		return "the message has no From header field";
	case MOAT_FROM_SEVERAL_FIELDS:
		return "the message has more than one From header field";
	case MOAT_FROM_NO_ADDRESS:
		return "the From header field holds no address";
	case MOAT_FROM_SEVERAL_ADDRESSES:
		return "the From header field holds more than one address";
	case MOAT_FROM_NO_DOMAIN:
		return "the From address has no domain";
	case MOAT_FROM_TOO_LONG:
		return "the From header field is too long to be read (over 4096 octets)";
	default:
		return "the domain of the From address is not a valid domain name";
	}
}

static enum moat_from_status none(struct moat_from *out, enum moat_from_status st)
{
	out->domain[0] = '\0';
	out->local[0] = '\0';
	return st;
}

/* The local part from s up to at, lower-cased into out when it is a
 * plain one: a run of printable octets (UTF-8 allowed) outside the
 * specials, at most MOAT_FROM_LOCAL_MAX octets. Else "". */
static void plain_local(const char *s, const char *at, char *out)
{
	s += strspn(s, " \t");
	size_t n = (size_t)(at - s);
	out[0] = '\0';
	if (n == 0 || n > MOAT_FROM_LOCAL_MAX)
		return;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c <= ' ' || c == 0x7f || strchr("()<>[]:;@\\,\"", c))
			return;
	}
	memcpy(out, s, n);
	out[n] = '\0';
	ascii_lower_str(out);
}

/* One address (comments and quoted strings already blanked): its
 * domain and local part. a is modified. */
static enum moat_from_status one_address(char *a, struct moat_from *out)
{
	char *lt = strchr(a, '<'), *start = a;
	if (lt) {
		char *gt = strchr(lt, '>');
		if (!gt)
			return MOAT_FROM_NO_DOMAIN;
		*gt = '\0';
		start = lt + 1;
		char *colon = strchr(start, ':');	/* obs-route "@a,@b:" */
		if (colon && start[strspn(start, " \t")] == '@')
			start = colon + 1;
	}
	char *at = strrchr(start, '@');
	if (!at)
		return MOAT_FROM_NO_DOMAIN;
	char *d = at + 1;
	d += strspn(d, " \t");
	size_t n = strcspn(d, " \t");
	if (n == 0)
		return MOAT_FROM_NO_DOMAIN;
	if (d[n + strspn(d + n, " \t")] != '\0')
		return MOAT_FROM_BAD_DOMAIN;	/* "a@b c" */
	d[n] = '\0';
	if (n > MOAT_FROM_DOMAIN_MAX + 1 ||
	    spf_domain_alabel(d, out->domain, sizeof(out->domain)) < 0)
		return MOAT_FROM_BAD_DOMAIN;
	plain_local(start, at, out->local);
	return MOAT_FROM_OK;
}

enum moat_from_status moat_from_value(const char *value, size_t vlen, struct moat_from *out)
{
	char buf[MAX_VALUE + 1];
	size_t o = 0;
	int depth = 0, quoted = 0, angle = 0;
	size_t naddr = 0;
	enum moat_from_status st = MOAT_FROM_NO_ADDRESS;
	char piece[MAX_VALUE + 1];

	none(out, MOAT_FROM_OK);
	if (vlen > MAX_VALUE)	/* a prefix could name another domain */
		return MOAT_FROM_TOO_LONG;
	/* blank comments and quoted strings; folding and controls become spaces */
	for (size_t i = 0; i < vlen && o < MAX_VALUE; i++) {
		char c = value[i];
		if (quoted) {
			if (c == '\\' && i + 1 < vlen)
				i++;
			else if (c == '"')
				quoted = 0;
			buf[o++] = ' ';
			continue;
		}
		if (depth) {
			if (c == '\\' && i + 1 < vlen)
				i++;
			else if (c == '(')
				depth++;
			else if (c == ')')
				depth--;
			buf[o++] = ' ';
			continue;
		}
		if (c == '"')
			quoted = 1, c = ' ';
		else if (c == '(')
			depth = 1, c = ' ';
		else if (c == '\r' || c == '\n' || c == '\0')
			c = ' ';
		buf[o++] = c;
	}
	buf[o] = '\0';
	/* split on commas outside <>; a group "name: a, b;" gives its members */
	size_t s = 0;
	for (size_t i = 0; i <= o; i++) {
		char c = buf[i];
		if (c == '<')
			angle = 1;
		else if (c == '>')
			angle = 0;
		if (angle || (c != ',' && c != ';' && c != ':' && c != '\0'))
			continue;
		size_t n = i - s;
		if (c == ':') {
			/* a group's display name (no '@' before it) is dropped */
			if (memchr(buf + s, '@', n)) {
				continue;	/* part of an address ("a@b:c"): bad later */
			}
			s = i + 1;
			continue;
		}
		memcpy(piece, buf + s, n);
		piece[n] = '\0';
		s = i + 1;
		if (strspn(piece, " \t") == n)
			continue;	/* empty member (", ,", "group: ;") */
		if (++naddr > 1)
			return none(out, MOAT_FROM_SEVERAL_ADDRESSES);
		st = one_address(piece, out);
	}
	if (st != MOAT_FROM_OK)
		none(out, st);
	return st;
}

enum moat_from_status moat_from_message(const struct moat_message *m, struct moat_from *out)
{
	none(out, MOAT_FROM_OK);
	size_t n = m ? moat_message_count(m, "From") : 0;
	if (n == 0)
		return MOAT_FROM_MISSING;
	if (n > 1)
		return MOAT_FROM_SEVERAL_FIELDS;
	const struct moat_header *h = moat_message_header(m, "From", 1);
	return moat_from_value(h->value, h->value_len, out);
}

/* If the field f (flen octets, its final line end included) is a From
 * field, its value and 1; else 0. */
static int from_field(const char *f, size_t flen, const char **value, size_t *vlen)
{
	const char *colon = memchr(f, ':', flen);
	if (!colon)
		return 0;	/* not a field */
	size_t n = (size_t)(colon - f);
	while (n && (f[n - 1] == ' ' || f[n - 1] == '\t'))
		n--;	/* obsolete "Name :" syntax */
	if (!word_eq(f, n, "FROM"))
		return 0;
	*value = colon + 1;
	*vlen = flen - (size_t)(*value - f);
	if (*vlen && (*value)[*vlen - 1] == '\n')
		(*vlen)--;
	if (*vlen && (*value)[*vlen - 1] == '\r')
		(*vlen)--;
	return 1;
}

enum moat_from_status moat_from_block(const char *head, size_t hlen, struct moat_from *out)
{
	const char *value = NULL;
	size_t vlen = 0, found = 0;

	none(out, MOAT_FROM_OK);
	for (size_t i = 0; i < hlen;) {
		if (head[i] == '\n' || (head[i] == '\r' && i + 1 < hlen && head[i + 1] == '\n'))
			break;	/* the empty line that ends the header block */
		/* a field: a line, and the lines after it starting with WSP */
		size_t s = i;
		for (;;) {
			const char *nl = memchr(head + i, '\n', hlen - i);
			i = nl ? (size_t)(nl - head) + 1 : hlen;
			if (i >= hlen || (head[i] != ' ' && head[i] != '\t'))
				break;
		}
		const char *v;
		size_t vl;
		if (from_field(head + s, i - s, &v, &vl)) {
			if (++found > 1)
				return MOAT_FROM_SEVERAL_FIELDS;
			value = v;
			vlen = vl;
		}
	}
	if (!found)
		return MOAT_FROM_MISSING;
	return moat_from_value(value, vlen, out);
}
