/*
 * dmarc.h - `moat dmarc` (cli/dmarc.c).
 */
#ifndef MOAT_CLI_DMARC_H
#define MOAT_CLI_DMARC_H

#include "config.h"

/* argv[0] is "dmarc"; returns the exit status. */
int moat_cli_dmarc(const struct moat_config *c, int argc, char **argv);

#endif
