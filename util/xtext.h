/*
 * xtext.h - RFC 3461 section 4 xtext encoding, used for XCLIENT attribute
 * values and DSN ORCPT/ENVID.
 *
 * Encodes into a caller-supplied buffer; owns nothing.
 */
#ifndef MOAT_XTEXT_H
#define MOAT_XTEXT_H

#include <stddef.h>

/* Encodes len bytes of in as xtext into out (size outlen, always NUL
 * terminated when outlen > 0). Bytes outside "!".."~", and "+" and "=",
 * become "+XX" (upper-case hex). Returns the length of the full encoding
 * (excluding the NUL); if that is >= outlen the output was truncated. */
size_t xtext_encode(const char *in, size_t len, char *out, size_t outlen);

/* Decodes xtext; returns the decoded length, or (size_t)-1 if in is not
 * valid xtext (bad "+XX" escape, byte outside "!".."~") or does not fit. */
size_t xtext_decode(const char *in, size_t len, char *out, size_t outlen);

#endif
