/*
 * check.h - `moat check` (check.c).
 */
#ifndef MOAT_CLI_CHECK_H
#define MOAT_CLI_CHECK_H

#include "config.h"

/* argv[0] is "check"; returns the exit status. */
int moat_cli_check(const struct moat_config *c, int argc, char **argv);

#endif
