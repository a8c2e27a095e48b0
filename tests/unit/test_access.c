/*
 * test_access - filters/access.c without the pipeline: entry parsing
 * (every kind of bad entry rejected with a clear message), list files
 * (comments, line numbers in errors), matching (IPv4/IPv6 prefixes and
 * their edges, IPv4-mapped clients, most specific entry wins, domains
 * and subdomains, user@, <>, case), and the section's prepare() through
 * moat_config_load (error locations, relative list files, the shipped
 * conf/access.conf). Stage functions need the pipeline: not here.
 */
#include "access.h"
#include "config.h"
#include "unit.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[] = "/tmp/moat-access-test.XXXXXX";

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

/* A list of kind from entries (NULL-terminated); 0 if all parsed. */
static int build(struct access_list *l, enum access_list_kind kind, const char *const *entries)
{
	char err[512];
	int bad = 0;
	access_list_init(l, kind);
	for (size_t i = 0; entries[i]; i++)
		if (access_list_parse(l, entries[i], "test.conf", 0, err, sizeof(err)) < 0) {
			fprintf(stderr, "# %s: %s\n", entries[i], err);
			bad++;
		}
	return bad || access_list_index(l) < 0 ? -1 : 0;
}

/* The pattern of the entry matching value, or "-" for none. */
static const char *hit(const struct access_list *l, const char *value)
{
	const struct access_entry *e = access_match(l, value);
	return e ? e->pattern : "-";
}

/* Parses one entry into a fresh list of kind; returns the result and
 * leaves the message in err. */
static int parse1(enum access_list_kind kind, const char *text, char *err, size_t errlen)
{
	struct access_list l;
	access_list_init(&l, kind);
	int r = access_list_parse(&l, text, "test.conf", 0, err, errlen);
	access_list_free(&l);
	return r;
}

/* The entry is rejected and the message contains want. */
static int bad(enum access_list_kind kind, const char *text, const char *want)
{
	char err[512];
	int r = parse1(kind, text, err, sizeof(err));
	if (r != -1 || !strstr(err, want)) {
		fprintf(stderr, "# \"%s\": r=%d err=\"%s\", wanted \"%s\"\n", text, r, err, want);
		return 0;
	}
	return 1;
}

TEST(ipv4_prefixes)
{
	struct access_list l;
	static const char *const e[] = {
		"192.0.2.0/24 reject", "192.0.2.128/25 allow", "192.0.2.1 score 3",
		"10.0.0.0/8 score 1", "10.1.0.0/16 score 2", NULL};
	CHECK(build(&l, ACCESS_LIST_CLIENT, e) == 0);
	CHECK(strcmp(hit(&l, "192.0.2.1"), "192.0.2.1") == 0);
	CHECK(strcmp(hit(&l, "192.0.2.200"), "192.0.2.128/25") == 0);
	CHECK(strcmp(hit(&l, "192.0.2.128"), "192.0.2.128/25") == 0);
	CHECK(strcmp(hit(&l, "192.0.2.127"), "192.0.2.0/24") == 0);
	CHECK(strcmp(hit(&l, "192.0.2.0"), "192.0.2.0/24") == 0);
	CHECK(strcmp(hit(&l, "192.0.2.255"), "192.0.2.128/25") == 0);
	CHECK(strcmp(hit(&l, "192.0.3.0"), "-") == 0);
	CHECK(strcmp(hit(&l, "192.0.1.255"), "-") == 0);
	CHECK(strcmp(hit(&l, "10.1.2.3"), "10.1.0.0/16") == 0);
	CHECK(strcmp(hit(&l, "10.2.2.3"), "10.0.0.0/8") == 0);
	CHECK(strcmp(hit(&l, "2001:db8::1"), "-") == 0);
	CHECK(strcmp(hit(&l, "not an address"), "-") == 0);
	CHECK(strcmp(hit(&l, ""), "-") == 0);
	CHECK(access_match_client(&l, NULL) == NULL);
	const struct access_entry *x = access_match_client(&l, "192.0.2.1");
	CHECK(x && x->action == ACCESS_SCORE && x->score == 3 && x->family == 4 && x->prefix == 32);
	access_list_free(&l);
}

TEST(ipv6_prefixes_and_mapped_clients)
{
	struct access_list l;
	static const char *const e[] = {
		"2001:db8::/32 score 1", "2001:db8:1::/48 score 2", "2001:DB8:1::7 reject",
		"fe80::/10 allow", "192.0.2.0/24 tempfail", "::ffff:198.51.100.0/120 discard", NULL};
	CHECK(build(&l, ACCESS_LIST_CLIENT, e) == 0);
	CHECK(strcmp(hit(&l, "2001:db8:1::7"), "2001:DB8:1::7") == 0);
	CHECK(strcmp(hit(&l, "2001:0db8:0001:0000:0000:0000:0000:0007"), "2001:DB8:1::7") == 0);
	CHECK(strcmp(hit(&l, "2001:db8:1::8"), "2001:db8:1::/48") == 0);
	CHECK(strcmp(hit(&l, "2001:db8:2::1"), "2001:db8::/32") == 0);
	CHECK(strcmp(hit(&l, "2001:db9::1"), "-") == 0);
	CHECK(strcmp(hit(&l, "fe80::1%eth0"), "fe80::/10") == 0);
	CHECK(strcmp(hit(&l, "febf::1"), "fe80::/10") == 0);
	CHECK(strcmp(hit(&l, "fec0::1"), "-") == 0);
	/* IPv4-mapped clients match IPv4 entries, and mapped entries are IPv4 */
	CHECK(strcmp(hit(&l, "::ffff:192.0.2.9"), "192.0.2.0/24") == 0);
	CHECK(strcmp(hit(&l, "::FFFF:c000:0209"), "192.0.2.0/24") == 0);
	CHECK(strcmp(hit(&l, "198.51.100.7"), "::ffff:198.51.100.0/120") == 0);
	const struct access_entry *m = access_match_client(&l, "198.51.100.7");
	CHECK(m && m->family == 4 && m->prefix == 24);
	CHECK(strcmp(hit(&l, "::192.0.2.9"), "-") == 0);	/* IPv4-compatible: not mapped */
	access_list_free(&l);
}

TEST(prefix_edges)
{
	struct access_list l;
	static const char *const e[] = {
		"0.0.0.0/0 score 1", "::/0 score 2", "192.0.2.1/32 score 3",
		"2001:db8::1/128 score 4", "128.0.0.0/1 score 5", "8000::/1 score 6", NULL};
	CHECK(build(&l, ACCESS_LIST_CLIENT, e) == 0);
	CHECK(strcmp(hit(&l, "1.2.3.4"), "0.0.0.0/0") == 0);
	CHECK(strcmp(hit(&l, "0.0.0.0"), "0.0.0.0/0") == 0);
	CHECK(strcmp(hit(&l, "127.255.255.255"), "0.0.0.0/0") == 0);
	CHECK(strcmp(hit(&l, "128.0.0.0"), "128.0.0.0/1") == 0);
	CHECK(strcmp(hit(&l, "255.255.255.255"), "128.0.0.0/1") == 0);
	CHECK(strcmp(hit(&l, "192.0.2.1"), "192.0.2.1/32") == 0);
	CHECK(strcmp(hit(&l, "192.0.2.2"), "128.0.0.0/1") == 0);
	CHECK(strcmp(hit(&l, "::"), "::/0") == 0);
	CHECK(strcmp(hit(&l, "::1"), "::/0") == 0);
	CHECK(strcmp(hit(&l, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), "8000::/1") == 0);
	CHECK(strcmp(hit(&l, "2001:db8::1"), "2001:db8::1/128") == 0);
	CHECK(strcmp(hit(&l, "2001:db8::2"), "::/0") == 0);
	CHECK(strcmp(hit(&l, "::ffff:1.2.3.4"), "0.0.0.0/0") == 0);	/* IPv4, not ::/0 */
	access_list_free(&l);
}

TEST(bad_client_entries)
{
	CHECK(bad(ACCESS_LIST_CLIENT, "192.0.2.0/33 reject", "/33 is out of range for IPv4 (0 to 32)"));
	CHECK(bad(ACCESS_LIST_CLIENT, "2001:db8::/129 reject", "/129 is out of range for IPv6"));
	CHECK(bad(ACCESS_LIST_CLIENT, "192.0.2.1/24 reject", "expected 192.0.2.0/24"));
	CHECK(bad(ACCESS_LIST_CLIENT, "2001:db8::1/32 reject", "expected 2001:db8::/32"));
	CHECK(bad(ACCESS_LIST_CLIENT, "192.0.2.0/ reject", "expected a prefix length"));
	CHECK(bad(ACCESS_LIST_CLIENT, "192.0.2.0/2x reject", "expected a prefix length"));
	CHECK(bad(ACCESS_LIST_CLIENT, "192.0.2.0/-1 reject", "expected a prefix length"));
	CHECK(bad(ACCESS_LIST_CLIENT, "192.0.2/24 reject", "expected an IPv4 or IPv6 address"));
	CHECK(bad(ACCESS_LIST_CLIENT, "256.0.0.1 reject", "expected an IPv4 or IPv6 address"));
	CHECK(bad(ACCESS_LIST_CLIENT, "example.org reject", "expected an IPv4 or IPv6 address"));
	CHECK(bad(ACCESS_LIST_CLIENT, "2001:db8:::1 reject", "expected an IPv4 or IPv6 address"));
	CHECK(bad(ACCESS_LIST_CLIENT, "::ffff:192.0.2.0/64 reject", "from /96 to /128"));
}

TEST(most_specific_then_first_listed)
{
	struct access_list l;
	static const char *const c[] = {
		"192.0.2.0/24 score 1", "192.0.2.0/24 reject", "192.0.2.0/25 score 2",
		"192.0.2.0/25 allow", NULL};
	CHECK(build(&l, ACCESS_LIST_CLIENT, c) == 0);
	const struct access_entry *e = access_match_client(&l, "192.0.2.3");
	CHECK(e && e->action == ACCESS_SCORE && e->score == 2 && e->order == 2);
	e = access_match_client(&l, "192.0.2.200");
	CHECK(e && e->action == ACCESS_SCORE && e->score == 1 && e->order == 0);
	access_list_free(&l);

	static const char *const s[] = {
		".example.org score 1", "Example.org score 2", "user@ score 3",
		"user@example.org score 4", "EXAMPLE.ORG reject", "user@example.org reject", NULL};
	CHECK(build(&l, ACCESS_LIST_SENDER, s) == 0);
	e = access_match_sender(&l, "user@example.org");
	CHECK(e && e->score == 4);
	e = access_match_sender(&l, "user@a.example.org");
	CHECK(e && e->score == 3);
	e = access_match_sender(&l, "other@example.org");
	CHECK(e && e->score == 2 && e->action == ACCESS_SCORE);
	e = access_match_sender(&l, "other@a.example.org");
	CHECK(e && e->score == 1);
	access_list_free(&l);
}

TEST(addresses_domains_subdomains)
{
	struct access_list l;
	static const char *const e[] = {
		"user@example.org reject", "postmaster@ allow", "example.org score 2",
		".example.org score 3", ".sub.example.org tempfail", "<> discard",
		"x@[192.0.2.1] score 9", "info@example.net. score 7", NULL};
	CHECK(build(&l, ACCESS_LIST_SENDER, e) == 0);
	CHECK(strcmp(hit(&l, "user@example.org"), "user@example.org") == 0);
	CHECK(strcmp(hit(&l, "User@Example.ORG"), "user@example.org") == 0);
	CHECK(strcmp(hit(&l, "user@example.org."), "user@example.org") == 0);
	CHECK(strcmp(hit(&l, "user@a.example.org"), ".example.org") == 0);
	CHECK(strcmp(hit(&l, "Postmaster@other.net"), "postmaster@") == 0);
	CHECK(strcmp(hit(&l, "postmaster"), "postmaster@") == 0);
	CHECK(strcmp(hit(&l, "bob@example.org"), "example.org") == 0);
	CHECK(strcmp(hit(&l, "bob@EXAMPLE.org."), "example.org") == 0);
	CHECK(strcmp(hit(&l, "bob@a.b.example.org"), ".example.org") == 0);
	CHECK(strcmp(hit(&l, "bob@sub.example.org"), ".example.org") == 0);	/* not itself */
	CHECK(strcmp(hit(&l, "bob@x.sub.example.org"), ".sub.example.org") == 0);
	CHECK(strcmp(hit(&l, "bob@x.y.SUB.example.org"), ".sub.example.org") == 0);
	CHECK(strcmp(hit(&l, "bob@notexample.org"), "-") == 0);
	CHECK(strcmp(hit(&l, "bob@example.org.evil"), "-") == 0);
	CHECK(strcmp(hit(&l, "bob@org"), "-") == 0);
	CHECK(strcmp(hit(&l, "example.org"), "-") == 0);	/* no @: a local part */
	CHECK(strcmp(hit(&l, "bob@"), "-") == 0);
	CHECK(strcmp(hit(&l, "user@"), "-") == 0);
	CHECK(strcmp(hit(&l, "@example.org"), "example.org") == 0);
	CHECK(strcmp(hit(&l, "x@[192.0.2.1]"), "x@[192.0.2.1]") == 0);
	CHECK(strcmp(hit(&l, "INFO@example.net"), "info@example.net.") == 0);
	CHECK(strcmp(hit(&l, "a@b@example.org"), "example.org") == 0);	/* last @ */
	CHECK(strcmp(hit(&l, ""), "<>") == 0);
	CHECK(access_match_sender(&l, NULL) == NULL);
	const struct access_entry *t = access_match_sender(&l, "");
	CHECK(t && t->type == ACCESS_PAT_NULL && t->action == ACCESS_DISCARD);
	t = access_match_sender(&l, "a@x.sub.example.org");
	CHECK(t && t->type == ACCESS_PAT_SUBDOMAIN && t->action == ACCESS_TEMPFAIL && !t->text);
	access_list_free(&l);

	/* the same patterns as a recipient list: "" is nobody */
	static const char *const r[] = {"example.org reject", "postmaster@ allow", NULL};
	CHECK(build(&l, ACCESS_LIST_RECIPIENT, r) == 0);
	CHECK(strcmp(hit(&l, "Postmaster"), "postmaster@") == 0);
	CHECK(strcmp(hit(&l, "POSTMASTER@example.org"), "postmaster@") == 0);
	CHECK(strcmp(hit(&l, "abuse@example.org"), "example.org") == 0);
	CHECK(strcmp(hit(&l, ""), "-") == 0);
	access_list_free(&l);
}

TEST(helo_names)
{
	struct access_list l;
	static const char *const e[] = {
		"mx.example.org reject", ".example.org score 1", "[192.0.2.1] reject",
		"[IPv6:2001:db8::1] score 2", "localhost tempfail", NULL};
	CHECK(build(&l, ACCESS_LIST_HELO, e) == 0);
	CHECK(strcmp(hit(&l, "MX.Example.Org"), "mx.example.org") == 0);
	CHECK(strcmp(hit(&l, "mx.example.org."), "mx.example.org") == 0);
	CHECK(strcmp(hit(&l, "a.example.org"), ".example.org") == 0);
	CHECK(strcmp(hit(&l, "a.mx.example.org"), ".example.org") == 0);
	CHECK(strcmp(hit(&l, "example.org"), "-") == 0);
	CHECK(strcmp(hit(&l, "myexample.org"), "-") == 0);
	CHECK(strcmp(hit(&l, "[192.0.2.1]"), "[192.0.2.1]") == 0);
	CHECK(strcmp(hit(&l, "192.0.2.1"), "-") == 0);
	CHECK(strcmp(hit(&l, "[ipv6:2001:DB8::1]"), "[IPv6:2001:db8::1]") == 0);
	CHECK(strcmp(hit(&l, "LOCALHOST"), "localhost") == 0);
	CHECK(strcmp(hit(&l, ""), "-") == 0);
	CHECK(strcmp(hit(&l, "."), "-") == 0);
	CHECK(access_match_helo(&l, NULL) == NULL);
	access_list_free(&l);
}

TEST(actions_and_reply_text)
{
	struct access_list l;
	char err[512];
	access_list_init(&l, ACCESS_LIST_SENDER);
	CHECK(access_list_parse(&l, "a@x.org reject \"5.7.1 No \\\"way\\\" \\\\ here\"", "t", 0,
				err, sizeof(err)) == 1);
	CHECK(access_list_parse(&l, "b@x.org tempfail \"4.7.0 Later, please\"", "t", 0,
				err, sizeof(err)) == 1);
	CHECK(access_list_parse(&l, "c@x.org reject", "t", 0, err, sizeof(err)) == 1);
	CHECK(access_list_parse(&l, "  d@x.org\tscore  -1.5  # a comment", "t", 0, err,
				sizeof(err)) == 1);
	CHECK(access_list_parse(&l, "e@x.org score .5", "t", 0, err, sizeof(err)) == 1);
	CHECK(access_list_parse(&l, "f@x.org score +2", "t", 0, err, sizeof(err)) == 1);
	CHECK(access_list_parse(&l, "g@x.org discard", "t", 0, err, sizeof(err)) == 1);
	CHECK(access_list_parse(&l, "h@x.org allow # trusted", "t", 0, err, sizeof(err)) == 1);
	CHECK(access_list_parse(&l, "i@x.org reject \"5.1.10 Recipient #1 unknown\"#x", "t", 0,
				err, sizeof(err)) == 1);
	CHECK(access_list_parse(&l, "", "t", 0, err, sizeof(err)) == 0);
	CHECK(access_list_parse(&l, "   \t ", "t", 0, err, sizeof(err)) == 0);
	CHECK(access_list_parse(&l, "# only a comment", "t", 0, err, sizeof(err)) == 0);
	CHECK(l.n == 9);
	CHECK(l.v[0].action == ACCESS_REJECT && strcmp(l.v[0].text, "5.7.1 No \"way\" \\ here") == 0);
	CHECK(l.v[1].action == ACCESS_TEMPFAIL && strcmp(l.v[1].text, "4.7.0 Later, please") == 0);
	CHECK(l.v[2].action == ACCESS_REJECT && l.v[2].text == NULL);
	CHECK(l.v[3].action == ACCESS_SCORE && l.v[3].score == -1.5);
	CHECK(l.v[4].score == 0.5 && l.v[5].score == 2);
	CHECK(l.v[6].action == ACCESS_DISCARD && l.v[7].action == ACCESS_ALLOW);
	CHECK(strcmp(l.v[8].text, "5.1.10 Recipient #1 unknown") == 0);
	CHECK(strcmp(access_action_name(ACCESS_TEMPFAIL), "tempfail") == 0);
	/* not indexed yet: nothing matches */
	CHECK(access_match_sender(&l, "a@x.org") == NULL);
	CHECK(access_list_index(&l) == 0);
	CHECK(access_match_sender(&l, "a@x.org") == &l.v[0]);
	access_list_free(&l);
	CHECK(l.n == 0 && l.v == NULL && l.kind == ACCESS_LIST_SENDER);
	access_list_free(&l);	/* twice is harmless */
}

TEST(bad_actions)
{
	CHECK(bad(ACCESS_LIST_SENDER, "x.org", "expected PATTERN ACTION"));
	CHECK(bad(ACCESS_LIST_SENDER, "x.org # c", "expected PATTERN ACTION"));
	CHECK(bad(ACCESS_LIST_SENDER, "x.org rejetc", "unknown action \"rejetc\""));
	CHECK(bad(ACCESS_LIST_SENDER, "x.org Reject", "unknown action \"Reject\""));
	CHECK(bad(ACCESS_LIST_SENDER, "x.org score", "score needs a number"));
	CHECK(bad(ACCESS_LIST_SENDER, "x.org score # 5", "score needs a number"));
	CHECK(bad(ACCESS_LIST_SENDER, "x.org score abc", "score \"abc\": expected a number"));
	CHECK(bad(ACCESS_LIST_SENDER, "x.org score 1.2.3", "expected a number"));
	CHECK(bad(ACCESS_LIST_SENDER, "x.org score 1e3", "expected a number"));
	CHECK(bad(ACCESS_LIST_SENDER, "x.org score nan", "expected a number"));
	CHECK(bad(ACCESS_LIST_SENDER, "x.org score -", "expected a number"));
	CHECK(bad(ACCESS_LIST_SENDER, "x.org score 1 2", "unexpected \"2\" after the score"));
	CHECK(bad(ACCESS_LIST_SENDER, "x.org allow please", "unexpected \"please\" after the allow"));
	CHECK(bad(ACCESS_LIST_SENDER, "x.org discard \"5.7.1 x\"", "unexpected"));
	CHECK(bad(ACCESS_LIST_SENDER, "x.org reject \"4.7.1 Later\"",
		  "reject needs a 5.x.x status code (use tempfail for 4.x.x)"));
	CHECK(bad(ACCESS_LIST_SENDER, "x.org tempfail \"5.7.1 No\"",
		  "tempfail needs a 4.x.x status code (use reject for 5.x.x)"));
	CHECK(bad(ACCESS_LIST_SENDER, "x.org reject \"Go away\"",
		  "expected an enhanced status code and text, e.g. \"5.7.1 Access denied\""));
	CHECK(bad(ACCESS_LIST_SENDER, "x.org reject \"5.7.1\"", "expected an enhanced status code"));
	CHECK(bad(ACCESS_LIST_SENDER, "x.org reject \"5.7 No\"", "expected an enhanced status code"));
	CHECK(bad(ACCESS_LIST_SENDER, "x.org reject \"5.7.1234 No\"", "expected an enhanced"));
	CHECK(bad(ACCESS_LIST_SENDER, "x.org reject \"550 5.7.1 No\"", "expected an enhanced"));
	CHECK(bad(ACCESS_LIST_SENDER, "x.org reject 5.7.1 No", "reply text goes in double quotes"));
	CHECK(bad(ACCESS_LIST_SENDER, "x.org reject \"5.7.1 No", "unterminated quoted reply text"));
	CHECK(bad(ACCESS_LIST_SENDER, "x.org reject \"5.7.1 No\" more", "unexpected \"more\""));
	CHECK(bad(ACCESS_LIST_SENDER, "x.org reject \"5.7.1 caf\xc3\xa9\"", "printable ASCII"));
	char longtext[400];
	snprintf(longtext, sizeof(longtext), "x.org reject \"5.7.1 %0300d\"", 0);
	CHECK(bad(ACCESS_LIST_SENDER, longtext, "reply text longer than 250 characters"));
}

TEST(bad_name_patterns)
{
	CHECK(bad(ACCESS_LIST_SENDER, "ex!ample.org allow", "unexpected '!' in a domain name"));
	CHECK(bad(ACCESS_LIST_SENDER, "example..org allow", "empty label"));
	char err[512];
	CHECK(parse1(ACCESS_LIST_SENDER, ".example.org. allow", err, sizeof(err)) == 1);
	CHECK(bad(ACCESS_LIST_SENDER, ". allow", "expected a domain name"));
	CHECK(bad(ACCESS_LIST_SENDER, ".. allow", "empty label"));
	CHECK(bad(ACCESS_LIST_SENDER, "@example.org allow", "write example.org for the whole domain"));
	CHECK(bad(ACCESS_LIST_SENDER, "<user@example.org> allow", "without <>"));
	CHECK(bad(ACCESS_LIST_SENDER, "user@exa_mple!.org allow", "unexpected '!'"));
	CHECK(bad(ACCESS_LIST_SENDER, "caf\xc3\xa9.example allow", "xn-- form"));
	CHECK(bad(ACCESS_LIST_SENDER, "[192.0.2.1] allow", "address literal only fits"));
	CHECK(bad(ACCESS_LIST_SENDER, "x@[192.0.2.999] allow", "expected an address literal"));
	CHECK(bad(ACCESS_LIST_RECIPIENT, "<> allow", "null sender) belongs in the sender list"));
	CHECK(bad(ACCESS_LIST_HELO, "<> allow", "belongs in the sender list"));
	CHECK(bad(ACCESS_LIST_HELO, "user@example.org reject", "expected a host name"));
	CHECK(bad(ACCESS_LIST_HELO, "[not.a.literal] reject", "expected an address literal"));
	char label[100], name[300];
	memset(label, 'a', 64);
	label[64] = '\0';
	snprintf(name, sizeof(name), "%s.org allow", label);
	CHECK(bad(ACCESS_LIST_HELO, name, "longer than 63"));
}

struct collected {
	int lines[16];
	char what[16][512];
	int n;
};

static void collect(void *arg, int line, const char *what)
{
	struct collected *c = arg;
	if (c->n < 16) {
		c->lines[c->n] = line;
		snprintf(c->what[c->n], sizeof(c->what[0]), "%s", what);
		c->n++;
	}
}

TEST(list_files)
{
	struct access_list l;
	struct collected c = {{0}, {{0}}, 0};
	char err[512], desc[600], want[600];
	const char *p = write_file("client.txt",
		"# clients we know\n"
		"192.0.2.0/24 reject \"5.7.1 Blocked network\"   # spammers\n"
		"192.0.2.0/33 reject\n"
		"\n"
		"   \t\n"
		"2001:db8::/32 score 1.5\n"
		"198.51.100.0/24 frobnicate\n"
		"203.0.113.7 allow\r\n"
		"garbage");
	access_list_init(&l, ACCESS_LIST_CLIENT);
	CHECK(access_list_parse(&l, "10.0.0.0/8 allow", "access.conf", 0, err, sizeof(err)) == 1);
	CHECK(access_list_read_file(&l, p, collect, &c, err, sizeof(err)) == 3);
	CHECK(c.n == 3);
	CHECK(c.lines[0] == 3 && strstr(c.what[0], "/33 is out of range"));
	CHECK(c.lines[1] == 7 && strstr(c.what[1], "unknown action \"frobnicate\""));
	CHECK(c.lines[2] == 9 && strstr(c.what[2], "\"garbage\": expected PATTERN ACTION"));
	CHECK(access_list_index(&l) == 0);
	CHECK(l.n == 4);
	const struct access_entry *e = access_match_client(&l, "192.0.2.77");
	CHECK(e && e->line == 2 && strcmp(e->source, p) == 0 && e->order == 1);
	CHECK(e && strcmp(e->text, "5.7.1 Blocked network") == 0);
	snprintf(want, sizeof(want), "client 192.0.2.0/24 (file %s line 2)", p);
	CHECK(e && strcmp(access_entry_describe(&l, e, desc, sizeof(desc)), want) == 0);
	e = access_match_client(&l, "203.0.113.7");
	CHECK(e && e->line == 8 && e->action == ACCESS_ALLOW);
	e = access_match_client(&l, "10.9.8.7");
	CHECK(e && e->line == 0);
	CHECK(e && strcmp(access_entry_describe(&l, e, desc, sizeof(desc)),
			  "client 10.0.0.0/8 (access.conf)") == 0);
	CHECK(l.nsources == 2);
	access_list_free(&l);

	access_list_init(&l, ACCESS_LIST_SENDER);
	CHECK(access_list_read_file(&l, "/nonexistent/moat-access.txt", collect, &c, err,
				    sizeof(err)) == -1);
	CHECK(strstr(err, "cannot read /nonexistent/moat-access.txt: No such file") != NULL);
	access_list_free(&l);
}

/* ---- prepare() through the configuration loader ---- */

static int has_error(const struct moat_config_errors *e, const char *needle)
{
	for (size_t i = 0; i < e->n; i++)
		if (strstr(e->msg[i], needle))
			return 1;
	return 0;
}

#define LISTENER "listener in {\n listen = \"127.0.0.1:2525\"\n upstream = \"127.0.0.1:10025\"\n}\n"

TEST(prepare_reports_every_error_where_it_is)
{
	struct moat_config *c = NULL;
	struct moat_config_errors e = {0, NULL};
	char want[1200];
	const char *lf = write_file("senders.txt", "# senders\nexample.org score 1\n"
				    "bad@@ reject\n<> reject \"4.7.1 no\"\n");
	const char *ac = write_file("acc.conf",
		"access {\n"
		"  client = {\"192.0.2.0/24 reject\", \"192.0.2.0/40 reject\", \"::1 kick\"}\n"
		"\n"
		"  helo = {'[192.0.2.1] reject \"5.7.1 That is not you\"'}\n"
		"  sender_file = \"senders.txt\"\n"
		"  recipient_file = \"missing.txt\"\n"
		"}\n");
	char text[1200];
	snprintf(text, sizeof(text), LISTENER "include(\"%s\")\n", ac);
	const char *mc = write_file("moat.conf", text);
	CHECK(moat_config_load(mc, NULL, 0, &c, &e) == -1);
	CHECK(e.n == 5);
	for (size_t i = 0; e.n != 5 && i < e.n; i++)
		fprintf(stderr, "# %s\n", e.msg[i]);
	snprintf(want, sizeof(want), "%s:2: access: client: entry 2 \"192.0.2.0/40 reject\": "
		 "\"192.0.2.0/40\": prefix length /40 is out of range", ac);
	CHECK(has_error(&e, want));
	snprintf(want, sizeof(want), "%s:2: access: client: entry 3 \"::1 kick\": unknown action",
		 ac);
	CHECK(has_error(&e, want));
	snprintf(want, sizeof(want), "%s:5: access: sender_file: %s:3: \"bad@@\": unexpected "
		 "character in the local part", ac, lf);
	CHECK(has_error(&e, want));
	snprintf(want, sizeof(want), "%s:5: access: sender_file: %s:4: reply text \"4.7.1 no\": "
		 "reject needs a 5.x.x", ac, lf);
	CHECK(has_error(&e, want));
	snprintf(want, sizeof(want), "%s:6: access: recipient_file: cannot read %s/missing.txt", ac,
		 dir);
	CHECK(has_error(&e, want));
	moat_config_errors_free(&e);
}

TEST(prepare_builds_the_lists)
{
	struct moat_config *c = NULL;
	struct moat_config_errors e = {0, NULL};
	write_file("clients.txt", "# ok\n198.51.100.0/24 tempfail\n");
	const char *ac = write_file("acc2.conf",
		"access {\n"
		"  client = {\"192.0.2.0/24 reject\"}\n"
		"  client_file = \"clients.txt\"\n"
		"  helo = {'[192.0.2.1] reject \"5.7.1 That is not you\"'}\n"
		"  sender = {\"<> score 0.5\", \"user@ allow\"}\n"
		"  recipient = {\"postmaster@ allow\"}\n"
		"}\n");
	char text[1200], desc[600], want[600];
	snprintf(text, sizeof(text), LISTENER "include(\"%s\")\n", ac);
	const char *mc = write_file("moat2.conf", text);
	CHECK(moat_config_load(mc, NULL, 0, &c, &e) == 0);
	for (size_t i = 0; i < e.n; i++)
		fprintf(stderr, "# %s\n", e.msg[i]);
	const struct access_conf *a = c ? moat_config_section(c, "access") : NULL;
	CHECK(a != NULL);
	if (a) {
		const struct access_list *cl = &a->lists[ACCESS_LIST_CLIENT];
		const struct access_entry *x = access_match_client(cl, "198.51.100.1");
		CHECK(x && x->action == ACCESS_TEMPFAIL && x->line == 2);
		x = access_match_client(cl, "192.0.2.1");
		CHECK(x && x->action == ACCESS_REJECT && x->line == 0);
		CHECK(x && strcmp(access_entry_describe(cl, x, desc, sizeof(desc)),
				  "client 192.0.2.0/24 (acc2.conf)") == 0);
		x = access_match_helo(&a->lists[ACCESS_LIST_HELO], "[192.0.2.1]");
		CHECK(x && x->text && strcmp(x->text, "5.7.1 That is not you") == 0);
		x = access_match_sender(&a->lists[ACCESS_LIST_SENDER], "");
		CHECK(x && x->score == 0.5);
		x = access_match_sender(&a->lists[ACCESS_LIST_SENDER], "user@x.org");
		CHECK(x && x->action == ACCESS_ALLOW);
		x = access_match_recipient(&a->lists[ACCESS_LIST_RECIPIENT], "postmaster");
		CHECK(x && x->action == ACCESS_ALLOW);
		snprintf(want, sizeof(want), "%s/clients.txt", dir);
		CHECK(strcmp(cl->v[1].source, want) == 0);
	}
	moat_config_unref(c);
	moat_config_errors_free(&e);
}

TEST(shipped_conf_changes_nothing)
{
	struct moat_config *c = NULL;
	struct moat_config_errors e = {0, NULL};
	char root[PATH_MAX], text[PATH_MAX + 200];
	CHECK(realpath("conf/access.conf", root) != NULL);	/* run from the repo root */
	snprintf(text, sizeof(text), LISTENER "include(\"%s\")\n", root);
	const char *mc = write_file("moat3.conf", text);
	CHECK(moat_config_load(mc, NULL, 0, &c, &e) == 0);
	for (size_t i = 0; i < e.n; i++)
		fprintf(stderr, "# %s\n", e.msg[i]);
	const struct access_conf *a = c ? moat_config_section(c, "access") : NULL;
	CHECK(a != NULL);
	for (size_t k = 0; a && k < ACCESS_LIST__COUNT; k++)
		CHECK(a->lists[k].n == 0 && a->lists[k].indexed);
	CHECK(a && !a->client_file && !a->helo_file && !a->sender_file && !a->recipient_file);
	if (a)
		CHECK(access_match_client(&a->lists[ACCESS_LIST_CLIENT], "192.0.2.1") == NULL);
	moat_config_unref(c);
	moat_config_errors_free(&e);
}

TEST(filter_descriptor)
{
	const struct moat_filter *f = &moat_filter_access;
	CHECK(strcmp(f->name, "access") == 0 && f->doc && f->doc[0]);
	CHECK(f->nopts == 8 && f->conf_size == sizeof(struct access_conf));
	for (size_t i = 0; i < f->nopts; i++)
		CHECK(f->opts[i].doc && strlen(f->opts[i].doc) > 40);
	CHECK(f->prepare && f->release);
	CHECK(f->stage[MOAT_STAGE_CONNECT] && f->stage[MOAT_STAGE_HELO] &&
	      f->stage[MOAT_STAGE_MAIL] && f->stage[MOAT_STAGE_RCPT] && !f->stage[MOAT_STAGE_EOM]);
	CHECK(offsetof(struct access_conf, common) == 0);
}

int main(void)
{
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 2;
	}
	moat_filter_register(&moat_filter_access);	/* its `access` section */

	RUN(ipv4_prefixes);
	RUN(ipv6_prefixes_and_mapped_clients);
	RUN(prefix_edges);
	RUN(bad_client_entries);
	RUN(most_specific_then_first_listed);
	RUN(addresses_domains_subdomains);
	RUN(helo_names);
	RUN(actions_and_reply_text);
	RUN(bad_actions);
	RUN(bad_name_patterns);
	RUN(list_files);
	RUN(prepare_reports_every_error_where_it_is);
	RUN(prepare_builds_the_lists);
	RUN(shipped_conf_changes_nothing);
	RUN(filter_descriptor);

	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "# could not remove %s\n", dir);
	return unit_done();
}
