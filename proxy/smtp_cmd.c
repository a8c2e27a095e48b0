/*
 * NAME
 *	smtp_cmd - parse SMTP command lines and MAIL/RCPT paths
 * SYNOPSIS
 *	#include "smtp_cmd.h"
 * DESCRIPTION
 *	smtp_cmd_parse() splits a client command line into verb and
 *	argument. The verb runs to the first space (or the end of the
 *	line) and is looked up case-insensitively in a table; anything not
 *	in the table is SMTP_VERB_UNKNOWN. Every C0 control (NUL, TAB, CR,
 *	LF, ...) and DEL anywhere in the line makes it invalid; bytes of
 *	0x80 and up are allowed (SMTPUTF8 arguments). The argument starts
 *	after the spaces following the verb; trailing spaces are not part
 *	of it.
 *
 *	smtp_path_parse() parses "FROM:<path> params" or "TO:<path>
 *	params" (RFC 5321 4.1.2, RFC 6531 for UTF-8):
 *	- "FROM:"/"TO:" case-insensitive, then at most one space;
 *	- the path in angle brackets; "<>" for MAIL only;
 *	- an optional source route "@a,@b:" which is checked and dropped;
 *	- a local part that is either a quoted string (backslash escapes
 *	  allowed) or atext and dots, an optional "@" and domain (labels of
 *	  letters, digits, "-" and "_", or an address literal "[...]" of
 *	  letters, digits, ".", ":" and "-"),
 *	  UTF-8 allowed (and validated) outside the ASCII range; a local
 *	  part without domain ("postmaster") is accepted;
 *	- the address, without route, at most SMTP_PATH_MAX_LEN octets;
 *	- after ">" the end or spaces and keyword[=value] parameters;
 *	  a value is non-empty; a keyword given twice is an error, so that
 *	  moat and the upstream cannot disagree about which one counts.
 * OWNERSHIP
 *	smtp_cmd_parse() owns nothing (it points into the caller's line).
 *	smtp_path_parse() allocates one block per struct smtp_path (mem_)
 *	holding all its strings; smtp_path_free() releases it. No global
 *	mutable state; errors are returned, never printed.
 */
#include "smtp_cmd.h"
#include "ascii.h"
#include "utf8.h"

#include <stdlib.h>
#include <string.h>

static const char *const verb_names[SMTP_VERB__COUNT] = {
	[SMTP_VERB_UNKNOWN] = NULL,
	[SMTP_VERB_HELO] = "HELO",
	[SMTP_VERB_EHLO] = "EHLO",
	[SMTP_VERB_MAIL] = "MAIL",
	[SMTP_VERB_RCPT] = "RCPT",
	[SMTP_VERB_DATA] = "DATA",
	[SMTP_VERB_RSET] = "RSET",
	[SMTP_VERB_NOOP] = "NOOP",
	[SMTP_VERB_QUIT] = "QUIT",
	[SMTP_VERB_VRFY] = "VRFY",
	[SMTP_VERB_EXPN] = "EXPN",
	[SMTP_VERB_HELP] = "HELP",
	[SMTP_VERB_ETRN] = "ETRN",
	[SMTP_VERB_STARTTLS] = "STARTTLS",
	[SMTP_VERB_AUTH] = "AUTH",
	[SMTP_VERB_BDAT] = "BDAT",
	[SMTP_VERB_XCLIENT] = "XCLIENT",
	[SMTP_VERB_XFORWARD] = "XFORWARD",
};

static int ascii_alnum(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z')
	    || (c >= 'A' && c <= 'Z');
}

static int is_ctl(unsigned char c)
{
	return c < 0x20 || c == 0x7f;
}

const char *smtp_verb_name(enum smtp_verb verb)
{
	if ((unsigned)verb >= SMTP_VERB__COUNT || verb_names[verb] == NULL)
		return "UNKNOWN";
	return verb_names[verb];
}

int smtp_cmd_parse(const char *line, size_t len, struct smtp_cmd *out)
{
	size_t vlen, a;

	out->verb = SMTP_VERB_UNKNOWN;
	out->name = NULL;
	out->arg = "";
	out->arg_len = 0;
	for (size_t i = 0; i < len; i++)
		if (is_ctl((unsigned char)line[i]))
			return -1;
	for (vlen = 0; vlen < len && line[vlen] != ' '; vlen++)
		;
	for (int v = 1; v < SMTP_VERB__COUNT; v++) {
		if (word_eq(line, vlen, verb_names[v])) {
			out->verb = (enum smtp_verb)v;
			out->name = verb_names[v];
			break;
		}
	}
	for (a = vlen; a < len && line[a] == ' '; a++)
		;
	while (len > a && line[len - 1] == ' ')
		len--;
	if (a < len) {
		out->arg = line + a;
		out->arg_len = len - a;
	}
	return 0;
}


/* Checks that s[0..n) is well-formed UTF-8 (ASCII included). */
static int utf8_valid(const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;

	for (size_t i = 0; i < n;) {
		size_t l = moat_utf8_len(u + i, n - i);

		if (l == 0)
			return 0;
		i += l;
	}
	return 1;
}

/* RFC 5322 atext, ASCII part. */
static int is_atext(unsigned char c)
{
	return ascii_alnum(c) || (c != 0 && strchr("!#$%&'*+-/=?^_`{|}~", c));
}

/* A domain or an address literal. Literals are limited to what IPv4,
 * "IPv6:..." and general "tag:content" literals use in practice
 * (letters, digits, ".", ":", "-"), narrower than RFC 5321 dcontent,
 * which would allow "<", quotes and the like. UTF-8 is checked by the
 * caller. */
static int domain_ok(const char *s, size_t n)
{
	size_t label = 0;

	if (n == 0)
		return 0;
	if (s[0] == '[') {
		if (n < 3 || s[n - 1] != ']')
			return 0;
		for (size_t i = 1; i < n - 1; i++) {
			unsigned char c = (unsigned char)s[i];

			if (!ascii_alnum(c) && c != '.' && c != ':' && c != '-')
				return 0;
		}
		return 1;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '.') {
			if (label == 0)
				return 0;
			label = 0;
		} else if (ascii_alnum(c) || c == '-' || c == '_' || c >= 0x80) {
			label++;
		} else {
			return 0;
		}
	}
	return label > 0;
}

/* Source route "@a,@b:" at s: returns its length (including ':'), or 0
 * if s does not start with "@", or -1 if it is malformed. */
static long route_len(const char *s, size_t n)
{
	size_t i = 0;

	if (n == 0 || s[0] != '@')
		return 0;
	while (i < n && s[i] == '@') {
		size_t start = ++i;

		while (i < n && s[i] != ',' && s[i] != ':')
			i++;
		if (i == n || !domain_ok(s + start, i - start))
			return -1;
		if (s[i++] == ':')
			return (long)i;
	}
	return -1;
}

/* Mailbox local-part["@"domain]. */
static int mailbox_ok(const char *s, size_t n)
{
	size_t i = 0;

	if (n > 0 && s[0] == '"') {
		for (i = 1; i < n && s[i] != '"'; i++) {
			unsigned char c = (unsigned char)s[i];

			if (c == '\\') {
				if (++i == n)
					return 0;
				c = (unsigned char)s[i];
			}
			if (is_ctl(c))
				return 0;
		}
		if (i == n)
			return 0;	/* unterminated */
		i++;
		if (i < n && s[i] != '@')
			return 0;
	} else {
		for (; i < n && s[i] != '@'; i++) {
			unsigned char c = (unsigned char)s[i];

			if (!is_atext(c) && c != '.' && c < 0x80)
				return 0;
		}
		if (i == 0)
			return 0;	/* empty local part */
	}
	if (i == n)
		return 1;
	return domain_ok(s + i + 1, n - i - 1);
}

/* Offset of the ">" that closes the path starting after "<" at s, or -1.
 * Skips quoted strings so that a quoted ">" does not end the path. */
static long path_end(const char *s, size_t n)
{
	int quoted = 0;

	for (size_t i = 0; i < n; i++) {
		if (quoted && s[i] == '\\') {
			i++;
			continue;
		}
		if (s[i] == '"')
			quoted = !quoted;
		else if (!quoted && s[i] == '>')
			return (long)i;
	}
	return -1;
}

static int param_keyword_ok(const char *s, size_t n)
{
	if (n == 0 || !ascii_alnum((unsigned char)s[0]))
		return 0;
	for (size_t i = 1; i < n; i++)
		if (!ascii_alnum((unsigned char)s[i]) && s[i] != '-')
			return 0;
	return 1;
}

static int param_value_ok(const char *s, size_t n, int utf8)
{
	if (n == 0)
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c >= 0x80 ? !utf8 : (c < 33 || c > 126 || c == '='))
			return 0;
	}
	return !utf8 || utf8_valid(s, n);
}

static int has_8bit(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] >= 0x80)
			return 1;
	return 0;
}

/* Copies n bytes to *w as a string, upper-cased if asked; returns it. */
static char *put_str(char **w, const char *s, size_t n, int upper)
{
	char *r = *w;

	for (size_t i = 0; i < n; i++)
		r[i] = upper ? (char)ascii_upper((unsigned char)s[i]) : s[i];
	r[n] = '\0';
	*w += n + 1;
	return r;
}

int smtp_path_parse(const char *arg, size_t len, int is_mail,
		    struct smtp_path *out)
{
	const char *prefix = is_mail ? "FROM:" : "TO:";
	size_t plen = strlen(prefix), i, addr_off, addr_len;
	long end, route;
	struct { size_t k, klen, v, vlen; int has_v; } p[SMTP_PATH_MAX_PARAMS];
	size_t np = 0;
	int utf8;
	char *w;

	memset(out, 0, sizeof(*out));
	if (len < plen || !word_eq(arg, plen, prefix))
		return SMTP_PATH_ESYNTAX;
	i = plen;
	if (i < len && arg[i] == ' ')
		i++;
	if (i == len || arg[i] != '<')
		return SMTP_PATH_ESYNTAX;
	i++;
	end = path_end(arg + i, len - i);
	if (end < 0)
		return SMTP_PATH_ESYNTAX;

	/* The path is arg[i .. i + end). */
	route = route_len(arg + i, (size_t)end);
	if (route < 0)
		return SMTP_PATH_EADDR;
	addr_off = i + (size_t)route;
	addr_len = (size_t)end - (size_t)route;
	if (addr_len > SMTP_PATH_MAX_LEN)
		return SMTP_PATH_ELONG;
	if (addr_len == 0) {
		if (!is_mail || route > 0)
			return SMTP_PATH_EADDR;
	} else if (!utf8_valid(arg + addr_off, addr_len)
		   || !mailbox_ok(arg + addr_off, addr_len)) {
		return SMTP_PATH_EADDR;
	}
	utf8 = has_8bit(arg + addr_off, addr_len);

	/* Parameters. */
	i += (size_t)end + 1;
	if (i < len && arg[i] != ' ')
		return SMTP_PATH_ESYNTAX;
	while (i < len) {
		size_t k, e;

		while (i < len && arg[i] == ' ')
			i++;
		if (i == len)
			break;
		if (np == SMTP_PATH_MAX_PARAMS)
			return SMTP_PATH_EPARAM;
		k = i;
		while (i < len && arg[i] != ' ')
			i++;
		for (e = k; e < i && arg[e] != '='; e++)
			;
		p[np].k = k;
		p[np].klen = e - k;
		p[np].has_v = e < i;
		p[np].v = e < i ? e + 1 : i;
		p[np].vlen = e < i ? i - e - 1 : 0;
		if (!param_keyword_ok(arg + k, e - k)
		    || (p[np].has_v
			&& !param_value_ok(arg + p[np].v, p[np].vlen, utf8)))
			return SMTP_PATH_EPARAM;
		for (size_t j = 0; j < np; j++) {
			if (p[j].klen == p[np].klen) {
				size_t m;

				for (m = 0; m < p[j].klen; m++)
					if (ascii_upper((unsigned char)arg[p[j].k + m])
					    != ascii_upper((unsigned char)arg[k + m]))
						break;
				if (m == p[j].klen)
					return SMTP_PATH_EPARAM;
			}
		}
		np++;
	}

	/* Every string is a distinct piece of arg plus a NUL. */
	out->mem_ = malloc(addr_len + 1 + len + 2 * SMTP_PATH_MAX_PARAMS);
	if (out->mem_ == NULL)
		return SMTP_PATH_ENOMEM;
	w = out->mem_;
	out->addr = put_str(&w, arg + addr_off, addr_len, 0);
	for (size_t j = 0; j < np; j++) {
		out->params[j].keyword = put_str(&w, arg + p[j].k, p[j].klen, 1);
		out->params[j].value = p[j].has_v
		    ? put_str(&w, arg + p[j].v, p[j].vlen, 0) : NULL;
	}
	out->nparams = np;
	return SMTP_PATH_OK;
}

void smtp_path_free(struct smtp_path *path)
{
	free(path->mem_);
	memset(path, 0, sizeof(*path));
}

const char *smtp_path_param(const struct smtp_path *path, const char *keyword,
			    int *found)
{
	size_t klen = strlen(keyword);

	for (size_t i = 0; i < path->nparams; i++) {
		const char *k = path->params[i].keyword;
		size_t m;

		if (strlen(k) != klen)
			continue;
		for (m = 0; m < klen; m++)
			if (ascii_upper((unsigned char)keyword[m])
			    != (unsigned char)k[m])
				break;
		if (m == klen) {
			if (found)
				*found = 1;
			return path->params[i].value;
		}
	}
	if (found)
		*found = 0;
	return NULL;
}
