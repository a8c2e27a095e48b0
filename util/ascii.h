/*
 * ascii.h - locale-free ASCII case handling for protocol keywords and
 * names (SMTP commands and replies, DKIM and DMARC tags, domains).
 * Header-only; owns nothing.
 */
#ifndef MOAT_ASCII_H
#define MOAT_ASCII_H

#include <stddef.h>

static inline unsigned char ascii_upper(unsigned char c)
{
	return c >= 'a' && c <= 'z' ? (unsigned char)(c - 'a' + 'A') : c;
}

static inline unsigned char ascii_lower(unsigned char c)
{
	return c >= 'A' && c <= 'Z' ? (unsigned char)(c - 'A' + 'a') : c;
}

/* Lower-cases the string s in place (ASCII letters only). */
static inline void ascii_lower_str(char *s)
{
	for (; *s; s++)
		*s = (char)ascii_lower((unsigned char)*s);
}

/* Case-insensitive: does s (len bytes) equal the upper-case word? */
static inline int word_eq(const char *s, size_t len, const char *word)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (word[i] == '\0' || ascii_upper((unsigned char)s[i]) != (unsigned char)word[i])
			return 0;
	return word[i] == '\0';
}

#endif
