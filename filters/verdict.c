/*
 * verdict.c - the symbols, header edits and decisions of one verdict.
 *
 * Growable arrays of owned strings; nothing else.
 */
#include "verdict.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const action_names[MOAT_ACTION__COUNT] = {
	[MOAT_ACTION_NONE] = "none",
	[MOAT_ACTION_ACCEPT] = "accept",
	[MOAT_ACTION_ADD_HEADER] = "add_header",
	[MOAT_ACTION_TEMPFAIL] = "tempfail",
	[MOAT_ACTION_REJECT] = "reject",
	[MOAT_ACTION_DISCARD] = "discard",
};

const char *moat_action_name(enum moat_action a)
{
	return a < MOAT_ACTION__COUNT ? action_names[a] : "?";
}

int moat_action_parse(const char *name, enum moat_action *out)
{
	for (int i = MOAT_ACTION_ACCEPT; i < MOAT_ACTION__COUNT; i++)
		if (strcmp(name, action_names[i]) == 0) {
			*out = (enum moat_action)i;
			return 0;
		}
	return -1;
}

void moat_verdict_init(struct moat_verdict *v)
{
	memset(v, 0, sizeof(*v));
}

void moat_verdict_clear(struct moat_verdict *v)
{
	for (size_t i = 0; i < v->nsymbols; i++) {
		free(v->symbols[i].name);
		free(v->symbols[i].reason);
	}
	free(v->symbols);
	for (size_t i = 0; i < v->nedits; i++) {
		free(v->edits[i].name);
		free(v->edits[i].value);
	}
	free(v->edits);
	for (size_t i = 0; i < v->nauth; i++) {
		free(v->auth[i].method);
		free(v->auth[i].result);
		free(v->auth[i].props);
		free(v->auth[i].comment);
	}
	free(v->auth);
	memset(v, 0, sizeof(*v));
}

static int grow(void **arr, size_t *cap, size_t n, size_t size)
{
	if (n < *cap)
		return 0;
	size_t nc = *cap ? *cap * 2 : 8;
	void *t = realloc(*arr, nc * size);
	if (!t)
		return -1;
	*arr = t;
	*cap = nc;
	return 0;
}

int moat_verdict_symbol(struct moat_verdict *v, const char *filter, int stage, int dry_run,
			const char *name, double score, const char *reason)
{
	if (grow((void **)&v->symbols, &v->cap_symbols, v->nsymbols, sizeof(*v->symbols)) < 0)
		return -1;
	struct moat_symbol *s = &v->symbols[v->nsymbols];
	s->name = strdup(name);
	s->reason = strdup(reason ? reason : "");
	if (!s->name || !s->reason) {
		free(s->name);
		free(s->reason);
		return -1;
	}
	s->filter = filter;
	s->stage = stage;
	s->dry_run = dry_run;
	s->score = score;
	v->nsymbols++;
	moat_verdict_total(v);
	return 0;
}

int moat_verdict_edit(struct moat_verdict *v, const char *filter, enum moat_header_op op,
		      const char *name, const char *value, int index)
{
	if (grow((void **)&v->edits, &v->cap_edits, v->nedits, sizeof(*v->edits)) < 0)
		return -1;
	struct moat_header_edit *e = &v->edits[v->nedits];
	e->op = op;
	e->name = strdup(name);
	e->value = value ? strdup(value) : NULL;
	if (!e->name || (value && !e->value)) {
		free(e->name);
		free(e->value);
		return -1;
	}
	e->index = index;
	e->filter = filter;
	v->nedits++;
	return 0;
}

int moat_verdict_auth(struct moat_verdict *v, const char *filter, const char *method,
		      const char *result, const char *props, const char *comment)
{
	if (grow((void **)&v->auth, &v->cap_auth, v->nauth, sizeof(*v->auth)) < 0)
		return -1;
	struct moat_auth_result *a = &v->auth[v->nauth];
	a->method = strdup(method);
	a->result = strdup(result);
	a->props = strdup(props ? props : "");
	a->comment = strdup(comment ? comment : "");
	if (!a->method || !a->result || !a->props || !a->comment) {
		free(a->method);
		free(a->result);
		free(a->props);
		free(a->comment);
		return -1;
	}
	a->filter = filter;
	v->nauth++;
	return 0;
}

int moat_verdict_add_all(struct moat_verdict *dst, const struct moat_verdict *src)
{
	for (size_t i = 0; i < src->nsymbols; i++) {
		const struct moat_symbol *s = &src->symbols[i];
		if (moat_verdict_symbol(dst, s->filter, s->stage, s->dry_run, s->name, s->score,
					s->reason) < 0)
			return -1;
	}
	for (size_t i = 0; i < src->nauth; i++) {
		const struct moat_auth_result *a = &src->auth[i];
		if (moat_verdict_auth(dst, a->filter, a->method, a->result, a->props, a->comment) < 0)
			return -1;
	}
	dst->exempt |= src->exempt;
	if (dst->decision.action == MOAT_ACTION_NONE)
		dst->decision = src->decision;
	if (dst->would.action == MOAT_ACTION_NONE)
		dst->would = src->would;
	return 0;
}

void moat_verdict_drop_stage(struct moat_verdict *v, int stage)
{
	size_t w = 0;
	for (size_t i = 0; i < v->nsymbols; i++) {
		if (v->symbols[i].stage == stage) {
			free(v->symbols[i].name);
			free(v->symbols[i].reason);
			continue;
		}
		v->symbols[w++] = v->symbols[i];
	}
	v->nsymbols = w;
	moat_verdict_total(v);
}

void moat_decision_reply(const struct moat_decision *d, int at_greeting, int *code,
			 const char **text)
{
	int reject = d->action == MOAT_ACTION_REJECT;
	*code = d->code ? d->code : at_greeting ? (reject ? 554 : 421) : (reject ? 550 : 451);
	*text = d->text[0] ? d->text : reject ? "5.7.1 Rejected by policy" : "4.7.1 Try again later";
}

void moat_verdict_total(struct moat_verdict *v)
{
	v->score = v->score_all = 0;
	for (size_t i = 0; i < v->nsymbols; i++) {
		v->score_all += v->symbols[i].score;
		if (!v->symbols[i].dry_run)
			v->score += v->symbols[i].score;
	}
}

const char *moat_verdict_symbols_text(const struct moat_verdict *v, char *buf, size_t len)
{
	size_t off = 0;
	if (len == 0)
		return buf;
	buf[0] = '\0';
	for (size_t i = 0; i < v->nsymbols; i++) {
		int n = snprintf(buf + off, len - off, "%s%s(%g)", i ? "," : "",
				 v->symbols[i].name, v->symbols[i].score);
		if (n < 0 || (size_t)n >= len - off) {
			if (len > 4)
				memcpy(buf + len - 4, "...", 4);
			break;
		}
		off += (size_t)n;
	}
	return buf;
}
