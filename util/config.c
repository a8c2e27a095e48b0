/*
 * config.c - read moat.conf with libconfuse into a struct moat_config.
 *
 * Every option is declared once, in global_opts[] or listener_opts[]:
 * name, type, offset into its struct, default, allowed range or values,
 * and the text moat.conf(5) documents it with. libconfuse option arrays
 * are built from these tables; range checks run as libconfuse validate
 * callbacks, which know the file and line being read, so every error is
 * reported as "file:line: what was expected" and reading goes on to find
 * the next one. Syntax errors stop libconfuse at the first.
 *
 * Owns: the struct moat_config it returns (refcounted) and every string
 * in it; the error list it fills (freed by moat_config_errors_free()).
 */
#include "config.h"

#include <confuse.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config_source.h"
#include "log.h"
#include "nelem.h"

static const char *const role_choices[] = {"inbound", "submission", NULL};
static const char *const tls_choices[] = {"none", "may", "encrypt", NULL};
static const char *const tls_verify_choices[] = {"none", "ca", "hostname", NULL};
static const char *const pregreet_choices[] = {"reject", "score", "log", NULL};
static const char *const upstream_proxy_choices[] = {"none", "v1", "v2", NULL};
static const char *const facility_choices[] = {
	"mail", "daemon", "user", "local0", "local1", "local2", "local3",
	"local4", "local5", "local6", "local7", NULL};

#define G(field) offsetof(struct moat_config, field)
#define L(field) offsetof(struct moat_listener_conf, field)
#define DAY 86400L

static const struct moat_opt global_opts[] = {
	{"hostname", MOAT_OPT_STR, G(hostname), 0, "", 0, 0, 0, NULL,
	 "Name used in the greeting, the EHLO reply and Received: headers. Empty: the system's host name."},
	{"max_connections", MOAT_OPT_INT, G(max_connections), 1000, NULL, 1, 1000000, 0, NULL,
	 "Client sessions at once, in total; further clients get 421 4.7.0."},
	{"max_connections_per_client", MOAT_OPT_INT, G(max_connections_per_client), 50, NULL, 0, 1000000, 0, NULL,
	 "Client sessions at once from one client (client_ipv4_prefix, client_ipv6_prefix); 0 means no limit."},
	{"max_command_line", MOAT_OPT_INT, G(max_command_line), 512, NULL, 512, 65536, 0, NULL,
	 "Longest command line in octets, CRLF included (RFC 5321: 512); longer gets 500 5.5.2."},
	{"max_text_line", MOAT_OPT_INT, G(max_text_line), 1000, NULL, 1000, 1000000, 0, NULL,
	 "Longest message line in octets, CRLF included (RFC 5321: 1000); a message with a longer line gets 552 5.3.4."},
	{"message_size_limit", MOAT_OPT_INT, G(message_size_limit), 10240000, NULL, 1024, 2147483647L, 0, NULL,
	 "Largest message in octets, advertised with SIZE; larger gets 552 5.3.4."},
	{"max_recipients", MOAT_OPT_INT, G(max_recipients), 1000, NULL, 1, 100000, 0, NULL,
	 "Recipients per message; further RCPT commands get 452 4.5.3."},
	{"max_errors", MOAT_OPT_INT, G(max_errors), 10, NULL, 1, 1000, 0, NULL,
	 "Error replies (4xx/5xx) in one session before moat answers 421 and disconnects."},
	{"max_commands", MOAT_OPT_INT, G(max_commands), 10000, NULL, 10, 10000000, 0, NULL,
	 "Commands in one session before moat answers 421 and disconnects."},
	{"auth_max_failures", MOAT_OPT_INT, G(auth_max_failures), 3, NULL, 1, 1000, 0, NULL,
	 "Failed AUTH attempts in one session before moat answers 421 4.7.0 and disconnects."},
	{"auth_max_failures_per_client", MOAT_OPT_INT, G(auth_max_failures_per_client), 10, NULL, 0, 1000000, 0, NULL,
	 "Failed AUTH attempts from one address within auth_failure_window before its AUTH commands get 421 4.7.0; 0 means no limit."},
	{"auth_failure_window", MOAT_OPT_INT, G(auth_failure_window), 600, NULL, 1, DAY, 0, NULL,
	 "Seconds over which auth_max_failures_per_client counts an address's failed AUTH attempts."},
	{"client_timeout", MOAT_OPT_INT, G(client_timeout), 300, NULL, 1, DAY, 0, NULL,
	 "Seconds to wait for the client's next command (RFC 5321: at least 300)."},
	{"data_timeout", MOAT_OPT_INT, G(data_timeout), 300, NULL, 1, DAY, 0, NULL,
	 "Seconds to wait for more message data during DATA."},
	{"upstream_connect_timeout", MOAT_OPT_INT, G(upstream_connect_timeout), 30, NULL, 1, 3600, 0, NULL,
	 "Seconds to wait for the upstream's TCP connection and greeting."},
	{"upstream_timeout", MOAT_OPT_INT, G(upstream_timeout), 120, NULL, 1, 3600, 0, NULL,
	 "Seconds to wait for the upstream's reply to a command."},
	{"upstream_data_timeout", MOAT_OPT_INT, G(upstream_data_timeout), 300, NULL, 1, 540, 0, NULL,
	 "Seconds from the end of the client's message to its final reply (filters, the upstream's DATA and reply together); kept below the client's 10-minute timeout."},
	{"upstream_probe_interval", MOAT_OPT_INT, G(upstream_probe_interval), 300, NULL, 10, DAY, 0, NULL,
	 "Seconds between reads of the upstream's EHLO capabilities (also read at start and on reload)."},
	{"shutdown_timeout", MOAT_OPT_INT, G(shutdown_timeout), 30, NULL, 0, 3600, 0, NULL,
	 "On SIGTERM, seconds given to transactions in flight before 421 4.3.2."},
	{"message_memory_limit", MOAT_OPT_INT, G(message_memory_limit), 262144, NULL, 0, 1073741824L, 0, NULL,
	 "Octets of a message held in memory; the rest goes to a file in spool_directory until the upstream has it."},
	{"spool_directory", MOAT_OPT_STR, G(spool_directory), 0, "/var/spool/moat", 0, 0, 0, NULL,
	 "Directory for messages larger than message_memory_limit (unlinked files, never left behind)."},
	{"syslog_facility", MOAT_OPT_STR, G(syslog_facility), 0, "mail", 0, 0, 0, facility_choices,
	 "Syslog facility of the daemon's log."},
	{"pid_file", MOAT_OPT_STR, G(pid_file), 0, "/run/moatd.pid", 0, 0, 0, NULL,
	 "File the daemon writes its process id to when it runs in the background; empty for none."},
	{"control_socket", MOAT_OPT_STR, G(control_socket), 0, "", 0, 0, 0, NULL,
	 "Unix socket (mode 0660) on which moatd answers the moat commands status, reload and rep; its directory is created (mode 0750) if missing. Empty: none."},
	{"filters", MOAT_OPT_STR_LIST, G(filters), 0, "{}", 0, 0, 0, NULL,
	 "The filters every message passes, in this order, each configured in its own section (conf/NAME.conf); a filter not listed does not run."},
	{"queue_id_pattern", MOAT_OPT_STR, G(queue_id_pattern), 0, "queued as ([0-9A-Za-z]+)", 0, 0, 0, NULL,
	 "Extended regular expression (POSIX) that finds the upstream's queue id in its reply to the message, for the log line; its first group is the id. The default reads Postfix's \"250 2.0.0 Ok: queued as 4Xyz\"; Exim says \"OK id=1abc-000\": \"id=([-0-9A-Za-z]+)\"."},
	{"authserv_id", MOAT_OPT_STR, G(authserv_id), 0, "", 0, 0, 0, NULL,
	 "The authserv-id of moat's Authentication-Results header (RFC 8601); incoming Authentication-Results fields claiming it are removed. Empty: the hostname."},
	{"dry_run", MOAT_OPT_BOOL, G(dry_run), 0, NULL, 0, 0, 0, NULL,
	 "Filters and scores run and log what they would do, and the result header shows it, but nothing is rejected, tempfailed or discarded."},
	{"user", MOAT_OPT_STR, G(user), 0, "moat", 0, 0, 0, NULL,
	 "The unprivileged user moatd runs as once its ports are bound (started as root); it refuses to run as root. Private keys it re-reads on reload must be readable by this user or its group (mode 0640, owner root, group moat)."},
	{"group", MOAT_OPT_STR, G(group), 0, "", 0, 0, 0, NULL,
	 "The group moatd runs as with user. Empty: the user's own group (the user's other groups are kept)."},
	{"chroot", MOAT_OPT_STR, G(chroot), 0, "", 0, 0, 0, NULL,
	 "Directory moatd confines itself to when it drops root; empty for none. Every file read later (the configuration on reload, certificates, keys, spool_directory) is then looked up inside it; not with a milter socket or the spf filter, whose processes start from moatd's binary."},
	{"client_ipv4_prefix", MOAT_OPT_INT, G(client_ipv4_prefix), 32, NULL, 8, 32, 0, NULL,
	 "IPv4 clients in one network of this prefix length count as one client for max_connections_per_client, max_connection_rate and max_client_errors."},
	{"client_ipv6_prefix", MOAT_OPT_INT, G(client_ipv6_prefix), 64, NULL, 16, 128, 0, NULL,
	 "IPv6 clients in one network of this prefix length count as one client for max_connections_per_client, max_connection_rate and max_client_errors."},
	{"max_connection_rate", MOAT_OPT_INT, G(max_connection_rate), 0, NULL, 0, 1000000, 0, NULL,
	 "New connections from one client within a minute; further ones get 421 4.7.0 until the minute is over. 0 means no limit."},
	{"max_client_errors", MOAT_OPT_INT, G(max_client_errors), 0, NULL, 0, 1000000, 0, NULL,
	 "Error replies (4xx/5xx) to one client within a minute, over all its sessions; then its new connections get 421 4.7.0 until the minute is over. 0 means no limit."},
	{"greet_pause", MOAT_OPT_INT, G(greet_pause), 0, NULL, 0, 60, 0, NULL,
	 "Seconds moat waits before its greeting; a client that talks in that time is a pregreet client (pregreet_action). 0: greet at once (a client that talks before the greeting still counts)."},
	{"pregreet_action", MOAT_OPT_STR, G(pregreet_action), 0, "log", 0, 0, 0, pregreet_choices,
	 "What happens to a client that talks before the greeting (what it said is dropped): \"reject\" (554 5.5.1 and close), \"score\" (the session symbol PREGREET with pregreet_score, counted in every message's score) or \"log\" (only logged, as postscreen's default)."},
	{"pregreet_score", MOAT_OPT_FLOAT, G(pregreet_score), 0, NULL, -1000, 1000, 5.0, NULL,
	 "Score of the PREGREET symbol with pregreet_action = score."},
	{"stress_threshold", MOAT_OPT_INT, G(stress_threshold), 80, NULL, 0, 100, 0, NULL,
	 "Percent of max_connections in use from which moat is under stress and waits only stress_client_timeout for a client's whole command line, however its bytes trickle in; 0: never."},
	{"stress_client_timeout", MOAT_OPT_INT, G(stress_client_timeout), 10, NULL, 1, DAY, 0, NULL,
	 "Seconds to wait for a client's next command while under stress (stress_threshold), instead of client_timeout."},
	{"metrics_listen", MOAT_OPT_STR, G(metrics_listen), 0, "", 0, 0, 0, NULL,
	 "Address and port of moatd's HTTP listener for metrics (/metrics, Prometheus text format) and the read-only status page (/status), e.g. \"127.0.0.1:9187\". Empty: none."},
	{"metrics_allow", MOAT_OPT_STR_LIST, G(metrics_allow), 0, "{\"127.0.0.1/32\", \"::1/128\"}", 0, 0, 0, NULL,
	 "Networks whose clients may read the metrics and the status page; others get 403."},
};

static const struct moat_opt listener_opts[] = {
	{"listen", MOAT_OPT_STR, L(listen), 0, NULL, 0, 0, 0, NULL,
	 "Address and port to accept SMTP on: \"192.0.2.1:25\", \"[2001:db8::1]:25\", \"*:25\". Required."},
	{"role", MOAT_OPT_STR, L(role), 0, "inbound", 0, 0, 0, role_choices,
	 "\"inbound\" (mail from the internet) or \"submission\" (mail from your users); filters and signing use it."},
	{"upstream", MOAT_OPT_STR, L(upstream), 0, NULL, 0, 0, 0, NULL,
	 "Address and port of the MTA that receives the relayed mail (it must speak SMTP, not LMTP). Required."},
	{"xclient", MOAT_OPT_BOOL, L(xclient), 1, NULL, 0, 0, 0, NULL,
	 "Tell the upstream the real client's address, name and HELO with XCLIENT; without it the upstream sees moat's own address."},
	{"proxy_address_untrusted", MOAT_OPT_BOOL, L(proxy_address_untrusted), 0, NULL, 0, 0, 0, NULL,
	 "Required with xclient = no (unless upstream_proxy_protocol is set): states that the upstream does not trust moat's address (not in Postfix's mynetworks), which would otherwise make it an open relay."},
	{"tls", MOAT_OPT_STR, L(tls), 0, "none", 0, 0, 0, tls_choices,
	 "STARTTLS towards clients, as Postfix's smtpd_tls_security_level: \"none\" (not offered), \"may\" (offered), \"encrypt\" (offered, and MAIL, RCPT, DATA and AUTH get 530 5.7.0 before it)."},
	{"tls_wrappermode", MOAT_OPT_BOOL, L(tls_wrappermode), 0, NULL, 0, 0, 0, NULL,
	 "Implicit TLS (RFC 8314, port 465): every connection starts with the TLS handshake, no STARTTLS."},
	{"tls_cert_file", MOAT_OPT_STR, L(tls_cert_file), 0, "", 0, 0, 0, NULL,
	 "PEM file with the server certificate and its chain; required with tls or tls_wrappermode. Re-read on SIGHUP."},
	{"tls_key_file", MOAT_OPT_STR, L(tls_key_file), 0, "", 0, 0, 0, NULL,
	 "PEM file with the private key of tls_cert_file. Empty: the key is in tls_cert_file."},
	{"tls_sni_chain_files", MOAT_OPT_STR_LIST, L(tls_sni_chain_files), 0, "{}", 0, 0, 0, NULL,
	 "More certificates, each a PEM file holding the private key and the certificate chain; one is chosen when the name a client asks for (SNI) matches its certificate, else tls_cert_file is used."},
	{"tls_ask_ccert", MOAT_OPT_BOOL, L(tls_ask_ccert), 0, NULL, 0, 0, 0, NULL,
	 "Ask clients for a certificate (not verified, never required); its subject goes to the log line and to filters."},
	{"auth", MOAT_OPT_BOOL, L(auth), 1, NULL, 0, 0, 0, NULL,
	 "Offer AUTH to clients, only after TLS, when the upstream offers it, and relay the exchange to the upstream."},
	{"upstream_tls", MOAT_OPT_STR, L(upstream_tls), 0, "none", 0, 0, 0, tls_choices,
	 "STARTTLS towards the upstream, as Postfix's smtp_tls_security_level: \"none\", \"may\" (when offered), \"encrypt\" (required: without it mail is tempfailed with 451 4.7.5)."},
	{"upstream_tls_verify", MOAT_OPT_STR, L(upstream_tls_verify), 0, "none", 0, 0, 0, tls_verify_choices,
	 "With upstream_tls = encrypt, how the upstream's certificate is checked: \"none\", \"ca\" (its chain leads to a trusted CA) or \"hostname\" (that, and it names upstream_tls_name)."},
	{"upstream_tls_ca_file", MOAT_OPT_STR, L(upstream_tls_ca_file), 0, "", 0, 0, 0, NULL,
	 "PEM file with the CA certificates upstream_tls_verify trusts. Empty: the system's CA store."},
	{"upstream_tls_name", MOAT_OPT_STR, L(upstream_tls_name), 0, "", 0, 0, 0, NULL,
	 "The name the upstream's certificate must carry (upstream_tls_verify = hostname) and that moat sends as SNI. Empty: the host part of upstream."},
	{"proxy_protocol", MOAT_OPT_BOOL, L(proxy_protocol), 0, NULL, 0, 0, 0, NULL,
	 "Every connection starts with a PROXY protocol header (v1 or v2, from a load balancer such as HAProxy) naming the real client; needs proxy_protocol_from. A connection from elsewhere, or without a valid header, is closed and logged."},
	{"proxy_protocol_from", MOAT_OPT_STR_LIST, L(proxy_protocol_from), 0, "{}", 0, 0, 0, NULL,
	 "Networks (\"192.0.2.0/24\", \"2001:db8::/32\", \"127.0.0.1\") of the load balancers allowed to send a PROXY header."},
	{"upstream_proxy_protocol", MOAT_OPT_STR, L(upstream_proxy_protocol), 0, "none", 0, 0, 0, upstream_proxy_choices,
	 "Send a PROXY protocol header (\"v1\" or \"v2\") with the client's address and port at the start of every upstream connection, for upstreams without XCLIENT (Postfix: smtpd_upstream_proxy_protocol = haproxy); \"none\": never."},
};

#define MAX_SECTIONS 32

/* The milter front end's section. Declared here rather than by the
 * milter code, which only moatd links: moat(1) lists and checks it too. */
static const char *const milter_default_choices[] = {"accept", "tempfail", "reject", NULL};
static const char *const milter_quarantine_choices[] = {"none", "add_header", NULL};

#define M(field) offsetof(struct moat_milter_conf, field)
static const struct moat_opt milter_opts[] = {
	{"socket", MOAT_OPT_STR, M(socket), 0, "", 0, 0, 0, NULL,
	 "Where moatd serves the milter protocol: \"inet:PORT@ADDRESS\", \"inet6:PORT@ADDRESS\" or \"unix:/path\" (libmilter's syntax). Empty: no milter."},
	{"default_action", MOAT_OPT_STR, M(default_action), 0, "tempfail", 0, 0, 0, milter_default_choices,
	 "What the milter answers when it fails itself (out of memory, its filter loop unreachable), as Postfix's milter_default_action: \"accept\", \"tempfail\" or \"reject\"."},
	{"quarantine_on", MOAT_OPT_STR, M(quarantine_on), 0, "none", 0, 0, 0, milter_quarantine_choices,
	 "\"add_header\": a message whose action is add_header is also quarantined (smfi_quarantine: Postfix's hold queue); \"none\": never."},
	{"metrics_listen", MOAT_OPT_STR, M(metrics_listen), 0, "", 0, 0, 0, NULL,
	 "Address (\"127.0.0.1:9188\") of the milter process's own metrics and status page: the milter runs in a process of its own, whose counters (messages, symbols, filters) are served here, with metrics_allow. Empty: none."},
};

static int milter_prepare(void *data, struct moat_section_ctx *ctx)
{
	struct moat_milter_conf *m = data;
	static const char *const prefixes[] = {"inet:", "inet6:", "unix:", "local:"};
	const char *s = m->socket ? m->socket : "";

	m->default_id = strcmp(m->default_action, "accept") == 0 ? MOAT_MILTER_ACCEPT
			: strcmp(m->default_action, "reject") == 0 ? MOAT_MILTER_REJECT
			: MOAT_MILTER_TEMPFAIL;
	m->quarantine_add_header = strcmp(m->quarantine_on, "add_header") == 0;
	if (m->metrics_listen && *m->metrics_listen) {
		char why[256];
		if (moat_addr_parse(m->metrics_listen, &m->metrics_addr, why, sizeof(why)) < 0) {
			moat_section_error(ctx, "metrics_listen", "%s", why);
			return -1;
		}
	}
	if (!*s)
		return 0;
	for (size_t i = 0; i < NELEM(prefixes); i++) {
		size_t n = strlen(prefixes[i]);
		if (strncmp(s, prefixes[i], n) != 0)
			continue;
		if (i < 2 ? (s[n] < '0' || s[n] > '9') : s[n] != '/')
			break;
		return 0;
	}
	moat_section_error(ctx, "socket", "expected \"inet:PORT@ADDRESS\", \"inet6:PORT@ADDRESS\" "
			   "or \"unix:/absolute/path\", got \"%s\"", s);
	return -1;
}

static const struct moat_section_def milter_section = {
	.name = "milter",
	.doc = "The milter front end.",
	.opts = milter_opts,
	.nopts = NELEM(milter_opts),
	.size = sizeof(struct moat_milter_conf),
	.prepare = milter_prepare,
};

/* Sections other modules registered (filters, scoring), after the
 * milter's own. */
static const struct moat_section_def *sections[MAX_SECTIONS] = {&milter_section};
static size_t nsections = 1;

void moat_config_register_section(const struct moat_section_def *def)
{
	for (size_t i = 0; i < nsections; i++)
		if (sections[i] == def)
			return;
	if (nsections < MAX_SECTIONS)
		sections[nsections++] = def;
}

const struct moat_section_def *moat_config_section_def(size_t i)
{
	return i < nsections ? sections[i] : NULL;
}

static const struct moat_section_def *find_section(const char *name)
{
	for (size_t i = 0; i < nsections; i++)
		if (strcmp(sections[i]->name, name) == 0)
			return sections[i];
	return NULL;
}

/* Per-load state reached from libconfuse callbacks. libconfuse calls
 * them without a user pointer, so the state is found through a
 * thread-local (loads happen on one thread, one at a time per thread). */
struct opt_line {
	char section[64];	/* "", a listener's title, or a section name */
	char opt[40];
	char where[600];	/* "file:line" */
};

struct load_state {
	struct moat_config_errors *errs;
	const char *override;	/* "-o" argument being applied, or NULL */
	struct config_source src;
	struct opt_line *lines;	/* where each option was set */
	size_t nlines;
};
static _Thread_local struct load_state *cur_load;

static void add_error(struct moat_config_errors *errs, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void add_error(struct moat_config_errors *errs, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	char **n = realloc(errs->msg, (errs->n + 1) * sizeof(*n));
	if (!n)
		return;
	errs->msg = n;
	errs->msg[errs->n] = strdup(buf);
	if (errs->msg[errs->n])
		errs->n++;
}

/* Where an error is: "file:line" while reading, "-o name=value" after. */
static void where(cfg_t *cfg, char *buf, size_t len)
{
	int line = 0;
	if (cur_load && cur_load->override) {
		snprintf(buf, len, "-o %s", cur_load->override);
		return;
	}
	if (!cur_load || !cfg) {
		snprintf(buf, len, "?");
		return;
	}
	const char *file = config_source_where(&cur_load->src, cfg->line, &line);
	snprintf(buf, len, "%s:%d", file, line);
}

static void errfunc(cfg_t *cfg, const char *fmt, va_list ap)
{
	char msg[768], loc[512];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	where(cfg, loc, sizeof(loc));
	if (cur_load)
		add_error(cur_load->errs, "%s: %s", loc, msg);
}

static const struct moat_opt *find_opt(const struct moat_opt *defs, size_t n, const char *name)
{
	for (size_t i = 0; defs && i < n; i++)
		if (strcmp(defs[i].name, name) == 0)
			return &defs[i];
	return NULL;
}

/* The declaration of option name in the section cfg is reading. */
static const struct moat_opt *opt_for(cfg_t *cfg, const char *name)
{
	if (strcmp(cfg->name, "root") == 0)
		return find_opt(global_opts, NELEM(global_opts), name);
	if (strcmp(cfg->name, "listener") == 0)
		return find_opt(listener_opts, NELEM(listener_opts), name);
	const struct moat_section_def *sd = find_section(cfg->name);
	if (!sd) {
		for (size_t i = 0; i < nsections; i++)
			if (sections[i]->sub && strcmp(sections[i]->sub->name, cfg->name) == 0)
				return find_opt(sections[i]->sub->opts, sections[i]->sub->nopts, name);
		return NULL;
	}
	const struct moat_opt *o = find_opt(sd->common, sd->ncommon, name);
	return o ? o : find_opt(sd->opts, sd->nopts, name);
}

static int check_choice(const struct moat_opt *d, const char *v, char *why, size_t len)
{
	for (size_t i = 0; d->choices[i]; i++)
		if (v && strcmp(v, d->choices[i]) == 0)
			return 0;
	size_t off = (size_t)snprintf(why, len, "%s: expected one of", d->name);
	for (size_t i = 0; d->choices[i] && off < len; i++)
		off += (size_t)snprintf(why + off, len - off, "%s \"%s\"", i ? "," : "",
					d->choices[i]);
	if (off < len)
		snprintf(why + off, len - off, "; got \"%s\"", v ? v : "");
	return -1;
}

/* Checks one value against its declaration; writes the problem into why. */
static int check_value(const struct moat_opt *d, cfg_opt_t *opt, char *why, size_t len)
{
	switch (d->type) {
	case MOAT_OPT_INT: {
		long v = cfg_opt_getnint(opt, 0);
		if ((double)v < d->min || (double)v > d->max) {
			snprintf(why, len, "%s: expected an integer from %.0f to %.0f, got %ld",
				 d->name, d->min, d->max, v);
			return -1;
		}
		return 0;
	}
	case MOAT_OPT_FLOAT: {
		double v = cfg_opt_getnfloat(opt, 0);
		if (v < d->min || v > d->max) {
			snprintf(why, len, "%s: expected a number from %g to %g, got %g",
				 d->name, d->min, d->max, v);
			return -1;
		}
		return 0;
	}
	case MOAT_OPT_STR:
		return d->choices ? check_choice(d, cfg_opt_getnstr(opt, 0), why, len) : 0;
	case MOAT_OPT_STR_LIST:
		for (unsigned i = 0; d->choices && i < cfg_opt_size(opt); i++)
			if (check_choice(d, cfg_opt_getnstr(opt, i), why, len) < 0)
				return -1;
		return 0;
	case MOAT_OPT_BOOL:
		return 0;
	}
	return 0;
}

static const char *section_key(cfg_t *cfg)
{
	if (strcmp(cfg->name, "root") == 0)
		return "";
	if (cfg_title(cfg))	/* a listener, or a subsection item */
		return cfg_title(cfg);
	return cfg->name;
}

static int validate(cfg_t *cfg, cfg_opt_t *opt)
{
	const struct moat_opt *d = opt_for(cfg, opt->name);
	char why[512], loc[512];

	if (d && cur_load && !cur_load->override) {
		struct opt_line *n = realloc(cur_load->lines, (cur_load->nlines + 1) * sizeof(*n));
		if (n) {
			cur_load->lines = n;
			n += cur_load->nlines++;
			snprintf(n->section, sizeof(n->section), "%s", section_key(cfg));
			snprintf(n->opt, sizeof(n->opt), "%s", opt->name);
			where(cfg, n->where, sizeof(n->where));
		}
	}
	if (!d || check_value(d, opt, why, sizeof(why)) == 0)
		return 0;
	where(cfg, loc, sizeof(loc));
	if (cur_load)
		add_error(cur_load->errs, "%s: %s", loc, why);
	return 0;	/* keep reading: every error gets reported */
}

static void build_opts(cfg_opt_t *out, const struct moat_opt *defs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const struct moat_opt *d = &defs[i];
		switch (d->type) {
		case MOAT_OPT_INT:
			out[i] = (cfg_opt_t)__CFG_INT(d->name, d->def_int, CFGF_NONE, 0, 0);
			break;
		case MOAT_OPT_BOOL:
			out[i] = (cfg_opt_t)__CFG_BOOL(d->name, d->def_int ? cfg_true : cfg_false,
						       CFGF_NONE, 0, 0);
			break;
		case MOAT_OPT_FLOAT:
			out[i] = (cfg_opt_t){d->name, 0, CFGT_FLOAT, 0, 0, CFGF_NONE, 0,
					     {0, d->def_float, cfg_false, 0, 0}, 0, {0}, 0, 0, 0, 0, 0};
			break;
		case MOAT_OPT_STR:
			out[i] = (cfg_opt_t)__CFG_STR(d->name, d->def_str,
						      d->def_str ? CFGF_NONE : CFGF_NODEFAULT, 0, 0);
			break;
		case MOAT_OPT_STR_LIST:
			out[i] = (cfg_opt_t)__CFG_STR_LIST(d->name, (char *)d->def_str, CFGF_NONE, 0, 0);
			break;
		}
		out[i].validcb = validate;
	}
}

static int copy_opts(void *base, cfg_t *cfg, const struct moat_opt *defs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const struct moat_opt *d = &defs[i];
		char *p = (char *)base + d->offset;
		switch (d->type) {
		case MOAT_OPT_INT:
			*(long *)(void *)p = cfg_getint(cfg, d->name);
			break;
		case MOAT_OPT_BOOL:
			*(int *)(void *)p = cfg_getbool(cfg, d->name) ? 1 : 0;
			break;
		case MOAT_OPT_FLOAT:
			*(double *)(void *)p = cfg_getfloat(cfg, d->name);
			break;
		case MOAT_OPT_STR: {
			const char *s = cfg_size(cfg, d->name) ? cfg_getstr(cfg, d->name) : NULL;
			*(char **)(void *)p = s ? strdup(s) : NULL;
			if (s && !*(char **)(void *)p)
				return -1;
			break;
		}
		case MOAT_OPT_STR_LIST: {
			struct moat_str_list *l = (struct moat_str_list *)(void *)p;
			l->n = cfg_size(cfg, d->name);
			l->v = calloc(l->n + 1, sizeof(char *));
			if (!l->v)
				return -1;
			for (size_t j = 0; j < l->n; j++)
				if (!(l->v[j] = strdup(cfg_getnstr(cfg, d->name, (unsigned)j))))
					return -1;
			break;
		}
		}
	}
	return 0;
}

static void free_opts(void *base, const struct moat_opt *defs, size_t n)
{
	for (size_t i = 0; defs && i < n; i++) {
		char *p = (char *)base + defs[i].offset;
		if (defs[i].type == MOAT_OPT_STR) {
			free(*(char **)(void *)p);
		} else if (defs[i].type == MOAT_OPT_STR_LIST) {
			struct moat_str_list *l = (struct moat_str_list *)(void *)p;
			for (size_t j = 0; l->v && j < l->n; j++)
				free(l->v[j]);
			free(l->v);
		}
	}
}

static void free_items(void *data, const struct moat_subsection_def *sub)
{
	if (!sub)
		return;
	struct moat_items *it = (struct moat_items *)(void *)((char *)data + sub->items_offset);
	for (size_t j = 0; it->v && j < it->n; j++) {
		char *item = (char *)it->v + j * sub->size;
		free_opts(item, sub->opts, sub->nopts);
		free(*(char **)(void *)(item + sub->title_offset));
	}
	free(it->v);
	it->v = NULL;
	it->n = 0;
}

/* Reads the subsection items of sec into data. */
static int copy_items(void *data, cfg_t *sec, const struct moat_subsection_def *sub)
{
	if (!sub)
		return 0;
	struct moat_items *it = (struct moat_items *)(void *)((char *)data + sub->items_offset);
	size_t n = cfg_size(sec, sub->name);
	it->v = calloc(n ? n : 1, sub->size);
	if (!it->v)
		return -1;
	it->n = n;
	for (size_t j = 0; j < n; j++) {
		cfg_t *ss = cfg_getnsec(sec, sub->name, (unsigned)j);
		char *item = (char *)it->v + j * sub->size;
		char **title = (char **)(void *)(item + sub->title_offset);
		if (copy_opts(item, ss, sub->opts, sub->nopts) < 0 ||
		    !(*title = strdup(cfg_title(ss))))
			return -1;
	}
	return 0;
}

const char *moat_config_default_path(void)
{
	return MOAT_SYSCONFDIR "/moat/moat.conf";
}

/* Sets list option opt from "a, b" or {"a b", "c"} (quotes protect commas
 * and spaces; \" and \\ escape inside them). Returns 0 or -1. */
static int set_list(cfg_t *sec, cfg_opt_t *opt, const char *v)
{
	size_t n = strlen(v);
	char *item = malloc(n + 1);
	if (!item)
		return -1;
	while (*v == ' ')
		v++;
	int braced = *v == '{';
	if (braced)
		v++;
	for (;;) {
		size_t o = 0;
		while (*v == ' ')
			v++;
		if (braced && *v == '}') {
			v++;
			break;
		}
		if (*v == '\0')
			break;
		if (*v == '"') {
			for (v++; *v && *v != '"'; v++) {
				if (*v == '\\' && (v[1] == '"' || v[1] == '\\'))
					v++;
				item[o++] = *v;
			}
			if (*v != '"') {
				free(item);
				return -1;
			}
			v++;
		} else {
			while (*v && *v != ',' && !(braced && *v == '}'))
				item[o++] = *v++;
			while (o && item[o - 1] == ' ')
				o--;
		}
		item[o] = '\0';
		if (!cfg_setopt(sec, opt, item)) {
			free(item);
			return -1;
		}
		while (*v == ' ')
			v++;
		if (*v == ',')
			v++;
		else if (!(braced && *v == '}') && *v != '\0') {
			free(item);
			return -1;
		}
	}
	free(item);
	return *v == '\0' ? 0 : -1;
}

/* Applies one "-o name=value": "opt", "listener.NAME.opt", "SECTION.opt". */
static int apply_override(cfg_t *cfg, const char *arg, struct moat_config_errors *errs)
{
	char name[256];
	const char *eq = strchr(arg, '=');
	cfg_t *sec = cfg;
	const char *optname;

	if (!eq || eq == arg || (size_t)(eq - arg) >= sizeof(name)) {
		add_error(errs, "-o %s: expected name=value", arg);
		return -1;
	}
	memcpy(name, arg, (size_t)(eq - arg));
	name[eq - arg] = '\0';
	optname = name;
	if (strncmp(name, "listener.", 9) == 0) {
		char *title = name + 9;
		char *dot = strrchr(title, '.');
		if (!dot) {
			add_error(errs, "-o %s: expected listener.NAME.option=value", arg);
			return -1;
		}
		*dot = '\0';
		sec = cfg_gettsec(cfg, "listener", title);
		if (!sec) {
			add_error(errs, "-o %s: no listener \"%s\" in the configuration", arg, title);
			return -1;
		}
		optname = dot + 1;
	} else if (strchr(name, '.')) {
		char *dot = strchr(name, '.');
		*dot = '\0';
		const struct moat_section_def *sd = find_section(name);
		if (!sd || !(sec = cfg_getsec(cfg, name))) {
			add_error(errs, "-o %s: no section \"%s\"", arg, name);
			return -1;
		}
		optname = dot + 1;
		size_t kl = sd->sub ? strlen(sd->sub->name) : 0;
		if (sd->sub && strncmp(optname, sd->sub->name, kl) == 0 && optname[kl] == '.') {
			/* SECTION.KIND.TITLE.option; the title may hold dots */
			char *title = (char *)optname + kl + 1;
			char *last = strrchr(title, '.');
			if (!last) {
				add_error(errs, "-o %s: expected %s.%s.TITLE.option=value", arg, name,
					  sd->sub->name);
				return -1;
			}
			*last = '\0';
			if (!(sec = cfg_gettsec(sec, sd->sub->name, title))) {
				add_error(errs, "-o %s: no %s \"%s\" in section %s", arg, sd->sub->name,
					  title, name);
				return -1;
			}
			optname = last + 1;
		}
	}
	cfg_opt_t *opt = cfg_getopt(sec, optname);
	if (!opt || opt->type == CFGT_SEC || opt->type == CFGT_FUNC) {
		/* cfg_getopt() reported it through errfunc already when absent */
		if (opt)
			add_error(errs, "-o %s: \"%s\" is not an option", arg, optname);
		return -1;
	}
	size_t before = errs->n;
	if (opt->flags & CFGF_LIST) {
		/* replaces the list: -o filters=a,b  or  -o 'x={"a b", "c"}' */
		cfg_free_value(opt);
		if (set_list(sec, opt, eq + 1) < 0 && errs->n == before)
			add_error(errs, "-o %s: expected items separated by commas, "
				  "each optionally in double quotes", arg);
	} else if (!cfg_setopt(sec, opt, eq + 1)) {
		if (errs->n == before)
			add_error(errs, "-o %s: invalid value for %s", arg, optname);
		return -1;
	}
	validate(sec, opt);
	return errs->n == before ? 0 : -1;
}

/* Where option opt of section key ("" global, a listener's name, a
 * section's name) was set: "file:line", or fallback. */
static const char *opt_where(const char *key, const char *opt, const char *fallback_file,
			     int fallback_line, char *buf, size_t len)
{
	if (cur_load)
		for (size_t i = cur_load->nlines; i-- > 0;)
			if (strcmp(cur_load->lines[i].section, key) == 0 &&
			    strcmp(cur_load->lines[i].opt, opt) == 0)
				return cur_load->lines[i].where;
	int line = fallback_line;
	const char *file = fallback_file;
	if (cur_load && fallback_line > 0)
		file = config_source_where(&cur_load->src, fallback_line, &line);
	if (line > 0)
		snprintf(buf, len, "%s:%d", file, line);
	else
		snprintf(buf, len, "%s", file);
	return buf;
}

struct moat_section_ctx {
	struct moat_config *c;
	const struct moat_section_def *def;
	struct moat_config_errors *errs;
	char buf[600];
};

void moat_section_error(struct moat_section_ctx *ctx, const char *opt, const char *fmt, ...)
{
	char msg[768];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	add_error(ctx->errs, "%s: %s: %s%s%s", moat_section_where(ctx, opt), ctx->def->name,
		  opt, *opt ? ": " : "", msg);
}

void moat_section_item_error(struct moat_section_ctx *ctx, const char *title, const char *opt,
			     const char *fmt, ...)
{
	char msg[768];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	const char *kind = ctx->def->sub ? ctx->def->sub->name : "";
	add_error(ctx->errs, "%s: %s: %s %s: %s%s%s",
		  opt_where(title, opt, ctx->c->path, 0, ctx->buf, sizeof(ctx->buf)),
		  ctx->def->name, kind, title, opt, *opt ? ": " : "", msg);
}

const char *moat_section_name(const struct moat_section_ctx *ctx)
{
	return ctx->def->name;
}

const struct moat_config *moat_section_config(const struct moat_section_ctx *ctx)
{
	return ctx->c;
}

const char *moat_section_where(struct moat_section_ctx *ctx, const char *opt)
{
	return opt_where(ctx->def->name, opt, ctx->c->path, 0, ctx->buf, sizeof(ctx->buf));
}

static enum moat_tls_level tls_level_id(const char *v)
{
	if (v && strcmp(v, "encrypt") == 0)
		return MOAT_TLS_ENCRYPT;
	if (v && strcmp(v, "may") == 0)
		return MOAT_TLS_MAY;
	return MOAT_TLS_NONE;
}

/* Checks what one option alone cannot: required options, addresses,
 * the XCLIENT safety rule, duplicate listen addresses, known filters. */
static void check_config(struct moat_config *c, struct moat_config_errors *errs)
{
	char why[256], w[600];

	c->facility = moat_log_facility(c->syslog_facility);
	const struct moat_milter_conf *mc = moat_config_milter(c);
	if (c->nlisteners == 0 && !(mc && mc->socket && *mc->socket))
		add_error(errs, "%s: expected at least one listener section, or a milter socket",
			  c->path);
	for (size_t i = 0; i < c->nlisteners; i++) {
		struct moat_listener_conf *l = &c->listeners[i];
		l->role_id = l->role && strcmp(l->role, "submission") == 0
				     ? MOAT_ROLE_SUBMISSION : MOAT_ROLE_INBOUND;
		if (!l->listen)
			add_error(errs, "%s: listener %s: expected listen = \"address:port\"",
				  opt_where(l->name, "", c->path, l->line, w, sizeof(w)), l->name);
		else if (moat_addr_parse(l->listen, &l->listen_addr, why, sizeof(why)) < 0)
			add_error(errs, "%s: listener %s: listen: %s",
				  opt_where(l->name, "listen", c->path, l->line, w, sizeof(w)), l->name, why);
		if (!l->upstream)
			add_error(errs, "%s: listener %s: expected upstream = \"address:port\"",
				  opt_where(l->name, "", c->path, l->line, w, sizeof(w)), l->name);
		else if (moat_addr_parse(l->upstream, &l->upstream_addr, why, sizeof(why)) < 0)
			add_error(errs, "%s: listener %s: upstream: %s",
				  opt_where(l->name, "upstream", c->path, l->line, w, sizeof(w)), l->name, why);
		l->tls_level = tls_level_id(l->tls);
		if (l->tls_wrappermode)
			l->tls_level = MOAT_TLS_ENCRYPT;
		l->upstream_tls_level = tls_level_id(l->upstream_tls);
		l->upstream_tls_verify_id = !l->upstream_tls_verify ? MOAT_TLS_VERIFY_NONE
			: strcmp(l->upstream_tls_verify, "hostname") == 0 ? MOAT_TLS_VERIFY_HOSTNAME
			: strcmp(l->upstream_tls_verify, "ca") == 0 ? MOAT_TLS_VERIFY_CA
			: MOAT_TLS_VERIFY_NONE;
		if (l->tls_level != MOAT_TLS_NONE && (!l->tls_cert_file || !*l->tls_cert_file))
			add_error(errs, "%s: listener %s: %s needs tls_cert_file",
				  opt_where(l->name, l->tls_wrappermode ? "tls_wrappermode" : "tls",
					    c->path, l->line, w, sizeof(w)),
				  l->name, l->tls_wrappermode ? "tls_wrappermode = yes" : "tls");
		if (l->upstream_tls_verify_id != MOAT_TLS_VERIFY_NONE &&
		    l->upstream_tls_level != MOAT_TLS_ENCRYPT)
			add_error(errs, "%s: listener %s: upstream_tls_verify = %s needs upstream_tls = encrypt",
				  opt_where(l->name, "upstream_tls_verify", c->path, l->line, w, sizeof(w)),
				  l->name, l->upstream_tls_verify);
		if (!l->xclient && !l->proxy_address_untrusted &&
		    !(l->upstream_proxy_protocol && strcmp(l->upstream_proxy_protocol, "none") != 0))
			add_error(errs, "%s: listener %s: xclient = no needs proxy_address_untrusted = yes: "
				  "without XCLIENT the upstream sees every client as moat's address; "
				  "make sure that address is not trusted (Postfix mynetworks), then say so",
				  opt_where(l->name, "xclient", c->path, l->line, w, sizeof(w)), l->name);
		for (size_t j = 0; j < i; j++)
			if (l->listen && c->listeners[j].listen &&
			    moat_addr_equal(&l->listen_addr, &c->listeners[j].listen_addr))
				add_error(errs, "%s: listener %s: listen address %s already used by listener %s",
					  opt_where(l->name, "listen", c->path, l->line, w, sizeof(w)),
					  l->name, l->listen, c->listeners[j].name);
	}
	for (size_t i = 0; i < c->nlisteners; i++) {
		struct moat_listener_conf *l = &c->listeners[i];
		const char *v = l->upstream_proxy_protocol;
		l->upstream_proxy_version = v && strcmp(v, "v1") == 0 ? 1 : v && strcmp(v, "v2") == 0 ? 2 : 0;
		l->nproxy_from = 0;
		l->proxy_from = calloc(l->proxy_protocol_from.n + 1, sizeof(*l->proxy_from));
		for (size_t j = 0; l->proxy_from && j < l->proxy_protocol_from.n; j++) {
			if (moat_net_parse(l->proxy_protocol_from.v[j], &l->proxy_from[l->nproxy_from],
					   why, sizeof(why)) < 0)
				add_error(errs, "%s: listener %s: proxy_protocol_from: %s",
					  opt_where(l->name, "proxy_protocol_from", c->path, l->line, w,
						    sizeof(w)), l->name, why);
			else
				l->nproxy_from++;
		}
		if (l->proxy_protocol && l->proxy_protocol_from.n == 0)
			add_error(errs, "%s: listener %s: proxy_protocol = yes needs proxy_protocol_from = "
				  "{networks of the load balancers}",
				  opt_where(l->name, "proxy_protocol", c->path, l->line, w, sizeof(w)), l->name);
		if (l->upstream_proxy_version && l->xclient)
			add_error(errs, "%s: listener %s: upstream_proxy_protocol = %s is for upstreams "
				  "without XCLIENT: expected xclient = no with it",
				  opt_where(l->name, "upstream_proxy_protocol", c->path, l->line, w, sizeof(w)),
				  l->name, v);
	}
	if (!c->user || !*c->user)
		add_error(errs, "%s: user: expected the name of an unprivileged user",
			  opt_where("", "user", c->path, 0, w, sizeof(w)));
	if (c->chroot && *c->chroot) {
		int spf = 0;
		for (size_t i = 0; i < c->filters.n; i++)
			spf |= strcmp(c->filters.v[i], "spf") == 0;
		if (c->chroot[0] != '/')
			add_error(errs, "%s: chroot: expected an absolute path, got \"%s\"",
				  opt_where("", "chroot", c->path, 0, w, sizeof(w)), c->chroot);
		else if ((mc && mc->socket && *mc->socket) || spf)
			add_error(errs, "%s: chroot: expected no chroot with %s: its processes start "
				  "from moatd's binary, which a chroot hides",
				  opt_where("", "chroot", c->path, 0, w, sizeof(w)),
				  spf ? "the spf filter" : "a milter socket");
	}
	if (c->metrics_listen && *c->metrics_listen &&
	    moat_addr_parse(c->metrics_listen, &c->metrics_addr, why, sizeof(why)) < 0)
		add_error(errs, "%s: metrics_listen: %s",
			  opt_where("", "metrics_listen", c->path, 0, w, sizeof(w)), why);
	c->metrics_nets = calloc(c->metrics_allow.n + 1, sizeof(*c->metrics_nets));
	for (size_t i = 0; c->metrics_nets && i < c->metrics_allow.n; i++) {
		if (moat_net_parse(c->metrics_allow.v[i], &c->metrics_nets[c->nmetrics_nets], why,
				   sizeof(why)) < 0)
			add_error(errs, "%s: metrics_allow: %s",
				  opt_where("", "metrics_allow", c->path, 0, w, sizeof(w)), why);
		else
			c->nmetrics_nets++;
	}
	if (c->queue_id_pattern && *c->queue_id_pattern) {
		c->queue_id_re = calloc(1, sizeof(*c->queue_id_re));
		int rc = c->queue_id_re ? regcomp(c->queue_id_re, c->queue_id_pattern, REG_EXTENDED) : REG_ESPACE;
		if (rc != 0) {
			if (c->queue_id_re)
				regerror(rc, c->queue_id_re, why, sizeof(why));
			else
				snprintf(why, sizeof(why), "out of memory");
			free(c->queue_id_re);
			c->queue_id_re = NULL;
			add_error(errs, "%s: queue_id_pattern: \"%s\": %s; expected an extended regular "
				  "expression with one group",
				  opt_where("", "queue_id_pattern", c->path, 0, w, sizeof(w)),
				  c->queue_id_pattern, why);
		} else if (c->queue_id_re->re_nsub < 1) {
			regfree(c->queue_id_re);
			free(c->queue_id_re);
			c->queue_id_re = NULL;
			add_error(errs, "%s: queue_id_pattern: \"%s\": expected a group, in parentheses, "
				  "around the queue id",
				  opt_where("", "queue_id_pattern", c->path, 0, w, sizeof(w)),
				  c->queue_id_pattern);
		}
	}
	if (c->spool_directory && c->spool_directory[0] != '/')
		add_error(errs, "%s: spool_directory: expected an absolute path, got \"%s\"",
			  opt_where("", "spool_directory", c->path, 0, w, sizeof(w)), c->spool_directory);
	for (size_t i = 0; i < c->filters.n; i++) {
		const struct moat_section_def *sd = find_section(c->filters.v[i]);
		if (!sd || !sd->common) {	/* only filters have the common options */
			char known[512] = "";
			size_t off = 0;
			for (size_t j = 0; j < nsections && off < sizeof(known); j++)
				if (sections[j]->common)
					off += (size_t)snprintf(known + off, sizeof(known) - off, "%s%s",
								off ? ", " : "", sections[j]->name);
			add_error(errs, "%s: filters: expected the name of a filter (%s), got \"%s\"",
				  opt_where("", "filters", c->path, 0, w, sizeof(w)),
				  off ? known : "none built in", c->filters.v[i]);
		}
		for (size_t j = 0; j < i; j++)
			if (strcmp(c->filters.v[i], c->filters.v[j]) == 0)
				add_error(errs, "%s: filters: \"%s\" is listed twice",
					  opt_where("", "filters", c->path, 0, w, sizeof(w)), c->filters.v[i]);
	}
}

/* include() lines are expanded before libconfuse sees the text; one it
 * still meets shares its line with something else. */
static int include_func(cfg_t *cfg, cfg_opt_t *opt, int argc, const char **argv)
{
	(void)opt;
	(void)argc;
	(void)argv;
	cfg_error(cfg, "include(\"file\") must be on a line of its own");
	return -1;
}

static size_t count_opts(const struct moat_section_def *sd)
{
	return sd->ncommon + sd->nopts;
}

int moat_config_load(const char *path, char *const *overrides, size_t noverrides,
		     struct moat_config **out, struct moat_config_errors *errs)
{
	size_t nsec = nsections;
	cfg_opt_t gopts[NELEM(global_opts) + MAX_SECTIONS + 3];
	cfg_opt_t lopts[NELEM(listener_opts) + 1];
	cfg_opt_t *sopts[MAX_SECTIONS] = {0};
	cfg_opt_t *subopts[MAX_SECTIONS] = {0};
	struct load_state st;
	struct moat_config *c = NULL;
	cfg_t *cfg = NULL;
	char err[1024];
	int rc;

	memset(errs, 0, sizeof(*errs));
	memset(&st, 0, sizeof(st));
	st.errs = errs;
	*out = NULL;
	if (!path)
		path = moat_config_default_path();

	build_opts(lopts, listener_opts, NELEM(listener_opts));
	lopts[NELEM(listener_opts)] = (cfg_opt_t)CFG_END();
	build_opts(gopts, global_opts, NELEM(global_opts));
	size_t g = NELEM(global_opts);
	gopts[g++] = (cfg_opt_t)CFG_SEC("listener", lopts,
			CFGF_MULTI | CFGF_TITLE | CFGF_NO_TITLE_DUPES);
	for (size_t i = 0; i < nsec; i++) {
		const struct moat_section_def *sd = sections[i];
		sopts[i] = calloc(count_opts(sd) + 2, sizeof(cfg_opt_t));
		if (sd->sub)
			subopts[i] = calloc(sd->sub->nopts + 1, sizeof(cfg_opt_t));
		if (!sopts[i] || (sd->sub && !subopts[i])) {
			add_error(errs, "%s: out of memory", path);
			goto out_free;
		}
		build_opts(sopts[i], sd->common, sd->ncommon);
		build_opts(sopts[i] + sd->ncommon, sd->opts, sd->nopts);
		size_t k = count_opts(sd);
		if (sd->sub) {
			build_opts(subopts[i], sd->sub->opts, sd->sub->nopts);
			subopts[i][sd->sub->nopts] = (cfg_opt_t)CFG_END();
			sopts[i][k++] = (cfg_opt_t)CFG_SEC(sd->sub->name, subopts[i],
					CFGF_MULTI | CFGF_TITLE | CFGF_NO_TITLE_DUPES);
		}
		sopts[i][k] = (cfg_opt_t)CFG_END();
		gopts[g++] = (cfg_opt_t)CFG_SEC(sd->name, sopts[i], CFGF_NONE);
	}
	gopts[g++] = (cfg_opt_t)CFG_FUNC("include", include_func);
	gopts[g] = (cfg_opt_t)CFG_END();

	if (config_source_load(&st.src, path, err, sizeof(err)) < 0) {
		add_error(errs, "%s", err);
		goto out_free;
	}
	cur_load = &st;
	cfg = cfg_init(gopts, CFGF_NONE);
	if (!cfg) {
		add_error(errs, "%s: out of memory", path);
		goto out_free;
	}
	cfg_set_error_function(cfg, errfunc);
	rc = cfg_parse_buf(cfg, st.src.text);
	if (rc != CFG_SUCCESS) {
		if (errs->n == 0)
			add_error(errs, "%s: syntax error", path);
		goto fail;
	}
	for (size_t i = 0; i < noverrides; i++) {
		st.override = overrides[i];
		apply_override(cfg, overrides[i], errs);
		st.override = NULL;
	}

	c = calloc(1, sizeof(*c));
	if (!c || !(c->path = strdup(path)))
		goto oom;
	c->refs = 1;
	if (copy_opts(c, cfg, global_opts, NELEM(global_opts)) < 0)
		goto oom;
	if (!c->hostname || !c->hostname[0]) {
		char host[256] = "localhost";
		gethostname(host, sizeof(host) - 1);
		free(c->hostname);
		if (!(c->hostname = strdup(host)))
			goto oom;
	}
	c->nlisteners = cfg_size(cfg, "listener");
	if (c->nlisteners && !(c->listeners = calloc(c->nlisteners, sizeof(*c->listeners))))
		goto oom;
	for (size_t i = 0; i < c->nlisteners; i++) {
		cfg_t *sec = cfg_getnsec(cfg, "listener", (unsigned)i);
		c->listeners[i].line = sec->line;
		if (!(c->listeners[i].name = strdup(cfg_title(sec))) ||
		    copy_opts(&c->listeners[i], sec, listener_opts, NELEM(listener_opts)) < 0)
			goto oom;
	}
	if (nsec && !(c->sections = calloc(nsec, sizeof(*c->sections))))
		goto oom;
	for (size_t i = 0; i < nsec; i++) {
		const struct moat_section_def *sd = sections[i];
		cfg_t *sec = cfg_getsec(cfg, sd->name);
		c->sections[i].def = sd;
		c->sections[i].data = calloc(1, sd->size);
		c->nsections = i + 1;
		if (!c->sections[i].data || !sec ||
		    copy_opts(c->sections[i].data, sec, sd->common, sd->ncommon) < 0 ||
		    copy_opts(c->sections[i].data, sec, sd->opts, sd->nopts) < 0 ||
		    copy_items(c->sections[i].data, sec, sd->sub) < 0)
			goto oom;
	}
	check_config(c, errs);
	for (size_t i = 0; i < nsec; i++) {
		struct moat_section_ctx ctx = {c, sections[i], errs, ""};
		if (sections[i]->prepare)
			sections[i]->prepare(c->sections[i].data, &ctx);
	}
	if (errs->n)
		goto fail;
	*out = c;
	c = NULL;
	goto out_free;
oom:
	add_error(errs, "%s: out of memory", path);
fail:
	if (c) {
		c->refs = 1;
		moat_config_unref(c);
	}
out_free:
	if (cfg)
		cfg_free(cfg);
	cur_load = NULL;
	config_source_free(&st.src);
	free(st.lines);
	for (size_t i = 0; i < nsec; i++) {
		free(sopts[i]);
		free(subopts[i]);
	}
	return *out ? 0 : -1;
}

void moat_config_errors_free(struct moat_config_errors *errs)
{
	for (size_t i = 0; i < errs->n; i++)
		free(errs->msg[i]);
	free(errs->msg);
	errs->msg = NULL;
	errs->n = 0;
}

struct moat_config *moat_config_ref(struct moat_config *c)
{
	__atomic_add_fetch(&c->refs, 1, __ATOMIC_SEQ_CST);
	return c;
}

void moat_config_unref(struct moat_config *c)
{
	if (!c || __atomic_sub_fetch(&c->refs, 1, __ATOMIC_SEQ_CST) > 0)
		return;
	for (size_t i = 0; i < c->nsections; i++) {
		const struct moat_section_def *sd = c->sections[i].def;
		void *d = c->sections[i].data;
		if (!d)
			continue;
		if (sd->release)
			sd->release(d);
		free_opts(d, sd->common, sd->ncommon);
		free_opts(d, sd->opts, sd->nopts);
		free_items(d, sd->sub);
		free(d);
	}
	free(c->sections);
	free(c->metrics_nets);
	if (c->queue_id_re) {
		regfree(c->queue_id_re);
		free(c->queue_id_re);
	}
	for (size_t i = 0; i < c->nlisteners; i++) {
		free(c->listeners[i].name);
		free(c->listeners[i].proxy_from);
		free_opts(&c->listeners[i], listener_opts, NELEM(listener_opts));
	}
	free(c->listeners);
	free_opts(c, global_opts, NELEM(global_opts));
	free(c->path);
	free(c);
}

void *moat_config_section(const struct moat_config *c, const char *name)
{
	for (size_t i = 0; i < c->nsections; i++)
		if (strcmp(c->sections[i].def->name, name) == 0)
			return c->sections[i].data;
	return NULL;
}

const struct moat_milter_conf *moat_config_milter(const struct moat_config *c)
{
	return moat_config_section(c, "milter");
}

/* A string in libconfuse's double-quoted syntax, readable back. */
static void print_quoted(FILE *out, const char *s)
{
	fputc('"', out);
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			fputc('\\', out);
		fputc(*s, out);
	}
	fputc('"', out);
}

static void print_one(FILE *out, const char *indent, const struct moat_opt *d,
		      const void *base, int docs)
{
	const char *p = (const char *)base + d->offset;
	if (docs)
		fprintf(out, "%s# %s\n", indent, d->doc);
	switch (d->type) {
	case MOAT_OPT_INT:
		fprintf(out, "%s%s = %ld\n", indent, d->name, *(const long *)(const void *)p);
		break;
	case MOAT_OPT_FLOAT:
		fprintf(out, "%s%s = %g\n", indent, d->name, *(const double *)(const void *)p);
		break;
	case MOAT_OPT_BOOL:
		fprintf(out, "%s%s = %s\n", indent, d->name, *(const int *)(const void *)p ? "yes" : "no");
		break;
	case MOAT_OPT_STR: {
		const char *s = *(char *const *)(const void *)p;
		fprintf(out, "%s%s = ", indent, d->name);
		print_quoted(out, s ? s : "");
		fprintf(out, "\n");
		break;
	}
	case MOAT_OPT_STR_LIST: {
		const struct moat_str_list *l = (const struct moat_str_list *)(const void *)p;
		fprintf(out, "%s%s = {", indent, d->name);
		for (size_t i = 0; i < l->n; i++) {
			fprintf(out, "%s", i ? ", " : "");
			print_quoted(out, l->v[i]);
		}
		fprintf(out, "}\n");
		break;
	}
	}
}

void moat_config_print(const struct moat_config *c, FILE *out, int docs)
{
	for (size_t i = 0; i < NELEM(global_opts); i++)
		print_one(out, "", &global_opts[i], c, docs);
	for (size_t i = 0; i < c->nlisteners; i++) {
		fprintf(out, "\nlistener %s {\n", c->listeners[i].name);
		for (size_t j = 0; j < NELEM(listener_opts); j++)
			print_one(out, "    ", &listener_opts[j], &c->listeners[i], docs);
		fprintf(out, "}\n");
	}
	for (size_t i = 0; i < c->nsections; i++) {
		const struct moat_section_def *sd = c->sections[i].def;
		fprintf(out, "\n%s {\n", sd->name);
		for (size_t j = 0; j < sd->ncommon; j++)
			print_one(out, "    ", &sd->common[j], c->sections[i].data, docs);
		for (size_t j = 0; j < sd->nopts; j++)
			print_one(out, "    ", &sd->opts[j], c->sections[i].data, docs);
		if (sd->sub) {
			const struct moat_items *it = (const struct moat_items *)(const void *)
				((const char *)c->sections[i].data + sd->sub->items_offset);
			for (size_t j = 0; j < it->n; j++) {
				const char *item = (const char *)it->v + j * sd->sub->size;
				fprintf(out, "    %s %s {\n", sd->sub->name,
					*(char *const *)(const void *)(item + sd->sub->title_offset));
				for (size_t k = 0; k < sd->sub->nopts; k++)
					print_one(out, "        ", &sd->sub->opts[k], item, docs);
				fprintf(out, "    }\n");
			}
		}
		fprintf(out, "}\n");
	}
}

static const char *type_name(const struct moat_opt *d)
{
	switch (d->type) {
	case MOAT_OPT_INT: return "integer";
	case MOAT_OPT_FLOAT: return "number";
	case MOAT_OPT_BOOL: return "boolean";
	case MOAT_OPT_STR_LIST: return "list";
	default: return "string";
	}
}

static void each(void (*fn)(void *, const char *, const char *, const char *, const char *,
			    const char *),
		 void *arg, const char *section, const struct moat_opt *defs, size_t n)
{
	char def[128];
	for (size_t i = 0; defs && i < n; i++) {
		const struct moat_opt *d = &defs[i];
		if (d->type == MOAT_OPT_INT)
			snprintf(def, sizeof(def), "%ld", d->def_int);
		else if (d->type == MOAT_OPT_FLOAT)
			snprintf(def, sizeof(def), "%g", d->def_float);
		else if (d->type == MOAT_OPT_BOOL)
			snprintf(def, sizeof(def), "%s", d->def_int ? "yes" : "no");
		else
			snprintf(def, sizeof(def), "%s", d->def_str ? d->def_str : "(none)");
		fn(arg, section, d->name, type_name(d), def, d->doc);
	}
}

void moat_config_each_option(void (*fn)(void *arg, const char *section,
					const char *name, const char *type,
					const char *def, const char *doc),
			     void *arg)
{
	each(fn, arg, "", global_opts, NELEM(global_opts));
	each(fn, arg, "listener", listener_opts, NELEM(listener_opts));
	for (size_t i = 0; i < nsections; i++) {
		each(fn, arg, sections[i]->name, sections[i]->common, sections[i]->ncommon);
		each(fn, arg, sections[i]->name, sections[i]->opts, sections[i]->nopts);
		if (sections[i]->sub) {
			char name[128];
			snprintf(name, sizeof(name), "%s.%s", sections[i]->name, sections[i]->sub->name);
			each(fn, arg, name, sections[i]->sub->opts, sections[i]->sub->nopts);
		}
	}
}
