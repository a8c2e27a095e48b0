/*
 * test_xtext - unit tests for RFC 3461 xtext encoding (util/xtext.c).
 */
#include "xtext.h"
#include "unit.h"

#include <string.h>

#define S(lit) lit, sizeof(lit) - 1

TEST(encode_basic)
{
	char out[64];

	CHECK(xtext_encode(S("user@example.com"), out, sizeof(out)) == 16);
	CHECK(strcmp(out, "user@example.com") == 0);
	CHECK(xtext_encode(S("a+b=c d"), out, sizeof(out)) == 13);
	CHECK(strcmp(out, "a+2Bb+3Dc+20d") == 0);
	CHECK(xtext_encode(S("\0\x7f\xff~!"), out, sizeof(out)) == 11);
	CHECK(strcmp(out, "+00+7F+FF~!") == 0);
	CHECK(xtext_encode("", 0, out, sizeof(out)) == 0 && out[0] == '\0');
}

TEST(encode_truncation)
{
	char out[8];

	memset(out, 'z', sizeof(out));
	/* Full length is returned; escapes are never cut in half. */
	CHECK(xtext_encode(S("ab cd"), out, 5) == 7);
	CHECK(strcmp(out, "ab") == 0);
	CHECK(xtext_encode(S("ab cd"), out, 6) == 7);
	CHECK(strcmp(out, "ab+20") == 0);
	CHECK(xtext_encode(S("ab cd"), out, 8) == 7);
	CHECK(strcmp(out, "ab+20cd") == 0);
	out[0] = 'z';
	CHECK(xtext_encode(S("abc"), out, 1) == 3 && out[0] == '\0');
	CHECK(xtext_encode(S("abc"), NULL, 0) == 3);
}

TEST(decode_basic)
{
	char out[64];

	CHECK(xtext_decode(S("a+2Bb+3Dc+20d"), out, sizeof(out)) == 7);
	CHECK(strcmp(out, "a+b=c d") == 0);
	CHECK(xtext_decode(S("+2b+3d"), out, sizeof(out)) == 2);	/* lower case */
	CHECK(strcmp(out, "+=") == 0);
	CHECK(xtext_decode(S("x+00y"), out, sizeof(out)) == 3);
	CHECK(memcmp(out, "x\0y", 4) == 0);
	CHECK(xtext_decode("", 0, out, sizeof(out)) == 0 && out[0] == '\0');
}

TEST(decode_invalid)
{
	char out[64];
	const size_t bad = (size_t)-1;

	CHECK(xtext_decode(S("a+"), out, sizeof(out)) == bad);
	CHECK(xtext_decode(S("a+2"), out, sizeof(out)) == bad);
	CHECK(xtext_decode(S("a+2G"), out, sizeof(out)) == bad);
	CHECK(xtext_decode(S("a+ 2"), out, sizeof(out)) == bad);
	CHECK(xtext_decode(S("a b"), out, sizeof(out)) == bad);
	CHECK(xtext_decode(S("a=b"), out, sizeof(out)) == bad);
	CHECK(xtext_decode(S("a\x7f"), out, sizeof(out)) == bad);
	CHECK(xtext_decode(S("\xc3\xa9"), out, sizeof(out)) == bad);
	CHECK(xtext_decode(S("a\0"), out, sizeof(out)) == bad);
	/* Does not fit (room for the NUL is needed). */
	CHECK(xtext_decode(S("abc"), out, 3) == bad);
	CHECK(xtext_decode(S("abc"), out, 4) == 3);
	CHECK(xtext_decode(S(""), out, 0) == bad);
}

TEST(round_trip_all_bytes)
{
	char in[256], enc[800], dec[257];
	size_t n;
	int ok = 1;

	for (int i = 0; i < 256; i++)
		in[i] = (char)i;
	n = xtext_encode(in, sizeof(in), enc, sizeof(enc));
	CHECK(n < sizeof(enc) && strlen(enc) == n);
	/* 94 printable minus "+" and "=" stay single, 164 become "+XX". */
	CHECK(n == 92 + 164 * 3);
	for (size_t i = 0; i < n; i++)
		if (enc[i] < '!' || enc[i] > '~' || enc[i] == '=')
			ok = 0;
	CHECK(ok);
	CHECK(xtext_decode(enc, n, dec, sizeof(dec)) == 256);
	CHECK(memcmp(dec, in, 256) == 0);
}

int main(void)
{
	RUN(encode_basic);
	RUN(encode_truncation);
	RUN(decode_basic);
	RUN(decode_invalid);
	RUN(round_trip_all_bytes);
	return unit_done();
}
