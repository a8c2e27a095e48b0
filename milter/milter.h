/*
 * milter.h - the milter front end: moatd serving the milter protocol
 * (Postfix smtpd_milters, Sendmail INPUT_MAIL_FILTER) through libmilter.
 *
 * libmilter runs a thread per MTA connection and takes SIGHUP, SIGTERM
 * and SIGINT for itself, which does not mix with moatd's single event
 * loop. So the milter runs in a process of its own: moatd starts it by
 * exec'ing its own binary with the hidden option -M (milter_proc_*,
 * in moatd), and that process runs milter_main(). The two talk over a
 * socketpair on descriptor MILTER_CTL_FD: moatd writes "reload\n" and
 * "stop\n"; end of file means moatd is gone, which stops the milter too.
 *
 * SEE ALSO docs/milter-setup.md, moatd(8) MILTER.
 */
#ifndef MOAT_MILTER_H
#define MOAT_MILTER_H

#include <stddef.h>

#include "config.h"

struct event_base;
struct milter_proc;

#define MILTER_CTL_FD 3

/* ---- the milter process (milter_main.c) ---- */

/* Runs the milter process to its end: reads the configuration (path and
 * overrides as moatd got them), serves the milter socket until told to
 * stop. Returns the process's exit status. Filters must be registered. */
int milter_main(const char *path, char *const *overrides, size_t noverrides, int foreground);

/* ---- moatd's side (milter_proc.c) ---- */

/* The handle moatd keeps on its milter process; nothing is started yet.
 * path, overrides: borrowed for the handle's life (moatd's argv). */
struct milter_proc *milter_proc_new(struct event_base *base, const char *path,
				    char *const *overrides, size_t noverrides, int foreground);
/* A configuration became current (start, reload): starts the milter
 * process if c has a milter socket, tells a running one to reload,
 * restarts it if the socket changed, stops it if the socket is gone. */
void milter_proc_apply(struct milter_proc *p, const struct moat_config *c);
/* SIGTERM: tells the milter process to stop; it is not restarted. */
void milter_proc_stop(struct milter_proc *p);
/* After the loop ended: waits up to timeout seconds for the milter
 * process to exit (then kills it) and reaps it. */
void milter_proc_wait(struct milter_proc *p, long timeout);
void milter_proc_free(struct milter_proc *p);

#endif
