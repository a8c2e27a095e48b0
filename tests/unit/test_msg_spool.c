/*
 * test_msg_spool - proxy/msg_spool.c: memory, the move to an unlinked
 * file past the bound, reading back at any offset, nothing left on disk.
 */
#include "msg_spool.h"
#include "unit.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[] = "/tmp/moat-spool-test.XXXXXX";

static int files_in_dir(void)
{
	int n = 0;
	DIR *d = opendir(dir);
	struct dirent *e;
	while (d && (e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	if (d)
		closedir(d);
	return n;
}

TEST(small_message_stays_in_memory)
{
	struct msg_spool *s = msg_spool_new(dir, 100);
	char buf[64];
	CHECK(s != NULL);
	CHECK(msg_spool_write(s, "hello\r\n", 7) == 0);
	CHECK(msg_spool_write(s, "world\r\n", 7) == 0);
	CHECK(msg_spool_size(s) == 14 && !msg_spool_on_disk(s));
	CHECK(msg_spool_read(s, 0, buf, sizeof(buf)) == 14);
	CHECK(memcmp(buf, "hello\r\nworld\r\n", 14) == 0);
	CHECK(msg_spool_read(s, 7, buf, 3) == 3 && memcmp(buf, "wor", 3) == 0);
	CHECK(msg_spool_read(s, 14, buf, 10) == 0);
	msg_spool_free(s);
}

TEST(large_message_moves_to_unlinked_file)
{
	struct msg_spool *s = msg_spool_new(dir, 1000);
	char line[100], buf[256];
	size_t total = 0;
	CHECK(s != NULL);
	for (int i = 0; i < 500; i++) {
		int n = snprintf(line, sizeof(line), "line %04d of the message\r\n", i);
		CHECK(msg_spool_write(s, line, (size_t)n) == 0);
		total += (size_t)n;
	}
	CHECK(msg_spool_on_disk(s));
	CHECK(msg_spool_size(s) == total);
	CHECK(files_in_dir() == 0);	/* O_TMPFILE or unlinked at once */
	/* line 0 (moved from memory) and line 499 (written to the file) */
	CHECK(msg_spool_read(s, 0, buf, 26) == 26 && memcmp(buf, "line 0000 of the message\r\n", 26) == 0);
	CHECK(msg_spool_read(s, total - 26, buf, sizeof(buf)) == 26);
	CHECK(memcmp(buf, "line 0499 of the message\r\n", 26) == 0);
	msg_spool_free(s);
}

TEST(zero_memory_limit_goes_to_disk_at_once)
{
	struct msg_spool *s = msg_spool_new(dir, 0);
	char buf[8];
	CHECK(msg_spool_write(s, "x\r\n", 3) == 0);
	CHECK(msg_spool_on_disk(s));
	CHECK(msg_spool_read(s, 0, buf, sizeof(buf)) == 3);
	msg_spool_free(s);
}

TEST(missing_directory_is_an_error_not_a_crash)
{
	struct msg_spool *s = msg_spool_new("/nonexistent/moat-spool", 4);
	CHECK(msg_spool_write(s, "abc", 3) == 0);
	errno = 0;
	CHECK(msg_spool_write(s, "defgh", 5) == -1);
	CHECK(errno == ENOENT);
	msg_spool_free(s);
}

int main(void)
{
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	RUN(small_message_stays_in_memory);
	RUN(large_message_moves_to_unlinked_file);
	RUN(zero_memory_limit_goes_to_disk_at_once);
	RUN(missing_directory_is_an_error_not_a_crash);
	rmdir(dir);
	return unit_done();
}
