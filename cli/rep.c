/*
 * rep.c - `moat rep show|clear ADDRESS|NETWORK|DOMAIN`: the reputation
 * counts the running moatd holds (in its embedded store or in Redis),
 * read or deleted through its control socket (ctl.c).
 *
 * show prints one line per name: "ip 192.0.2.1 ham=3.0 spam=0.0
 * ham_now=3 spam_now=0 ham_prev=0 spam_prev=0 window=604800
 * verdict=good" (an address also shows its network); clear deletes the
 * name's counts. Exit status as ctl.c's: 0, 1 error, 2 moatd not
 * reached, 64 usage. Owns nothing.
 */
#include "rep.h"

#include <stdio.h>
#include <string.h>

#include "ctl.h"

int moat_cli_rep(const struct moat_config *c, int argc, char **argv)
{
	char line[600];
	const char *path = moat_ctl_socket(c, &argc, &argv);
	if (argc != 3 || (strcmp(argv[1], "show") != 0 && strcmp(argv[1], "clear") != 0) ||
	    strlen(argv[2]) > 300 || strpbrk(argv[2], " \t\r\n")) {
		fprintf(stderr, "usage: moat rep [-s SOCKET] show|clear ADDRESS|NETWORK|DOMAIN\n");
		return 64;
	}
	if (!path)
		return 2;
	snprintf(line, sizeof(line), "rep %s %s", argv[1], argv[2]);
	return moat_ctl_request(path, line);
}
