/*
 * spf.h - `moat spf` (spf.c).
 */
#ifndef MOAT_CLI_SPF_H
#define MOAT_CLI_SPF_H

#include "config.h"

/* argv[0] is "spf"; returns the exit status. */
int moat_cli_spf(const struct moat_config *c, int argc, char **argv);

#endif
