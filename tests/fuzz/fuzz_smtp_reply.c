/*
 * fuzz_smtp_reply - libFuzzer target for the reply parser and EHLO
 * capability parsing/formatting (proxy/smtp_reply.c).
 *
 * The input is split at LF (a CR before it is dropped) into lines fed
 * one by one, as an upstream connection would. Checks, abort()ing on
 * violation, for every complete reply:
 *  - code 200..599, the same 3 digits start every line, nlines lines
 *    each ending in CRLF, text NUL terminated;
 *  - the text holds only printable ASCII, TAB and well-formed UTF-8;
 *    feeding its lines to a fresh parser gives the same reply again
 *    (sanitising is idempotent);
 *  - an enhanced code is "c.s.d" with c the code's first digit;
 *  - smtp_reply_last_text() points inside the last line;
 *  - smtp_caps_parse() and smtp_caps_format() (into buffers of several
 *    sizes) stay in bounds and terminate the buffer.
 */
#include "smtp_reply.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Independent UTF-8 check (a decoder, not the library's table). */
static int valid_text_char(const unsigned char *s, size_t n, size_t *adv)
{
	unsigned cp;
	size_t need;

	*adv = 1;
	if (s[0] < 0x80)
		return s[0] == '\t' || (s[0] >= 0x20 && s[0] < 0x7f);
	if ((s[0] & 0xe0) == 0xc0)
		need = 2, cp = s[0] & 0x1f;
	else if ((s[0] & 0xf0) == 0xe0)
		need = 3, cp = s[0] & 0x0f;
	else if ((s[0] & 0xf8) == 0xf0)
		need = 4, cp = s[0] & 0x07;
	else
		return 0;
	if (n < need)
		return 0;
	for (size_t i = 1; i < need; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if ((need == 2 && cp < 0x80) || (need == 3 && cp < 0x800)
	    || (need == 4 && cp < 0x10000) || cp > 0x10ffff
	    || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	*adv = need;
	return 1;
}

static void check_reply(const struct smtp_reply *r, const uint8_t *data,
			size_t size)
{
	struct smtp_reply_parser p;
	struct smtp_caps caps;
	const char *t, *line, *last = NULL;
	size_t n = 0, tl;
	char code[4];
	int rc = 0;

	if (r->code < 200 || r->code > 599 || r->nlines == 0
	    || r->nlines > SMTP_REPLY_MAX_LINES || r->text == NULL
	    || r->text[r->text_len] != '\0')
		abort();
	code[0] = (char)('0' + r->code / 100);
	code[1] = (char)('0' + r->code / 10 % 10);
	code[2] = (char)('0' + r->code % 10);
	code[3] = '\0';
	if (r->enhanced[0] != '\0') {
		size_t e = strlen(r->enhanced);

		if (e < 5 || e > 9 || r->enhanced[0] != code[0]
		    || r->enhanced[1] != '.')
			abort();
	}

	/* Lines: code, CRLF, allowed bytes; refeed to a fresh parser. */
	smtp_reply_parser_init(&p);
	for (line = r->text; line < r->text + r->text_len; n++) {
		const char *crlf = memmem(line, (size_t)(r->text + r->text_len - line),
					  "\r\n", 2);
		size_t len;

		if (crlf == NULL || memcmp(line, code, 3) != 0)
			abort();
		len = (size_t)(crlf - line);
		for (size_t i = 0, adv; i < len; i += adv)
			if (!valid_text_char((const unsigned char *)line + i,
					     len - i, &adv))
				abort();
		if (rc != 0)
			abort();	/* more lines after the final one */
		rc = smtp_reply_feed(&p, line, len);
		if (rc < 0)
			abort();
		last = line;
		line = crlf + 2;
	}
	if (n != r->nlines || rc != 1)
		abort();
	if (p.cur.text_len != r->text_len
	    || memcmp(p.cur.text, r->text, r->text_len) != 0
	    || p.cur.code != r->code || strcmp(p.cur.enhanced, r->enhanced) != 0)
		abort();
	smtp_reply_parser_free(&p);

	t = smtp_reply_last_text(r, &tl);
	if (t < last || t + tl != r->text + r->text_len - 2)
		abort();

	if (smtp_caps_parse(r, &caps) != (r->code / 100 == 2 ? 0 : -1))
		abort();
	for (size_t sz = 0; sz < 4; sz++) {
		size_t blen = sz == 3 ? 512 : (size ? data[sz % size] % 64 : 0);
		char *buf = malloc(blen ? blen : 1);

		if (buf == NULL)
			abort();
		if (smtp_caps_format(&caps, buf, blen) != buf)
			abort();
		if (blen > 0 && strlen(buf) >= blen)
			abort();
		free(buf);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct smtp_reply_parser p;
	const char *s = (const char *)data, *end = s + size;

	smtp_reply_parser_init(&p);
	while (s < end) {
		const char *nl = memchr(s, '\n', (size_t)(end - s));
		size_t len = (size_t)((nl ? nl : end) - s);
		struct smtp_reply r;
		int rc;

		if (len > 0 && s[len - 1] == '\r')
			len--;
		rc = smtp_reply_feed(&p, s, len);
		if (rc == 1) {
			smtp_reply_parser_take(&p, &r);
			check_reply(&r, data, size);
			smtp_reply_clear(&r);
		} else if (rc == -1) {
			if (p.cur.nlines != 0 || p.cur.text != NULL)
				abort();
		} else if (rc != 0) {
			abort();
		}
		s = nl ? nl + 1 : end;
	}
	smtp_reply_parser_free(&p);
	return 0;
}
