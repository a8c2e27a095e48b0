/*
 * spf_syntax.c - a strict RFC 7208 syntax check of one SPF record (see
 * spf_syntax.h). The grammar, RFC 7208 section 12:
 *
 *   record           = version terms *SP
 *   version          = "v=spf1"
 *   terms            = *( 1*SP ( directive / modifier ) )
 *   directive        = [ qualifier ] mechanism
 *   mechanism        = all / include / a / mx / ptr / ip4 / ip6 / exists
 *   include          = "include" ":" domain-spec
 *   a, mx            = "a" / "mx" [ ":" domain-spec ] [ dual-cidr-length ]
 *   ptr              = "ptr" [ ":" domain-spec ]
 *   ip4              = "ip4" ":" ip4-network [ ip4-cidr-length ]
 *   ip6              = "ip6" ":" ip6-network [ ip6-cidr-length ]
 *   exists           = "exists" ":" domain-spec
 *   modifier         = redirect / explanation / unknown-modifier
 *   redirect         = "redirect" "=" domain-spec    (at most once, 6)
 *   explanation      = "exp" "=" domain-spec         (at most once, 6)
 *   unknown-modifier = name "=" macro-string
 *   ip4-cidr-length  = "/" ( "0" / %x31-39 0*1DIGIT )   ; 0-32
 *   ip6-cidr-length  = "/" ( "0" / %x31-39 0*2DIGIT )   ; 0-128
 *   dual-cidr-length = [ ip4-cidr-length ] [ "/" ip6-cidr-length ]
 *   qnum             = DIGIT / %x31-39 DIGIT / "1" 2DIGIT
 *                      / "2" %x30-34 DIGIT / "25" %x30-35
 *   domain-spec      = macro-string domain-end
 *   domain-end       = ( "." toplabel [ "." ] ) / macro-expand
 *   toplabel         = ( *alphanum ALPHA *alphanum ) /
 *                      ( 1*alphanum "-" *( alphanum / "-" ) alphanum )
 *   macro-string     = *( macro-expand / macro-literal )
 *   macro-expand     = ( "%{" macro-letter transformers *delimiter "}" )
 *                      / "%%" / "%_" / "%-"
 *   macro-literal    = %x21-24 / %x26-7E
 *   macro-letter     = "s" / "l" / "o" / "d" / "i" / "p" / "h" /
 *                      "c" / "r" / "t" / "v"
 *   transformers     = *DIGIT [ "r" ]
 *   delimiter        = "." / "-" / "+" / "," / "/" / "_" / "="
 *   name             = ALPHA *( ALPHA / DIGIT / "-" / "_" / "." )
 *
 * plus: macro letters c, r and t only in explanation text (7.1), never
 * in a record's domain-spec; a literal label of a domain-spec (one with
 * no macro in it) of 1..63 octets, none empty but a final one after a
 * trailing dot (7.1, RFC 1035). Letters are case-insensitive. The CIDR
 * lengths of a and mx are taken from the end of the term, as in every
 * implementation (a domain-spec cannot end in "/digits").
 */
#include "spf_syntax.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

struct chk {
	char *why;
	size_t whylen;
};

static int bad(struct chk *c, const char *fmt, const char *s, size_t n)
{
	if (c->why && c->whylen) {
		char tok[64];
		size_t k = n < sizeof(tok) - 1 ? n : sizeof(tok) - 1;
		for (size_t i = 0; i < k; i++)	/* printable only */
			tok[i] = s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?';
		tok[k] = '\0';
		snprintf(c->why, c->whylen, fmt, tok);
	}
	return -1;
}

static int is_alpha(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
}

static int is_digit(char ch)
{
	return ch >= '0' && ch <= '9';
}

/* One macro-expand at s (s[0] == '%'): its length, or 0 if invalid.
 * letters: the macro letters allowed here. */
static size_t macro_expand(const char *s, size_t n, const char *letters)
{
	if (n < 2)
		return 0;
	if (s[1] == '%' || s[1] == '_' || s[1] == '-')
		return 2;
	if (s[1] != '{' || n < 4)
		return 0;
	char l = s[2];
	if (l >= 'A' && l <= 'Z')
		l = (char)(l - 'A' + 'a');
	if (!l || !strchr(letters, l))
		return 0;
	size_t i = 3;
	while (i < n && is_digit(s[i]))
		i++;
	if (i < n && (s[i] == 'r' || s[i] == 'R'))
		i++;
	while (i < n && strchr(".-+,/_=", s[i]))
		i++;
	return i < n && s[i] == '}' ? i + 1 : 0;
}

/* A macro-string; *last_macro: it ends with a macro-expand; *lit: where
 * its final run of literals starts. */
static int macro_string(struct chk *c, const char *s, size_t n, const char *letters,
			int *last_macro, size_t *lit)
{
	size_t i = 0;
	*last_macro = 0;
	*lit = 0;
	while (i < n) {
		if (s[i] == '%') {
			size_t k = macro_expand(s + i, n - i, letters);
			if (!k)
				return bad(c, "invalid macro at \"%s\"", s + i, n - i);
			i += k;
			*last_macro = 1;
			*lit = i;
		} else if (s[i] > 0x20 && s[i] < 0x7f) {
			i++;
			*last_macro = 0;
		} else {
			return bad(c, "invalid character in \"%s\"", s, n);
		}
	}
	return 0;
}

/* alphanum and '-', not at either end, and not all digits (7.1) */
static int toplabel(const char *s, size_t n)
{
	int alpha = 0, hyphen = 0;
	if (n == 0 || s[0] == '-' || s[n - 1] == '-')
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (is_alpha(s[i]))
			alpha = 1;
		else if (s[i] == '-')
			hyphen = 1;
		else if (!is_digit(s[i]))
			return -1;
	}
	return alpha || hyphen ? 0 : -1;
}

static int domain_spec(struct chk *c, const char *s, size_t n)
{
	int last_macro;
	size_t lit;

	if (n == 0)
		return bad(c, "empty domain-spec%s", "", 0);
	if (macro_string(c, s, n, "slodiphv", &last_macro, &lit) < 0)
		return -1;
	if (!last_macro) {
		/* domain-end = "." toplabel [ "." ], all in the final literals */
		size_t e = n;
		if (e > lit && s[e - 1] == '.')
			e--;
		size_t d = e;
		while (d > lit && s[d - 1] != '.')
			d--;
		/* "%{d}.": a macro-expand and the root's dot, taken as the
		 * macro-expand ending (lenient: the name is fully qualified) */
		int root_dot = e == lit && e < n && lit > 0;
		if (!root_dot && (d == lit || toplabel(s + d, e - d) < 0))
			return bad(c, "domain-spec \"%s\" does not end in a valid toplabel", s, n);
	}
	/* literal labels: 1..63 octets, none empty (but after a final dot) */
	for (size_t i = 0; i <= n;) {
		size_t j = i;
		while (j < n && s[j] != '.')
			j++;
		if (!memchr(s + i, '%', j - i)) {
			if (j == i && !(j == n && n > 0))
				return bad(c, "empty label in \"%s\"", s, n);
			if (j - i > 63)
				return bad(c, "label longer than 63 octets in \"%s\"", s, n);
		}
		i = j + 1;
	}
	return 0;
}

/* "/digits" at the end of s[0..*n): strips it, checks the value (no
 * leading zero, at most max). 0 none, 1 stripped, -1 invalid. */
static int strip_cidr(const char *s, size_t *n, int max)
{
	size_t e = *n, d = e;
	while (d > 0 && is_digit(s[d - 1]))
		d--;
	if (d == e || d == 0 || s[d - 1] != '/')
		return 0;
	*n = d - 1;
	if (e - d > 3 || (s[d] == '0' && e - d > 1))
		return -1;
	int v = 0;
	for (size_t i = d; i < e; i++)
		v = v * 10 + (s[i] - '0');
	return v <= max ? 1 : -1;
}

static int ip4_network(const char *s, size_t n)
{
	size_t i = 0;
	for (int q = 0; q < 4; q++) {
		size_t st = i;
		int v = 0;
		while (i < n && is_digit(s[i]) && i - st < 3)
			v = v * 10 + (s[i++] - '0');
		if (i == st || v > 255 || (s[st] == '0' && i - st > 1))
			return -1;
		if (q < 3) {
			if (i >= n || s[i] != '.')
				return -1;
			i++;
		}
	}
	return i == n ? 0 : -1;
}

static int ip6_network(const char *s, size_t n)
{
	char buf[64];
	unsigned char a[16];
	if (n == 0 || n >= sizeof(buf))
		return -1;
	memcpy(buf, s, n);
	buf[n] = '\0';
	for (size_t i = 0; i < n; i++)
		if (!(is_digit(s[i]) || strchr("abcdefABCDEF:.", s[i])))
			return -1;
	return inet_pton(AF_INET6, buf, a) == 1 ? 0 : -1;
}

static int term(struct chk *c, const char *t, size_t n, int *redirects, int *exps)
{
	size_t i = 0, k;
	int qual = 0;

	if (strchr("+-?~", t[0])) {
		qual = 1;
		i = 1;
	}
	k = i;
	while (k < n && (is_alpha(t[k]) || is_digit(t[k]) || t[k] == '-' || t[k] == '_' ||
			 t[k] == '.'))
		k++;
	const char *name = t + i;
	size_t nl = k - i;
	if (k < n && t[k] == '=' && !qual && nl > 0 && is_alpha(name[0])) {
		const char *v = t + k + 1;
		size_t vl = n - k - 1;
		if (nl == 8 && strncasecmp(name, "redirect", 8) == 0) {
			if (++*redirects > 1)
				return bad(c, "more than one redirect= modifier%s", "", 0);
			return domain_spec(c, v, vl);
		}
		if (nl == 3 && strncasecmp(name, "exp", 3) == 0) {
			if (++*exps > 1)
				return bad(c, "more than one exp= modifier%s", "", 0);
			return domain_spec(c, v, vl);
		}
		int last_macro;
		size_t lit;
		return macro_string(c, v, vl, "slodiphcrtv", &last_macro, &lit);
	}
	/* a mechanism: its name is letters and digits */
	k = i;
	while (k < n && (is_alpha(t[k]) || is_digit(t[k])))
		k++;
	nl = k - i;
	const char *rest = t + k;
	size_t rl = n - k;
#define IS(m) (nl == sizeof(m) - 1 && strncasecmp(name, m, nl) == 0)
	if (IS("all")) {
		if (rl)
			return bad(c, "unknown mechanism \"%s\"", t, n);
		return 0;
	}
	if (IS("include") || IS("exists")) {
		if (rl == 0 || rest[0] != ':')
			return bad(c, "\"%s\" needs a domain-spec", t, n);
		return domain_spec(c, rest + 1, rl - 1);
	}
	if (IS("a") || IS("mx")) {
		size_t e = rl;
		int r6 = 0, r4 = 0;
		/* dual-cidr-length at the end: [ "/" ip4 ] [ "//" ip6 ] */
		r6 = strip_cidr(rest, &e, 128);
		if (r6 == 1) {
			if (e == 0 || rest[e - 1] != '/')
				r6 = 0, e = rl;	/* a single "/": the ip4 length */
			else
				e--;
		}
		if (r6 < 0)
			return bad(c, "invalid CIDR length in \"%s\"", t, n);
		r4 = strip_cidr(rest, &e, 32);
		if (r4 < 0)
			return bad(c, "invalid CIDR length in \"%s\"", t, n);
		if (e == 0)
			return 0;
		if (rest[0] != ':')
			return bad(c, "unknown mechanism \"%s\"", t, n);
		return domain_spec(c, rest + 1, e - 1);
	}
	if (IS("ptr")) {
		if (rl == 0)
			return 0;
		if (rest[0] != ':')
			return bad(c, "unknown mechanism \"%s\"", t, n);
		return domain_spec(c, rest + 1, rl - 1);
	}
	if (IS("ip4") || IS("ip6")) {
		int v6 = IS("ip6");
		size_t e = rl;
		if (rl == 0 || rest[0] != ':')
			return bad(c, "\"%s\" needs an address", t, n);
		if (strip_cidr(rest, &e, v6 ? 128 : 32) < 0)
			return bad(c, "invalid CIDR length in \"%s\"", t, n);
		if ((v6 ? ip6_network : ip4_network)(rest + 1, e - 1) < 0)
			return bad(c, "invalid address in \"%s\"", t, n);
		return 0;
	}
#undef IS
	return bad(c, "unknown mechanism \"%s\"", t, n);
}

int spf_syntax_check(const char *rec, size_t len, char *why, size_t whylen)
{
	struct chk c = {why, whylen};
	int redirects = 0, exps = 0;

	if (why && whylen)
		why[0] = '\0';
	if (!rec)
		return bad(&c, "no record%s", "", 0);
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)rec[i];
		if (ch >= 0x80)
			return bad(&c, "non-ASCII octet%s", "", 0);
		if (ch < 0x20 || ch == 0x7f)
			return bad(&c, "control character%s", "", 0);
	}
	if (len < 6 || strncasecmp(rec, "v=spf1", 6) != 0 || (len > 6 && rec[6] != ' '))
		return bad(&c, "no \"v=spf1\" version%s", "", 0);
	for (size_t i = 6; i < len;) {
		while (i < len && rec[i] == ' ')
			i++;
		if (i == len)
			break;
		size_t j = i;
		while (j < len && rec[j] != ' ')
			j++;
		if (term(&c, rec + i, j - i, &redirects, &exps) < 0)
			return -1;
		i = j;
	}
	return 0;
}
