/*
 * smtp_cmd.h - parse one SMTP command line from a client.
 *
 * Owns nothing: smtp_cmd_parse() points into the caller's line;
 * smtp_path_parse() fills a struct smtp_path whose strings live in one
 * heap block released by smtp_path_free().
 *
 * Input is untrusted network data: every function here is fuzzed
 * (tests/fuzz/fuzz_smtp_cmd.c).
 */
#ifndef MOAT_SMTP_CMD_H
#define MOAT_SMTP_CMD_H

#include <stddef.h>

enum smtp_verb {
	SMTP_VERB_UNKNOWN = 0,
	SMTP_VERB_HELO,
	SMTP_VERB_EHLO,
	SMTP_VERB_MAIL,
	SMTP_VERB_RCPT,
	SMTP_VERB_DATA,
	SMTP_VERB_RSET,
	SMTP_VERB_NOOP,
	SMTP_VERB_QUIT,
	SMTP_VERB_VRFY,
	SMTP_VERB_EXPN,
	SMTP_VERB_HELP,
	SMTP_VERB_ETRN,
	SMTP_VERB_STARTTLS,
	SMTP_VERB_AUTH,
	SMTP_VERB_BDAT,
	SMTP_VERB_XCLIENT,
	SMTP_VERB_XFORWARD,
	SMTP_VERB__COUNT
};

/* One parsed command line. verb is looked up case-insensitively in a
 * table; arg points into the caller's line just past the verb and its
 * separating spaces (never NULL; "" when there is none); trailing spaces
 * are not counted in arg_len. */
struct smtp_cmd {
	enum smtp_verb verb;
	const char *name;	/* canonical upper-case verb, or NULL */
	const char *arg;	/* borrowed from the line */
	size_t arg_len;
};

/* line: the command without its CRLF, len bytes, may contain any bytes.
 * Returns 0 on success (verb may be SMTP_VERB_UNKNOWN), -1 if the line
 * contains NUL, CR or LF or other control characters (a 500 5.5.2 case). */
int smtp_cmd_parse(const char *line, size_t len, struct smtp_cmd *out);

/* Canonical name of a verb ("MAIL"), for logs; "UNKNOWN" for
 * SMTP_VERB_UNKNOWN or an out-of-range value. */
const char *smtp_verb_name(enum smtp_verb verb);

#define SMTP_PATH_MAX_PARAMS 16
#define SMTP_PATH_MAX_LEN 256	/* RFC 5321 4.5.3.1.3 */

struct smtp_param {
	char *keyword;		/* upper-cased, e.g. "SIZE" */
	char *value;		/* NULL when the parameter has no "=value" */
};

struct smtp_path {
	char *addr;		/* between < and >, without them; "" for <> */
	size_t nparams;
	struct smtp_param params[SMTP_PATH_MAX_PARAMS];
	char *mem_;		/* the one block every string above lives in */
};

enum smtp_path_error {
	SMTP_PATH_OK = 0,
	SMTP_PATH_ESYNTAX = -1,	/* missing FROM:/TO:, no <...>: 501 5.5.4 */
	SMTP_PATH_EADDR = -2,	/* bad address inside <...>: 501 5.1.7/5.1.3 */
	SMTP_PATH_EPARAM = -3,	/* malformed or too many parameters: 555 5.5.4 */
	SMTP_PATH_ELONG = -4,	/* path longer than SMTP_PATH_MAX_LEN: 501 5.5.4 */
	SMTP_PATH_ENOMEM = -5,	/* out of memory: 451 4.3.0 */
};

/* Parses the argument of MAIL ("FROM:<a@b> SIZE=10 BODY=8BITMIME") when
 * is_mail is non-zero, or of RCPT ("TO:<a@b> NOTIFY=NEVER") otherwise.
 * Accepts one optional space after the colon (common client behaviour);
 * the address must be in angle brackets; the null path <> is allowed for
 * MAIL only. Parameters are keyword[=value], separated by single or
 * multiple spaces; keyword is alnum and '-', value is printable ASCII
 * except '=' and space (RFC 5321 4.1.2 esmtp-param), or UTF-8 when the
 * address is UTF-8. Returns an enum smtp_path_error. On success the
 * caller owns *out and must call smtp_path_free(). */
int smtp_path_parse(const char *arg, size_t len, int is_mail,
		    struct smtp_path *out);
void smtp_path_free(struct smtp_path *path);

/* The value of parameter KEYWORD (case-insensitive), or NULL; *found is
 * set to 1 when the keyword is present (with or without a value). */
const char *smtp_path_param(const struct smtp_path *path, const char *keyword,
			    int *found);

#endif
