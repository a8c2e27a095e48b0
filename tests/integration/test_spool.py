#!/usr/bin/python3
"""Spooling: messages over message_memory_limit go to a file in
spool_directory (relayed byte for byte, file removed afterwards); a
spool write failure (full disk) gives 452 4.3.1 and relays nothing."""

import sys
import os
import shutil
import subprocess
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from moattest import *  # noqa


def spool_files(d):
    out = []
    for root, dirs, files in os.walk(d):
        for f in files:
            p = os.path.join(root, f)
            try:
                out.append((p, os.path.getsize(p)))
            except OSError:
                pass
    return out


def spool_fds(md):
    """Files under the spool directory that moatd holds open (an unlinked
    or O_TMPFILE spool file shows up only here): [(target, size)]."""
    out = []
    d = "/proc/%d/fd" % md.proc.pid
    try:
        names = os.listdir(d)
    except OSError:
        return out
    for n in names:
        try:
            t = os.readlink(os.path.join(d, n))
            if t.startswith(md.spool + "/"):
                out.append((t, os.stat(os.path.join(d, n)).st_size))
        except OSError:
            pass
    return out


def spooled(md):
    return spool_files(md.spool) + spool_fds(md)


def big_body(n_lines=4000):
    lines = [("%05d " % i).encode() + b"The quick brown fox jumps over the lazy dog. \xc3\xa4\xc3\xb6" for i in range(n_lines)]
    for i in range(0, n_lines, 97):
        lines[i] = b"." + lines[i]
    lines[5] = b"."
    lines[6] = b""
    lines[7] = b"x" * 998
    return make_body(body_lines=lines)


def test_spool_to_disk_exact():
    opts = {"message_size_limit": 10000000, "message_memory_limit": 8192}
    with Rig(options=opts) as r:
        r.up.eod_delay = 1.5
        c = r.ehlo_client()
        body = big_body()
        check(len(body) > 100000, "test body too small")
        c.expect("MAIL FROM:<a@example.org>", 250)
        c.expect("RCPT TO:<b@example.net>", 250)
        c.expect("DATA", 354)
        c.send(dot_stuff(body))
        # while the upstream sits on its reply, the message is on disk
        files = wait_for(lambda: [f for f in spooled(r.moatd) if f[1] > 8192], 1.4)
        check(files, "no spool file over message_memory_limit in %s while the message was in flight (%r)"
              % (r.moatd.spool, spooled(r.moatd)))
        expect_reply(c.reply(timeout=10), 250)
        m = r.up.wait_messages(1)[0]
        eq(m.body, body, "spooled body at upstream")
        eq(m.data_raw, dot_stuff(body), "spooled wire bytes")
        wait_for(lambda: not spooled(r.moatd), 3)
        eq(spooled(r.moatd), [], "spool files left after the message was relayed")
        # a second spooled message in the same session
        body2 = big_body(3000)
        r.up.eod_delay = 0
        expect_reply(c.send_message(body2), 250)
        c.quit()
        eq(r.up.wait_messages(2)[1].body, body2, "second spooled body")
        wait_for(lambda: not spooled(r.moatd), 3)
        eq(spooled(r.moatd), [], "spool files left")


def test_small_message_stays_in_memory():
    opts = {"message_size_limit": 10000000, "message_memory_limit": 65536}
    with Rig(options=opts) as r:
        r.up.eod_delay = 1.0
        c = r.ehlo_client()
        body = make_body()
        c.expect("MAIL FROM:<a@example.org>", 250)
        c.expect("RCPT TO:<b@example.net>", 250)
        c.expect("DATA", 354)
        c.send(dot_stuff(body))
        time.sleep(0.5)
        files = spooled(r.moatd)
        expect_reply(c.reply(), 250)
        c.quit()
        eq(files, [], "spool files for a message under message_memory_limit")


def test_spool_file_removed_on_reject():
    opts = {"message_size_limit": 10000000, "message_memory_limit": 4096}
    with Rig(options=opts) as r:
        c = r.ehlo_client()
        r.up.replies = {"eod": "554 5.7.1 no"}
        expect_reply(c.send_message(big_body(1000)), 554)
        r.up.replies = {"eod": "451 4.3.0 later"}
        expect_reply(c.send_message(big_body(1000)), 451)
        # bare LF in a spooled message
        c.expect("MAIL FROM:<a@example.org>", 250)
        c.expect("RCPT TO:<b@example.net>", 250)
        c.expect("DATA", 354)
        c.send(dot_stuff(big_body(1000))[:-3] + b"x\n.\nmore\r\n.\r\n")
        expect_reply(c.reply(), 550, "5.5.2")
        # client disconnects mid-DATA with a spooled partial message
        c2 = r.ehlo_client()
        c2.expect("MAIL FROM:<a@example.org>", 250)
        c2.expect("RCPT TO:<b@example.net>", 250)
        c2.expect("DATA", 354)
        c2.send(dot_stuff(big_body(1000))[:-3])
        time.sleep(0.3)
        c2.close()
        c.quit()
        wait_for(lambda: not spooled(r.moatd), 3)
        eq(spooled(r.moatd), [], "spool files left behind")


def tmpfs_wrapper(spool, size="64k"):
    def wrap(argv):
        cmd = "mount -t tmpfs -o size=%s tmpfs '%s' && exec \"$@\"" % (size, spool)
        return ["unshare", "-m", "sh", "-c", cmd, "sh"] + argv
    return wrap


def test_spool_disk_full():
    opts = {"message_size_limit": 10000000, "message_memory_limit": 8192}
    r = Rig(options=opts)
    r.moatd.wrapper = tmpfs_wrapper(r.moatd.spool)
    with r:
        c = r.ehlo_client()
        body = big_body(4000)   # ~260 KB > 64 KB tmpfs
        c.expect("MAIL FROM:<a@example.org>", 250)
        c.expect("RCPT TO:<b@example.net>", 250)
        c.expect("DATA", 354)
        c.send(dot_stuff(body))
        expect_reply(c.reply(timeout=10), 452, "4.3.1", "spool write failure (disk full)")
        time.sleep(0.3)
        eq(r.up.messages, [], "messages at upstream")
        eq(r.up.data_commands(), [], "DATA commands at upstream")
        # the session and the daemon go on: a small message, then a spooled
        # one that fits, then the big one fails again
        small = make_body()
        expect_reply(c.send_message(small), 250, None, "small message after the failure")
        fits = big_body(300)     # ~20 KB: spooled, fits in 64k
        expect_reply(c.send_message(fits), 250, None, "spooled message that fits")
        expect_reply(c.send_message(body), 452, "4.3.1", "big message again")
        c.quit()
        ms = r.up.wait_messages(2)
        time.sleep(0.2)
        eq([m.body for m in r.up.messages], [small, fits], "messages at upstream")
        r.moatd.wait_log(r"msg .*result=(tempfailed|failed)")


def test_spool_directory_missing():
    # spool directory removed after start: spooled message gets 452 4.3.1, small ones pass
    opts = {"message_size_limit": 10000000, "message_memory_limit": 8192}
    with Rig(options=opts) as r:
        shutil.rmtree(r.moatd.spool)
        c = r.ehlo_client()
        expect_reply(c.send_message(big_body(2000)), 452, "4.3.1", "spool directory missing")
        expect_reply(c.send_message(make_body()), 250, None, "small message")
        c.quit()
        eq(len(r.up.wait_messages(1)), 1, "messages at upstream")


if __name__ == "__main__":
    sys.exit(run_tests(globals()))
