/*
 * config_source.h - the text libconfuse parses: the main file with every
 * include("file") expanded in place and comments blanked out, plus a map
 * from each line of that text back to its file and line.
 *
 * libconfuse 3.3 miscounts lines after '#' and '//' comments (each adds
 * two), and includes would carry that error into every file; handing it
 * comment-free text keeps "file:line" exact. Owns the text, the map and
 * the file names; config_source_free() releases them.
 */
#ifndef MOAT_CONFIG_SOURCE_H
#define MOAT_CONFIG_SOURCE_H

#include <stddef.h>

struct config_source {
	char *text;		/* NUL-terminated */
	size_t len, cap;
	size_t nlines, lines_cap;
	struct { int file; int line; } *lines;	/* text line i+1 -> origin */
	char **files;
	size_t nfiles;
};

/* Reads path and what it includes (nested up to 8 deep; relative names
 * are relative to the including file's directory). Returns 0, or -1 with
 * "file:line: ..." in err. Also checks that braces balance. */
int config_source_load(struct config_source *src, const char *path, char *err,
		       size_t errlen);
void config_source_free(struct config_source *src);

/* The file and line that line `line` of the text came from. */
const char *config_source_where(const struct config_source *src, int line, int *orig_line);

#endif
