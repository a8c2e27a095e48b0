/*
 * privilege.h - giving up root: the configured user and group, an
 * optional chroot, and the refusal to go on as root.
 *
 * moatd binds its listeners and reads its keys as root, then calls
 * moat_privilege_drop() before it starts any thread or child; the milter
 * process calls it too. A process that is not root (systemd's User=,
 * with CAP_NET_BIND_SERVICE for the ports) has nothing to drop and is
 * only checked.
 *
 * `moatd -t` run as root also checks that the user moatd drops to can
 * read the files it reads again after the drop (DKIM keys at a reload):
 * moat_privilege_check_files(1) turns moat_privilege_check_read() on.
 * Owns that one switch.
 */
#ifndef MOAT_PRIVILEGE_H
#define MOAT_PRIVILEGE_H

#include <stddef.h>
#include <sys/types.h>

struct moat_privilege {
	uid_t uid;
	gid_t gid;
	char user[64];
	char group[64];
};

/* Looks user (and group; "" for the user's own group) up. Returns 0, or
 * -1 with err saying what is wrong (no such user, the user is root). */
int moat_privilege_lookup(const char *user, const char *group, struct moat_privilege *out,
			  char *err, size_t errlen);

/* As root: chroot to dir if it is not "" and become user:group (with
 * user's supplementary groups). Not root: nothing to drop. Either way
 * it then checks that the process is not root and cannot become root
 * again. Returns 1 if it dropped, 0 if there was nothing to drop, -1
 * with err. Call it before any thread starts. */
int moat_privilege_drop(const char *user, const char *group, const char *dir,
			char *err, size_t errlen);

/* Turns the check of moat_privilege_check_read() on (moatd -t) or off
 * (the default). */
void moat_privilege_check_files(int on);

/* While the check is on and the process is root: tries to open path for
 * reading as user (and group, "" for the user's own; with the user's
 * supplementary groups), in a child process that takes that identity.
 * Returns 0 when it can, or when there is nothing to check (the switch
 * is off; not root, so files are read as the running user anyway; an
 * unknown user, which the start reports); -1 with err naming the user,
 * the reason, and the file's owner, group and mode. Call it before any
 * thread starts. */
int moat_privilege_check_read(const char *user, const char *group, const char *path,
			      char *err, size_t errlen);

#endif
