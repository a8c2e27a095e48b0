/*
 * dmarc_from.c - the RFC5322.From domain of a message (RFC 7489 3.1 and
 * 6.6.1), and why there is none.
 *
 * The field is read as an RFC 5322 address-list: comments and quoted
 * strings are skipped (display names may hold '@', ',' or '<'), commas
 * separate addresses only outside angle brackets (an obsolete route
 * "<@relay,@relay:user@domain>" is one address), and a group's name and
 * its ';' are dropped. Messages that give DMARC nothing definite to check
 * (no From, several, several addresses, none with a domain) are reported
 * as such, each with its own status, so the caller can say why it refuses.
 *
 * Owns nothing.
 */
#include "dmarc_from.h"

#include <stdlib.h>
#include <string.h>

#include "spf_input.h"

#define MAX_VALUE 4096

const char *dmarc_from_problem(enum dmarc_from_status st)
{
	switch (st) {
	case DMARC_FROM_OK:
		return "the From header field is fine";
	case DMARC_FROM_MISSING:
		return "the message has no From header field";
	case DMARC_FROM_SEVERAL_FIELDS:
		return "the message has more than one From header field";
	case DMARC_FROM_NO_ADDRESS:
		return "the From header field holds no address";
	case DMARC_FROM_SEVERAL_ADDRESSES:
		return "the From header field holds more than one address";
	case DMARC_FROM_NO_DOMAIN:
		return "the From address has no domain";
	default:
		return "the domain of the From address is not a valid domain name";
	}
}

/* One address (comments and quoted strings already blanked): its
 * domain. a is modified. */
static enum dmarc_from_status one_address(char *a, char *domain, size_t len)
{
	char *lt = strchr(a, '<'), *start = a;
	if (lt) {
		char *gt = strchr(lt, '>');
		if (!gt)
			return DMARC_FROM_NO_DOMAIN;
		*gt = '\0';
		start = lt + 1;
		char *colon = strchr(start, ':');	/* obs-route "@a,@b:" */
		if (colon && start[strspn(start, " \t")] == '@')
			start = colon + 1;
	}
	char *at = strrchr(start, '@');
	if (!at)
		return DMARC_FROM_NO_DOMAIN;
	char *d = at + 1;
	d += strspn(d, " \t");
	size_t n = strcspn(d, " \t");
	if (n == 0)
		return DMARC_FROM_NO_DOMAIN;
	if (d[n + strspn(d + n, " \t")] != '\0')
		return DMARC_FROM_BAD_DOMAIN;	/* "a@b c" */
	d[n] = '\0';
	if (n > DMARC_DOMAIN_MAX + 1 || spf_domain_alabel(d, domain, len) < 0) {
		domain[0] = '\0';
		return DMARC_FROM_BAD_DOMAIN;
	}
	return DMARC_FROM_OK;
}

enum dmarc_from_status dmarc_from_value(const char *value, size_t vlen, char *domain,
					size_t len)
{
	char buf[MAX_VALUE + 1];
	size_t o = 0;
	int depth = 0, quoted = 0, angle = 0;
	size_t naddr = 0;
	enum dmarc_from_status st = DMARC_FROM_NO_ADDRESS;
	char piece[MAX_VALUE + 1];

	domain[0] = '\0';
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
			return domain[0] = '\0', DMARC_FROM_SEVERAL_ADDRESSES;
		st = one_address(piece, domain, len);
	}
	if (st != DMARC_FROM_OK)
		domain[0] = '\0';
	return st;
}

enum dmarc_from_status dmarc_from_domain(const struct moat_message *m, char *domain,
					 size_t len)
{
	domain[0] = '\0';
	size_t n = m ? moat_message_count(m, "From") : 0;
	if (n == 0)
		return DMARC_FROM_MISSING;
	if (n > 1)
		return DMARC_FROM_SEVERAL_FIELDS;
	const struct moat_header *h = moat_message_header(m, "From", 1);
	return dmarc_from_value(h->value, h->value_len, domain, len);
}
