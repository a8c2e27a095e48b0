/*
 * privilege.h - giving up root: the configured user and group, an
 * optional chroot, and the refusal to go on as root.
 *
 * moatd binds its listeners and reads its keys as root, then calls
 * moat_privilege_drop() before it starts any thread or child; the milter
 * process calls it too. A process that is not root (systemd's User=,
 * with CAP_NET_BIND_SERVICE for the ports) has nothing to drop and is
 * only checked. Owns nothing.
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

#endif
