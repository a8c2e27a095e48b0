/*
 * privilege.c - giving up root: see privilege.h.
 *
 * Order as root: look the user and group up (before a chroot hides
 * /etc/passwd), chroot, the supplementary groups, the group, then the
 * user; then prove it (setuid(0) must fail).
 *
 * moat_privilege_check_read() asks the kernel rather than reading mode
 * bits: a child takes the run user's identity and opens the file, so
 * directories on the way, supplementary groups and ACLs all count.
 * Owns the switch that turns that check on.
 */
#include "privilege.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#define MAX_GROUPS 256

static int check_files;

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

void moat_privilege_check_files(int on)
{
	check_files = on;
}

/* "root", or the number when the id has no name. */
static void id_name(int is_group, unsigned long id, char *buf, size_t len)
{
	struct passwd *pw = is_group ? NULL : getpwuid((uid_t)id);
	struct group *gr = is_group ? getgrgid((gid_t)id) : NULL;

	if (pw)
		snprintf(buf, len, "%s", pw->pw_name);
	else if (gr)
		snprintf(buf, len, "%s", gr->gr_name);
	else
		snprintf(buf, len, "%lu", id);
}

int moat_privilege_check_read(const char *user, const char *group, const char *path,
			      char *err, size_t errlen)
{
	struct moat_privilege p;
	gid_t groups[MAX_GROUPS];
	int ngroups = MAX_GROUPS, status;
	char why[256];

	if (!check_files || geteuid() != 0)
		return 0;
	if (moat_privilege_lookup(user, group, &p, why, sizeof(why)) < 0)
		return 0;
	if (getgrouplist(p.user, p.gid, groups, &ngroups) < 0)
		ngroups = MAX_GROUPS;	/* the first MAX_GROUPS of them */
	pid_t pid = fork();
	if (pid < 0) {
		snprintf(err, errlen, "cannot check that user %s can read %s: fork: %s", p.user,
			 path, strerror(errno));
		return -1;
	}
	if (pid == 0) {
		/* only system calls from here: the child ends with _exit() */
		if (setgroups((size_t)ngroups, groups) < 0 || setresgid(p.gid, p.gid, p.gid) < 0 ||
		    setresuid(p.uid, p.uid, p.uid) < 0)
			_exit(255);
		int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
		_exit(fd < 0 ? (errno > 0 && errno < 255 ? errno : 254) : 0);
	}
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR) {
			snprintf(err, errlen, "cannot check that user %s can read %s: waitpid: %s",
				 p.user, path, strerror(errno));
			return -1;
		}
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	int code = WIFEXITED(status) ? WEXITSTATUS(status) : 255;
	struct stat st;
	char owner[64], grp[64], facts[200] = "";
	if (stat(path, &st) == 0) {
		id_name(0, st.st_uid, owner, sizeof(owner));
		id_name(1, st.st_gid, grp, sizeof(grp));
		snprintf(facts, sizeof(facts), " (owner %s, group %s, mode %04o)", owner, grp,
			 (unsigned)(st.st_mode & 07777));
	}
	if (code == 255 || code == 254)
		snprintf(err, errlen, "cannot check that user %s can read %s: the check could not "
			 "take the user's identity", p.user, path);
	else
		snprintf(err, errlen, "user %s (uid %lu, gid %lu), which moatd runs as, cannot read "
			 "%s: %s%s; moatd reads it again as that user at every reload (e.g. chgrp %s "
			 "and chmod 640 it, and let the user search its directories)", p.user,
			 (unsigned long)p.uid, (unsigned long)p.gid, path, strerror(code), facts,
			 p.group);
	return -1;
}
