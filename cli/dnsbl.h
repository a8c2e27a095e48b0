/*
 * dnsbl.h - `moat dnsbl` (dnsbl.c).
 */
#ifndef MOAT_CLI_DNSBL_H
#define MOAT_CLI_DNSBL_H

#include "config.h"

/* argv[0] is "dnsbl"; returns the exit status. */
int moat_cli_dnsbl(const struct moat_config *c, int argc, char **argv);

#endif
