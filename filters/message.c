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
			moat_message_free(m);
			return MOAT_MESSAGE_TOO_BIG;
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
		if (m->nheaders >= MOAT_MAX_HEADER_FIELDS) {
			moat_message_free(m);
			return MOAT_MESSAGE_TOO_BIG;
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

static int cmp_edit_name(const void *a, const void *b)
{
	const struct moat_header_edit *x = *(const struct moat_header_edit *const *)a;
	const struct moat_header_edit *y = *(const struct moat_header_edit *const *)b;
	return strcasecmp(x->name, y->name);
}

void moat_message_mark_edits(const struct moat_message *m, const struct moat_verdict *v,
			     struct moat_header_mark *marks)
{
	const struct moat_header_edit **ed;
	size_t n = 0;

	memset(marks, 0, m->nheaders * sizeof(*marks));
	ed = calloc(v->nedits ? v->nedits : 1, sizeof(*ed));
	if (!ed)
		return;
	for (size_t e = 0; e < v->nedits; e++)
		if (v->edits[e].op != MOAT_HEADER_ADD)
			ed[n++] = &v->edits[e];
	/* Group the edits by field name: one pass over the fields per name,
	 * whatever the number of edits (a message may carry thousands of
	 * forged fields, each with its own REMOVE). */
	qsort(ed, n, sizeof(*ed), cmp_edit_name);
	for (size_t g = 0; g < n;) {
		size_t end = g + 1;
		while (end < n && strcasecmp(ed[end]->name, ed[g]->name) == 0)
			end++;
		int count = 0, all = 0, *removed = NULL;
		const char **changed = NULL;
		for (size_t i = 0; i < m->nheaders; i++)
			count += name_is(&m->headers[i], ed[g]->name);
		removed = calloc((size_t)count + 1, sizeof(*removed));
		changed = calloc((size_t)count + 1, sizeof(*changed));
		for (size_t e = g; removed && changed && e < end; e++) {
			if (ed[e]->op == MOAT_HEADER_REMOVE && ed[e]->index == 0)
				all = 1;
			else if (ed[e]->index >= 1 && ed[e]->index <= count) {
				if (ed[e]->op == MOAT_HEADER_REMOVE)
					removed[ed[e]->index] = 1;
				else
					changed[ed[e]->index] = ed[e]->value ? ed[e]->value : "";
			}
		}
		for (size_t i = 0, k = 0; removed && changed && i < m->nheaders; i++) {
			if (!name_is(&m->headers[i], ed[g]->name))
				continue;
			k++;
			marks[i].occurrence = (int)k;
			marks[i].removed = all || removed[k];
			marks[i].changed = changed[k];
		}
		free(removed);
		free(changed);
		g = end;
	}
	free(ed);
}

int moat_message_edited_header(const struct moat_message *m, const struct moat_verdict *v,
			       char **out, size_t *outlen)
{
	struct out o = {NULL, 0, 0};
	int rc = 0;
	struct moat_header_mark *marks = calloc(m->nheaders ? m->nheaders : 1, sizeof(*marks));

	if (!marks)
		return -1;
	moat_message_mark_edits(m, v, marks);
	for (size_t e = 0; e < v->nedits && rc == 0; e++)
		if (v->edits[e].op == MOAT_HEADER_ADD)
			rc = put_field(&o, v->edits[e].name, v->edits[e].value ? v->edits[e].value : "");
	for (size_t i = 0; i < m->nheaders && rc == 0; i++) {
		const struct moat_header *h = &m->headers[i];
		int removed = marks[i].removed;
		const char *changed = marks[i].changed;
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
	free(marks);
	if (rc < 0) {
		free(o.p);
		return -1;
	}
	*out = o.p;
	*outlen = o.len;
	return 0;
}
