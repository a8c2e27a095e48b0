/*
 * fuzz_smtp_data - libFuzzer target for the DATA decoder and the
 * dot-stuffing encoder (proxy/smtp_data.c).
 *
 * Input: byte 0 seeds the split positions, byte 1 picks max_line, the
 * rest is the DATA stream. Checks, abort()ing on violation:
 *  - fed in pieces (split points derived from the input) the decoder
 *    gives exactly what a simple whole-buffer reference decoder gives:
 *    the end is the first CRLF "." CRLF of CRLF+stream (nothing else,
 *    whatever bare CR/LF/NUL precede it), consumed <= len on every call
 *    and == len on MORE, the same output (dot-unstuffed CRLF lines), the
 *    same flags, and size == bytes output;
 *  - if the stream did not end, appending CRLF.CRLF ends it;
 *  - round trip: for output without BARE_LF/BARE_CR/NUL, stuffing it
 *    (in pieces) and decoding again gives it back, ending exactly at the
 *    end of the stuffed form;
 *  - encoding any bytes never produces "." between two line-end
 *    characters (CR or LF, bare or not) before the terminator, and the
 *    decoder reads the stuffed form exactly to its end.
 */
#include "smtp_data.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct buf {
	char *p;
	size_t len, cap;
};

static int buf_out(void *arg, const char *s, size_t n)
{
	struct buf *b = arg;

	if (n == 0)
		abort();	/* the decoder never emits empty pieces */
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 64;

		while (cap < b->len + n)
			cap *= 2;
		if ((b->p = realloc(b->p, cap)) == NULL)
			abort();
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	return 0;
}

static void buf_free(struct buf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

/* Tiny deterministic PRNG for split positions. */
static size_t next_chunk(uint32_t *s, size_t left)
{
	*s = *s * 1103515245u + 12345u;
	size_t n = 1 + (*s >> 16) % 17;
	if ((*s >> 8) % 11 == 0)
		n = left;	/* sometimes everything that is left */
	return n < left ? n : left;
}

struct run {
	int status;
	size_t consumed;
	unsigned flags;
	size_t size;
	struct buf out;
};

static void decode(const char *in, size_t len, size_t max_line, uint32_t seed,
		   struct run *r, struct smtp_data_decoder *d)
{
	size_t off = 0;

	smtp_data_decoder_init(d, max_line);
	memset(&r->out, 0, sizeof(r->out));
	r->status = SMTP_DATA_MORE;
	r->consumed = 0;
	do {
		size_t n = next_chunk(&seed, len - off), used = (size_t)-1;

		r->status = smtp_data_feed(d, in + off, n, &used, buf_out, &r->out);
		if (used > n)
			abort();
		r->consumed += used;
		off += n;
		if (r->status == SMTP_DATA_MORE && used != n)
			abort();
		if (r->status != SMTP_DATA_MORE)
			break;
	} while (off < len);
	r->flags = d->flags;
	r->size = d->size;
	if (r->size != r->out.len)
		abort();
}

/* Whole-buffer reference decoder. Returns 1 and fills r if in contains
 * the end, else 0. */
static int reference(const char *in, size_t len, size_t max_line, struct run *r)
{
	size_t end = (size_t)-1, line_start = 0;

	/* First CRLF "." CRLF in CRLF + in. */
	if (len >= 3 && memcmp(in, ".\r\n", 3) == 0)
		end = 3;
	for (size_t i = 0; end == (size_t)-1 && i + 5 <= len; i++)
		if (memcmp(in + i, "\r\n.\r\n", 5) == 0)
			end = i + 5;
	if (end == (size_t)-1)
		return 0;
	memset(r, 0, sizeof(*r));
	r->status = SMTP_DATA_END;
	r->consumed = end;
	/* Content: everything before the terminator's ".\r\n". */
	for (size_t i = 0; i < end - 3; i++) {
		unsigned char c = (unsigned char)in[i];

		if (c == '\n' && (i == 0 || in[i - 1] != '\r'))
			r->flags |= SMTP_DATA_BARE_LF;
		if (c == '\r' && in[i + 1] != '\n')
			r->flags |= SMTP_DATA_BARE_CR;
		if (c == 0)
			r->flags |= SMTP_DATA_NUL;
		if (c == '\r' && in[i + 1] == '\n') {
			size_t wire = i + 2 - line_start;
			const char *l = in + line_start;

			/* the stuffing dot is not counted (RFC 5321 4.5.3.1.6) */
			if (max_line != 0 && wire - (l[0] == '.') > max_line)
				r->flags |= SMTP_DATA_LONG_LINE;
			if (l[0] == '.')
				buf_out(&r->out, l + 1, wire - 1);
			else
				buf_out(&r->out, l, wire);
			line_start = i + 2;
			i++;
		}
	}
	if (line_start != end - 3)
		abort();	/* content always ends in CRLF */
	r->size = r->out.len;
	return 1;
}

static void same(const struct run *a, const struct run *b)
{
	if (a->status != b->status || a->consumed != b->consumed
	    || a->flags != b->flags || a->out.len != b->out.len
	    || (a->out.len && memcmp(a->out.p, b->out.p, a->out.len) != 0))
		abort();
}

static void stuff(const char *in, size_t len, uint32_t seed, struct buf *w,
		  int *ls_out)
{
	int ls = 1;

	for (size_t off = 0; off < len;) {
		size_t n = next_chunk(&seed, len - off);

		if (smtp_data_stuff(&ls, in + off, n, buf_out, w) != 0)
			abort();
		off += n;
	}
	if (ls_out)
		*ls_out = ls;
	if (smtp_data_stuff_end(ls, buf_out, w) != 0)
		abort();
}

static int is_eol(char c)
{
	return c == '\r' || c == '\n';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct smtp_data_decoder d;
	struct run got, ref, again;
	const char *in;
	size_t len, max_line;
	uint32_t seed;

	if (size < 2)
		return 0;
	seed = data[0];
	max_line = data[1] == 0 ? 0 : (size_t)data[1] % 64 + 3;
	in = (const char *)data + 2;
	len = size - 2;

	decode(in, len, max_line, seed, &got, &d);
	if (got.status == SMTP_DATA_ERROR)
		abort();
	if (reference(in, len, max_line, &ref)) {
		same(&got, &ref);
	} else {
		/* Not ended: CRLF.CRLF must end it, as the reference says. */
		char *more = malloc(len + 5);
		size_t used;
		int st;

		if (got.status != SMTP_DATA_MORE || got.consumed != len || !more)
			abort();
		memcpy(more, in, len);
		memcpy(more + len, "\r\n.\r\n", 5);
		st = smtp_data_feed(&d, "\r\n.\r\n", 5, &used, buf_out, &got.out);
		if (st != SMTP_DATA_END || !reference(more, len + 5, max_line, &ref))
			abort();
		got.status = st;
		got.consumed += used;
		got.flags = d.flags;
		same(&got, &ref);
		if (d.size != got.out.len)
			abort();
		free(more);
	}

	/* Round trip for canonical output. */
	if (!(got.flags & (SMTP_DATA_BARE_LF | SMTP_DATA_BARE_CR | SMTP_DATA_NUL))) {
		struct buf w = { 0 };

		stuff(got.out.p, got.out.len, seed ^ 0x5a, &w, NULL);
		decode(w.p, w.len, max_line, seed + 1, &again, &d);
		if (again.status != SMTP_DATA_END || again.consumed != w.len
		    || (again.flags & ~got.flags) != 0)
			abort();
		if (again.out.len != got.out.len
		    || (got.out.len && memcmp(again.out.p, got.out.p, got.out.len)))
			abort();
		buf_free(&w);
		buf_free(&again.out);
	}

	/* Encoder on arbitrary bytes: no "." line of any kind before the
	 * terminator, and the decoder reads exactly to its end. */
	{
		struct buf w = { 0 };
		int ls;

		stuff(in, len, seed ^ 0xa5, &w, &ls);
		if (w.len < 3 || memcmp(w.p + w.len - 3, ".\r\n", 3) != 0)
			abort();
		for (size_t i = 0; i + 3 < w.len; i++) {
			int eol_before = i == 0 || is_eol(w.p[i - 1]);

			if (w.p[i] == '.' && eol_before && is_eol(w.p[i + 1]))
				abort();
		}
		/* ".\r\n" alone only for empty content or after CRLF. */
		if (w.len >= 5 && !(w.p[w.len - 5] == '\r' && w.p[w.len - 4] == '\n'))
			abort();
		decode(w.p, w.len, 0, seed, &again, &d);
		if (again.status != SMTP_DATA_END || again.consumed != w.len)
			abort();
		/* Canonical input (no bare CR/LF) comes back unchanged, with
		 * a CRLF added if it did not end in one. */
		if (!(again.flags & (SMTP_DATA_BARE_LF | SMTP_DATA_BARE_CR))) {
			size_t extra = ls == 1 ? 0 : 2;

			if (again.out.len != len + extra
			    || (len && memcmp(again.out.p, in, len) != 0))
				abort();
		}
		buf_free(&w);
		buf_free(&again.out);
	}

	buf_free(&got.out);
	buf_free(&ref.out);
	return 0;
}
