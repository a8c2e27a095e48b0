/*
 * verdict.h - what the filters decided about one message: scored
 * symbols with reasons, header edits, and an action.
 *
 * A front end keeps two verdicts: one for the session (connect and HELO
 * symbols, which carry into every message) and one per message. The
 * verdict owns its arrays and strings; moat_verdict_clear() frees them.
 */
#ifndef MOAT_VERDICT_H
#define MOAT_VERDICT_H

#include <stddef.h>

enum moat_action {
	MOAT_ACTION_NONE = 0,		/* no decision (yet) */
	MOAT_ACTION_ACCEPT,		/* relay as is */
	MOAT_ACTION_ADD_HEADER,		/* relay, marked as spam */
	MOAT_ACTION_TEMPFAIL,		/* 4xx */
	MOAT_ACTION_REJECT,		/* 5xx */
	MOAT_ACTION_DISCARD,		/* 250 to the client, nothing relayed */
	MOAT_ACTION__COUNT
};

const char *moat_action_name(enum moat_action a);
/* Parses "accept", "add_header", "tempfail", "reject", "discard". */
int moat_action_parse(const char *name, enum moat_action *out);

struct moat_symbol {
	char *name;		/* "ACCESS_CLIENT_DENY" */
	double score;
	char *reason;		/* one line, for logs and the result header */
	const char *filter;	/* static: the filter's name */
	int stage;		/* enum moat_stage where it was added */
	int dry_run;		/* the filter runs in dry-run mode */
};

enum moat_header_op { MOAT_HEADER_ADD, MOAT_HEADER_REMOVE, MOAT_HEADER_CHANGE };

struct moat_header_edit {
	enum moat_header_op op;
	char *name;
	char *value;		/* ADD, CHANGE: unfolded value without CRLF */
	int index;		/* REMOVE, CHANGE: 1 = first occurrence; 0 = all (REMOVE) */
	const char *filter;
};

/* An action decided by a filter (or the scoring step). */
struct moat_decision {
	enum moat_action action;
	int code;		/* reply code for TEMPFAIL/REJECT; 0 = the default */
	char text[256];		/* "5.7.1 Access denied"; "" = the default */
	const char *filter;
	int stage;
	int dry_run;		/* would have been taken, but dry-run */
};

/* One authentication result for moat's Authentication-Results header
 * (RFC 8601): "spf=pass smtp.mailfrom=example.org (comment)". */
struct moat_auth_result {
	char *method;		/* "spf", "dkim", "dmarc" */
	char *result;		/* "pass", "fail", "temperror"... */
	char *props;		/* "smtp.mailfrom=example.org", or "" */
	char *comment;		/* or "" */
	const char *filter;
};

struct moat_verdict {
	struct moat_symbol *symbols;
	size_t nsymbols, cap_symbols;
	struct moat_auth_result *auth;
	size_t nauth, cap_auth;
	struct moat_header_edit *edits;
	size_t nedits, cap_edits;
	struct moat_decision decision;	/* the action taken (or NONE) */
	struct moat_decision would;	/* dry-run: what would have been taken */
	int exempt;		/* an allow entry: later filters are skipped */
	double score;		/* total of symbols not in dry-run */
	double score_all;	/* total including dry-run symbols */
};

void moat_verdict_init(struct moat_verdict *v);
void moat_verdict_clear(struct moat_verdict *v);
/* Appends copies of every symbol of src (session symbols into a message). */
int moat_verdict_add_all(struct moat_verdict *dst, const struct moat_verdict *src);
/* Removes the symbols added at stage. */
void moat_verdict_drop_stage(struct moat_verdict *v, int stage);

int moat_verdict_symbol(struct moat_verdict *v, const char *filter, int stage, int dry_run,
			const char *name, double score, const char *reason);
int moat_verdict_edit(struct moat_verdict *v, const char *filter, enum moat_header_op op,
		      const char *name, const char *value, int index);
int moat_verdict_auth(struct moat_verdict *v, const char *filter, const char *method,
		      const char *result, const char *props, const char *comment);

/* The reply for a REJECT or TEMPFAIL decision: the deciding filter's
 * code and text, else the defaults: 554 / 421 at the greeting (the
 * connection closes), 550 / 451 later; "5.7.1 Rejected by policy" /
 * "4.7.1 Try again later". *text is borrowed from d or static. */
void moat_decision_reply(const struct moat_decision *d, int at_greeting, int *code,
			 const char **text);

/* Recomputes score and score_all. */
void moat_verdict_total(struct moat_verdict *v);

/* "NAME(2.5),OTHER(-1)" into buf (truncated with "..." if needed). */
const char *moat_verdict_symbols_text(const struct moat_verdict *v, char *buf, size_t len);

#endif
