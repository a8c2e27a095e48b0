/*
 * privilege.c - giving up root: see privilege.h.
 *
 * Order as root: look the user and group up (before a chroot hides
 * /etc/passwd), chroot, the supplementary groups, the group, then the
 * user; then prove it (setuid(0) must fail). Owns nothing.
 */
#include "privilege.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int moat_privilege_lookup(const char *user, const char *group, struct moat_privilege *out,
			  char *err, size_t errlen)
{
	struct passwd *pw;
	struct group *gr;

	memset(out, 0, sizeof(*out));
	if (!user || !*user) {
		snprintf(err, errlen, "user: expected the name of an unprivileged user");
		return -1;
	}
	errno = 0;
	pw = getpwnam(user);
	if (!pw) {
		snprintf(err, errlen, "user \"%s\" does not exist%s%s; create it "
			 "(adduser --system --group %s) or set user to an existing "
			 "unprivileged user", user, errno ? ": " : "", errno ? strerror(errno) : "",
			 user);
		return -1;
	}
	if (pw->pw_uid == 0) {
		snprintf(err, errlen, "user \"%s\" is root (uid 0): moatd does not run as root; "
			 "set user to an unprivileged user", user);
		return -1;
	}
	out->uid = pw->pw_uid;
	out->gid = pw->pw_gid;
	snprintf(out->user, sizeof(out->user), "%s", pw->pw_name);
	if (group && *group) {
		errno = 0;
		gr = getgrnam(group);
		if (!gr) {
			snprintf(err, errlen, "group \"%s\" does not exist", group);
			return -1;
		}
		out->gid = gr->gr_gid;
	} else {
		gr = getgrgid(out->gid);
	}
	if (out->gid == 0) {
		snprintf(err, errlen, "group of user \"%s\" is root (gid 0): set group to an "
			 "unprivileged group", user);
		return -1;
	}
	if (gr)
		snprintf(out->group, sizeof(out->group), "%s", gr->gr_name);
	else
		snprintf(out->group, sizeof(out->group), "%lu", (unsigned long)out->gid);
	return 0;
}

/* After the switch: not root, and no way back. */
static int verify(char *err, size_t errlen)
{
	if (getuid() == 0 || geteuid() == 0) {
		snprintf(err, errlen, "still running as root after the privilege drop");
		return -1;
	}
	if (setuid(0) == 0 || seteuid(0) == 0) {
		snprintf(err, errlen, "could become root again after the privilege drop");
		return -1;
	}
	return 0;
}

int moat_privilege_drop(const char *user, const char *group, const char *dir,
			char *err, size_t errlen)
{
	struct moat_privilege p;

	if (geteuid() != 0 && getuid() != 0)
		return verify(err, errlen) < 0 ? -1 : 0;
	if (moat_privilege_lookup(user, group, &p, err, errlen) < 0)
		return -1;
	if (dir && *dir) {
		if (chdir(dir) < 0 || chroot(dir) < 0 || chdir("/") < 0) {
			snprintf(err, errlen, "chroot %s: %s", dir, strerror(errno));
			return -1;
		}
	}
	if (initgroups(p.user, p.gid) < 0) {
		snprintf(err, errlen, "initgroups(%s): %s", p.user, strerror(errno));
		return -1;
	}
	if (setresgid(p.gid, p.gid, p.gid) < 0) {
		snprintf(err, errlen, "setgid(%s): %s", p.group, strerror(errno));
		return -1;
	}
	if (setresuid(p.uid, p.uid, p.uid) < 0) {
		snprintf(err, errlen, "setuid(%s): %s", p.user, strerror(errno));
		return -1;
	}
	return verify(err, errlen) < 0 ? -1 : 1;
}
