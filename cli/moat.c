/*
 * moat.c - the moat command-line tool.
 *
 * SYNOPSIS
 *	moat [-c file] [-o name=value]... command [args]
 *
 * COMMANDS
 *	config [-d]	print every option with its effective value (-d: with
 *			its documentation), after -o overrides
 *	options		list every option the configuration table declares:
 *			section, name, type, default (tab-separated)
 *	check ...	run a message file through the filters (check.c)
 *	dns NAME [TYPE]	one lookup through moat's resolver (dns.c)
 *	version		print the version
 *
 * Later commands (sign, verify, spf, dnsbl, keygen) drive the same
 * pipeline code as the daemon. Owns nothing beyond main's locals.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "dns.h"
#include "config.h"
#include "filter.h"

#define MAX_OVERRIDES 256

static void usage(void)
{
	fprintf(stderr, "usage: moat [-c file] [-o name=value]... command\n"
		"commands:\n"
		"  config [-d]   print the effective configuration (-d: documented)\n"
		"  options       list every option: section, name, type, default\n"
		"  check --ip ADDR --helo NAME --from ADDR --rcpt ADDR [--listener NAME] MSGFILE\n"
		"                run a message through the filters; exit 0 accept, 1 add_header,\n"
		"                2 tempfail, 3 reject, 4 discard\n"
		"  dns NAME [TYPE]  one lookup through moat's resolver; exit 0 answer,\n"
		"                1 no such name/data, 2 temporary failure\n"
		"  version       print the version\n");
	exit(2);
}

static void print_option(void *arg, const char *section, const char *name, const char *type,
			 const char *def, const char *doc)
{
	(void)arg;
	(void)doc;
	printf("%s\t%s\t%s\t%s\n", section[0] ? section : "-", name, type, def);
}

int main(int argc, char **argv)
{
	const char *path = NULL;
	char *overrides[MAX_OVERRIDES];
	size_t noverrides = 0;
	int opt;

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
	const char *cmd = argv[optind];
	moat_filters_register_builtin();

	if (strcmp(cmd, "version") == 0) {
		printf("moat %s\n", MOAT_VERSION);
		return 0;
	}
	if (strcmp(cmd, "options") == 0) {
		moat_config_each_option(print_option, NULL);
		return 0;
	}
	if (strcmp(cmd, "check") == 0 || strcmp(cmd, "dns") == 0) {
		struct moat_config *c;
		struct moat_config_errors errs;
		if (moat_config_load(path, overrides, noverrides, &c, &errs) < 0) {
			for (size_t i = 0; i < errs.n; i++)
				fprintf(stderr, "%s\n", errs.msg[i]);
			moat_config_errors_free(&errs);
			return 78;
		}
		int rc = strcmp(cmd, "dns") == 0 ? moat_cli_dns(c, argc - optind, argv + optind)
						  : moat_cli_check(c, argc - optind, argv + optind);
		moat_config_unref(c);
		return rc;
	}
	if (strcmp(cmd, "config") == 0) {
		int docs = optind + 1 < argc && strcmp(argv[optind + 1], "-d") == 0;
		struct moat_config *c;
		struct moat_config_errors errs;
		if (moat_config_load(path, overrides, noverrides, &c, &errs) < 0) {
			for (size_t i = 0; i < errs.n; i++)
				fprintf(stderr, "%s\n", errs.msg[i]);
			moat_config_errors_free(&errs);
			return 1;
		}
		moat_config_print(c, stdout, docs);
		moat_config_unref(c);
		return 0;
	}
	fprintf(stderr, "moat: unknown command \"%s\"\n", cmd);
	usage();
	return 2;
}
