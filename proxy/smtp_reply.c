/*
 * NAME
 *	smtp_reply - incremental SMTP reply parser, EHLO capabilities
 * SYNOPSIS
 *	#include "smtp_reply.h"
 * DESCRIPTION
 *	smtp_reply_feed() takes the upstream's reply one line at a time
 *	(without CRLF). A line is "ddd-text" (more lines follow), "ddd
 *	text" or "ddd" (last line). The code must be 200..599 and the same
 *	on every line; a reply has at most SMTP_REPLY_MAX_LINES lines of at
 *	most SMTP_REPLY_MAX_LINE octets. Anything else is a protocol error
 *	and resets the parser. The first line may carry an RFC 3463
 *	enhanced status code "c.s.d" right after the separator, recorded
 *	only when its class c equals the first digit of the code.
 *
 *	Each line is stored with CRLF appended and with every byte that is
 *	neither printable ASCII, TAB, nor part of well-formed UTF-8
 *	replaced by '?', so the text can be relayed to a client as is.
 *
 *	smtp_caps_parse() reads EHLO keywords (case-insensitive, looked up
 *	in a table) from the lines after the first; the first line is the
 *	greeting. "KEYWORD=args" (old AUTH=) counts as KEYWORD. SIZE takes
 *	an optional decimal limit (too large a number is clamped);
 *	XCLIENT takes a list of attribute names, AUTH a list of mechanisms
 *	(those sasl.h knows).
 * OWNERSHIP
 *	The parser owns the reply text it assembles until
 *	smtp_reply_parser_take() hands it to the caller, who frees it with
 *	smtp_reply_clear(). No global mutable state; errors are returned.
 */
#include "smtp_reply.h"
#include "ascii.h"
#include "nelem.h"
#include "sasl.h"
#include "utf8.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>


static int is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

void smtp_reply_parser_init(struct smtp_reply_parser *p)
{
	memset(p, 0, sizeof(*p));
}

void smtp_reply_clear(struct smtp_reply *r)
{
	free(r->text);
	memset(r, 0, sizeof(*r));
}

void smtp_reply_parser_free(struct smtp_reply_parser *p)
{
	smtp_reply_clear(&p->cur);
	p->cap = 0;
	p->done_ = 0;
}

static int reply_error(struct smtp_reply_parser *p)
{
	smtp_reply_parser_free(p);
	return -1;
}

/* Length of an enhanced status code "c.s.d" of class cls at s, followed
 * by a space or the end; 0 if there is none. */
static size_t enhanced_len(const char *s, size_t n, char cls)
{
	size_t i = 0;

	if (n < 5 || s[0] != cls || s[1] != '.')
		return 0;
	i = 2;
	for (int part = 0; part < 2; part++) {
		size_t start = i;

		while (i < n && i - start < 4 && is_digit((unsigned char)s[i]))
			i++;
		if (i == start || i - start > 3)
			return 0;
		if (part == 0) {
			if (i == n || s[i] != '.')
				return 0;
			i++;
		}
	}
	if (i < n && s[i] != ' ')
		return 0;
	return i;
}

/* Appends line, sanitised, plus CRLF to p->cur.text. */
static int append_line(struct smtp_reply_parser *p, const char *line,
		       size_t len)
{
	struct smtp_reply *r = &p->cur;
	const unsigned char *u = (const unsigned char *)line;
	size_t need = r->text_len + len + 3;	/* CR LF NUL */

	if (need > p->cap) {
		size_t cap = p->cap ? p->cap : 256;
		char *t;

		while (cap < need)
			cap *= 2;
		if ((t = realloc(r->text, cap)) == NULL)
			return -1;
		r->text = t;
		p->cap = cap;
	}
	for (size_t i = 0; i < len;) {
		size_t l = u[i] >= 0x80 ? moat_utf8_len(u + i, len - i) : 1;

		if (l > 1) {
			memcpy(r->text + r->text_len, line + i, l);
			r->text_len += l;
			i += l;
			continue;
		}
		r->text[r->text_len++] = (u[i] == '\t' || (u[i] >= 0x20 && u[i] < 0x7f))
		    ? line[i] : '?';
		i++;
	}
	memcpy(r->text + r->text_len, "\r\n", 3);
	r->text_len += 2;
	return 0;
}

int smtp_reply_feed(struct smtp_reply_parser *p, const char *line, size_t len)
{
	struct smtp_reply *r = &p->cur;
	int code, final;

	if (p->done_)
		smtp_reply_parser_free(p);
	if (len < 3 || len > SMTP_REPLY_MAX_LINE)
		return reply_error(p);
	for (int i = 0; i < 3; i++)
		if (!is_digit((unsigned char)line[i]))
			return reply_error(p);
	code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
	if (code < 200 || code > 599)
		return reply_error(p);
	if (len == 3 || line[3] == ' ')
		final = 1;
	else if (line[3] == '-')
		final = 0;
	else
		return reply_error(p);
	if (r->nlines > 0 && code != r->code)
		return reply_error(p);
	if (r->nlines == SMTP_REPLY_MAX_LINES)
		return reply_error(p);
	if (r->nlines == 0) {
		size_t e = len > 4 ? enhanced_len(line + 4, len - 4, line[0]) : 0;

		r->code = code;
		memcpy(r->enhanced, line + 4, e);
		r->enhanced[e] = '\0';
	}
	if (append_line(p, line, len) != 0)
		return reply_error(p);
	r->nlines++;
	if (!final)
		return 0;
	p->done_ = 1;
	return 1;
}

void smtp_reply_parser_take(struct smtp_reply_parser *p, struct smtp_reply *out)
{
	*out = p->cur;
	memset(&p->cur, 0, sizeof(p->cur));
	p->cap = 0;
	p->done_ = 0;
}

const char *smtp_reply_last_text(const struct smtp_reply *r, size_t *len)
{
	const char *start, *end, *s;
	size_t elen = strlen(r->enhanced);

	*len = 0;
	if (r->text == NULL || r->text_len < 5)
		return "";
	end = r->text + r->text_len - 2;	/* the final CRLF */
	for (start = end; start > r->text && start[-1] != '\n'; start--)
		;
	s = start + 3;
	if (s < end)
		s++;		/* the separator */
	if (elen > 0 && (size_t)(end - s) >= elen && memcmp(s, r->enhanced, elen) == 0
	    && (s + elen == end || s[elen] == ' ')) {
		s += elen;
		if (s < end)
			s++;
	}
	*len = (size_t)(end - s);
	return s;
}

/* EHLO keywords. */
enum cap_arg { CAP_ARG_NONE, CAP_ARG_SIZE, CAP_ARG_XCLIENT, CAP_ARG_AUTH };

static const struct cap_def {
	const char *name;
	unsigned bit;
	enum cap_arg arg;
} cap_defs[] = {
	{ "PIPELINING", SMTP_EXT_PIPELINING, CAP_ARG_NONE },
	{ "SIZE", SMTP_EXT_SIZE, CAP_ARG_SIZE },
	{ "8BITMIME", SMTP_EXT_8BITMIME, CAP_ARG_NONE },
	{ "SMTPUTF8", SMTP_EXT_SMTPUTF8, CAP_ARG_NONE },
	{ "ENHANCEDSTATUSCODES", SMTP_EXT_ENHANCEDSTATUSCODES, CAP_ARG_NONE },
	{ "DSN", SMTP_EXT_DSN, CAP_ARG_NONE },
	{ "XCLIENT", SMTP_EXT_XCLIENT, CAP_ARG_XCLIENT },
	{ "STARTTLS", SMTP_EXT_STARTTLS, CAP_ARG_NONE },
	{ "AUTH", SMTP_EXT_AUTH, CAP_ARG_AUTH },
	{ "CHUNKING", SMTP_EXT_CHUNKING, CAP_ARG_NONE },
	{ "XFORWARD", SMTP_EXT_XFORWARD, CAP_ARG_NONE },
};

static const struct xclient_def {
	const char *name;
	unsigned bit;
} xclient_defs[] = {
	{ "NAME", SMTP_XCLIENT_NAME },
	{ "ADDR", SMTP_XCLIENT_ADDR },
	{ "PORT", SMTP_XCLIENT_PORT },
	{ "PROTO", SMTP_XCLIENT_PROTO },
	{ "HELO", SMTP_XCLIENT_HELO },
	{ "LOGIN", SMTP_XCLIENT_LOGIN },
	{ "DESTADDR", SMTP_XCLIENT_DESTADDR },
	{ "DESTPORT", SMTP_XCLIENT_DESTPORT },
};

static unsigned long parse_size(const char *s, size_t n)
{
	unsigned long v = 0;

	if (n == 0)
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned d;

		if (!is_digit((unsigned char)s[i]))
			return 0;
		d = (unsigned)(s[i] - '0');
		if (v > (ULONG_MAX - d) / 10)
			return ULONG_MAX;
		v = v * 10 + d;
	}
	return v;
}

/* One capability line's text after "250-"/"250 ". */
static void caps_line(const char *s, size_t n, struct smtp_caps *out)
{
	size_t k = 0, i;
	const struct cap_def *def = NULL;
	int first = 1;

	while (k < n && s[k] != ' ' && s[k] != '=')
		k++;
	for (size_t j = 0; j < NELEM(cap_defs); j++)
		if (word_eq(s, k, cap_defs[j].name))
			def = &cap_defs[j];
	if (def == NULL)
		return;
	out->ext |= def->bit;
	for (i = k; i < n;) {
		size_t t;

		while (i < n && (s[i] == ' ' || s[i] == '='))
			i++;
		for (t = i; t < n && s[t] != ' '; t++)
			;
		if (t == i)
			break;
		if (def->arg == CAP_ARG_SIZE && first)
			out->size = parse_size(s + i, t - i);
		else if (def->arg == CAP_ARG_XCLIENT) {
			for (size_t j = 0; j < NELEM(xclient_defs); j++)
				if (word_eq(s + i, t - i, xclient_defs[j].name))
					out->xclient |= xclient_defs[j].bit;
		} else if (def->arg == CAP_ARG_AUTH)
			out->auth |= sasl_mech_lookup(s + i, t - i);
		first = 0;
		i = t;
	}
}

int smtp_caps_parse(const struct smtp_reply *r, struct smtp_caps *out)
{
	const char *s, *end;
	size_t line = 0;

	memset(out, 0, sizeof(*out));
	if (r->code < 200 || r->code > 299)
		return -1;
	if (r->text == NULL)
		return 0;
	s = r->text;
	end = r->text + r->text_len;
	while (s < end) {
		const char *nl = memchr(s, '\n', (size_t)(end - s));
		const char *eol = nl ? nl : end;
		size_t n = (size_t)(eol - s);

		if (n > 0 && s[n - 1] == '\r')
			n--;
		if (line++ > 0 && n > 4)
			caps_line(s + 4, n - 4, out);
		s = nl ? nl + 1 : end;
	}
	return 0;
}

/* snprintf-like appender that never overruns and keeps buf terminated. */
struct strbuf {
	char *buf;
	size_t len, pos;
};

static void sb_put(struct strbuf *b, const char *s)
{
	for (; *s; s++) {
		if (b->pos + 1 < b->len)
			b->buf[b->pos++] = *s;
	}
	if (b->len > 0)
		b->buf[b->pos] = '\0';
}

static void sb_ulong(struct strbuf *b, unsigned long v)
{
	char tmp[24];
	size_t i = sizeof(tmp) - 1;

	tmp[i] = '\0';
	do {
		tmp[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	sb_put(b, tmp + i);
}

const char *smtp_caps_format(const struct smtp_caps *c, char *buf, size_t len)
{
	struct strbuf b = { buf, len, 0 };
	const char *sep = "";

	if (len > 0)
		buf[0] = '\0';
	for (size_t j = 0; j < NELEM(cap_defs); j++) {
		const struct cap_def *d = &cap_defs[j];

		if (!(c->ext & d->bit))
			continue;
		sb_put(&b, sep);
		sb_put(&b, d->name);
		sep = " ";
		if (d->arg == CAP_ARG_SIZE && c->size != 0) {
			sb_put(&b, "=");
			sb_ulong(&b, c->size);
		} else if (d->arg == CAP_ARG_XCLIENT && c->xclient != 0) {
			const char *asep = "=";

			for (size_t k = 0; k < NELEM(xclient_defs); k++) {
				if (!(c->xclient & xclient_defs[k].bit))
					continue;
				sb_put(&b, asep);
				sb_put(&b, xclient_defs[k].name);
				asep = ",";
			}
		}
	}
	return buf;
}
