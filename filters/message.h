/*
 * message.h - a received message as filters see it: the header fields,
 * parsed once, and the whole message (canonical CRLF, not dot-stuffed)
 * in its msg_spool.
 *
 * The message owns a copy of the header block and the field table;
 * moat_message_free() releases them. The spool is borrowed.
 */
#ifndef MOAT_MESSAGE_H
#define MOAT_MESSAGE_H

#include <stddef.h>

#include "msg_spool.h"

struct moat_verdict;

struct moat_header {
	const char *name;	/* not NUL-terminated: name_len octets */
	size_t name_len;
	const char *raw;	/* the whole field, "Name: value\r\n" with folding */
	size_t raw_len;
	const char *value;	/* after the colon, up to the final CRLF */
	size_t value_len;
};

struct moat_message {
	const struct msg_spool *spool;
	size_t header_len;	/* octets of the header block, blank line included */
	size_t body_offset;	/* where the body starts in the spool */
	int has_body;		/* a blank line was found */
	struct moat_header *headers;
	size_t nheaders;
	char *buf;		/* the header block, owned */
};

#define MOAT_MAX_HEADER_FIELDS 10000

/* Reads the header block of spool. Returns 0; -1 (out of memory, spool
 * read error); or MOAT_MESSAGE_TOO_BIG when the header block is longer
 * than max_header octets or has more than MOAT_MAX_HEADER_FIELDS fields
 * (front ends refuse such a message: 552 5.3.4; treating the excess as
 * body would hide headers, forged Authentication-Results among them,
 * from the filters). */
#define MOAT_MESSAGE_TOO_BIG (-2)
int moat_message_parse(struct moat_message *m, const struct msg_spool *spool,
		       size_t max_header);
void moat_message_free(struct moat_message *m);

/* The index-th (1 = first) field named name, case-insensitive, or NULL. */
const struct moat_header *moat_message_header(const struct moat_message *m,
					      const char *name, int index);
size_t moat_message_count(const struct moat_message *m, const char *name);

/* What the verdict's REMOVE and CHANGE edits do to each received field,
 * in one pass per edit (never per field pair: a message may carry
 * thousands of fields). marks has m->nheaders entries. */
struct moat_header_mark {
	int occurrence;		/* 1-based among fields of its name (when an edit names it) */
	int removed;
	const char *changed;	/* new value, or NULL */
};
void moat_message_mark_edits(const struct moat_message *m, const struct moat_verdict *v,
			     struct moat_header_mark *marks);

/* The header block after the verdict's edits, with the blank line: the
 * added fields first (in the order added), then the original fields,
 * removed or changed as asked. Caller frees *out. Returns 0 or -1. */
int moat_message_edited_header(const struct moat_message *m, const struct moat_verdict *v,
			       char **out, size_t *outlen);

#endif
