/*
 * msg_spool.h - hold one message between the client's final dot and the
 * upstream's reply: in memory up to a bound, then in an unlinked file.
 *
 * Nothing is acknowledged before the upstream accepts, so the file needs
 * no fsync and no name: it disappears with its descriptor. The spool
 * owns its memory buffer and descriptor; msg_spool_free() releases both.
 */
#ifndef MOAT_MSG_SPOOL_H
#define MOAT_MSG_SPOOL_H

#include <stddef.h>
#include <sys/types.h>

struct msg_spool;

/* dir: where a file is made once the message passes mem_limit octets. */
struct msg_spool *msg_spool_new(const char *dir, size_t mem_limit);
void msg_spool_free(struct msg_spool *s);

/* Appends; returns 0, or -1 with errno set (ENOSPC: the disk is full). */
int msg_spool_write(struct msg_spool *s, const char *buf, size_t len);

size_t msg_spool_size(const struct msg_spool *s);
int msg_spool_on_disk(const struct msg_spool *s);

/* Copies up to len octets from offset off into buf; returns the number
 * copied (0 at the end), or -1 with errno set. */
ssize_t msg_spool_read(const struct msg_spool *s, size_t off, char *buf, size_t len);

#endif
