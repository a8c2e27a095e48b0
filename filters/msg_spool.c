/*
 * msg_spool.c - a message held in memory, moved to an unlinked file in
 * the spool directory when it outgrows the memory bound.
 *
 * Owns the buffer and the descriptor. Writes are synchronous local-disk
 * writes on the loop thread, as Postfix's cleanup does them; they are
 * bounded by message_size_limit.
 */
#include "msg_spool.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct msg_spool {
	char *dir;
	size_t mem_limit;
	char *mem;
	size_t cap;
	size_t size;
	int fd;			/* -1 while in memory */
};

struct msg_spool *msg_spool_new(const char *dir, size_t mem_limit)
{
	struct msg_spool *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->dir = strdup(dir);
	if (!s->dir) {
		free(s);
		return NULL;
	}
	s->mem_limit = mem_limit;
	s->fd = -1;
	return s;
}

void msg_spool_free(struct msg_spool *s)
{
	if (!s)
		return;
	if (s->fd >= 0)
		close(s->fd);
	free(s->mem);
	free(s->dir);
	free(s);
}

static int write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

static int open_file(struct msg_spool *s)
{
	int fd = open(s->dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
		char path[4096];
		snprintf(path, sizeof(path), "%s/moat.XXXXXX", s->dir);
		fd = mkostemp(path, O_CLOEXEC);
		if (fd >= 0)
			unlink(path);
	}
	if (fd < 0)
		return -1;
	if (s->size && write_all(fd, s->mem, s->size) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	free(s->mem);
	s->mem = NULL;
	s->cap = 0;
	s->fd = fd;
	return 0;
}

int msg_spool_write(struct msg_spool *s, const char *buf, size_t len)
{
	if (s->fd < 0 && s->size + len > s->mem_limit && open_file(s) < 0)
		return -1;
	if (s->fd >= 0) {
		if (write_all(s->fd, buf, len) < 0)
			return -1;
		s->size += len;
		return 0;
	}
	if (s->size + len > s->cap) {
		size_t cap = s->cap ? s->cap : 4096;
		while (cap < s->size + len)
			cap *= 2;
		char *m = realloc(s->mem, cap);
		if (!m) {
			errno = ENOMEM;
			return -1;
		}
		s->mem = m;
		s->cap = cap;
	}
	memcpy(s->mem + s->size, buf, len);
	s->size += len;
	return 0;
}

size_t msg_spool_size(const struct msg_spool *s)
{
	return s->size;
}

int msg_spool_on_disk(const struct msg_spool *s)
{
	return s->fd >= 0;
}

ssize_t msg_spool_read(const struct msg_spool *s, size_t off, char *buf, size_t len)
{
	if (off >= s->size)
		return 0;
	if (len > s->size - off)
		len = s->size - off;
	if (s->fd < 0) {
		memcpy(buf, s->mem + off, len);
		return (ssize_t)len;
	}
	for (;;) {
		ssize_t n = pread(s->fd, buf, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		return n;
	}
}
