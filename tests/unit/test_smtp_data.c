/*
 * test_smtp_data - unit tests for the DATA decoder and dot-stuffing
 * encoder (proxy/smtp_data.c), including every published SMTP
 * smuggling end-of-data variant and split feeding.
 */
#include "smtp_data.h"
#include "unit.h"

#include <stdlib.h>
#include <string.h>

struct sink {
	char buf[8192];
	size_t len;
	int fail_after;		/* fail the call after this many bytes; -1 never */
	int calls;
};

static int sink_out(void *arg, const char *buf, size_t len)
{
	struct sink *s = arg;

	s->calls++;
	if (s->fail_after >= 0 && s->len + len > (size_t)s->fail_after)
		return -1;
	if (s->len + len > sizeof(s->buf))
		abort();
	memcpy(s->buf + s->len, buf, len);
	s->len += len;
	return 0;
}

static void sink_init(struct sink *s)
{
	s->len = 0;
	s->fail_after = -1;
	s->calls = 0;
}

struct result {
	int status;
	size_t consumed;	/* total over all calls */
	unsigned flags;
	struct sink out;
};

/* Decodes in, fed in pieces of at most chunk bytes (0: all at once). */
static void decode(const char *in, size_t len, size_t chunk, size_t max_line,
		   struct result *r)
{
	struct smtp_data_decoder d;
	size_t off = 0;

	smtp_data_decoder_init(&d, max_line);
	sink_init(&r->out);
	r->status = SMTP_DATA_MORE;
	r->consumed = 0;
	do {
		size_t n = chunk == 0 || len - off < chunk ? len - off : chunk;
		size_t used;

		r->status = smtp_data_feed(&d, in + off, n, &used, sink_out,
					   &r->out);
		r->consumed += used;
		off += n;
		if (r->status != SMTP_DATA_MORE)
			break;
		if (used != n)
			r->status = 99;	/* MORE must consume everything */
	} while (off < len);
	r->flags = d.flags;
	if (d.size != r->out.len)
		r->status = 98;
}

#define S(lit) lit, sizeof(lit) - 1

/* Decodes in every chunking 0,1,2,3,7 and checks all give the same. */
static int decode_all(const char *in, size_t len, size_t max_line,
		      struct result *r)
{
	static const size_t chunks[] = { 1, 2, 3, 5, 7 };
	struct result *alt = malloc(sizeof(*alt));
	int same = 1;

	decode(in, len, 0, max_line, r);
	for (size_t i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++) {
		decode(in, len, chunks[i], max_line, alt);
		if (alt->status != r->status || alt->consumed != r->consumed
		    || alt->flags != r->flags || alt->out.len != r->out.len
		    || memcmp(alt->out.buf, r->out.buf, r->out.len) != 0)
			same = 0;
	}
	free(alt);
	return same;
}

static int out_is(const struct result *r, const char *s, size_t len)
{
	return r->out.len == len && memcmp(r->out.buf, s, len) == 0;
}

TEST(simple_message)
{
	struct result r;
	static const char in[] = "Subject: x\r\n\r\nhello\r\n.\r\nQUIT\r\n";

	CHECK(decode_all(S(in), 1000, &r));
	CHECK(r.status == SMTP_DATA_END);
	CHECK(r.consumed == sizeof(in) - 1 - 6);	/* QUIT stays */
	CHECK(r.flags == 0);
	CHECK(out_is(&r, S("Subject: x\r\n\r\nhello\r\n")));
}

TEST(empty_message)
{
	struct result r;

	CHECK(decode_all(S(".\r\nRSET\r\n"), 1000, &r));
	CHECK(r.status == SMTP_DATA_END);
	CHECK(r.consumed == 3);
	CHECK(r.out.len == 0 && r.flags == 0);
}

TEST(empty_line_message)
{
	struct result r;

	CHECK(decode_all(S("\r\n.\r\n"), 1000, &r));
	CHECK(r.status == SMTP_DATA_END && r.consumed == 5);
	CHECK(out_is(&r, S("\r\n")));
}

TEST(dot_unstuffing)
{
	struct result r;

	CHECK(decode_all(S("..\r\n..x\r\n.y\r\na.b\r\n...\r\n.\r\n"), 1000, &r));
	CHECK(r.status == SMTP_DATA_END);
	CHECK(r.flags == 0);
	CHECK(out_is(&r, S(".\r\n.x\r\ny\r\na.b\r\n..\r\n")));
}

TEST(incomplete_is_more)
{
	struct result r;

	CHECK(decode_all(S("a\r\n.\r"), 1000, &r));
	CHECK(r.status == SMTP_DATA_MORE && r.consumed == 5);
	CHECK(out_is(&r, S("a\r\n")));	/* "." and CR pending */
	CHECK(r.flags == 0);
	CHECK(decode_all(S("a\r\nb\r"), 1000, &r));
	CHECK(r.status == SMTP_DATA_MORE && out_is(&r, S("a\r\nb")));
}

/* Every published end-of-data smuggling variant: the message must run
 * on to the real CRLF.CRLF, with the smuggled "command" as content. */
TEST(smuggling_variants)
{
	static const struct {
		const char *sep;
		size_t len;
		unsigned flags;
	} v[] = {
		{ S("\n.\n"), SMTP_DATA_BARE_LF },
		{ S("\n.\r\n"), SMTP_DATA_BARE_LF },
		{ S("\r.\r"), SMTP_DATA_BARE_CR },
		{ S("\r\n.\n"), SMTP_DATA_BARE_LF },
		{ S("\n.\r"), SMTP_DATA_BARE_LF | SMTP_DATA_BARE_CR },
		{ S("\r.\r\n"), SMTP_DATA_BARE_CR },
		{ S("\r\n.\r"), SMTP_DATA_BARE_CR },
		{ S("\r\n\0.\r\n"), SMTP_DATA_NUL },
		{ S("\r\n.\0\r\n"), SMTP_DATA_NUL },
		{ S("\r.\n"), SMTP_DATA_BARE_CR | SMTP_DATA_BARE_LF },
		{ S("\r\r\n.\r\r\n"), SMTP_DATA_BARE_CR },
		{ S("\r\n .\r\n"), 0 },
		{ S("\n\n.\n\n"), SMTP_DATA_BARE_LF },
		{ S("\r\n..\r\n"), 0 },
	};
	static const char smuggled[] = "MAIL FROM:<evil@x>\r\n";
	int all_ok = 1;

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		char in[256];
		size_t n = 0;
		struct result r;

		memcpy(in + n, "hi", 2), n += 2;
		memcpy(in + n, v[i].sep, v[i].len), n += v[i].len;
		memcpy(in + n, smuggled, sizeof(smuggled) - 1);
		n += sizeof(smuggled) - 1;
		memcpy(in + n, "\r\n.\r\n", 5), n += 5;
		if (!decode_all(in, n, 1000, &r) || r.status != SMTP_DATA_END
		    || r.consumed != n || r.flags != v[i].flags
		    || r.out.len < sizeof(smuggled) - 1
		    || memcmp(r.out.buf + r.out.len - (sizeof(smuggled) - 1) - 2,
			      smuggled, sizeof(smuggled) - 1 - 2) != 0) {
			printf("# variant %zu failed: status %d consumed %zu/%zu "
			       "flags %#x\n", i, r.status, r.consumed, n, r.flags);
			all_ok = 0;
		}
	}
	CHECK(all_ok);
}

TEST(smuggling_at_start)
{
	struct result r;

	/* ".\n" and ".\r" right after the DATA command do not end it. */
	CHECK(decode_all(S(".\nQUIT\r\n.\r\n"), 1000, &r));
	CHECK(r.status == SMTP_DATA_END && r.consumed == 11);
	CHECK(r.flags == SMTP_DATA_BARE_LF);
	CHECK(out_is(&r, S("\nQUIT\r\n")));	/* the dot was stuffing */
	CHECK(decode_all(S(".\rx\r\n.\r\n"), 1000, &r));
	CHECK(r.status == SMTP_DATA_END && r.flags == SMTP_DATA_BARE_CR);
	CHECK(out_is(&r, S("\rx\r\n")));
	CHECK(decode_all(S("\n.\r\nx\r\n.\r\n"), 1000, &r));
	CHECK(r.status == SMTP_DATA_END && r.consumed == 10);
	CHECK(r.flags == SMTP_DATA_BARE_LF);
	CHECK(decode_all(S(".\r\r\n.\r\n"), 1000, &r));
	CHECK(r.status == SMTP_DATA_END && r.consumed == 7);
	CHECK(r.flags == SMTP_DATA_BARE_CR);
}

TEST(bare_bytes_passed_through)
{
	struct result r;

	CHECK(decode_all(S("a\nb\rc\0d\r\n.\r\n"), 1000, &r));
	CHECK(r.status == SMTP_DATA_END);
	CHECK(r.flags == (SMTP_DATA_BARE_LF | SMTP_DATA_BARE_CR | SMTP_DATA_NUL));
	CHECK(out_is(&r, S("a\nb\rc\0d\r\n")));
	/* CR CR LF: the first CR is bare, the second ends the line. */
	CHECK(decode_all(S("a\r\r\n.\r\n"), 1000, &r));
	CHECK(r.status == SMTP_DATA_END && r.flags == SMTP_DATA_BARE_CR);
	CHECK(out_is(&r, S("a\r\r\n")));
}

TEST(split_every_position)
{
	static const char in[] = "x\r\n..a\r\n.\r.\n\r\n.\r\nNEXT";
	size_t n = sizeof(in) - 1;
	struct result whole;
	int ok = 1;

	decode(in, n, 0, 1000, &whole);
	CHECK(whole.status == SMTP_DATA_END && whole.consumed == n - 4);
	CHECK(out_is(&whole, S("x\r\n.a\r\n\r.\n\r\n")));
	for (size_t cut = 0; cut <= n; cut++) {
		struct smtp_data_decoder d;
		struct sink s;
		size_t u1, u2 = 0;
		int st;

		sink_init(&s);
		smtp_data_decoder_init(&d, 1000);
		st = smtp_data_feed(&d, in, cut, &u1, sink_out, &s);
		if (st == SMTP_DATA_MORE)
			st = smtp_data_feed(&d, in + cut, n - cut, &u2, sink_out, &s);
		if (st != SMTP_DATA_END || u1 + u2 != n - 4 || d.flags != whole.flags
		    || s.len != whole.out.len
		    || memcmp(s.buf, whole.out.buf, s.len) != 0)
			ok = 0;
	}
	CHECK(ok);
}

TEST(feed_after_end)
{
	struct smtp_data_decoder d;
	struct sink s;
	size_t used;

	sink_init(&s);
	smtp_data_decoder_init(&d, 1000);
	CHECK(smtp_data_feed(&d, S(".\r\n"), &used, sink_out, &s) == SMTP_DATA_END);
	CHECK(used == 3);
	CHECK(smtp_data_feed(&d, S("more"), &used, sink_out, &s) == SMTP_DATA_END);
	CHECK(used == 0 && s.len == 0);
	CHECK(smtp_data_feed(&d, "", 0, &used, sink_out, &s) == SMTP_DATA_END);
}

TEST(long_lines)
{
	char in[2600];
	struct result r;
	size_t n;

	/* 998 octets + CRLF = 1000: fine. */
	memset(in, 'a', 998);
	memcpy(in + 998, "\r\n.\r\n", 5);
	CHECK(decode_all(in, 1003, 1000, &r));
	CHECK(r.status == SMTP_DATA_END && r.flags == 0 && r.out.len == 1000);
	/* 999 + CRLF = 1001: too long, still emitted. */
	memset(in, 'a', 999);
	memcpy(in + 999, "\r\n.\r\n", 5);
	CHECK(decode_all(in, 1004, 1000, &r));
	CHECK(r.status == SMTP_DATA_END && r.flags == SMTP_DATA_LONG_LINE);
	CHECK(r.out.len == 1001);
	/* The stuffing dot does not count (RFC 5321 4.5.3.1.6): a legal
	 * 1000-octet line ".<997>CRLF" is 1001 octets on the wire. */
	in[0] = '.';
	in[1] = '.';
	memset(in + 2, 'a', 997);
	memcpy(in + 999, "\r\n.\r\n", 5);
	CHECK(decode_all(in, 1004, 1000, &r));
	CHECK(r.flags == 0 && r.out.len == 1000);
	/* ...but one octet more is too long. */
	in[0] = '.';
	in[1] = '.';
	memset(in + 2, 'a', 998);
	memcpy(in + 1000, "\r\n.\r\n", 5);
	CHECK(decode_all(in, 1005, 1000, &r));
	CHECK(r.flags == SMTP_DATA_LONG_LINE);
	/* Many short lines never add up. */
	n = 0;
	for (int i = 0; i < 500; i++)
		memcpy(in + n, "abc\r\n", 5), n += 5;
	memcpy(in + n, ".\r\n", 3), n += 3;
	CHECK(decode_all(in, n, 10, &r));
	CHECK(r.status == SMTP_DATA_END && r.flags == 0);
	/* max_line 0: no limit. */
	memset(in, 'b', 2000);
	memcpy(in + 2000, "\r\n.\r\n", 5);
	CHECK(decode_all(in, 2005, 0, &r));
	CHECK(r.flags == 0 && r.out.len == 2002);
}

TEST(size_counts_output)
{
	struct smtp_data_decoder d;
	struct sink s;
	size_t used;

	sink_init(&s);
	smtp_data_decoder_init(&d, 1000);
	CHECK(smtp_data_feed(&d, S("..ab\r\n.\r\n"), &used, sink_out, &s)
	      == SMTP_DATA_END);
	CHECK(d.size == 5 && s.len == 5);
}

TEST(out_failure)
{
	struct smtp_data_decoder d;
	struct sink s;
	size_t used;

	sink_init(&s);
	s.fail_after = 0;
	smtp_data_decoder_init(&d, 1000);
	CHECK(smtp_data_feed(&d, S("abc\r\n.\r\n"), &used, sink_out, &s)
	      == SMTP_DATA_ERROR);
	CHECK(smtp_data_feed(&d, S("abc\r\n"), &used, sink_out, &s)
	      == SMTP_DATA_ERROR);
	/* Failure when the internal buffer fills, mid-stream. */
	{
		static char big[10000];
		memset(big, 'x', sizeof(big));
		sink_init(&s);
		s.fail_after = 5000;
		smtp_data_decoder_init(&d, 0);
		CHECK(smtp_data_feed(&d, big, sizeof(big), &used, sink_out, &s)
		      == SMTP_DATA_ERROR);
	}
}

static int stuff_all(const char *in, size_t len, size_t chunk, struct sink *s)
{
	int ls = 1;

	sink_init(s);
	for (size_t off = 0; off < len; off += chunk) {
		size_t n = len - off < chunk ? len - off : chunk;

		if (smtp_data_stuff(&ls, in + off, n, sink_out, s) != 0)
			return -1;
	}
	return smtp_data_stuff_end(ls, sink_out, s);
}

TEST(stuff_basic)
{
	struct sink s;

	CHECK(stuff_all(S(".\r\na.b\r\n..\r\n"), 100, &s) == 0);
	CHECK(s.len == 17 && memcmp(s.buf, "..\r\na.b\r\n...\r\n.\r\n", 17) == 0);
	CHECK(stuff_all(S(".\r\na.b\r\n..\r\n"), 1, &s) == 0);
	CHECK(s.len == 17 && memcmp(s.buf, "..\r\na.b\r\n...\r\n.\r\n", 17) == 0);
	CHECK(stuff_all("", 0, 1, &s) == 0);
	CHECK(s.len == 3 && memcmp(s.buf, ".\r\n", 3) == 0);
	/* No final CRLF: one is added. */
	CHECK(stuff_all(S("abc"), 100, &s) == 0);
	CHECK(s.len == 8 && memcmp(s.buf, "abc\r\n.\r\n", 8) == 0);
}

TEST(stuff_defensive_bare)
{
	struct sink s;

	/* Dots after bare LF / bare CR are doubled too, and the end gets a
	 * real CRLF before the ".". */
	CHECK(stuff_all(S("a\n.\nb\r.\r"), 100, &s) == 0);
	CHECK(s.len == 15 && memcmp(s.buf, "a\n..\nb\r..\r\r\n.\r\n", 15) == 0);
	CHECK(stuff_all(S("a\n"), 1, &s) == 0);
	CHECK(s.len == 7 && memcmp(s.buf, "a\n\r\n.\r\n", 7) == 0);
}

TEST(round_trip)
{
	static const char *const msgs[] = {
		"", "\r\n", ".\r\n", "..\r\n", "a\r\n.\r\n.b\r\n",
		"Subject: t\r\n\r\n.\r\n..\r\n...\r\nend\r\n",
	};
	int ok = 1;

	for (size_t i = 0; i < sizeof(msgs) / sizeof(msgs[0]); i++) {
		for (size_t chunk = 1; chunk < 5; chunk++) {
			struct sink s;
			struct result r;
			size_t n = strlen(msgs[i]);

			if (stuff_all(msgs[i], n, chunk, &s) != 0)
				ok = 0;
			decode(s.buf, s.len, chunk, 1000, &r);
			if (r.status != SMTP_DATA_END || r.consumed != s.len
			    || r.flags != 0 || !out_is(&r, msgs[i], n))
				ok = 0;
		}
	}
	CHECK(ok);
}

int main(void)
{
	RUN(simple_message);
	RUN(empty_message);
	RUN(empty_line_message);
	RUN(dot_unstuffing);
	RUN(incomplete_is_more);
	RUN(smuggling_variants);
	RUN(smuggling_at_start);
	RUN(bare_bytes_passed_through);
	RUN(split_every_position);
	RUN(feed_after_end);
	RUN(long_lines);
	RUN(size_counts_output);
	RUN(out_failure);
	RUN(stuff_basic);
	RUN(stuff_defensive_bare);
	RUN(round_trip);
	return unit_done();
}
