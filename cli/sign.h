/*
 * sign.h - `moat sign` (sign.c).
 */
#ifndef MOAT_CLI_SIGN_H
#define MOAT_CLI_SIGN_H

#include "config.h"

/* argv[0] is "sign"; returns the exit status. c is not used. */
int moat_cli_sign(const struct moat_config *c, int argc, char **argv);

#endif
