/*
 * fuzz_smtp_cmd - libFuzzer target for command-line and MAIL/RCPT path
 * parsing (proxy/smtp_cmd.c).
 *
 * The input is one command line. Checks, abort()ing on violation:
 *  - smtp_cmd_parse() accepts exactly the lines without C0 controls and
 *    DEL; arg lies inside the line, has no leading or trailing space;
 *    a known verb has its canonical name;
 *  - smtp_path_parse() on the argument (as MAIL and as RCPT) and on the
 *    raw input: on success the address is at most SMTP_PATH_MAX_LEN
 *    with no controls or spaces outside quotes, "" only for MAIL, the
 *    parameters are well formed, unique, and found by smtp_path_param();
 *    rebuilding "FROM:<addr> K=V ..." and parsing it again gives the
 *    same result.
 */
#include "smtp_cmd.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int upper_kw_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
}

static void check_path(const struct smtp_path *p, int is_mail)
{
	size_t alen = strlen(p->addr);
	int quoted = 0;

	if (alen > SMTP_PATH_MAX_LEN || (alen == 0 && !is_mail))
		abort();
	if (p->nparams > SMTP_PATH_MAX_PARAMS)
		abort();
	for (size_t i = 0; i < alen; i++) {
		unsigned char c = (unsigned char)p->addr[i];

		if (c < 0x20 || c == 0x7f)
			abort();
		if (c == '"')
			quoted = !quoted;
		else if (quoted && c == '\\')
			i++;
		else if (!quoted && (c == ' ' || c == '<' || c == '>'))
			abort();
	}
	for (size_t i = 0; i < p->nparams; i++) {
		const char *k = p->params[i].keyword, *v = p->params[i].value;
		int found = 0;

		if (*k == '\0' || *k == '-')
			abort();
		for (const char *s = k; *s; s++)
			if (!upper_kw_char(*s))
				abort();
		if (v != NULL) {
			if (*v == '\0')
				abort();
			for (const char *s = v; *s; s++)
				if (*s == ' ' || *s == '=' || (unsigned char)*s < 0x21
				    || *s == 0x7f)
					abort();
		}
		if (smtp_path_param(p, k, &found) != v || !found)
			abort();
		for (size_t j = 0; j < i; j++)
			if (strcmp(p->params[j].keyword, k) == 0)
				abort();
	}
}

static void rebuild_and_compare(const struct smtp_path *p, int is_mail)
{
	char buf[8192];
	size_t n = 0;
	struct smtp_path q;
	int w;

	w = snprintf(buf, sizeof(buf), "%s<%s>", is_mail ? "FROM:" : "TO:", p->addr);
	if (w < 0 || (size_t)w >= sizeof(buf))
		abort();
	n = (size_t)w;
	for (size_t i = 0; i < p->nparams; i++) {
		w = snprintf(buf + n, sizeof(buf) - n, " %s%s%s", p->params[i].keyword,
			     p->params[i].value ? "=" : "",
			     p->params[i].value ? p->params[i].value : "");
		if (w < 0 || (size_t)w >= sizeof(buf) - n)
			abort();
		n += (size_t)w;
	}
	if (smtp_path_parse(buf, n, is_mail, &q) != SMTP_PATH_OK)
		abort();
	if (strcmp(q.addr, p->addr) != 0 || q.nparams != p->nparams)
		abort();
	for (size_t i = 0; i < p->nparams; i++) {
		const char *a = p->params[i].value, *b = q.params[i].value;

		if (strcmp(p->params[i].keyword, q.params[i].keyword) != 0
		    || (a == NULL) != (b == NULL) || (a && strcmp(a, b) != 0))
			abort();
	}
	smtp_path_free(&q);
}

static void try_path(const char *arg, size_t len, int is_mail)
{
	struct smtp_path p;
	int rc = smtp_path_parse(arg, len, is_mail, &p);

	if (rc != SMTP_PATH_OK) {
		if (rc < SMTP_PATH_ENOMEM || rc > 0 || p.mem_ != NULL || p.addr != NULL)
			abort();
		return;
	}
	check_path(&p, is_mail);
	rebuild_and_compare(&p, is_mail);
	smtp_path_free(&p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *line = (const char *)data;
	struct smtp_cmd c;
	int has_ctl = 0, rc;

	for (size_t i = 0; i < size; i++)
		if (data[i] < 0x20 || data[i] == 0x7f)
			has_ctl = 1;
	rc = smtp_cmd_parse(line, size, &c);
	if (rc != (has_ctl ? -1 : 0) || c.arg == NULL)
		abort();
	if (rc == 0) {
		if (c.arg_len > 0) {
			if (c.arg < line || c.arg + c.arg_len > line + size)
				abort();
			if (c.arg[0] == ' ' || c.arg[c.arg_len - 1] == ' ')
				abort();
		}
		if ((c.verb == SMTP_VERB_UNKNOWN) != (c.name == NULL))
			abort();
		if (c.name && strcmp(c.name, smtp_verb_name(c.verb)) != 0)
			abort();
		try_path(c.arg, c.arg_len, 1);
		try_path(c.arg, c.arg_len, 0);
	}
	try_path(line, size, 1);
	try_path(line, size, 0);
	return 0;
}
