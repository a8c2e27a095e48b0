/*
 * log.h - moat's logging: syslog (facility from the config) for the
 * daemon, stderr in the foreground and for command-line tools.
 *
 * Owns the process-wide log destination, set once at start (and again
 * when a reload changes the facility). moat_log() is thread-safe.
 */
#ifndef MOAT_LOG_H
#define MOAT_LOG_H

#include <syslog.h>

/* ident: program name; to_stderr: foreground; facility: LOG_MAIL etc. */
void moat_log_open(const char *ident, int to_stderr, int facility);
void moat_log(int priority, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Maps "mail", "daemon", "local0".."local7" to a facility; -1 if unknown. */
int moat_log_facility(const char *name);

#endif
