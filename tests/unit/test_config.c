/*
 * test_config - util/config.c: defaults, every error reported as
 * "file:line: what was expected", -o overrides (global and listener),
 * include(), the XCLIENT safety rule, reference counting.
 */
#include "config.h"
#include "unit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[] = "/tmp/moat-config-test.XXXXXX";

static const char *write_file(const char *name, const char *text)
{
	static char path[4][512];
	static int i;
	char *p = path[i++ % 4];
	snprintf(p, 512, "%s/%s", dir, name);
	FILE *f = fopen(p, "w");
	fputs(text, f);
	fclose(f);
	return p;
}

static int has_error(const struct moat_config_errors *e, const char *needle)
{
	for (size_t i = 0; i < e->n; i++)
		if (strstr(e->msg[i], needle))
			return 1;
	return 0;
}

#define GOOD_LISTENER "listener in {\n listen = \"127.0.0.1:2525\"\n upstream = \"127.0.0.1:10025\"\n}\n"

TEST(defaults)
{
	struct moat_config *c;
	struct moat_config_errors e;
	const char *p = write_file("a.conf", GOOD_LISTENER);
	CHECK(moat_config_load(p, NULL, 0, &c, &e) == 0);
	CHECK(c->max_command_line == 512 && c->max_text_line == 1000);
	CHECK(c->message_size_limit == 10240000 && c->max_recipients == 1000);
	CHECK(c->nlisteners == 1 && c->listeners[0].xclient == 1);
	CHECK(c->listeners[0].role_id == MOAT_ROLE_INBOUND);
	CHECK(strcmp(c->spool_directory, "/var/spool/moat") == 0);
	CHECK(c->hostname && c->hostname[0]);
	moat_config_unref(c);
	moat_config_errors_free(&e);
}

TEST(every_range_error_with_file_and_line)
{
	struct moat_config *c;
	struct moat_config_errors e;
	const char *p = write_file("b.conf",
		"max_connections = 0\n"
		"max_errors = 5\n"
		"max_text_line = 999\n"
		"listener in {\n"
		"  listen = \"127.0.0.1:2525\"\n"
		"  role = \"outbound\"\n"
		"  upstream = \"127.0.0.1:10025\"\n"
		"}\n");
	char want[600];
	CHECK(moat_config_load(p, NULL, 0, &c, &e) == -1 && c == NULL);
	CHECK(e.n == 3);
	snprintf(want, sizeof(want), "%s:1: max_connections: expected an integer from 1 to", p);
	CHECK(has_error(&e, want));
	snprintf(want, sizeof(want), "%s:3: max_text_line", p);
	CHECK(has_error(&e, want));
	snprintf(want, sizeof(want), "%s:6: role: expected one of \"inbound\", \"submission\"", p);
	CHECK(has_error(&e, want));
	moat_config_errors_free(&e);
}

TEST(syntax_and_unknown_option)
{
	struct moat_config *c;
	struct moat_config_errors e;
	const char *p = write_file("c.conf", "max_connections = 10\nno_such_option = 1\n" GOOD_LISTENER);
	char want[600];
	CHECK(moat_config_load(p, NULL, 0, &c, &e) == -1);
	snprintf(want, sizeof(want), "%s:2:", p);
	CHECK(has_error(&e, want) && has_error(&e, "no_such_option"));
	moat_config_errors_free(&e);
	p = write_file("d.conf", "max_connections = \"many\"\n" GOOD_LISTENER);
	CHECK(moat_config_load(p, NULL, 0, &c, &e) == -1);
	snprintf(want, sizeof(want), "%s:1:", p);
	CHECK(has_error(&e, want));
	moat_config_errors_free(&e);
}

TEST(overrides)
{
	struct moat_config *c;
	struct moat_config_errors e;
	const char *p = write_file("e.conf", GOOD_LISTENER);
	char *ov[] = {"max_recipients=7", "listener.in.listen=127.0.0.1:3535",
		      "listener.in.role=submission", "hostname=mx.example"};
	CHECK(moat_config_load(p, ov, 4, &c, &e) == 0);
	CHECK(c->max_recipients == 7);
	CHECK(strcmp(c->listeners[0].listen, "127.0.0.1:3535") == 0);
	CHECK(c->listeners[0].role_id == MOAT_ROLE_SUBMISSION);
	CHECK(strcmp(c->hostname, "mx.example") == 0);
	moat_config_unref(c);
	moat_config_errors_free(&e);

	char *bad[] = {"max_recipients=0", "listener.nope.listen=1.2.3.4:25", "junk"};
	CHECK(moat_config_load(p, bad, 3, &c, &e) == -1);
	CHECK(has_error(&e, "-o max_recipients=0: max_recipients: expected an integer"));
	CHECK(has_error(&e, "no listener \"nope\""));
	CHECK(has_error(&e, "-o junk: expected name=value"));
	moat_config_errors_free(&e);
}

TEST(xclient_off_needs_acknowledgement)
{
	struct moat_config *c;
	struct moat_config_errors e;
	const char *p = write_file("f.conf", "listener in {\n listen = \"127.0.0.1:2525\"\n"
				   " upstream = \"127.0.0.1:10025\"\n xclient = no\n}\n");
	CHECK(moat_config_load(p, NULL, 0, &c, &e) == -1);
	CHECK(has_error(&e, "xclient = no needs proxy_address_untrusted = yes"));
	moat_config_errors_free(&e);
	char *ack[] = {"listener.in.proxy_address_untrusted=yes"};
	CHECK(moat_config_load(p, ack, 1, &c, &e) == 0);
	moat_config_unref(c);
	moat_config_errors_free(&e);
}

TEST(addresses_and_required_options)
{
	struct moat_config *c;
	struct moat_config_errors e;
	const char *p = write_file("g.conf", "listener a {\n listen = \"127.0.0.1:99999\"\n}\n"
				   "listener b {\n listen = \"[::1]:25\"\n upstream = \"nohostport\"\n}\n");
	CHECK(moat_config_load(p, NULL, 0, &c, &e) == -1);
	CHECK(has_error(&e, "listener a: listen: expected a port number"));
	CHECK(has_error(&e, "listener a: expected upstream"));
	CHECK(has_error(&e, "listener b: upstream: expected \"host:port\""));
	moat_config_errors_free(&e);
	p = write_file("h.conf", "max_errors = 3\n");
	CHECK(moat_config_load(p, NULL, 0, &c, &e) == -1);
	CHECK(has_error(&e, "expected at least one listener"));
	moat_config_errors_free(&e);
}

TEST(include_reports_the_included_file)
{
	struct moat_config *c;
	struct moat_config_errors e;
	char text[600];
	const char *inc = write_file("inc.conf", "max_recipients = 5\n");
	snprintf(text, sizeof(text), "include(\"%s\")\n" GOOD_LISTENER, inc);
	const char *p = write_file("i.conf", text);
	CHECK(moat_config_load(p, NULL, 0, &c, &e) == 0);
	CHECK(c && c->max_recipients == 5);
	if (c)
		moat_config_unref(c);
	moat_config_errors_free(&e);
	write_file("inc.conf", "\nmax_recipients = 0\n");
	CHECK(moat_config_load(p, NULL, 0, &c, &e) == -1);
	snprintf(text, sizeof(text), "%s:2: max_recipients", inc);
	CHECK(has_error(&e, text));
	moat_config_errors_free(&e);
}

TEST(comments_do_not_shift_line_numbers)
{
	/* libconfuse 3.3 alone would say line 10 here */
	struct moat_config *c;
	struct moat_config_errors e;
	char want[600];
	const char *p = write_file("k.conf", "# one\n// two\n/* three\n four */\n"
				   "max_errors = 3 # five\nmax_connections = lots\n" GOOD_LISTENER);
	CHECK(moat_config_load(p, NULL, 0, &c, &e) == -1);
	snprintf(want, sizeof(want), "%s:6: invalid integer value", p);
	CHECK(has_error(&e, want));
	moat_config_errors_free(&e);
	p = write_file("l.conf", "# x\nlistener one {\n # y\n listen = \"127.0.0.1:0\"\n"
		       " upstream = \"127.0.0.1:25\"\n}\n");
	CHECK(moat_config_load(p, NULL, 0, &c, &e) == -1);
	snprintf(want, sizeof(want), "%s:4: listener one: listen:", p);
	CHECK(has_error(&e, want));
	moat_config_errors_free(&e);
}

TEST(unbalanced_braces_and_strings)
{
	struct moat_config *c;
	struct moat_config_errors e;
	char want[600];
	const char *p = write_file("m.conf", "max_errors = 3\nlistener in {\n listen = \"127.0.0.1:2525\"\n");
	CHECK(moat_config_load(p, NULL, 0, &c, &e) == -1);
	snprintf(want, sizeof(want), "%s:2: expected } to close the section", p);
	CHECK(has_error(&e, want));
	moat_config_errors_free(&e);
	p = write_file("n.conf", "hostname = \"open\nmax_errors = 3\n");
	CHECK(moat_config_load(p, NULL, 0, &c, &e) == -1);
	snprintf(want, sizeof(want), "%s:1: expected the closing quote", p);
	CHECK(has_error(&e, want));
	moat_config_errors_free(&e);
}

TEST(include_relative_to_including_file)
{
	struct moat_config *c;
	struct moat_config_errors e;
	write_file("rel.conf", "max_recipients = 9\n");
	const char *p = write_file("o.conf", "include(\"rel.conf\")\n" GOOD_LISTENER);
	CHECK(moat_config_load(p, NULL, 0, &c, &e) == 0);
	CHECK(c && c->max_recipients == 9);
	if (c)
		moat_config_unref(c);
	moat_config_errors_free(&e);
	p = write_file("q.conf", "include(\"absent.conf\")\n" GOOD_LISTENER);
	CHECK(moat_config_load(p, NULL, 0, &c, &e) == -1);
	CHECK(has_error(&e, ":1: include: ") && has_error(&e, "absent.conf: cannot read"));
	moat_config_errors_free(&e);
}

TEST(missing_file)
{
	struct moat_config *c;
	struct moat_config_errors e;
	CHECK(moat_config_load("/nonexistent/moat.conf", NULL, 0, &c, &e) == -1);
	CHECK(has_error(&e, "/nonexistent/moat.conf: cannot read"));
	moat_config_errors_free(&e);
}

TEST(refcount)
{
	struct moat_config *c;
	struct moat_config_errors e;
	const char *p = write_file("j.conf", GOOD_LISTENER);
	CHECK(moat_config_load(p, NULL, 0, &c, &e) == 0);
	CHECK(moat_config_ref(c) == c && c->refs == 2);
	moat_config_unref(c);
	CHECK(c->refs == 1);
	moat_config_unref(c);
	moat_config_errors_free(&e);
}

int main(void)
{
	if (!mkdtemp(dir))
		return 1;
	RUN(defaults);
	RUN(every_range_error_with_file_and_line);
	RUN(syntax_and_unknown_option);
	RUN(overrides);
	RUN(xclient_off_needs_acknowledgement);
	RUN(addresses_and_required_options);
	RUN(include_reports_the_included_file);
	RUN(comments_do_not_shift_line_numbers);
	RUN(unbalanced_braces_and_strings);
	RUN(include_relative_to_including_file);
	RUN(missing_file);
	RUN(refcount);
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		return 1;
	return unit_done();
}
