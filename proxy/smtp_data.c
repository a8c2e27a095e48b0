/*
 * NAME
 *	smtp_data - DATA stream decoder (the smuggling boundary) and
 *	dot-stuffing encoder
 * SYNOPSIS
 *	#include "smtp_data.h"
 * DESCRIPTION
 *	smtp_data_feed() is a byte-at-a-time state machine over the
 *	client's DATA stream (runs of ordinary bytes inside a line, found
 *	with memchr(), are passed on at once, the same as byte by byte);
 *	it may be fed pieces of any size, split
 *	anywhere (between CR and LF, inside "\r\n.\r\n", ...). The only
 *	end of message is CR LF "." CR LF, where the CR LF that ended the
 *	DATA command counts as the first CR LF (so the decoder starts at
 *	the beginning of a line).
 *
 *	Only CR LF ends a line. A bare LF, a bare CR or a NUL is content:
 *	it is flagged in d->flags and passed through unchanged, and
 *	decoding continues to the real end, so that "\n.\n", "\r.\r",
 *	"\r\n.\n" and the other smuggling variants never end a message
 *	here (the session then rejects the message). A "." that starts a
 *	line is removed (dot-unstuffing). A line of more than max_line
 *	octets on the wire, counting its dot-stuffing and its CR LF, sets
 *	SMTP_DATA_LONG_LINE; its bytes are still passed on. max_line 0
 *	means no limit.
 *
 *	Decoded bytes are collected in a buffer on the stack and passed to
 *	out() when it fills and before smtp_data_feed() returns; a CR or a
 *	leading "." whose meaning depends on the next byte is kept in the
 *	decoder state across calls, never in a buffer.
 *
 *	smtp_data_stuff() doubles a "." at the start of each line. For
 *	canonical content a line starts after CR LF. As a defence in depth
 *	against upstreams that accept bare line ends, it also doubles a
 *	"." that follows a bare CR or bare LF (content that only a flagged,
 *	hence rejected, message can contain), so that its output never
 *	holds "." between two line-end characters of any kind.
 * OWNERSHIP
 *	Owns nothing; no global state. The decoder's state is the caller's
 *	struct smtp_data_decoder.
 */
#include "smtp_data.h"

#include <string.h>

enum {
	ST_BOL,		/* at the beginning of a line (after CR LF) */
	ST_DOT,		/* "." at the beginning of a line */
	ST_DOT_CR,	/* "." CR at the beginning of a line */
	ST_TEXT,	/* inside a line */
	ST_CR,		/* CR inside a line, not yet known to be CR LF */
	ST_END,		/* the message ended */
	ST_ERROR,	/* out() failed */
};

#define OUTBUF_SIZE 4096

struct outbuf {
	char buf[OUTBUF_SIZE];
	size_t len;
	smtp_data_out_fn out;
	void *arg;
	struct smtp_data_decoder *d;
};

static int ob_flush(struct outbuf *ob)
{
	if (ob->len == 0)
		return 0;
	if (ob->out(ob->arg, ob->buf, ob->len) != 0)
		return -1;
	ob->d->size += ob->len;
	ob->len = 0;
	return 0;
}

static int ob_put(struct outbuf *ob, char c)
{
	if (ob->len == sizeof(ob->buf) && ob_flush(ob) != 0)
		return -1;
	ob->buf[ob->len++] = c;
	return 0;
}

/* Emits a run of n bytes; a run longer than the buffer goes to out()
 * directly, after what is buffered. */
static int ob_write(struct outbuf *ob, const char *p, size_t n)
{
	if (ob->len + n > sizeof(ob->buf)) {
		if (ob_flush(ob) != 0)
			return -1;
		if (n >= sizeof(ob->buf)) {
			if (ob->out(ob->arg, p, n) != 0)
				return -1;
			ob->d->size += n;
			return 0;
		}
	}
	memcpy(ob->buf + ob->len, p, n);
	ob->len += n;
	return 0;
}

void smtp_data_decoder_init(struct smtp_data_decoder *d, size_t max_line)
{
	memset(d, 0, sizeof(*d));
	d->max_line = max_line;
	d->state_ = ST_BOL;
	d->line_start_ = 1;
}

/* Counts one wire octet of the current line. */
static void count_octet(struct smtp_data_decoder *d)
{
	if (d->max_line == 0)
		return;
	if (d->line_len_ <= d->max_line)
		d->line_len_++;
	if (d->line_len_ > d->max_line)
		d->flags |= SMTP_DATA_LONG_LINE;
}

/* Counts n wire octets of the current line, as n count_octet() calls. */
static void count_octets(struct smtp_data_decoder *d, size_t n)
{
	if (d->max_line == 0)
		return;
	if (d->line_len_ <= d->max_line) {
		size_t room = d->max_line + 1 - d->line_len_;
		d->line_len_ += n < room ? n : room;
	}
	if (d->line_len_ > d->max_line)
		d->flags |= SMTP_DATA_LONG_LINE;
}

/* The length of the run of ordinary bytes (no CR, LF or NUL) at p: the
 * bytes text_byte() would pass on one by one in ST_TEXT. */
static size_t text_run(const char *p, size_t n)
{
	const char *e = memchr(p, '\r', n);
	size_t len = e ? (size_t)(e - p) : n;
	if ((e = memchr(p, '\n', len)) != NULL)
		len = (size_t)(e - p);
	if ((e = memchr(p, '\0', len)) != NULL)
		len = (size_t)(e - p);
	return len;
}

/* A byte inside a line that is not the LF of a pending CR LF. Returns
 * the next state, or -1 if out() failed. */
static int text_byte(struct smtp_data_decoder *d, struct outbuf *ob,
		     unsigned char c)
{
	count_octet(d);
	if (c == '\r')
		return ST_CR;
	if (c == '\n')
		d->flags |= SMTP_DATA_BARE_LF;
	else if (c == '\0')
		d->flags |= SMTP_DATA_NUL;
	if (ob_put(ob, (char)c) != 0)
		return -1;
	return ST_TEXT;
}

int smtp_data_feed(struct smtp_data_decoder *d, const char *in, size_t len,
		   size_t *consumed, smtp_data_out_fn out, void *arg)
{
	struct outbuf ob;
	int st = d->state_;
	size_t i;

	*consumed = 0;
	if (st == ST_END)
		return SMTP_DATA_END;
	if (st == ST_ERROR)
		return SMTP_DATA_ERROR;
	ob.len = 0;
	ob.out = out;
	ob.arg = arg;
	ob.d = d;

	for (i = 0; i < len && st != ST_END && st >= 0; i++) {
		unsigned char c = (unsigned char)in[i];

		switch (st) {
		case ST_BOL:
			if (c == '.') {
				/* Not counted: RFC 5321 4.5.3.1.6 excludes the
				 * dot duplicated for transparency. */
				st = ST_DOT;
			} else {
				st = text_byte(d, &ob, c);
			}
			break;
		case ST_DOT:
			/* The "." is stuffing unless it starts CR LF. */
			if (c == '\r') {
				count_octet(d);
				st = ST_DOT_CR;
			} else {
				st = text_byte(d, &ob, c);
			}
			break;
		case ST_DOT_CR:
			if (c == '\n') {
				st = ST_END;
				break;
			}
			/* "." bare-CR: the dot was stuffing, the CR is content. */
			d->flags |= SMTP_DATA_BARE_CR;
			if (ob_put(&ob, '\r') != 0)
				st = -1;
			else
				st = text_byte(d, &ob, c);
			break;
		case ST_TEXT: {
			/* The common case, a run of ordinary bytes, at once. */
			size_t n = text_run(in + i, len - i);
			if (n > 0) {
				count_octets(d, n);
				if (ob_write(&ob, in + i, n) != 0) {
					st = -1;
					break;
				}
				i += n - 1;
				break;
			}
			st = text_byte(d, &ob, c);
			break;
		}
		case ST_CR:
			if (c == '\n') {
				count_octet(d);
				if (ob_put(&ob, '\r') != 0 || ob_put(&ob, '\n') != 0) {
					st = -1;
					break;
				}
				d->line_len_ = 0;
				st = ST_BOL;
				break;
			}
			d->flags |= SMTP_DATA_BARE_CR;
			if (ob_put(&ob, '\r') != 0)
				st = -1;
			else
				st = text_byte(d, &ob, c);
			break;
		}
	}
	if (st < 0 || ob_flush(&ob) != 0) {
		d->state_ = ST_ERROR;
		*consumed = i;
		return SMTP_DATA_ERROR;
	}
	d->state_ = st;
	d->line_start_ = st == ST_BOL;
	*consumed = i;
	return st == ST_END ? SMTP_DATA_END : SMTP_DATA_MORE;
}

/*
 * Encoder. *line_start values:
 *	0	inside a line
 *	1	after CR LF, or at the start of the content
 *	2	after a bare LF
 *	3	after a CR (CR LF or bare CR: not known yet)
 * A "." is doubled in states 1, 2 and 3. Canonical content only ever
 * uses 0 and 1 (a CR there is always followed by LF).
 */
enum { LS_MID = 0, LS_CRLF = 1, LS_LF = 2, LS_CR = 3 };

int smtp_data_stuff(int *line_start, const char *in, size_t len,
		    smtp_data_out_fn out, void *arg)
{
	int ls = *line_start;
	size_t run = 0;		/* start of the pending run of input */

	for (size_t i = 0; i < len; i++) {
		if (ls == LS_MID) {
			/* Inside a line only CR or LF changes anything: skip
			 * to the next one (or to the end). */
			const char *e = memchr(in + i, '\r', len - i);
			size_t lim = e ? (size_t)(e - in) : len;
			if ((e = memchr(in + i, '\n', lim - i)) != NULL)
				lim = (size_t)(e - in);
			if (lim == len)
				break;
			i = lim;
		}
		unsigned char c = (unsigned char)in[i];

		if (c == '.' && ls != LS_MID) {
			/* Emit up to and including this dot; it is then
			 * emitted once more as the start of the next run. */
			if (out(arg, in + run, i + 1 - run) != 0) {
				*line_start = ls;
				return -1;
			}
			run = i;
		}
		if (c == '\n')
			ls = ls == LS_CR ? LS_CRLF : LS_LF;
		else if (c == '\r')
			ls = LS_CR;
		else
			ls = LS_MID;
	}
	*line_start = ls;
	if (run < len && out(arg, in + run, len - run) != 0)
		return -1;
	return 0;
}

int smtp_data_stuff_end(int line_start, smtp_data_out_fn out, void *arg)
{
	if (line_start == LS_CRLF)
		return out(arg, ".\r\n", 3) != 0 ? -1 : 0;
	return out(arg, "\r\n.\r\n", 5) != 0 ? -1 : 0;
}
