/*
 * dns.h - `moat dns` (dns.c).
 */
#ifndef MOAT_CLI_DNS_H
#define MOAT_CLI_DNS_H

#include "config.h"

/* argv[0] is "dns"; returns the exit status. */
int moat_cli_dns(const struct moat_config *c, int argc, char **argv);

#endif
