/*
 * verify.h - `moat verify` (verify.c).
 */
#ifndef MOAT_CLI_VERIFY_H
#define MOAT_CLI_VERIFY_H

#include "config.h"

/* argv[0] is "verify"; returns the exit status. */
int moat_cli_verify(const struct moat_config *c, int argc, char **argv);

#endif
