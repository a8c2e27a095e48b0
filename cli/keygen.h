/*
 * keygen.h - `moat keygen` (keygen.c).
 */
#ifndef MOAT_CLI_KEYGEN_H
#define MOAT_CLI_KEYGEN_H

#include "config.h"

/* argv[0] is "keygen"; returns the exit status. c is not used. */
int moat_cli_keygen(const struct moat_config *c, int argc, char **argv);

#endif
