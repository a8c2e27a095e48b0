/*
 * log.c - write log lines to syslog or stderr.
 *
 * In the foreground every line goes to stderr as "ident[pid]: level: text"
 * so tests and `journalctl` readers see the same words syslog would get.
 * The only state is the destination chosen by moat_log_open().
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int log_to_stderr = 1;
static const char *log_ident = "moat";

static const struct {
	const char *name;
	int facility;
} facilities[] = {
	{"mail", LOG_MAIL}, {"daemon", LOG_DAEMON}, {"user", LOG_USER},
	{"local0", LOG_LOCAL0}, {"local1", LOG_LOCAL1}, {"local2", LOG_LOCAL2},
	{"local3", LOG_LOCAL3}, {"local4", LOG_LOCAL4}, {"local5", LOG_LOCAL5},
	{"local6", LOG_LOCAL6}, {"local7", LOG_LOCAL7},
};

int moat_log_facility(const char *name)
{
	for (size_t i = 0; i < sizeof(facilities) / sizeof(facilities[0]); i++)
		if (strcmp(facilities[i].name, name) == 0)
			return facilities[i].facility;
	return -1;
}

void moat_log_open(const char *ident, int to_stderr, int facility)
{
	log_ident = ident;
	log_to_stderr = to_stderr;
	if (!to_stderr) {
		closelog();
		openlog(ident, LOG_PID | LOG_NDELAY, facility);
	}
}

static const char *level_name(int priority)
{
	switch (priority & LOG_PRIMASK) {
	case LOG_EMERG: case LOG_ALERT: case LOG_CRIT: return "fatal";
	case LOG_ERR: return "error";
	case LOG_WARNING: return "warning";
	case LOG_NOTICE: return "notice";
	case LOG_INFO: return "info";
	default: return "debug";
	}
}

void moat_log(int priority, const char *fmt, ...)
{
	char buf[4096];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (log_to_stderr) {
		/* One write per line, so concurrent threads do not interleave. */
		char line[4200];
		int n = snprintf(line, sizeof(line), "%s[%ld]: %s: %s\n", log_ident,
				 (long)getpid(), level_name(priority), buf);
		if (n > (int)sizeof(line) - 1)
			n = sizeof(line) - 1;
		if (n > 0 && write(STDERR_FILENO, line, (size_t)n) < 0)
			return;
	} else {
		syslog(priority, "%s: %s", level_name(priority), buf);
	}
}
