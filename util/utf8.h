/*
 * utf8.h - UTF-8 well-formedness, for checking what peers send.
 */
#ifndef MOAT_UTF8_H
#define MOAT_UTF8_H

#include <stddef.h>

/* Length of the well-formed UTF-8 sequence at s (n bytes available), or
 * 0 if it is not one (overlong, surrogate, above U+10FFFF, truncated).
 * An ASCII byte is a sequence of 1. */
size_t moat_utf8_len(const unsigned char *s, size_t n);

#endif
