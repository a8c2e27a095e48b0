/*
 * ctl.c - `moat status` and `moat reload`, and the client of moatd's
 * control socket they and `moat rep` share (proxy/control.c has the
 * protocol: one command line, then "ok" or "error" and the answer's
 * text until moatd closes).
 *
 * The socket is the one -s names (after the command: `moat reload -s
 * /run/moat/control`), else the control_socket of the configuration
 * (-c, -o); -s reaches moatd even when the file has errors, which is
 * when `moat reload` has something to say.
 * Exit status: 0 ok, 1 moatd answered an error (a reload refused: each
 * configuration error on stderr), 2 moatd could not be reached, 64
 * usage. Owns the connection of the run.
 */
#include "ctl.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define TIMEOUT_MS 30000

static int connect_to(const char *path)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(sun.sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	strcpy(sun.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

/* Reads until moatd closes; the answer into buf (NUL-terminated). */
static int read_all(int fd, char *buf, size_t len)
{
	size_t used = 0;
	struct pollfd p = {.fd = fd, .events = POLLIN};
	while (used + 1 < len) {
		if (poll(&p, 1, TIMEOUT_MS) <= 0)
			return -1;
		ssize_t n = read(fd, buf + used, len - 1 - used);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			break;
		used += (size_t)n;
	}
	buf[used] = '\0';
	return 0;
}

const char *moat_ctl_socket(const struct moat_config *c, int *argc, char ***argv)
{
	if (*argc >= 3 && strcmp((*argv)[1], "-s") == 0) {
		const char *path = (*argv)[2];
		(*argv)[2] = (*argv)[0];
		*argv += 2;
		*argc -= 2;
		return path;
	}
	if (!c) {
		fprintf(stderr, "moat: the configuration has errors (see moat config); name the "
			"control socket with -s\n");
		return NULL;
	}
	if (!c->control_socket || !*c->control_socket) {
		fprintf(stderr, "moat: control_socket is not set in %s (or use -s)\n", c->path);
		return NULL;
	}
	return c->control_socket;
}

int moat_ctl_request(const char *path, const char *line)
{
	return moat_ctl_ask(path, line, 0);
}

int moat_ctl_ask(const char *path, const char *line, int quiet_unreachable)
{
	char answer[65536];
	int fd = connect_to(path);
	if (fd < 0) {
		if (!quiet_unreachable)
			fprintf(stderr, "moat: cannot reach moatd at %s: %s\n", path,
				strerror(errno));
		return quiet_unreachable ? MOAT_CTL_UNREACHABLE : 2;
	}
	size_t len = strlen(line);
	if (write(fd, line, len) != (ssize_t)len || write(fd, "\n", 1) != 1 ||
	    read_all(fd, answer, sizeof(answer)) < 0) {
		fprintf(stderr, "moat: control socket %s: %s\n", path,
			errno ? strerror(errno) : "no answer");
		close(fd);
		return 2;
	}
	close(fd);
	char *text = strchr(answer, '\n');
	text = text ? text + 1 : answer + strlen(answer);
	if (strncmp(answer, "ok\n", 3) == 0) {
		fputs(text, stdout);
		return 0;
	}
	if (strncmp(answer, "error\n", 6) == 0) {
		fputs(text, stderr);
		return 1;
	}
	fprintf(stderr, "moat: control socket %s: unexpected answer\n", path);
	return 2;
}

static int simple(const struct moat_config *c, int argc, char **argv, const char *line)
{
	const char *path = moat_ctl_socket(c, &argc, &argv);
	if (argc != 1) {
		fprintf(stderr, "usage: moat %s [-s SOCKET]\n", line);
		return 64;
	}
	return path ? moat_ctl_request(path, line) : 2;
}

int moat_cli_status(const struct moat_config *c, int argc, char **argv)
{
	return simple(c, argc, argv, "status");
}

int moat_cli_reload(const struct moat_config *c, int argc, char **argv)
{
	return simple(c, argc, argv, "reload");
}
