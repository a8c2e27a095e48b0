/*
 * config.h - moat.conf: every option declared once, in a typed table
 * (name, type, default, range, documentation), read with libconfuse.
 *
 * A loaded configuration is immutable and reference-counted: the daemon
 * holds the current one, each session holds the one it started with, so
 * a reload (SIGHUP) never changes a session in flight. moat_config_load()
 * returns a new object with one reference; moat_config_unref() frees it
 * at the last.
 */
#ifndef MOAT_CONFIG_H
#define MOAT_CONFIG_H

#include <stddef.h>
#include <stdio.h>

#include "addr.h"

enum moat_role { MOAT_ROLE_INBOUND = 0, MOAT_ROLE_SUBMISSION = 1 };

struct moat_listener_conf {
	char *name;		/* section title */
	int line;		/* where the section starts, for messages */
	char *listen;
	char *role;
	char *upstream;
	int xclient;
	int proxy_address_untrusted;
	/* derived */
	enum moat_role role_id;
	struct moat_addr listen_addr;
	struct moat_addr upstream_addr;
};

struct moat_config {
	int refs;
	char *path;
	char *hostname;
	long max_connections;
	long max_connections_per_client;
	long max_command_line;
	long max_text_line;
	long message_size_limit;
	long max_recipients;
	long max_errors;
	long max_commands;
	long client_timeout;
	long data_timeout;
	long upstream_connect_timeout;
	long upstream_timeout;
	long upstream_data_timeout;
	long upstream_probe_interval;
	long shutdown_timeout;
	long hook_timeout;
	long message_memory_limit;
	char *spool_directory;
	char *syslog_facility;
	char *pid_file;
	/* derived */
	int facility;
	size_t nlisteners;
	struct moat_listener_conf *listeners;
};

/* The errors of one load, each "file:line: what was expected". */
struct moat_config_errors {
	size_t n;
	char **msg;
};

/* Loads path (NULL: the default MOAT_SYSCONFDIR/moat/moat.conf), then
 * applies overrides ("name=value", "listener.NAME.opt=value"). Returns 0
 * and a new config in *out, or -1 with every error found in *errs (the
 * caller frees them with moat_config_errors_free()). */
int moat_config_load(const char *path, char *const *overrides, size_t noverrides,
		     struct moat_config **out, struct moat_config_errors *errs);
void moat_config_errors_free(struct moat_config_errors *errs);

struct moat_config *moat_config_ref(struct moat_config *c);
void moat_config_unref(struct moat_config *c);

const char *moat_config_default_path(void);

/* Prints every option with its effective value, in moat.conf syntax
 * (`moat config`). With docs, each is preceded by its documentation. */
void moat_config_print(const struct moat_config *c, FILE *out, int docs);

/* Calls fn for every option the table declares (for the man page check
 * and `moat config -n`): section is "" or "listener". */
void moat_config_each_option(void (*fn)(void *arg, const char *section,
					const char *name, const char *type,
					const char *def, const char *doc),
			     void *arg);

#endif
