/*
 * test_smtp_reply - unit tests for the reply parser and EHLO capability
 * parsing/formatting (proxy/smtp_reply.c).
 */
#include "sasl.h"
#include "smtp_reply.h"
#include "unit.h"

#include <limits.h>
#include <string.h>

/* Feeds NULL-terminated lines; returns the last feed result, and the
 * reply in *r when complete. */
static int feed_lines(const char *const *lines, struct smtp_reply *r)
{
	struct smtp_reply_parser p;
	int rc = -2;

	smtp_reply_parser_init(&p);
	memset(r, 0, sizeof(*r));
	for (; *lines; lines++) {
		rc = smtp_reply_feed(&p, *lines, strlen(*lines));
		if (rc != 0)
			break;
	}
	if (rc == 1)
		smtp_reply_parser_take(&p, r);
	smtp_reply_parser_free(&p);
	return rc;
}

static int text_is(const struct smtp_reply *r, const char *s)
{
	return r->text_len == strlen(s) && memcmp(r->text, s, r->text_len) == 0
	    && r->text[r->text_len] == '\0';
}

static int last_is(const struct smtp_reply *r, const char *s)
{
	size_t n;
	const char *t = smtp_reply_last_text(r, &n);

	return n == strlen(s) && memcmp(t, s, n) == 0;
}

TEST(single_line)
{
	const char *l[] = { "250 2.0.0 Ok: queued as 4Xyz", NULL };
	struct smtp_reply r;

	CHECK(feed_lines(l, &r) == 1);
	CHECK(r.code == 250 && r.nlines == 1);
	CHECK(strcmp(r.enhanced, "2.0.0") == 0);
	CHECK(text_is(&r, "250 2.0.0 Ok: queued as 4Xyz\r\n"));
	CHECK(last_is(&r, "Ok: queued as 4Xyz"));
	smtp_reply_clear(&r);
	CHECK(r.text == NULL);
}

TEST(bare_code)
{
	const char *l[] = { "354", NULL };
	const char *l2[] = { "250-first", "250", NULL };
	struct smtp_reply r;

	CHECK(feed_lines(l, &r) == 1 && r.code == 354 && r.enhanced[0] == '\0');
	CHECK(text_is(&r, "354\r\n") && last_is(&r, ""));
	smtp_reply_clear(&r);
	CHECK(feed_lines(l2, &r) == 1 && r.nlines == 2);
	CHECK(last_is(&r, ""));
	smtp_reply_clear(&r);
}

TEST(continuation)
{
	const char *l[] = { "550-5.7.1 Rejected:", "550-5.7.1 see", "550 5.7.1 http://x/", NULL };
	struct smtp_reply_parser p;
	struct smtp_reply r;

	CHECK(feed_lines(l, &r) == 1);
	CHECK(r.code == 550 && r.nlines == 3 && strcmp(r.enhanced, "5.7.1") == 0);
	CHECK(text_is(&r, "550-5.7.1 Rejected:\r\n550-5.7.1 see\r\n550 5.7.1 http://x/\r\n"));
	CHECK(last_is(&r, "http://x/"));
	smtp_reply_clear(&r);

	/* Incremental: 0, 0, then 1. */
	smtp_reply_parser_init(&p);
	CHECK(smtp_reply_feed(&p, "250-a", 5) == 0);
	CHECK(smtp_reply_feed(&p, "250-b", 5) == 0);
	CHECK(smtp_reply_feed(&p, "250 c", 5) == 1);
	smtp_reply_parser_take(&p, &r);
	CHECK(r.nlines == 3 && text_is(&r, "250-a\r\n250-b\r\n250 c\r\n"));
	smtp_reply_clear(&r);
	/* The parser is reusable after take. */
	CHECK(smtp_reply_feed(&p, "221 bye", 7) == 1);
	smtp_reply_parser_take(&p, &r);
	CHECK(r.code == 221 && r.nlines == 1);
	smtp_reply_clear(&r);
	smtp_reply_parser_free(&p);
}

TEST(untaken_reply_discarded)
{
	struct smtp_reply_parser p;
	struct smtp_reply r;

	smtp_reply_parser_init(&p);
	CHECK(smtp_reply_feed(&p, "250 a", 5) == 1);
	CHECK(smtp_reply_feed(&p, "451 b", 5) == 1);
	smtp_reply_parser_take(&p, &r);
	CHECK(r.code == 451 && r.nlines == 1 && text_is(&r, "451 b\r\n"));
	smtp_reply_clear(&r);
	smtp_reply_parser_free(&p);
}

TEST(bad_codes)
{
	static const char *const bad[] = {
		"", "25", "2a0 x", "199 x", "600 x", "099 x", "250x", "250_x",
		" 250 x", "-250 x", "250\tx",
	};
	int ok = 1;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct smtp_reply_parser p;

		smtp_reply_parser_init(&p);
		if (smtp_reply_feed(&p, bad[i], strlen(bad[i])) != -1)
			ok = 0;
		if (p.cur.text != NULL || p.cur.nlines != 0)
			ok = 0;
		smtp_reply_parser_free(&p);
	}
	CHECK(ok);
}

TEST(inconsistent_codes)
{
	const char *l[] = { "250-a", "550 b", NULL };
	const char *l2[] = { "250-a", "251-b", "250 c", NULL };
	struct smtp_reply_parser p;
	struct smtp_reply r;

	CHECK(feed_lines(l, &r) == -1);
	CHECK(feed_lines(l2, &r) == -1);
	/* After -1 the parser is reset and takes a fresh reply. */
	smtp_reply_parser_init(&p);
	CHECK(smtp_reply_feed(&p, "250-a", 5) == 0);
	CHECK(smtp_reply_feed(&p, "554 b", 5) == -1);
	CHECK(smtp_reply_feed(&p, "554 c", 5) == 1);
	smtp_reply_parser_take(&p, &r);
	CHECK(r.code == 554 && r.nlines == 1);
	smtp_reply_clear(&r);
	smtp_reply_parser_free(&p);
}

TEST(limits)
{
	struct smtp_reply_parser p;
	static char line[SMTP_REPLY_MAX_LINE + 2];
	int rc = 0, i;

	smtp_reply_parser_init(&p);
	for (i = 0; i < SMTP_REPLY_MAX_LINES - 1; i++)
		rc |= smtp_reply_feed(&p, "250-x", 5);
	CHECK(rc == 0);
	CHECK(smtp_reply_feed(&p, "250-x", 5) == 0);	/* line 100 */
	CHECK(smtp_reply_feed(&p, "250 x", 5) == -1);	/* line 101 */
	smtp_reply_parser_free(&p);

	smtp_reply_parser_init(&p);
	for (i = 0; i < SMTP_REPLY_MAX_LINES - 1; i++)
		smtp_reply_feed(&p, "250-x", 5);
	CHECK(smtp_reply_feed(&p, "250 x", 5) == 1);
	CHECK(p.cur.nlines == SMTP_REPLY_MAX_LINES);
	smtp_reply_parser_free(&p);

	memset(line, 'a', sizeof(line));
	memcpy(line, "250 ", 4);
	smtp_reply_parser_init(&p);
	CHECK(smtp_reply_feed(&p, line, SMTP_REPLY_MAX_LINE + 1) == -1);
	CHECK(smtp_reply_feed(&p, line, SMTP_REPLY_MAX_LINE) == 1);
	CHECK(p.cur.text_len == SMTP_REPLY_MAX_LINE + 2);
	smtp_reply_parser_free(&p);
}

TEST(enhanced_codes)
{
	struct smtp_reply r;
	const char *a[] = { "250 2.1.0 Ok", NULL };
	const char *b[] = { "250 5.1.0 mismatch", NULL };
	const char *c[] = { "550 5.1.1000 too long", NULL };
	const char *d[] = { "550 5.1.1", NULL };
	const char *e[] = { "550 5.1.1x", NULL };
	const char *f[] = { "451-4.3.0 a", "451 4.3.0 b", NULL };
	const char *g[] = { "250 ok 2.1.0", NULL };
	const char *h[] = { "550 5.123.456 x", NULL };

	CHECK(feed_lines(a, &r) == 1 && strcmp(r.enhanced, "2.1.0") == 0);
	smtp_reply_clear(&r);
	CHECK(feed_lines(b, &r) == 1 && r.enhanced[0] == '\0');
	CHECK(last_is(&r, "5.1.0 mismatch"));
	smtp_reply_clear(&r);
	CHECK(feed_lines(c, &r) == 1 && r.enhanced[0] == '\0');
	smtp_reply_clear(&r);
	CHECK(feed_lines(d, &r) == 1 && strcmp(r.enhanced, "5.1.1") == 0);
	CHECK(last_is(&r, ""));
	smtp_reply_clear(&r);
	CHECK(feed_lines(e, &r) == 1 && r.enhanced[0] == '\0');
	smtp_reply_clear(&r);
	CHECK(feed_lines(f, &r) == 1 && strcmp(r.enhanced, "4.3.0") == 0);
	CHECK(last_is(&r, "b"));
	smtp_reply_clear(&r);
	CHECK(feed_lines(g, &r) == 1 && r.enhanced[0] == '\0');
	smtp_reply_clear(&r);
	CHECK(feed_lines(h, &r) == 1 && strcmp(r.enhanced, "5.123.456") == 0);
	smtp_reply_clear(&r);
}

TEST(sanitising)
{
	struct smtp_reply_parser p;
	struct smtp_reply r;
	static const char line[] = "250 a\tb\x01" "c\x7f" "d\xc3\xa9" "e\xc3" "f\xed\xa0\x80" "g\0h";

	smtp_reply_parser_init(&p);
	CHECK(smtp_reply_feed(&p, line, sizeof(line) - 1) == 1);
	smtp_reply_parser_take(&p, &r);
	/* TAB and UTF-8 kept; controls, DEL, truncated UTF-8, surrogates,
	 * NUL replaced. */
	CHECK(text_is(&r, "250 a\tb?c?d\xc3\xa9" "e?f???g?h\r\n"));
	smtp_reply_clear(&r);
	smtp_reply_parser_free(&p);
}

static int caps_of(const char *const *lines, struct smtp_caps *c)
{
	struct smtp_reply r;
	int rc;

	if (feed_lines(lines, &r) != 1)
		return -2;
	rc = smtp_caps_parse(&r, c);
	smtp_reply_clear(&r);
	return rc;
}

TEST(caps_postfix_ehlo)
{
	const char *l[] = {
		"250-mx.example.com",
		"250-PIPELINING",
		"250-SIZE 10240000",
		"250-VRFY",
		"250-ETRN",
		"250-STARTTLS",
		"250-AUTH PLAIN LOGIN",
		"250-AUTH=PLAIN LOGIN",
		"250-ENHANCEDSTATUSCODES",
		"250-8BITMIME",
		"250-DSN",
		"250-SMTPUTF8",
		"250-XCLIENT NAME ADDR PORT PROTO HELO LOGIN DESTADDR DESTPORT",
		"250-XFORWARD NAME ADDR PROTO HELO",
		"250 CHUNKING",
		NULL
	};
	struct smtp_caps c;
	char buf[256];

	CHECK(caps_of(l, &c) == 0);
	CHECK(c.ext == (SMTP_EXT_PIPELINING | SMTP_EXT_SIZE | SMTP_EXT_8BITMIME
			| SMTP_EXT_SMTPUTF8 | SMTP_EXT_ENHANCEDSTATUSCODES
			| SMTP_EXT_DSN | SMTP_EXT_XCLIENT | SMTP_EXT_STARTTLS
			| SMTP_EXT_AUTH | SMTP_EXT_CHUNKING | SMTP_EXT_XFORWARD));
	CHECK(c.size == 10240000);
	CHECK(c.xclient == 0xff);
	CHECK(c.auth == (SASL_MECH_PLAIN | SASL_MECH_LOGIN));
	smtp_caps_format(&c, buf, sizeof(buf));
	CHECK(strcmp(buf, "PIPELINING SIZE=10240000 8BITMIME SMTPUTF8 "
		     "ENHANCEDSTATUSCODES DSN XCLIENT=NAME,ADDR,PORT,PROTO,HELO,"
		     "LOGIN,DESTADDR,DESTPORT STARTTLS AUTH CHUNKING XFORWARD") == 0);
}

TEST(caps_details)
{
	const char *greeting_only[] = { "250-PIPELINING SIZE", "250 8bitmime", NULL };
	const char *size_forms[] = { "250-x", "250-size", "250 xclient addr Helo bogus", NULL };
	const char *size_big[] = { "250-x", "250 SIZE 99999999999999999999999999", NULL };
	const char *size_junk[] = { "250-x", "250 SIZE 12k", NULL };
	const char *prefix[] = { "250-x", "250-SIZEX 5", "250-PIPELININGX", "250 XCLIENTS NAME", NULL };
	const char *fail[] = { "554 no", NULL };
	const char *single[] = { "250 mx.example.com", NULL };
	struct smtp_caps c;
	char buf[64];

	/* The first line is the greeting, not a capability. */
	CHECK(caps_of(greeting_only, &c) == 0);
	CHECK(c.ext == SMTP_EXT_8BITMIME && c.size == 0);
	CHECK(caps_of(size_forms, &c) == 0);
	CHECK(c.ext == (SMTP_EXT_SIZE | SMTP_EXT_XCLIENT) && c.size == 0);
	CHECK(c.xclient == (SMTP_XCLIENT_ADDR | SMTP_XCLIENT_HELO));
	CHECK(caps_of(size_big, &c) == 0 && c.size == ULONG_MAX);
	CHECK(caps_of(size_junk, &c) == 0 && c.ext == SMTP_EXT_SIZE && c.size == 0);
	CHECK(caps_of(prefix, &c) == 0 && c.ext == 0 && c.xclient == 0);
	CHECK(caps_of(fail, &c) == -1 && c.ext == 0);
	CHECK(caps_of(single, &c) == 0 && c.ext == 0);
	smtp_caps_format(&c, buf, sizeof(buf));
	CHECK(buf[0] == '\0');
}

TEST(caps_format_truncates)
{
	struct smtp_caps c = { SMTP_EXT_PIPELINING | SMTP_EXT_SIZE, 1000, 0, 0 };
	char buf[32];

	memset(buf, 'z', sizeof(buf));
	CHECK(smtp_caps_format(&c, buf, 8) == buf);
	CHECK(strcmp(buf, "PIPELIN") == 0 && buf[8] == 'z');
	smtp_caps_format(&c, buf, sizeof(buf));
	CHECK(strcmp(buf, "PIPELINING SIZE=1000") == 0);
	c.size = 0;
	smtp_caps_format(&c, buf, sizeof(buf));
	CHECK(strcmp(buf, "PIPELINING SIZE") == 0);
	buf[0] = 'z';
	smtp_caps_format(&c, buf, 1);
	CHECK(buf[0] == '\0');
	CHECK(smtp_caps_format(&c, NULL, 0) == NULL);
}

int main(void)
{
	RUN(single_line);
	RUN(bare_code);
	RUN(continuation);
	RUN(untaken_reply_discarded);
	RUN(bad_codes);
	RUN(inconsistent_codes);
	RUN(limits);
	RUN(enhanced_codes);
	RUN(sanitising);
	RUN(caps_postfix_ehlo);
	RUN(caps_details);
	RUN(caps_format_truncates);
	return unit_done();
}
