/*
 * ctl.h - the client side of moatd's control socket, and `moat status`
 * and `moat reload` (ctl.c).
 */
#ifndef MOAT_CLI_CTL_H
#define MOAT_CLI_CTL_H

#include "config.h"

/* The socket to ask: "-s PATH" right after the command name (taken out
 * of argc and argv), else c's control_socket. NULL (reported) if there is
 * none: c is NULL when the configuration could not be read. */
const char *moat_ctl_socket(const struct moat_config *c, int *argc, char ***argv);

/* Sends line to the control socket at path and prints the answer (its
 * text to stdout, or to stderr after an error). Returns 0 (ok), 1
 * (moatd answered an error), 2 (moatd could not be reached). */
int moat_ctl_request(const char *path, const char *line);
/* The same; with quiet_unreachable, a socket nobody listens on is not
 * reported and returns MOAT_CTL_UNREACHABLE (the caller has another way). */
#define MOAT_CTL_UNREACHABLE 3
int moat_ctl_ask(const char *path, const char *line, int quiet_unreachable);

/* argv[0] is "status" / "reload"; return the exit status. c may be
 * NULL (a configuration with errors): then -s must name the socket. */
int moat_cli_status(const struct moat_config *c, int argc, char **argv);
int moat_cli_reload(const struct moat_config *c, int argc, char **argv);

#endif
