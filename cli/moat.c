/*
 * moat.c - the moat command-line tool: options, configuration, and the
 * table of commands.
 *
 * SYNOPSIS
 *	moat [-c file] [-o name=value]... command [args]
 *
 * COMMANDS (table commands[] below; each in its own file)
 *	config [-d]	print every option with its effective value (-d: with
 *			its documentation), after -o overrides
 *	options		list every option the tables declare: section, name,
 *			type, default (tab-separated)
 *	check ...	run a message file through the filters (check.c)
 *	dns NAME [TYPE]	one lookup through moat's resolver (dns.c)
 *	dnsbl ADDR|NAME	look it up in the configured DNS lists (dnsbl.c)
 *	spf IP SENDER [HELO]  one SPF check, as the spf filter does it (spf.c)
 *	dmarc DOMAIN | dmarc report ...  DMARC records, aggregate reports (dmarc.c)
 *	keygen ...	make a DKIM key pair and its DNS record (keygen.c)
 *	keycheck ...	compare a published DKIM key with a key file (keycheck.c)
 *	sign ...	DKIM-sign a message file as the daemon would (sign.c)
 *	verify [FILE]	check a message's DKIM signatures (verify.c)
 *	status, reload	ask the running moatd, through its control socket (ctl.c)
 *	rep get|set|clear X  reputation counts and marks moatd holds (rep.c)
 *	version		print the version
 *
 * A command that needs the configuration gets it loaded (exit 78 with
 * "file:line: ..." for each error). Owns nothing beyond main's locals.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "config.h"
#include "ctl.h"
#include "dmarc.h"
#include "dns.h"
#include "dnsbl.h"
#include "filter.h"
#include "keycheck.h"
#include "keygen.h"
#include "rep.h"
#include "sign.h"
#include "spf.h"
#include "spf_worker.h"
#include "verify.h"

#define MAX_OVERRIDES 256
#define EX_CONFIG 78

static void print_option(void *arg, const char *section, const char *name, const char *type,
			 const char *def, const char *doc)
{
	(void)arg;
	(void)doc;
	printf("%s\t%s\t%s\t%s\n", section[0] ? section : "-", name, type, def);
}

static int cmd_version(const struct moat_config *c, int argc, char **argv)
{
	(void)c;
	(void)argc;
	(void)argv;
	printf("moat %s\n", MOAT_VERSION);
	return 0;
}

static int cmd_options(const struct moat_config *c, int argc, char **argv)
{
	(void)c;
	(void)argc;
	(void)argv;
	moat_config_each_option(print_option, NULL);
	return 0;
}

static int cmd_config(const struct moat_config *c, int argc, char **argv)
{
	moat_config_print(c, stdout, argc > 1 && strcmp(argv[1], "-d") == 0);
	return 0;
}

static const struct {
	const char *name;
	int needs_config;	/* 0 no, 1 yes, 2 if it can be read */
	int (*run)(const struct moat_config *c, int argc, char **argv);
	const char *usage;
} commands[] = {
	{"config", 1, cmd_config, "config [-d]   print the effective configuration (-d: documented)"},
	{"options", 0, cmd_options, "options       list every option: section, name, type, default"},
	{"check", 1, moat_cli_check,
	 "check --ip ADDR --helo NAME --from ADDR --rcpt ADDR [--listener NAME] MSGFILE\n"
	 "              run a message through the filters; exit 0 accept, 1 add_header,\n"
	 "              2 tempfail, 3 reject, 4 discard"},
	{"dns", 1, moat_cli_dns,
	 "dns NAME [TYPE]  one lookup through moat's resolver; exit 0 answer,\n"
	 "              1 no such name or data, 2 temporary failure"},
	{"dnsbl", 1, moat_cli_dnsbl,
	 "dnsbl ADDR|NAME  look it up in every configured DNS list zone; exit 0 not\n"
	 "              listed, 1 listed, 2 a lookup failed"},
	{"spf", 1, moat_cli_spf,
	 "spf IP SENDER [HELO]  one SPF check (SENDER \"\": the null sender); first line\n"
	 "              spf=RESULT; exit 0 pass, 1 fail, 2 softfail, 3 neutral, 4 none,\n"
	 "              5 temperror, 6 permerror"},
	{"dmarc", 1, moat_cli_dmarc,
	 "dmarc DOMAIN  the DMARC record and policy for mail From: DOMAIN; exit 0 a\n"
	 "              record, 1 none, 2 temperror, 3 permerror\n"
	 "  dmarc report --domain DOMAIN [--since AGE] [--until AGE]  the aggregate\n"
	 "              report (RFC 7489 XML) of the data moatd kept in Redis"},
	{"keygen", 0, moat_cli_keygen,
	 "keygen -d DOMAIN -s SELECTOR [-k rsa|ed25519] [-b BITS] [-t] [-r] [-D DIR]\n"
	 "              write DIR/SELECTOR.private and DIR/SELECTOR.txt (its DNS record)"},
	{"keycheck", 1, moat_cli_keycheck,
	 "keycheck -d DOMAIN -s SELECTOR [-k KEYFILE]  compare the published key with\n"
	 "              the key file; exit 0 match, 1 mismatch or missing, 2 DNS failure"},
	{"sign", 0, moat_cli_sign,
	 "sign -d DOMAIN -s SELECTOR -k KEYFILE [-c CANON] [FILE]  print the message\n"
	 "              DKIM-signed as moatd would sign it"},
	{"verify", 1, moat_cli_verify,
	 "verify [FILE]  check the message's DKIM signatures, one dkim=RESULT line each;\n"
	 "              exit 0 all pass, 1 fail or permerror, 2 temperror, 3 none"},
	{"status", 2, moat_cli_status,
	 "status [-s SOCKET]  what the running moatd is doing (its control_socket)"},
	{"reload", 2, moat_cli_reload,
	 "reload [-s SOCKET]  make moatd re-read its configuration, as SIGHUP; exit 1\n"
	 "              with the errors if it is refused (the running one stays)"},
	{"rep", 2, moat_cli_rep,
	 "rep [-s SOCKET] get|clear ADDRESS|NETWORK|DOMAIN  read or delete reputation\n"
	 "              counts in the running moatd's store (or in Redis)\n"
	 "  rep [-s SOCKET] set ADDRESS|NETWORK|DOMAIN good|bad|neutral [--ttl DAYS]\n"
	 "              mark a name by hand"},
	{"version", 0, cmd_version, "version       print the version"},
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(void)
{
	fprintf(stderr, "usage: moat [-c file] [-o name=value]... command\ncommands:\n");
	for (size_t i = 0; i < NCOMMANDS; i++)
		fprintf(stderr, "  %s\n", commands[i].usage);
	exit(64);
}

int main(int argc, char **argv)
{
	const char *path = NULL;
	char *overrides[MAX_OVERRIDES];
	size_t noverrides = 0;
	int opt;

	if (argc == 2 && strcmp(argv[1], SPF_WORKER_ARG) == 0)	/* filters/spf_worker.h */
		return spf_worker_main();
	while ((opt = getopt(argc, argv, "+c:o:h")) != -1) {
		switch (opt) {
		case 'c': path = optarg; break;
		case 'o':
			if (noverrides == MAX_OVERRIDES)
				usage();
			overrides[noverrides++] = optarg;
			break;
		default: usage();
		}
	}
	if (optind >= argc)
		usage();
	moat_filters_register_builtin();
	for (size_t i = 0; i < NCOMMANDS; i++) {
		if (strcmp(argv[optind], commands[i].name) != 0)
			continue;
		struct moat_config *c = NULL;
		struct moat_config_errors errs;
		/* needs_config 2: the configuration if it can be read (the
		 * command can do without it) */
		if (commands[i].needs_config == 2 &&
		    moat_config_load(path, overrides, noverrides, &c, &errs) < 0) {
			moat_config_errors_free(&errs);
			c = NULL;
		} else if (commands[i].needs_config == 1 &&
			   moat_config_load(path, overrides, noverrides, &c, &errs) < 0) {
			for (size_t j = 0; j < errs.n; j++)
				fprintf(stderr, "%s\n", errs.msg[j]);
			moat_config_errors_free(&errs);
			return EX_CONFIG;
		}
		if (c)
			moat_config_errors_free(&errs);
		int rc = commands[i].run(c, argc - optind, argv + optind);
		moat_config_unref(c);
		return rc;
	}
	fprintf(stderr, "moat: unknown command \"%s\"\n", argv[optind]);
	usage();
	return 64;
}
