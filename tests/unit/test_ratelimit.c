/*
 * test_ratelimit - filters/ratelimit.c's parsing of a limit ("KIND
 * LIMIT/WINDOW [ACTION]") and filters/greylist.c's keys and the decision
 * on a stored triple.
 */
#include "greylist.h"
#include "ratelimit.h"
#include "unit.h"

#include <string.h>

TEST(limits)
{
	struct moat_ratelimit l;
	char err[300];
	CHECK(moat_ratelimit_parse("client 100/1h", &l, err, sizeof(err)) == 0);
	CHECK(l.kind == MOAT_RL_CLIENT && l.limit == 100 && l.window == 3600 &&
	      l.action == MOAT_ACTION_TEMPFAIL);
	CHECK(moat_ratelimit_parse("sender 500/d reject", &l, err, sizeof(err)) == 0);
	CHECK(l.kind == MOAT_RL_SENDER && l.limit == 500 && l.window == 86400 &&
	      l.action == MOAT_ACTION_REJECT);
	CHECK(moat_ratelimit_parse("  rcpt   200/90   score -2.5 ", &l, err, sizeof(err)) == 0);
	CHECK(l.kind == MOAT_RL_RCPT && l.window == 90 && l.action == MOAT_ACTION_NONE &&
	      l.score == -2.5);
	CHECK(moat_ratelimit_parse("auth 1000/15m tempfail", &l, err, sizeof(err)) == 0);
	CHECK(l.kind == MOAT_RL_AUTH && l.window == 900);
	CHECK(moat_ratelimit_parse("net 5/30d", &l, err, sizeof(err)) == 0 && l.window == 2592000);
	CHECK(strcmp(moat_ratelimit_kind_name(MOAT_RL_NET), "net") == 0);
}

TEST(bad_limits)
{
	struct moat_ratelimit l;
	char err[300];
	static const char *const bad[] = {
		"", "client", "client 100", "client /1h", "client 0/1h", "client -1/1h",
		"client 100/0", "client 100/1w", "client 100/31d", "client 100/1hh", "client x/1h",
		"client 100/1h drop", "client 100/1h score", "client 100/1h score x",
		"client 100/1h score 5000", "clients 100/1h", "client 100/1h reject now",
		"client 1x/1h",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		CHECK(moat_ratelimit_parse(bad[i], &l, err, sizeof(err)) < 0 && err[0]);
	}
}

TEST(greylist_keys)
{
	char k[200];
	CHECK(moat_greylist_key("192.0.2.77", "Alice@Example.ORG", "bob@example.net", k,
				sizeof(k)) == 0);
	CHECK(strcmp(k, "gl:192.0.2.0/24:alice@example.org:bob@example.net") == 0);
	CHECK(moat_greylist_key("2001:db8:1:2::9", "", "bob@example.net", k, sizeof(k)) == 0);
	CHECK(strcmp(k, "gl:2001:db8:1:2::/64:<>:bob@example.net") == 0);
	CHECK(moat_greylist_key("not-an-ip", "a@b", "c@d", k, sizeof(k)) < 0);
	CHECK(moat_greylist_key("192.0.2.1", "a b@c", "c@d", k, sizeof(k)) < 0);
	CHECK(moat_greylist_key("192.0.2.1", "a@b", "", k, sizeof(k)) < 0);
	CHECK(moat_greylist_key("192.0.2.1", "a@b", "c@d", k, 20) < 0);
	CHECK(moat_greylist_key("192.0.2.1", NULL, "c@d", k, sizeof(k)) < 0);
}

TEST(greylist_judge)
{
	long wait;
	CHECK(moat_greylist_judge(NULL, 0, 1000, 300, &wait) == MOAT_GL_NEW);
	CHECK(moat_greylist_judge("900", 3, 1000, 300, &wait) == MOAT_GL_EARLY && wait == 200);
	CHECK(moat_greylist_judge("700", 3, 1000, 300, &wait) == MOAT_GL_PASS);
	CHECK(moat_greylist_judge("600", 3, 1000, 300, &wait) == MOAT_GL_PASS);
	CHECK(moat_greylist_judge("pass", 4, 1000, 300, &wait) == MOAT_GL_PASS);
	CHECK(moat_greylist_judge("junk", 4, 1000, 300, &wait) == MOAT_GL_NEW);
	CHECK(moat_greylist_judge("", 0, 1000, 300, &wait) == MOAT_GL_NEW);
}

int main(void)
{
	RUN(limits);
	RUN(bad_limits);
	RUN(greylist_keys);
	RUN(greylist_judge);
	return unit_done();
}
