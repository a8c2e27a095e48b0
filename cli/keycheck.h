/*
 * keycheck.h - `moat keycheck` (keycheck.c).
 */
#ifndef MOAT_CLI_KEYCHECK_H
#define MOAT_CLI_KEYCHECK_H

#include "config.h"

/* argv[0] is "keycheck"; returns the exit status. */
int moat_cli_keycheck(const struct moat_config *c, int argc, char **argv);

#endif
