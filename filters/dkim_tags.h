/*
 * dkim_tags.h - the DKIM tag=value list (RFC 6376 3.2), as found in a
 * DKIM-Signature field value and in a key record.
 *
 *	tag-list  = tag-spec *( ";" tag-spec ) [ ";" ]
 *	tag-spec  = [FWS] tag-name [FWS] "=" [FWS] tag-value [FWS]
 *	tag-name  = ALPHA *ALNUMPUNC	(ALNUMPUNC: ALPHA / DIGIT / "_")
 *
 * The parser copies nothing: every tag points into the caller's text,
 * which must outlive the tag list. Tag names are case-sensitive.
 */
#ifndef MOAT_DKIM_TAGS_H
#define MOAT_DKIM_TAGS_H

#include <stddef.h>

#define DKIM_TAGS_MAX 64	/* more tags than this: an error */

struct dkim_tag {
	const char *name;
	size_t name_len;
	const char *value;	/* the value without surrounding whitespace */
	size_t value_len;	/* (inner folding whitespace kept) */
	const char *raw;	/* all between "=" and ";" (or the end), */
	size_t raw_len;		/* whitespace on both sides included */
};

struct dkim_tags {
	size_t n;
	struct dkim_tag tag[DKIM_TAGS_MAX];
};

/* Parses text (len octets, no NUL needed) into *out. Whitespace is SP,
 * HT, CR and LF (folded header values and TXT records alike); a value
 * holds printable ASCII, octets >= 0x80 and inner whitespace, never ";"
 * nor another control character. Returns 0, or -1 with *why set to a
 * static reason ("duplicate tag", "invalid tag name", ...). */
int dkim_tags_parse(const char *text, size_t len, struct dkim_tags *out, const char **why);

/* The tag called name (NUL-terminated), or NULL. */
const struct dkim_tag *dkim_tags_get(const struct dkim_tags *t, const char *name);

/* 1 if the tag's value equals s (NUL-terminated) exactly / ignoring ASCII case. */
int dkim_tag_is(const struct dkim_tag *tag, const char *s);
int dkim_tag_is_nocase(const struct dkim_tag *tag, const char *s);

/* Walks a colon-separated list value (h=, q=, s=, t=, key h=): sets
 * *item and *item_len to the next element without surrounding whitespace,
 * starting at *pos (0 at first). Returns 1, or 0 at the end. An empty
 * element (":a", "a::b") is returned as such (length 0). */
int dkim_tag_list_next(const char *value, size_t len, size_t *pos, const char **item,
		       size_t *item_len);

/* Decodes a base64 value (RFC 2045 alphabet, "=" padding required,
 * whitespace anywhere ignored) into a new buffer *out (caller frees;
 * NUL-terminated for convenience, *out_len octets). An empty value gives
 * a 0-octet buffer. Returns 0, or -1 with *why set (invalid base64, out
 * of memory). */
int dkim_tag_base64(const char *value, size_t len, unsigned char **out, size_t *out_len,
		    const char **why);

/* 1 if s is a domain name DKIM accepts for d=, s= and the domain of i=:
 * dot-separated labels of letters, digits, "-" and "_", 1-63 octets each,
 * 253 in all, no final dot. */
int dkim_domain_ok(const char *s, size_t len);

#endif
