/*
 * test_reputation - filters/reputation.c helpers: the network an address
 * counts in, the domains authentication results vouch for (only passes,
 * each once, lower-cased; a forged sender's SPF fail counts for
 * nothing), show/clear on the embedded store, marks set by hand (their
 * stored form, set, show, clear), and the client's standing.
 */
#include "reputation.h"
#include "store.h"
#include "unit.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

TEST(networks)
{
	char n[80];
	CHECK(moat_rep_net("192.0.2.77", n, sizeof(n)) == 0 && strcmp(n, "192.0.2.0/24") == 0);
	CHECK(moat_rep_net("2001:db8:1:2:3:4:5:6", n, sizeof(n)) == 0 &&
	      strcmp(n, "2001:db8:1:2::/64") == 0);
	CHECK(moat_rep_net("::ffff:198.51.100.9", n, sizeof(n)) == 0 &&
	      strcmp(n, "198.51.100.0/24") == 0);
	CHECK(moat_rep_net("[UNAVAILABLE]", n, sizeof(n)) < 0);
	CHECK(moat_rep_net("192.0.2.1", n, 8) < 0);	/* does not fit */
}

TEST(authenticated_domains_only)
{
	struct moat_verdict v;
	char d[8][MOAT_REP_NAME_MAX];
	moat_verdict_init(&v);
	moat_verdict_auth(&v, "spf", "spf", "fail", "smtp.mailfrom=bank.example", "");
	moat_verdict_auth(&v, "dkim", "dkim", "fail", "header.d=bank.example header.s=s", "");
	CHECK(moat_rep_auth_domains(&v, d, 8) == 0);
	moat_verdict_auth(&v, "spf", "spf", "pass", "smtp.mailfrom=Good.Example", "");
	moat_verdict_auth(&v, "dkim", "dkim", "pass", "header.d=good.example header.s=s", "");
	moat_verdict_auth(&v, "dkim", "dkim", "pass", "header.d=list.example header.s=x header.b=ab", "");
	moat_verdict_auth(&v, "dkim", "dkim", "pass", "header.d=bad/name header.s=x", "");
	moat_verdict_auth(&v, "spf", "spf", "pass", "smtp.helo=mx.helo.example", "");
	size_t n = moat_rep_auth_domains(&v, d, 8);
	CHECK(n == 2);
	CHECK(n >= 2 && strcmp(d[0], "good.example") == 0 && strcmp(d[1], "list.example") == 0);
	CHECK(moat_rep_auth_domains(&v, d, 1) == 1);
	moat_verdict_clear(&v);
}

static char answer[4096];
static int answers;

static int answer_ok;

static void on_answer(void *arg, int ok, const char *text)
{
	(void)arg;
	answer_ok = ok;
	snprintf(answer, sizeof(answer), "%s", text);
	answers++;
}

/* The reputation section of a loaded configuration (window 3600,
 * min_messages 2, good_ratio 0.1). */
static struct moat_config *load_conf(void)
{
	char path[] = "/tmp/test_reputation.XXXXXX";
	int fd = mkstemp(path);
	const char text[] = "listener in {\n listen = \"127.0.0.1:2525\"\n"
			    " upstream = \"127.0.0.1:10025\"\n}\n"
			    "reputation {\n window = 3600\n min_messages = 2\n good_ratio = 0.1\n}\n";
	struct moat_config *c = NULL;
	struct moat_config_errors e = {0, NULL};
	if (fd < 0 || write(fd, text, sizeof(text) - 1) != (ssize_t)(sizeof(text) - 1))
		return NULL;
	close(fd);
	moat_filters_register_builtin();
	if (moat_config_load(path, NULL, 0, &c, &e) < 0)
		c = NULL;
	moat_config_errors_free(&e);
	unlink(path);
	return c;
}

TEST(show_and_clear_on_the_embedded_store)
{
	struct event_base *base = event_base_new();
	struct moat_store *s = moat_store_memory_new(base, 100);
	struct moat_config *conf = load_conf();
	const void *c = conf ? moat_config_section(conf, "reputation") : NULL;
	char err[200], key[200];
	long long period = (long long)(time(NULL) / 3600);
	snprintf(key, sizeof(key), "rep:ip:192.0.2.1:spam:%lld", period);
	moat_store_set(s, key, "4", 1, 0, NULL, NULL);
	event_base_loop(base, EVLOOP_NONBLOCK);
	CHECK(moat_rep_show(s, c, "192.0.2.1", on_answer, NULL, err, sizeof(err)) == 0);
	CHECK(answers == 0);	/* never from inside the call */
	event_base_loop(base, EVLOOP_NONBLOCK);
	CHECK(answers == 1);
	CHECK(strstr(answer, "ip 192.0.2.1 ham=0.0 spam=4.0 ham_now=0 spam_now=4") != NULL);
	CHECK(strstr(answer, "verdict=bad\n") != NULL);
	CHECK(strstr(answer, "net 192.0.2.0/24 ham=0.0 spam=0.0") != NULL);
	CHECK(strstr(answer, "verdict=few") != NULL);
	CHECK(moat_rep_clear(s, c, "192.0.2.1", on_answer, NULL, err, sizeof(err)) == 0);
	event_base_loop(base, EVLOOP_NONBLOCK);
	CHECK(answers == 2 && strcmp(answer, "ip 192.0.2.1 cleared\n") == 0);
	CHECK(moat_rep_show(s, c, "192.0.2.0/23", on_answer, NULL, err, sizeof(err)) < 0);
	CHECK(moat_rep_show(s, c, "a b", on_answer, NULL, err, sizeof(err)) < 0);
	CHECK(moat_rep_show(s, c, "Example.ORG", on_answer, NULL, err, sizeof(err)) == 0);
	event_base_loop(base, EVLOOP_NONBLOCK);
	CHECK(strncmp(answer, "dom example.org ham=0.0", 23) == 0);
	moat_store_free(s);
	event_base_free(base);
	moat_config_unref(conf);
}

TEST(mark_values)
{
	long long exp;
	CHECK(moat_rep_mark_parse("good", 4, &exp) == MOAT_REP_MARK_GOOD && exp == 0);
	CHECK(moat_rep_mark_parse("bad 1700000000", 14, &exp) == MOAT_REP_MARK_BAD &&
	      exp == 1700000000);
	CHECK(moat_rep_mark_parse("neutral", 7, &exp) == MOAT_REP_MARK_NEUTRAL);
	CHECK(moat_rep_mark_parse("goodx", 5, &exp) == MOAT_REP_MARK_NONE);
	CHECK(moat_rep_mark_parse("good x", 6, &exp) == MOAT_REP_MARK_NONE);
	CHECK(moat_rep_mark_parse("good", 3, &exp) == MOAT_REP_MARK_NONE);	/* "goo" */
	CHECK(moat_rep_mark_parse("", 0, &exp) == MOAT_REP_MARK_NONE);
	CHECK(strcmp(moat_rep_mark_name(MOAT_REP_MARK_NEUTRAL), "neutral") == 0);
}

static int good_answers, good_last;

static void on_good(void *arg, int good)
{
	(void)arg;
	good_answers++;
	good_last = good;
}

TEST(marks_on_the_embedded_store)
{
	struct event_base *base = event_base_new();
	struct moat_store *s = moat_store_memory_new(base, 100);
	struct moat_config *conf = load_conf();
	const void *c = conf ? moat_config_section(conf, "reputation") : NULL;
	char err[200];
	answers = 0;
	CHECK(moat_rep_set(s, "198.51.100.7", MOAT_REP_MARK_BAD, 2, on_answer, NULL, err,
			   sizeof(err)) == 0);
	event_base_loop(base, EVLOOP_NONBLOCK);
	CHECK(answers == 1 && answer_ok);
	CHECK(strncmp(answer, "ip 198.51.100.7 marked bad for 2 days (until ", 45) == 0);
	CHECK(moat_rep_show(s, c, "198.51.100.7", on_answer, NULL, err, sizeof(err)) == 0);
	event_base_loop(base, EVLOOP_NONBLOCK);
	CHECK(strstr(answer, "manual=bad manual_expires=") != NULL);
	CHECK(strstr(answer, "verdict=bad\nnet 198.51.100.0/24") != NULL);
	CHECK(strstr(answer, "manual=none verdict=few") != NULL);
	/* the standing of the client: bad, then good once its network is */
	good_answers = 0;
	CHECK(moat_rep_client_good(s, c, "198.51.100.7", on_good, NULL) == 0);
	event_base_loop(base, EVLOOP_NONBLOCK);
	CHECK(good_answers == 1 && good_last == 0);
	CHECK(moat_rep_set(s, "198.51.100.0/24", MOAT_REP_MARK_GOOD, 0, on_answer, NULL, err,
			   sizeof(err)) == 0);
	CHECK(moat_rep_set(s, "198.51.100.7", MOAT_REP_MARK_NEUTRAL, 0, on_answer, NULL, err,
			   sizeof(err)) == 0);
	event_base_loop(base, EVLOOP_NONBLOCK);
	CHECK(strcmp(answer, "ip 198.51.100.7 marked neutral (no expiry)\n") == 0);
	CHECK(moat_rep_client_good(s, c, "198.51.100.7", on_good, NULL) == 0);
	event_base_loop(base, EVLOOP_NONBLOCK);
	CHECK(good_answers == 2 && good_last == 1);
	CHECK(moat_rep_client_good(s, c, "not-an-address", on_good, NULL) < 0);
	/* clear deletes the mark */
	CHECK(moat_rep_clear(s, c, "198.51.100.7", on_answer, NULL, err, sizeof(err)) == 0);
	event_base_loop(base, EVLOOP_NONBLOCK);
	CHECK(strcmp(answer, "ip 198.51.100.7 cleared\n") == 0);
	CHECK(moat_rep_show(s, c, "198.51.100.7", on_answer, NULL, err, sizeof(err)) == 0);
	event_base_loop(base, EVLOOP_NONBLOCK);
	CHECK(strstr(answer, "ip 198.51.100.7 ham=0.0 spam=0.0") && strstr(answer, "manual=none"));
	/* what a mark is not */
	CHECK(moat_rep_set(s, "example.org", MOAT_REP_MARK_NONE, 0, on_answer, NULL, err,
			   sizeof(err)) < 0);
	CHECK(moat_rep_set(s, "example.org", MOAT_REP_MARK_GOOD, 99999, on_answer, NULL, err,
			   sizeof(err)) < 0);
	CHECK(moat_rep_set(s, "bad!name", MOAT_REP_MARK_GOOD, 0, on_answer, NULL, err,
			   sizeof(err)) < 0);
	moat_store_free(s);
	event_base_free(base);
	moat_config_unref(conf);
}

int main(void)
{
	RUN(networks);
	RUN(authenticated_domains_only);
	RUN(show_and_clear_on_the_embedded_store);
	RUN(mark_values);
	RUN(marks_on_the_embedded_store);
	return unit_done();
}
