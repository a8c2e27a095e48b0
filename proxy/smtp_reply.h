/*
 * smtp_reply.h - read replies from the upstream MTA, and the EHLO
 * capabilities they announce.
 *
 * A reply is fed line by line (without CRLF) into a parser that owns the
 * reply it assembles until the caller takes it. Input is untrusted
 * network data (an upstream can be broken or hostile): bounded in lines
 * and length, fuzzed by tests/fuzz/fuzz_smtp_reply.c.
 */
#ifndef MOAT_SMTP_REPLY_H
#define MOAT_SMTP_REPLY_H

#include <stddef.h>

#define SMTP_REPLY_MAX_LINES 100
#define SMTP_REPLY_MAX_LINE 2048	/* longer lines are a protocol error */

/* One complete reply. text holds every line as received, each ending in
 * CRLF ("250-a\r\n250 b\r\n"), with any bytes outside printable ASCII,
 * UTF-8 and TAB replaced by '?', so it can be relayed to a client as is. */
struct smtp_reply {
	int code;		/* 200..599 */
	char enhanced[16];	/* "2.1.0" from the first line, or "" */
	size_t nlines;
	char *text;		/* owned by the reply; smtp_reply_clear() */
	size_t text_len;
};

struct smtp_reply_parser {
	struct smtp_reply cur;	/* reply being assembled */
	size_t cap;		/* allocated size of cur.text */
	int done_;		/* private: cur is complete, not yet taken */
};

void smtp_reply_parser_init(struct smtp_reply_parser *p);
void smtp_reply_parser_free(struct smtp_reply_parser *p);

/* Feeds one line (without its CRLF). Returns 0 when more lines are
 * needed, 1 when the reply is complete (take it with
 * smtp_reply_parser_take), -1 on a protocol error (bad or inconsistent
 * code, too many or too long lines) or when out of memory; after -1 the
 * parser is reset. Feeding a line while a completed reply has not been
 * taken discards that reply. */
int smtp_reply_feed(struct smtp_reply_parser *p, const char *line, size_t len);

/* Moves the completed reply into *out (caller owns it now) and resets.
 * out->text is NUL terminated (not counted in text_len); it is NULL only
 * if no line was fed. */
void smtp_reply_parser_take(struct smtp_reply_parser *p, struct smtp_reply *out);

void smtp_reply_clear(struct smtp_reply *r);

/* The text of the reply's last line after code, separator and enhanced
 * code ("Ok: queued as 4Xyz"), borrowed from r->text, length in *len. */
const char *smtp_reply_last_text(const struct smtp_reply *r, size_t *len);

/* EHLO extensions moat cares about. */
enum smtp_ext {
	SMTP_EXT_PIPELINING = 1 << 0,
	SMTP_EXT_SIZE = 1 << 1,
	SMTP_EXT_8BITMIME = 1 << 2,
	SMTP_EXT_SMTPUTF8 = 1 << 3,
	SMTP_EXT_ENHANCEDSTATUSCODES = 1 << 4,
	SMTP_EXT_DSN = 1 << 5,
	SMTP_EXT_XCLIENT = 1 << 6,
	SMTP_EXT_STARTTLS = 1 << 7,
	SMTP_EXT_AUTH = 1 << 8,
	SMTP_EXT_CHUNKING = 1 << 9,
	SMTP_EXT_XFORWARD = 1 << 10,
};

enum smtp_xclient_attr {
	SMTP_XCLIENT_NAME = 1 << 0,
	SMTP_XCLIENT_ADDR = 1 << 1,
	SMTP_XCLIENT_PORT = 1 << 2,
	SMTP_XCLIENT_PROTO = 1 << 3,
	SMTP_XCLIENT_HELO = 1 << 4,
	SMTP_XCLIENT_LOGIN = 1 << 5,
	SMTP_XCLIENT_DESTADDR = 1 << 6,
	SMTP_XCLIENT_DESTPORT = 1 << 7,
};

struct smtp_caps {
	unsigned ext;		/* enum smtp_ext bits */
	unsigned long size;	/* SIZE argument; 0 = none given / no limit */
	unsigned xclient;	/* enum smtp_xclient_attr bits */
	unsigned auth;		/* AUTH mechanisms moat relays (enum sasl_mech bits) */
};

/* Reads the capabilities out of a 250 reply to EHLO (lines after the
 * first). Unknown keywords are ignored. Returns 0, or -1 if the reply is
 * not a 2xx. */
int smtp_caps_parse(const struct smtp_reply *r, struct smtp_caps *out);

/* "PIPELINING SIZE=1000 ..." for logs; writes into buf, returns buf. */
const char *smtp_caps_format(const struct smtp_caps *c, char *buf, size_t len);

#endif
