/*
 * message.c - the header fields of a held message, and the header block
 * rewritten by a verdict's edits.
 *
 * Owns a copy of the header block and the field table pointing into it.
 */
#include "message.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "verdict.h"

void moat_message_free(struct moat_message *m)
{
	free(m->headers);
	free(m->buf);
	memset(m, 0, sizeof(*m));
}

static int add_field(struct moat_message *m, size_t *cap, const char *start, const char *end)
{
	if (m->nheaders == *cap) {
		size_t nc = *cap ? *cap * 2 : 32;
		void *t = realloc(m->headers, nc * sizeof(*m->headers));
		if (!t)
			return -1;
		m->headers = t;
		*cap = nc;
	}
	struct moat_header *h = &m->headers[m->nheaders++];
	const char *colon = memchr(start, ':', (size_t)(end - start));
	h->raw = start;
	h->raw_len = (size_t)(end - start);
	h->name = start;
	if (colon) {
		h->name_len = (size_t)(colon - start);
		while (h->name_len && (start[h->name_len - 1] == ' ' || start[h->name_len - 1] == '\t'))
			h->name_len--;	/* obsolete "Name :" syntax */
		h->value = colon + 1;
	} else {
		h->name_len = 0;	/* not a field: kept, matches no name */
		h->value = start;
	}
	h->value_len = (size_t)(end - h->value);
	if (h->value_len >= 2 && end[-2] == '\r' && end[-1] == '\n')
		h->value_len -= 2;
	return 0;
}

int moat_message_parse(struct moat_message *m, const struct msg_spool *spool, size_t max_header)
{
	size_t size = msg_spool_size(spool);
	size_t want = size < max_header ? size : max_header;
	size_t cap = 0;

	memset(m, 0, sizeof(*m));
	m->spool = spool;
	m->buf = malloc(want + 1);
	if (!m->buf)
		return -1;
	ssize_t got = want ? msg_spool_read(spool, 0, m->buf, want) : 0;
	if (got < 0 || (size_t)got != want) {
		moat_message_free(m);
		return -1;
	}
	m->buf[want] = '\0';

	/* The header block ends at the first empty line. */
	size_t end;
	if (want >= 2 && memcmp(m->buf, "\r\n", 2) == 0) {
		end = 0;
		m->header_len = 2;
		m->has_body = 1;
	} else {
		const char *p = memmem(m->buf, want, "\r\n\r\n", 4);
		if (p) {
			end = (size_t)(p - m->buf) + 2;
			m->header_len = end + 2;
			m->has_body = 1;
		} else if (size <= max_header) {
			end = want;	/* headers only, no body */
			m->header_len = want;
		} else {
			end = 0;	/* too big to be headers: all body */
			m->header_len = 0;
		}
	}
	m->body_offset = m->header_len;

	/* Fields: a line not starting with WSP starts one. */
	size_t i = 0;
	while (i < end) {
		size_t s = i;
		for (;;) {
			const char *nl = memmem(m->buf + i, end - i, "\r\n", 2);
			i = nl ? (size_t)(nl - m->buf) + 2 : end;
			if (i >= end || (m->buf[i] != ' ' && m->buf[i] != '\t'))
				break;
		}
		if (add_field(m, &cap, m->buf + s, m->buf + i) < 0) {
			moat_message_free(m);
			return -1;
		}
	}
	return 0;
}

static int name_is(const struct moat_header *h, const char *name)
{
	size_t n = strlen(name);
	return h->name_len == n && strncasecmp(h->name, name, n) == 0;
}

const struct moat_header *moat_message_header(const struct moat_message *m, const char *name,
					      int index)
{
	int seen = 0;
	for (size_t i = 0; i < m->nheaders; i++)
		if (name_is(&m->headers[i], name) && ++seen == index)
			return &m->headers[i];
	return NULL;
}

size_t moat_message_count(const struct moat_message *m, const char *name)
{
	size_t n = 0;
	for (size_t i = 0; i < m->nheaders; i++)
		n += name_is(&m->headers[i], name);
	return n;
}

struct out {
	char *p;
	size_t len, cap;
};

static int put(struct out *o, const char *s, size_t n)
{
	if (o->len + n + 1 > o->cap) {
		size_t nc = o->cap ? o->cap * 2 : 1024;
		while (nc < o->len + n + 1)
			nc *= 2;
		char *t = realloc(o->p, nc);
		if (!t)
			return -1;
		o->p = t;
		o->cap = nc;
	}
	memcpy(o->p + o->len, s, n);
	o->len += n;
	o->p[o->len] = '\0';
	return 0;
}

static int put_field(struct out *o, const char *name, const char *value)
{
	return put(o, name, strlen(name)) || put(o, ": ", 2) ||
	       put(o, value, strlen(value)) || put(o, "\r\n", 2) ? -1 : 0;
}

int moat_message_edited_header(const struct moat_message *m, const struct moat_verdict *v,
			       char **out, size_t *outlen)
{
	struct out o = {NULL, 0, 0};
	int rc = 0;

	for (size_t e = 0; e < v->nedits && rc == 0; e++)
		if (v->edits[e].op == MOAT_HEADER_ADD)
			rc = put_field(&o, v->edits[e].name, v->edits[e].value ? v->edits[e].value : "");
	for (size_t i = 0; i < m->nheaders && rc == 0; i++) {
		const struct moat_header *h = &m->headers[i];
		int occurrence = 0, removed = 0;
		const char *changed = NULL;
		for (size_t j = 0; j <= i; j++)
			if (h->name_len && m->headers[j].name_len == h->name_len &&
			    strncasecmp(m->headers[j].name, h->name, h->name_len) == 0)
				occurrence++;
		for (size_t e = 0; e < v->nedits; e++) {
			const struct moat_header_edit *ed = &v->edits[e];
			if (ed->op == MOAT_HEADER_ADD || !name_is(h, ed->name))
				continue;
			if (ed->op == MOAT_HEADER_REMOVE && (ed->index == 0 || ed->index == occurrence))
				removed = 1;
			else if (ed->op == MOAT_HEADER_CHANGE && ed->index == occurrence)
				changed = ed->value ? ed->value : "";
		}
		if (removed)
			continue;
		if (changed) {
			char name[256];
			size_t n = h->name_len < sizeof(name) - 1 ? h->name_len : sizeof(name) - 1;
			memcpy(name, h->name, n);
			name[n] = '\0';
			rc = put_field(&o, name, changed);
		} else {
			rc = put(&o, h->raw, h->raw_len);
		}
	}
	if (rc == 0 && m->has_body)
		rc = put(&o, "\r\n", 2);
	if (rc == 0 && !o.p)
		rc = put(&o, "", 0);
	if (rc < 0) {
		free(o.p);
		return -1;
	}
	*out = o.p;
	*outlen = o.len;
	return 0;
}
