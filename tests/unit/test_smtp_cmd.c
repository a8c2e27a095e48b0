/*
 * test_smtp_cmd - unit tests for command-line and MAIL/RCPT path
 * parsing (proxy/smtp_cmd.c).
 */
#include "smtp_cmd.h"
#include "unit.h"

#include <string.h>

#define S(lit) lit, sizeof(lit) - 1

static int arg_is(const struct smtp_cmd *c, const char *s)
{
	return c->arg_len == strlen(s) && memcmp(c->arg, s, c->arg_len) == 0;
}

TEST(verbs_case_insensitive)
{
	struct smtp_cmd c;

	CHECK(smtp_cmd_parse(S("ehlo client.example"), &c) == 0);
	CHECK(c.verb == SMTP_VERB_EHLO && strcmp(c.name, "EHLO") == 0);
	CHECK(arg_is(&c, "client.example"));
	CHECK(smtp_cmd_parse(S("MaIl FROM:<a@b>"), &c) == 0);
	CHECK(c.verb == SMTP_VERB_MAIL && arg_is(&c, "FROM:<a@b>"));
	CHECK(smtp_cmd_parse(S("starttls"), &c) == 0);
	CHECK(c.verb == SMTP_VERB_STARTTLS && arg_is(&c, "") && c.arg != NULL);
	CHECK(smtp_cmd_parse(S("XFORWARD NAME=x"), &c) == 0);
	CHECK(c.verb == SMTP_VERB_XFORWARD);
	CHECK(smtp_cmd_parse(S("xclient ADDR=1.2.3.4"), &c) == 0);
	CHECK(c.verb == SMTP_VERB_XCLIENT && arg_is(&c, "ADDR=1.2.3.4"));
	CHECK(smtp_cmd_parse(S("BDAT 100 LAST"), &c) == 0);
	CHECK(c.verb == SMTP_VERB_BDAT && arg_is(&c, "100 LAST"));
}

TEST(all_verbs_in_table)
{
	int ok = 1;

	for (int v = 1; v < SMTP_VERB__COUNT; v++) {
		const char *name = smtp_verb_name((enum smtp_verb)v);
		struct smtp_cmd c;

		if (strcmp(name, "UNKNOWN") == 0
		    || smtp_cmd_parse(name, strlen(name), &c) != 0
		    || c.verb != (enum smtp_verb)v || strcmp(c.name, name) != 0)
			ok = 0;
	}
	CHECK(ok);
	CHECK(strcmp(smtp_verb_name(SMTP_VERB_UNKNOWN), "UNKNOWN") == 0);
	CHECK(strcmp(smtp_verb_name((enum smtp_verb)999), "UNKNOWN") == 0);
}

TEST(unknown_and_prefixes)
{
	struct smtp_cmd c;

	CHECK(smtp_cmd_parse(S("MAILX FROM:<a@b>"), &c) == 0);
	CHECK(c.verb == SMTP_VERB_UNKNOWN && c.name == NULL);
	CHECK(smtp_cmd_parse(S("MAI"), &c) == 0 && c.verb == SMTP_VERB_UNKNOWN);
	CHECK(smtp_cmd_parse(S("STARTTLSX"), &c) == 0);
	CHECK(c.verb == SMTP_VERB_UNKNOWN);
	CHECK(smtp_cmd_parse("", 0, &c) == 0 && c.verb == SMTP_VERB_UNKNOWN);
	CHECK(smtp_cmd_parse(S(" MAIL FROM:<>"), &c) == 0);
	CHECK(c.verb == SMTP_VERB_UNKNOWN);	/* verb is the empty word */
	CHECK(smtp_cmd_parse(S("GET / HTTP/1.0"), &c) == 0);
	CHECK(c.verb == SMTP_VERB_UNKNOWN && arg_is(&c, "/ HTTP/1.0"));
}

TEST(argument_spaces)
{
	struct smtp_cmd c;

	CHECK(smtp_cmd_parse(S("HELO    host   "), &c) == 0);
	CHECK(c.verb == SMTP_VERB_HELO && arg_is(&c, "host"));
	CHECK(smtp_cmd_parse(S("NOOP   "), &c) == 0);
	CHECK(c.verb == SMTP_VERB_NOOP && arg_is(&c, ""));
	CHECK(smtp_cmd_parse(S("VRFY a  b"), &c) == 0 && arg_is(&c, "a  b"));
}

TEST(control_characters_rejected)
{
	struct smtp_cmd c;

	CHECK(smtp_cmd_parse(S("MAIL\tFROM:<a@b>"), &c) == -1);
	CHECK(smtp_cmd_parse(S("HELO a\tb"), &c) == -1);
	CHECK(smtp_cmd_parse(S("HELO a\0b"), &c) == -1);
	CHECK(smtp_cmd_parse(S("DATA\r"), &c) == -1);
	CHECK(smtp_cmd_parse(S("DATA\nQUIT"), &c) == -1);
	CHECK(smtp_cmd_parse(S("HELO \x7f"), &c) == -1);
	CHECK(smtp_cmd_parse(S("HELO \x1b[0m"), &c) == -1);
	/* UTF-8 in the argument is fine. */
	CHECK(smtp_cmd_parse(S("RCPT TO:<j\xc3\xb6rg@b\xc3\xbc.de>"), &c) == 0);
	CHECK(c.verb == SMTP_VERB_RCPT);
}

TEST(path_basic)
{
	struct smtp_path p;

	CHECK(smtp_path_parse(S("FROM:<a@example.com>"), 1, &p) == SMTP_PATH_OK);
	CHECK(strcmp(p.addr, "a@example.com") == 0 && p.nparams == 0);
	smtp_path_free(&p);
	CHECK(p.mem_ == NULL && p.addr == NULL);
	smtp_path_free(&p);	/* twice is harmless */
	CHECK(smtp_path_parse(S("from: <a@example.com>"), 1, &p) == SMTP_PATH_OK);
	CHECK(strcmp(p.addr, "a@example.com") == 0);
	smtp_path_free(&p);
	CHECK(smtp_path_parse(S("To:<b@[192.0.2.1]>"), 0, &p) == SMTP_PATH_OK);
	CHECK(strcmp(p.addr, "b@[192.0.2.1]") == 0);
	smtp_path_free(&p);
	CHECK(smtp_path_parse(S("TO:<b@[IPv6:2001:db8::1]>"), 0, &p) == SMTP_PATH_OK);
	CHECK(strcmp(p.addr, "b@[IPv6:2001:db8::1]") == 0);
	smtp_path_free(&p);
	CHECK(smtp_path_parse(S("TO:<postmaster>"), 0, &p) == SMTP_PATH_OK);
	CHECK(strcmp(p.addr, "postmaster") == 0);
	smtp_path_free(&p);
}

TEST(null_path)
{
	struct smtp_path p;

	CHECK(smtp_path_parse(S("FROM:<>"), 1, &p) == SMTP_PATH_OK);
	CHECK(p.addr != NULL && p.addr[0] == '\0');
	smtp_path_free(&p);
	CHECK(smtp_path_parse(S("TO:<>"), 0, &p) == SMTP_PATH_EADDR);
	CHECK(p.mem_ == NULL);
}

TEST(path_syntax_errors)
{
	struct smtp_path p;

	CHECK(smtp_path_parse(S("FROM:a@b"), 1, &p) == SMTP_PATH_ESYNTAX);
	CHECK(smtp_path_parse(S("FROM:<a@b"), 1, &p) == SMTP_PATH_ESYNTAX);
	CHECK(smtp_path_parse(S("FROM:  <a@b>"), 1, &p) == SMTP_PATH_ESYNTAX);
	CHECK(smtp_path_parse(S("FROM <a@b>"), 1, &p) == SMTP_PATH_ESYNTAX);
	CHECK(smtp_path_parse(S("TO:<a@b>"), 1, &p) == SMTP_PATH_ESYNTAX);
	CHECK(smtp_path_parse(S("FROM:<a@b>"), 0, &p) == SMTP_PATH_ESYNTAX);
	CHECK(smtp_path_parse(S("FROM:<a@b>x"), 1, &p) == SMTP_PATH_ESYNTAX);
	CHECK(smtp_path_parse("", 0, 1, &p) == SMTP_PATH_ESYNTAX);
	CHECK(smtp_path_parse(S("FROM:"), 1, &p) == SMTP_PATH_ESYNTAX);
	CHECK(smtp_path_parse(S("FR"), 1, &p) == SMTP_PATH_ESYNTAX);
}

TEST(path_address_errors)
{
	struct smtp_path p;

	CHECK(smtp_path_parse(S("TO:<a b@c>"), 0, &p) == SMTP_PATH_EADDR);
	CHECK(smtp_path_parse(S("TO:<a@>"), 0, &p) == SMTP_PATH_EADDR);
	CHECK(smtp_path_parse(S("TO:<@b>"), 0, &p) == SMTP_PATH_EADDR);
	CHECK(smtp_path_parse(S("TO:<a@b@c>"), 0, &p) == SMTP_PATH_EADDR);
	CHECK(smtp_path_parse(S("TO:<a@b..c>"), 0, &p) == SMTP_PATH_EADDR);
	CHECK(smtp_path_parse(S("TO:<a@b c>"), 0, &p) == SMTP_PATH_EADDR);
	CHECK(smtp_path_parse(S("TO:<a\x01@b>"), 0, &p) == SMTP_PATH_EADDR);
	CHECK(smtp_path_parse(S("TO:<a<b@c>"), 0, &p) == SMTP_PATH_EADDR);
	CHECK(smtp_path_parse(S("TO:<\"a@b>"), 0, &p) == SMTP_PATH_ESYNTAX);
	CHECK(smtp_path_parse(S("TO:<\"a\"x@b>"), 0, &p) == SMTP_PATH_EADDR);
	CHECK(smtp_path_parse(S("TO:<a@[1.2.3.4>"), 0, &p) == SMTP_PATH_EADDR);
	CHECK(smtp_path_parse(S("TO:<a@[1.2<3.4]>"), 0, &p) == SMTP_PATH_EADDR);
	CHECK(smtp_path_parse(S("TO:<a@[]>"), 0, &p) == SMTP_PATH_EADDR);
	/* Invalid UTF-8: a lone continuation byte, an overlong "/". */
	CHECK(smtp_path_parse(S("TO:<a\x80@b>"), 0, &p) == SMTP_PATH_EADDR);
	CHECK(smtp_path_parse(S("TO:<a\xc0\xaf@b>"), 0, &p) == SMTP_PATH_EADDR);
}

TEST(quoted_local_part)
{
	struct smtp_path p;

	CHECK(smtp_path_parse(S("TO:<\"john doe\"@example.com>"), 0, &p)
	      == SMTP_PATH_OK);
	CHECK(strcmp(p.addr, "\"john doe\"@example.com") == 0);
	smtp_path_free(&p);
	/* A quoted ">" does not end the path; escapes work. */
	CHECK(smtp_path_parse(S("TO:<\"a>b\\\"c\"@example.com> NOTIFY=NEVER"), 0,
			      &p) == SMTP_PATH_OK);
	CHECK(strcmp(p.addr, "\"a>b\\\"c\"@example.com") == 0);
	CHECK(p.nparams == 1);
	smtp_path_free(&p);
}

TEST(source_route_stripped)
{
	struct smtp_path p;

	CHECK(smtp_path_parse(S("TO:<@a.example,@b.example:u@c.example>"), 0, &p)
	      == SMTP_PATH_OK);
	CHECK(strcmp(p.addr, "u@c.example") == 0);
	smtp_path_free(&p);
	CHECK(smtp_path_parse(S("FROM:<@a:u@c>"), 1, &p) == SMTP_PATH_OK);
	CHECK(strcmp(p.addr, "u@c") == 0);
	smtp_path_free(&p);
	CHECK(smtp_path_parse(S("TO:<@a,b:u@c>"), 0, &p) == SMTP_PATH_EADDR);
	CHECK(smtp_path_parse(S("TO:<@:u@c>"), 0, &p) == SMTP_PATH_EADDR);
	CHECK(smtp_path_parse(S("TO:<@a,@b>"), 0, &p) == SMTP_PATH_EADDR);
	CHECK(smtp_path_parse(S("FROM:<@a:>"), 1, &p) == SMTP_PATH_EADDR);
}

TEST(path_length)
{
	char buf[400];
	struct smtp_path p;
	size_t n;

	/* Address of exactly 256 octets: ok; 257: too long. */
	memcpy(buf, "TO:<", 4);
	memset(buf + 4, 'a', 250);
	memcpy(buf + 254, "@b.com>", 7);
	n = 261;
	CHECK(smtp_path_parse(buf, n, 0, &p) == SMTP_PATH_OK);
	CHECK(strlen(p.addr) == 256);
	smtp_path_free(&p);
	memset(buf + 4, 'a', 251);
	memcpy(buf + 255, "@b.com>", 7);
	CHECK(smtp_path_parse(buf, n + 1, 0, &p) == SMTP_PATH_ELONG);
}

TEST(params)
{
	struct smtp_path p;
	int found = -1;

	CHECK(smtp_path_parse(S("FROM:<a@b> size=1000  BODY=8BITMIME SMTPUTF8 "),
			      1, &p) == SMTP_PATH_OK);
	CHECK(p.nparams == 3);
	CHECK(strcmp(p.params[0].keyword, "SIZE") == 0);
	CHECK(strcmp(p.params[0].value, "1000") == 0);
	CHECK(strcmp(p.params[1].keyword, "BODY") == 0);
	CHECK(strcmp(p.params[1].value, "8BITMIME") == 0);
	CHECK(strcmp(p.params[2].keyword, "SMTPUTF8") == 0);
	CHECK(p.params[2].value == NULL);
	CHECK(strcmp(smtp_path_param(&p, "Size", &found), "1000") == 0);
	CHECK(found == 1);
	CHECK(smtp_path_param(&p, "smtputf8", &found) == NULL && found == 1);
	CHECK(smtp_path_param(&p, "RET", &found) == NULL && found == 0);
	CHECK(smtp_path_param(&p, "SIZ", NULL) == NULL);
	smtp_path_free(&p);
	CHECK(smtp_path_parse(S("TO:<a@b> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a+40b"),
			      0, &p) == SMTP_PATH_OK);
	CHECK(strcmp(smtp_path_param(&p, "ORCPT", NULL), "rfc822;a+40b") == 0);
	smtp_path_free(&p);
}

TEST(param_errors)
{
	struct smtp_path p;

	CHECK(smtp_path_parse(S("FROM:<a@b> SIZE="), 1, &p) == SMTP_PATH_EPARAM);
	CHECK(smtp_path_parse(S("FROM:<a@b> =1"), 1, &p) == SMTP_PATH_EPARAM);
	CHECK(smtp_path_parse(S("FROM:<a@b> -X=1"), 1, &p) == SMTP_PATH_EPARAM);
	CHECK(smtp_path_parse(S("FROM:<a@b> S_Z=1"), 1, &p) == SMTP_PATH_EPARAM);
	CHECK(smtp_path_parse(S("FROM:<a@b> A=b=c"), 1, &p) == SMTP_PATH_EPARAM);
	CHECK(smtp_path_parse(S("FROM:<a@b> SIZE=1 size=2"), 1, &p)
	      == SMTP_PATH_EPARAM);
	/* 8-bit values only with a UTF-8 address. */
	CHECK(smtp_path_parse(S("FROM:<a@b> X=\xc3\xa9"), 1, &p) == SMTP_PATH_EPARAM);
	CHECK(smtp_path_parse(S("FROM:<\xc3\xa9@b> X=\xc3\xa9"), 1, &p)
	      == SMTP_PATH_OK);
	CHECK(strcmp(p.addr, "\xc3\xa9@b") == 0);
	smtp_path_free(&p);
	CHECK(smtp_path_parse(S("FROM:<\xc3\xa9@b> X=\xc3"), 1, &p)
	      == SMTP_PATH_EPARAM);
}

TEST(param_limit)
{
	char buf[512];
	size_t n = 0;
	struct smtp_path p;

	n += (size_t)sprintf(buf + n, "FROM:<a@b>");
	for (int i = 0; i < SMTP_PATH_MAX_PARAMS; i++)
		n += (size_t)sprintf(buf + n, " P%d=%d", i, i);
	CHECK(smtp_path_parse(buf, n, 1, &p) == SMTP_PATH_OK);
	CHECK(p.nparams == SMTP_PATH_MAX_PARAMS);
	CHECK(strcmp(smtp_path_param(&p, "p15", NULL), "15") == 0);
	smtp_path_free(&p);
	n += (size_t)sprintf(buf + n, " ONEMORE");
	CHECK(smtp_path_parse(buf, n, 1, &p) == SMTP_PATH_EPARAM);
}

TEST(cmd_then_path)
{
	static const char line[] = "MAIL FROM:<sender@example.org> SIZE=42";
	struct smtp_cmd c;
	struct smtp_path p;

	CHECK(smtp_cmd_parse(line, sizeof(line) - 1, &c) == 0);
	CHECK(c.verb == SMTP_VERB_MAIL);
	CHECK(smtp_path_parse(c.arg, c.arg_len, 1, &p) == SMTP_PATH_OK);
	CHECK(strcmp(p.addr, "sender@example.org") == 0);
	CHECK(strcmp(smtp_path_param(&p, "SIZE", NULL), "42") == 0);
	smtp_path_free(&p);
}

int main(void)
{
	RUN(verbs_case_insensitive);
	RUN(all_verbs_in_table);
	RUN(unknown_and_prefixes);
	RUN(argument_spaces);
	RUN(control_characters_rejected);
	RUN(path_basic);
	RUN(null_path);
	RUN(path_syntax_errors);
	RUN(path_address_errors);
	RUN(quoted_local_part);
	RUN(source_route_stripped);
	RUN(path_length);
	RUN(params);
	RUN(param_errors);
	RUN(param_limit);
	RUN(cmd_then_path);
	return unit_done();
}
