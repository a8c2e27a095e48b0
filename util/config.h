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

#include <regex.h>
#include <stddef.h>
#include <stdio.h>

#include "addr.h"
#include "net.h"

enum moat_role { MOAT_ROLE_INBOUND = 0, MOAT_ROLE_SUBMISSION = 1 };
/* TLS security levels, as Postfix names them (smtpd_tls_security_level). */
enum moat_tls_level { MOAT_TLS_NONE = 0, MOAT_TLS_MAY = 1, MOAT_TLS_ENCRYPT = 2 };
enum moat_tls_verify { MOAT_TLS_VERIFY_NONE = 0, MOAT_TLS_VERIFY_CA = 1, MOAT_TLS_VERIFY_HOSTNAME = 2 };

/* One option of a table. offset is into the struct the table fills. */
enum moat_opt_type {
	MOAT_OPT_INT,		/* long */
	MOAT_OPT_STR,		/* char * (NULL when unset and no default) */
	MOAT_OPT_BOOL,		/* int 0/1 */
	MOAT_OPT_FLOAT,		/* double */
	MOAT_OPT_STR_LIST,	/* struct moat_str_list */
};

struct moat_opt {
	const char *name;
	enum moat_opt_type type;
	size_t offset;
	long def_int;			/* INT, BOOL */
	const char *def_str;		/* STR; STR_LIST: libconfuse list text "{\"a\",\"b\"}" */
	double min, max;		/* INT, FLOAT: allowed range */
	double def_float;		/* FLOAT */
	const char *const *choices;	/* STR, STR_LIST items: allowed values, or NULL */
	const char *doc;
};

struct moat_str_list {
	size_t n;
	char **v;
};

/* While a section is prepared, errors are reported through this. */
struct moat_section_ctx;

/* Reports an error about option opt of the section ("" for the section
 * as a whole), as "file:line: section: opt: text". */
void moat_section_error(struct moat_section_ctx *ctx, const char *opt, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* The name of the section being prepared. */
const char *moat_section_name(const struct moat_section_ctx *ctx);
/* The configuration being loaded (global options such as `filters` are
 * read; sections may not be prepared yet). */
struct moat_config;
const struct moat_config *moat_section_config(const struct moat_section_ctx *ctx);
/* "file:line" where opt was set (or where the section is), for messages
 * about other files the option names. */
const char *moat_section_where(struct moat_section_ctx *ctx, const char *opt);

/* A section of moat.conf another module owns (each filter, the scoring
 * step): `NAME { option = value ... }`. Its options are declared in two
 * tables filled into one struct of `size` octets: `common` (the same for
 * every filter) and `opts`. prepare() derives what the options imply
 * (parse lists, read files) and reports errors; release() frees that. */
/* Titled subsections a section may hold, `KIND TITLE { ... }`, e.g.
 * `zone bl.example { ... }` inside `dnsbl { }`. They are read into an
 * array of `size`-octet items (struct moat_items at items_offset in the
 * section's struct), each with its title as a char * at title_offset.
 * KIND must be unique among all sections. */
struct moat_items {
	size_t n;
	void *v;		/* n items of the subsection's size */
};

struct moat_subsection_def {
	const char *name;
	const struct moat_opt *opts;
	size_t nopts;
	size_t size;
	size_t title_offset;
	size_t items_offset;
};

struct moat_section_def {
	const char *name;
	const char *doc;
	const struct moat_opt *common;
	size_t ncommon;
	const struct moat_opt *opts;
	size_t nopts;
	size_t size;
	int (*prepare)(void *data, struct moat_section_ctx *ctx);
	void (*release)(void *data);
	const struct moat_subsection_def *sub;	/* or NULL */
};

/* Reports an error about option opt of subsection item title. */
void moat_section_item_error(struct moat_section_ctx *ctx, const char *title, const char *opt,
			     const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Registers a section (at start, before any load). */
void moat_config_register_section(const struct moat_section_def *def);
/* Every registered section, for `moat options` and the docs. */
const struct moat_section_def *moat_config_section_def(size_t i);

struct moat_listener_conf {
	char *name;		/* section title */
	int line;		/* where the section starts, for messages */
	char *listen;
	char *role;
	char *upstream;
	int xclient;
	int proxy_address_untrusted;
	char *tls;			/* "none", "may", "encrypt" */
	int tls_wrappermode;		/* implicit TLS (RFC 8314) */
	char *tls_cert_file;
	char *tls_key_file;		/* "": the key is in tls_cert_file */
	struct moat_str_list tls_sni_chain_files;
	int tls_ask_ccert;
	int auth;			/* relay AUTH over TLS when the upstream offers it */
	char *upstream_tls;		/* "none", "may", "encrypt" */
	char *upstream_tls_verify;	/* "none", "ca", "hostname" */
	char *upstream_tls_ca_file;	/* "": the system's CA store */
	char *upstream_tls_name;	/* "": the host part of upstream */
	int proxy_protocol;		/* accept a PROXY v1/v2 header first */
	struct moat_str_list proxy_protocol_from;	/* from these networks only */
	char *upstream_proxy_protocol;	/* "none", "v1", "v2" */
	/* derived */
	enum moat_role role_id;
	struct moat_addr listen_addr;
	struct moat_addr upstream_addr;
	enum moat_tls_level tls_level;		/* MOAT_TLS_ENCRYPT with tls_wrappermode */
	enum moat_tls_level upstream_tls_level;
	enum moat_tls_verify upstream_tls_verify_id;
	struct moat_net *proxy_from;	/* proxy_protocol_from parsed */
	size_t nproxy_from;
	int upstream_proxy_version;	/* 0 none, 1, 2 */
};

/* The milter front end (section `milter { }`, util/config.c declares it):
 * moatd serves the milter protocol on socket when it is set. */
enum moat_milter_default { MOAT_MILTER_ACCEPT, MOAT_MILTER_TEMPFAIL, MOAT_MILTER_REJECT };

struct moat_milter_conf {
	char *socket;		/* "inet:8891@127.0.0.1", "unix:/path"; "" = off */
	char *default_action;	/* "accept", "tempfail", "reject" */
	char *quarantine_on;	/* "none", "add_header" */
	char *metrics_listen;	/* the milter process's metrics; "" = none */
	/* derived */
	struct moat_addr metrics_addr;
	enum moat_milter_default default_id;
	int quarantine_add_header;
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
	long auth_max_failures;
	long auth_max_failures_per_client;
	long auth_failure_window;
	long client_timeout;
	long data_timeout;
	long upstream_connect_timeout;
	long upstream_timeout;
	long upstream_data_timeout;
	long upstream_probe_interval;
	long shutdown_timeout;
	long message_memory_limit;
	char *spool_directory;
	char *syslog_facility;
	char *pid_file;
	char *control_socket;		/* "": no control socket */
	struct moat_str_list filters;	/* enabled filters, in order */
	char *authserv_id;		/* Authentication-Results id; "" = hostname */
	int dry_run;			/* no filter rejects or tempfails */
	char *user;			/* the unprivileged user moatd runs as */
	char *group;			/* "": user's own group */
	char *chroot;			/* "": none */
	long client_ipv4_prefix;	/* what one client address is, for the limits */
	long client_ipv6_prefix;
	long max_connection_rate;	/* new connections a minute per client */
	long max_client_errors;		/* error replies a minute per client */
	long greet_pause;		/* seconds before the greeting; 0: none */
	char *pregreet_action;		/* "reject", "score", "log" */
	double pregreet_score;
	long stress_threshold;		/* percent of max_connections */
	long stress_client_timeout;	/* client_timeout under stress */
	char *metrics_listen;		/* metrics and status page; "": off */
	struct moat_str_list metrics_allow;	/* networks allowed to read them */
	/* derived */
	int facility;
	struct moat_addr metrics_addr;	/* metrics_listen parsed */
	char *queue_id_pattern;
	regex_t *queue_id_re;		/* queue_id_pattern compiled, or NULL */
	struct moat_net *metrics_nets;	/* metrics_allow parsed */
	size_t nmetrics_nets;
	size_t nlisteners;
	struct moat_listener_conf *listeners;
	size_t nsections;
	struct moat_section_conf {
		const struct moat_section_def *def;
		void *data;		/* def->size octets */
	} *sections;
};

/* The data of registered section name, or NULL. */
void *moat_config_section(const struct moat_config *c, const char *name);
/* The milter section (never NULL in a loaded configuration). */
const struct moat_milter_conf *moat_config_milter(const struct moat_config *c);

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

/* Calls fn for every option the tables declare (for the man page check
 * and `moat options`): section is "", "listener" or a registered
 * section's name. */
void moat_config_each_option(void (*fn)(void *arg, const char *section,
					const char *name, const char *type,
					const char *def, const char *doc),
			     void *arg);

#endif
