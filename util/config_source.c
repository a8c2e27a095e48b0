/*
 * config_source.c - prepare a configuration file for libconfuse: expand
 * include("file") lines, blank out comments, check that braces balance,
 * and remember where every line came from.
 *
 * The scanner knows libconfuse's lexical rules only as far as needed to
 * tell comments from strings: "double" and 'single' quoted strings (with
 * backslash escapes in double quotes), '#' and '//' to end of line, and
 * C comments. Comment bytes become spaces; newlines stay, so line i of
 * the output is line i of some input file. Owns everything in struct
 * config_source.
 */
#include "config_source.h"

#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 8

static int append(struct config_source *src, const char *p, size_t n)
{
	if (src->len + n + 1 > src->cap) {
		size_t cap = src->cap ? src->cap : 4096;
		while (cap < src->len + n + 1)
			cap *= 2;
		char *t = realloc(src->text, cap);
		if (!t)
			return -1;
		src->text = t;
		src->cap = cap;
	}
	memcpy(src->text + src->len, p, n);
	src->len += n;
	src->text[src->len] = '\0';
	return 0;
}

static int add_line(struct config_source *src, int file, int line)
{
	if (src->nlines == src->lines_cap) {
		size_t cap = src->lines_cap ? src->lines_cap * 2 : 256;
		void *t = realloc(src->lines, cap * sizeof(*src->lines));
		if (!t)
			return -1;
		src->lines = t;
		src->lines_cap = cap;
	}
	src->lines[src->nlines].file = file;
	src->lines[src->nlines].line = line;
	src->nlines++;
	return 0;
}

static char *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "r");
	char *buf = NULL;
	size_t cap = 0, n = 0;
	if (!f)
		return NULL;
	for (;;) {
		if (n + 4096 + 1 > cap) {
			cap = cap ? cap * 2 : 8192;
			char *t = realloc(buf, cap);
			if (!t) {
				free(buf);
				fclose(f);
				errno = ENOMEM;
				return NULL;
			}
			buf = t;
		}
		size_t r = fread(buf + n, 1, cap - n - 1, f);
		n += r;
		if (r == 0)
			break;
	}
	int e = ferror(f);
	fclose(f);
	if (e) {
		free(buf);
		errno = EIO;
		return NULL;
	}
	buf[n] = '\0';
	*len = n;
	return buf;
}

/* Blanks comments in place. Returns 0, or the line of an unterminated
 * string or comment. Tracks brace depth outside strings. */
struct scan {
	int depth;
	int open_line[64];
};

static int blank_comments(char *t, size_t len, struct scan *sc, int *bad_line)
{
	int line = 1;
	for (size_t i = 0; i < len; i++) {
		char c = t[i];
		if (c == '\n') {
			line++;
		} else if (c == '"' || c == '\'') {
			int start = line;
			for (i++; i < len && t[i] != c; i++) {
				if (t[i] == '\n')
					line++;
				else if (c == '"' && t[i] == '\\' && i + 1 < len)
					i++;
			}
			if (i >= len) {
				*bad_line = start;
				return -1;
			}
		} else if (c == '#' || (c == '/' && i + 1 < len && t[i + 1] == '/')) {
			while (i < len && t[i] != '\n')
				t[i++] = ' ';
			i--;
		} else if (c == '/' && i + 1 < len && t[i + 1] == '*') {
			int start = line;
			t[i] = t[i + 1] = ' ';
			for (i += 2; i + 1 < len && !(t[i] == '*' && t[i + 1] == '/'); i++)
				if (t[i] == '\n')
					line++;
				else
					t[i] = ' ';
			if (i + 1 >= len) {
				*bad_line = start;
				return -2;
			}
			t[i] = t[i + 1] = ' ';
			i++;
		} else if (c == '{') {
			if (sc->depth < 64)
				sc->open_line[sc->depth] = line;
			sc->depth++;
		} else if (c == '}') {
			if (sc->depth == 0) {
				*bad_line = line;
				return -3;
			}
			sc->depth--;
		}
	}
	return 0;
}

/* If line (comment-free) is an include, puts the file name into name. */
static int is_include(const char *l, size_t n, char *name, size_t namelen)
{
	size_t i = 0;
	while (i < n && (l[i] == ' ' || l[i] == '\t'))
		i++;
	if (n - i < 7 || strncmp(l + i, "include", 7) != 0)
		return 0;
	i += 7;
	while (i < n && (l[i] == ' ' || l[i] == '\t'))
		i++;
	if (i >= n || l[i++] != '(')
		return 0;
	while (i < n && (l[i] == ' ' || l[i] == '\t'))
		i++;
	if (i >= n || l[i++] != '"')
		return 0;
	size_t s = i;
	while (i < n && l[i] != '"')
		i++;
	if (i >= n || i - s >= namelen)
		return 0;
	memcpy(name, l + s, i - s);
	name[i - s] = '\0';
	i++;
	while (i < n && (l[i] == ' ' || l[i] == '\t' || l[i] == ')' || l[i] == ';' || l[i] == '\r'))
		i++;
	return i == n;
}

static int load(struct config_source *src, const char *path, int depth, char *err,
		size_t errlen)
{
	size_t len;
	char *t = read_file(path, &len);
	struct scan sc = {0, {0}};
	int bad = 0;

	if (!t) {
		snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
		return -1;
	}
	char **files = realloc(src->files, (src->nfiles + 1) * sizeof(*files));
	if (!files || !(files[src->nfiles] = strdup(path))) {
		if (files)
			src->files = files;
		free(t);
		snprintf(err, errlen, "%s: out of memory", path);
		return -1;
	}
	src->files = files;
	int fileno = (int)src->nfiles++;

	int rc = blank_comments(t, len, &sc, &bad);
	if (rc < 0) {
		snprintf(err, errlen, "%s:%d: %s", path, bad,
			 rc == -1 ? "expected the closing quote of this string" :
			 rc == -2 ? "expected */ to close this comment" :
				    "found } without a section to close");
		free(t);
		return -1;
	}
	if (sc.depth > 0) {
		snprintf(err, errlen, "%s:%d: expected } to close the section opened here",
			 path, sc.open_line[sc.depth - 1 < 64 ? sc.depth - 1 : 63]);
		free(t);
		return -1;
	}
	int line = 1;
	for (size_t i = 0; i <= len;) {
		size_t e = i;
		while (e < len && t[e] != '\n')
			e++;
		char name[1024];
		if (is_include(t + i, e - i, name, sizeof(name))) {
			char full[2048];
			if (name[0] != '/') {
				char *copy = strdup(path);
				snprintf(full, sizeof(full), "%s/%s", copy ? dirname(copy) : ".", name);
				free(copy);
			} else {
				snprintf(full, sizeof(full), "%s", name);
			}
			if (depth >= MAX_DEPTH) {
				snprintf(err, errlen, "%s:%d: includes nested too deeply", path, line);
				free(t);
				return -1;
			}
			char sub[1024];
			if (load(src, full, depth + 1, sub, sizeof(sub)) < 0) {
				snprintf(err, errlen, "%s:%d: include: %s", path, line, sub);
				free(t);
				return -1;
			}
		} else if (e > i || e < len) {
			if (append(src, t + i, e - i) < 0 || append(src, "\n", 1) < 0 ||
			    add_line(src, fileno, line) < 0) {
				snprintf(err, errlen, "%s: out of memory", path);
				free(t);
				return -1;
			}
		}
		if (e >= len)
			break;
		i = e + 1;
		line++;
	}
	free(t);
	return 0;
}

int config_source_load(struct config_source *src, const char *path, char *err, size_t errlen)
{
	memset(src, 0, sizeof(*src));
	if (load(src, path, 0, err, errlen) < 0)
		return -1;
	if (!src->text && append(src, "", 0) < 0) {
		snprintf(err, errlen, "%s: out of memory", path);
		return -1;
	}
	return 0;
}

void config_source_free(struct config_source *src)
{
	for (size_t i = 0; i < src->nfiles; i++)
		free(src->files[i]);
	free(src->files);
	free(src->lines);
	free(src->text);
	memset(src, 0, sizeof(*src));
}

const char *config_source_where(const struct config_source *src, int line, int *orig_line)
{
	if (line >= 1 && (size_t)line <= src->nlines) {
		*orig_line = src->lines[line - 1].line;
		return src->files[src->lines[line - 1].file];
	}
	/* past the end: the last line of the main file */
	*orig_line = src->nlines ? src->lines[src->nlines - 1].line : 0;
	return src->nfiles ? src->files[src->nlines ? src->lines[src->nlines - 1].file : 0] : "?";
}
