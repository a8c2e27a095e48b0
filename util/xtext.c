/*
 * NAME
 *	xtext - RFC 3461 xtext encoding and decoding
 * SYNOPSIS
 *	#include "xtext.h"
 * DESCRIPTION
 *	xtext_encode() turns arbitrary bytes into xtext: every byte
 *	outside "!".."~", and "+" and "=", becomes "+XX" with two
 *	upper-case hex digits. Escapes are never cut in half when the
 *	output buffer is too small; the return value is always the length
 *	of the complete encoding, as with snprintf().
 *
 *	xtext_decode() reverses it. It rejects bytes outside "!".."~", a
 *	raw "=", and "+" not followed by two hex digits (upper case per
 *	the RFC; lower case is accepted too, as Postfix does). The output
 *	is NUL terminated, so it needs room for the decoded length plus
 *	one; note that decoded data may itself contain NUL bytes.
 * OWNERSHIP
 *	Owns nothing: reads and writes caller-supplied buffers only.
 */
#include "xtext.h"

static const char xtext_hex[] = "0123456789ABCDEF";

static int xtext_is_plain(unsigned char c)
{
	return c >= '!' && c <= '~' && c != '+' && c != '=';
}

static int xtext_hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

size_t xtext_encode(const char *in, size_t len, char *out, size_t outlen)
{
	size_t need = 0;	/* length of the full encoding so far */
	size_t w = 0;		/* bytes actually written */
	int full = 0;		/* stopped writing: an escape did not fit */

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)in[i];
		size_t n = xtext_is_plain(c) ? 1 : 3;

		need += n;
		if (full || outlen == 0 || w + n > outlen - 1) {
			full = 1;
			continue;
		}
		if (n == 1) {
			out[w++] = (char)c;
		} else {
			out[w++] = '+';
			out[w++] = xtext_hex[c >> 4];
			out[w++] = xtext_hex[c & 15];
		}
	}
	if (outlen > 0)
		out[w] = '\0';
	return need;
}

size_t xtext_decode(const char *in, size_t len, char *out, size_t outlen)
{
	size_t w = 0;

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)in[i];

		if (c == '+') {
			int hi, lo;

			if (len - i < 3)
				return (size_t)-1;
			hi = xtext_hexval((unsigned char)in[i + 1]);
			lo = xtext_hexval((unsigned char)in[i + 2]);
			if (hi < 0 || lo < 0)
				return (size_t)-1;
			c = (unsigned char)(hi << 4 | lo);
			i += 2;
		} else if (!xtext_is_plain(c)) {
			return (size_t)-1;
		}
		if (w + 1 >= outlen)	/* keep room for the NUL */
			return (size_t)-1;
		out[w++] = (char)c;
	}
	if (w >= outlen)
		return (size_t)-1;
	out[w] = '\0';
	return w;
}
