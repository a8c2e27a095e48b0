/*
 * rep.h - `moat rep` (rep.c).
 */
#ifndef MOAT_CLI_REP_H
#define MOAT_CLI_REP_H

#include "config.h"

/* argv[0] is "rep"; returns the exit status. */
int moat_cli_rep(const struct moat_config *c, int argc, char **argv);

#endif
