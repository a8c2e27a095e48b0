/*
 * filter.c - the registry of filters, and the config section each one
 * gets: its own options plus the common ones (dry_run, on_error,
 * timeout).
 *
 * Owns the registry: fixed arrays filled at start, read-only after.
 */
#include "filter.h"

#include <stddef.h>
#include <string.h>

#define MAX_FILTERS MOAT_MAX_FILTERS

static const char *const on_error_choices[] = {"continue", "tempfail", "reject", NULL};

#define C(field) offsetof(struct moat_filter_common, field)
static const struct moat_opt common_opts[] = {
	{"dry_run", MOAT_OPT_BOOL, C(dry_run), 0, NULL, 0, 0, 0, NULL,
	 "This filter scores and logs what it would do (the result header shows it), but "
	 "nothing is rejected, tempfailed or discarded because of it."},
	{"on_error", MOAT_OPT_STR, C(on_error), 0, "continue", 0, 0, 0, on_error_choices,
	 "When this filter fails or times out: \"continue\" (log, count, go on as if it had no "
	 "opinion), \"tempfail\" (451 4.7.1 at that stage) or \"reject\" (550 5.7.1)."},
	{"timeout", MOAT_OPT_INT, C(timeout), 10, NULL, 1, 600, 0, NULL,
	 "Seconds one SMTP stage waits for this filter before its on_error action applies."},
};

#define NCOMMON (sizeof(common_opts) / sizeof(common_opts[0]))

static const struct moat_filter *filters[MAX_FILTERS];
static struct moat_section_def section_defs[MAX_FILTERS];
/* A filter with its own default_timeout gets its own copy of the common
 * table, with that default. */
static struct moat_opt common_copies[MAX_FILTERS][NCOMMON];
static size_t nfilters;

static const char *const stage_names[MOAT_STAGE__COUNT] = {
	"connect", "helo", "mail", "rcpt", "eom",
};

const char *moat_stage_name(enum moat_stage stage)
{
	return (unsigned)stage < MOAT_STAGE__COUNT ? stage_names[stage] : "?";
}

const struct moat_filter *moat_filter_find(const char *name)
{
	for (size_t i = 0; i < nfilters; i++)
		if (strcmp(filters[i]->name, name) == 0)
			return filters[i];
	return NULL;
}

static int prepare(void *data, struct moat_section_ctx *ctx)
{
	struct moat_filter_common *common = data;
	const struct moat_filter *f = moat_filter_find(moat_section_name(ctx));

	common->on_error_action = MOAT_ACTION_NONE;
	if (common->on_error && strcmp(common->on_error, "tempfail") == 0)
		common->on_error_action = MOAT_ACTION_TEMPFAIL;
	else if (common->on_error && strcmp(common->on_error, "reject") == 0)
		common->on_error_action = MOAT_ACTION_REJECT;
	return f && f->prepare ? f->prepare(data, ctx) : 0;
}

static void release(void *data)
{
	(void)data;	/* the filter's own release runs through its def */
}

void moat_filter_register(const struct moat_filter *f)
{
	if (moat_filter_find(f->name) || nfilters == MAX_FILTERS)
		return;
	struct moat_section_def *sd = &section_defs[nfilters];
	sd->name = f->name;
	sd->doc = f->doc;
	sd->common = common_opts;
	sd->ncommon = NCOMMON;
	if (f->default_timeout > 0) {
		struct moat_opt *copy = common_copies[nfilters];
		memcpy(copy, common_opts, sizeof(common_opts));
		for (size_t i = 0; i < NCOMMON; i++)
			if (strcmp(copy[i].name, "timeout") == 0)
				copy[i].def_int = f->default_timeout;
		sd->common = copy;
	}
	sd->opts = f->opts;
	sd->nopts = f->nopts;
	sd->size = f->conf_size < sizeof(struct moat_filter_common)
			   ? sizeof(struct moat_filter_common) : f->conf_size;
	sd->sub = f->sub;
	sd->prepare = prepare;
	sd->release = f->release ? f->release : release;
	filters[nfilters++] = f;
	moat_config_register_section(sd);
}

size_t moat_filter_index(const struct moat_filter *f)
{
	for (size_t i = 0; i < nfilters; i++)
		if (filters[i] == f)
			return i;
	return MAX_FILTERS;
}

void moat_filters_session_end(void **state)
{
	for (size_t i = 0; state && i < nfilters; i++)
		if (state[i]) {
			if (filters[i]->session_end)
				filters[i]->session_end(state[i]);
			state[i] = NULL;
		}
}

void moat_filters_activate(const struct moat_config *c, struct event_base *base,
			   struct moat_resolver *resolver)
{
	for (size_t i = 0; i < c->filters.n; i++) {
		const struct moat_filter *f = moat_filter_find(c->filters.v[i]);
		const void *conf = moat_config_section(c, c->filters.v[i]);
		if (f && f->activate && conf)
			f->activate(conf, base, resolver);
	}
}
