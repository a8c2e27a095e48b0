/*
 * smtp_data.h - decode the DATA stream from a client, and encode it for
 * the upstream.
 *
 * The decoder is the smuggling boundary: only CRLF "." CRLF ends a
 * message. Bare LF, bare CR and NUL never end a line or a message; they
 * are flagged, the message is read to its real end, and the session
 * rejects it (policy in docs/ARCHITECTURE.md). Output is the message
 * without dot-stuffing and without the terminating ".": a sequence of
 * canonical CRLF lines. smtp_data_stuff() turns such content back into
 * dot-stuffed wire form. Neither owns the buffers it is given.
 * Fuzzed by tests/fuzz/fuzz_smtp_data.c.
 */
#ifndef MOAT_SMTP_DATA_H
#define MOAT_SMTP_DATA_H

#include <stddef.h>

enum smtp_data_flag {
	SMTP_DATA_BARE_LF = 1 << 0,	/* LF not preceded by CR */
	SMTP_DATA_BARE_CR = 1 << 1,	/* CR not followed by LF */
	SMTP_DATA_NUL = 1 << 2,		/* a NUL byte */
	SMTP_DATA_LONG_LINE = 1 << 3,	/* a line over max_line octets */
};

/* Emits decoded bytes; returns 0, or -1 to stop decoding (for example a
 * spool write failed); smtp_data_feed then returns SMTP_DATA_ERROR. */
typedef int (*smtp_data_out_fn)(void *arg, const char *buf, size_t len);

struct smtp_data_decoder {
	size_t max_line;	/* octets per line including CRLF (1000) */
	unsigned flags;		/* enum smtp_data_flag, accumulated */
	size_t size;		/* decoded octets emitted so far */
	/* private state */
	int state_;
	size_t line_len_;
	int line_start_;
};

enum smtp_data_status {
	SMTP_DATA_MORE = 0,	/* everything consumed, message not ended */
	SMTP_DATA_END = 1,	/* message ended; *consumed includes CRLF.CRLF */
	SMTP_DATA_ERROR = -1,	/* the out function returned -1 */
};

/* Call right after the 354: the CRLF that ended the DATA command counts
 * as the CRLF before a first line "." (an empty message). max_line 0
 * disables the SMTP_DATA_LONG_LINE check. */
void smtp_data_decoder_init(struct smtp_data_decoder *d, size_t max_line);

/* Feeds len bytes of the stream. Sets *consumed to the bytes used: all
 * of them unless the message ended (the rest belongs to the next
 * command). Decoded content goes to out() in pieces of any size. */
int smtp_data_feed(struct smtp_data_decoder *d, const char *in, size_t len,
		   size_t *consumed, smtp_data_out_fn out, void *arg);

/* Dot-stuffing encoder for canonical CRLF content. *line_start must be 1
 * before the first call (and is kept between calls; it is 1 exactly when
 * the content so far ends in CRLF). Emits through out() the content with
 * "." doubled at the start of each line. As a defence in depth a "."
 * after a bare CR or bare LF is doubled too (*line_start is then 2 or
 * 3), so no upstream can read a line "." into non-canonical content.
 * The caller sends the terminating ".\r\n" itself (after a final CRLF,
 * which canonical content always ends with; smtp_data_stuff_end() adds
 * one if it does not). Returns 0 or -1 if out() did. */
int smtp_data_stuff(int *line_start, const char *in, size_t len,
		    smtp_data_out_fn out, void *arg);
/* Emits the end of data: ".\r\n" if the content ended in CRLF
 * (line_start == 1), "\r\n.\r\n" otherwise. */
int smtp_data_stuff_end(int line_start, smtp_data_out_fn out, void *arg);

#endif
