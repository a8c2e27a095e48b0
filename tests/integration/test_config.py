#!/usr/bin/python3
"""Configuration: moatd -t with good and bad files (errors reported as
FILE:LINE: message, exit 1), -o overrides, include(), the shipped
example configuration."""

import sys
import os
import re
import shutil
import subprocess
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from moattest import *  # noqa

SAN = re.compile(r"AddressSanitizer|LeakSanitizer|runtime error:")


def run_moatd(args, timeout=10):
    if not os.access(MOATD, os.X_OK):
        fail("moatd binary %s not built" % MOATD)
    try:
        p = subprocess.run([MOATD] + args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=timeout)
    except subprocess.TimeoutExpired:
        fail("moatd %s did not exit within %ds" % (" ".join(args), timeout))
    err = p.stderr.decode("utf-8", "replace")
    check(not SAN.search(err), "sanitizer report: " + err[-2000:])
    return p.returncode, p.stdout.decode("utf-8", "replace"), err


class Conf:
    def __init__(self, lines):
        self.dir = tempfile.mkdtemp(prefix="moattest.conf.")
        os.makedirs(os.path.join(self.dir, "spool"))
        self.path = os.path.join(self.dir, "moat.conf")
        self.write(lines)

    def write(self, lines):
        with open(self.path, "w") as f:
            f.write("\n".join(lines) + "\n")

    def __enter__(self):
        return self

    def __exit__(self, *a):
        shutil.rmtree(self.dir, ignore_errors=True)


def good_lines(d, port=None, uport=None):
    port = port or free_port()
    uport = uport or free_port()
    return [
        'syslog_facility = "mail"',                          # 1
        'hostname = "conf.test"',                            # 2
        'max_connections = 10',                              # 3
        'message_size_limit = 100000',                       # 4
        'spool_directory = "%s/spool"' % d,                  # 5
        'pid_file = "%s/moatd.pid"' % d,                     # 6
        'listener one {',                                    # 7
        '    listen = "127.0.0.1:%d"' % port,                # 8
        '    role = "inbound"',                              # 9
        '    upstream = "127.0.0.1:%d"' % uport,             # 10
        '    xclient = yes',                                 # 11
        '}',                                                 # 12
    ]


def test_check_good_config():
    with Conf([]) as c:
        c.write(good_lines(c.dir))
        rc, out, err = run_moatd(["-t", "-c", c.path])
        eq(rc, 0, "moatd -t exit status on a good file (stderr %r)" % err[-300:])


def test_check_does_not_listen():
    with Conf([]) as c:
        port = free_port()
        c.write(good_lines(c.dir, port=port))
        t0 = time.time()
        rc, out, err = run_moatd(["-t", "-c", c.path])
        eq(rc, 0, "exit status")
        check(not port_listening(port), "port listening after -t")


def test_check_shipped_example():
    rc, out, err = run_moatd(["-t", "-c", os.path.join(ROOT, "conf", "moat.conf")])
    eq(rc, 0, "moatd -t conf/moat.conf exit status (stderr %r)" % err[-500:])


def bad_case(lineno, bad_line, replace=True, extra_check=None):
    with Conf([]) as c:
        lines = good_lines(c.dir)
        if replace:
            lines[lineno - 1] = bad_line
        else:
            lines.insert(lineno - 1, bad_line)
        c.write(lines)
        rc, out, err = run_moatd(["-t", "-c", c.path])
        eq(rc, 1, "moatd -t exit status for %r at line %d (stderr %r)" % (bad_line, lineno, err[-300:]))
        want = "%s:%d:" % (c.path, lineno)
        check(want in err, "stderr lacks %r: %r" % (want, err[-500:]))
        ln = [l for l in err.splitlines() if want in l][0]
        check(re.match(re.escape(want) + r" ?\S", ln), "no message after FILE:LINE: in %r" % ln)
        if extra_check:
            extra_check(err)
        # and it refuses to run with it
        rc2, out2, err2 = run_moatd(["-f", "-c", c.path], timeout=10)
        check(rc2 != 0, "moatd ran with a bad config (exit %s)" % rc2)


def test_check_line_numbers_after_comments():
    # the shipped moat.conf is mostly comments: line numbers must count them once
    with Conf([]) as c:
        lines = good_lines(c.dir)
        lines[0] = "# a comment line"
        lines.insert(1, "   # an indented comment")
        lines.insert(2, "")
        lines.insert(3, 'hostname = "x.test"   # trailing comment')
        lines[5] = 'max_connections = "lots"'    # line 6
        c.write(lines)
        rc, out, err = run_moatd(["-t", "-c", c.path])
        eq(rc, 1, "exit status")
        check("%s:6:" % c.path in err, "want the error at line 6 (after comment lines): %r" % err[-300:])


def test_check_syntax_error():
    bad_case(4, 'message_size_limit = = 5 {')


def test_check_unterminated_section():
    with Conf([]) as c:
        lines = good_lines(c.dir)[:-1]   # no closing brace
        c.write(lines)
        rc, out, err = run_moatd(["-t", "-c", c.path])
        eq(rc, 1, "exit status (stderr %r)" % err[-300:])
        check(re.search(re.escape(c.path) + r":\d+:", err), "no FILE:LINE: in %r" % err[-300:])


def test_check_unknown_option():
    bad_case(3, 'frobnicate_level = 11', extra_check=lambda e: check("frobnicate_level" in e, "message does not name the option: %r" % e))


def test_check_bad_integer():
    bad_case(3, 'max_connections = "lots"')


def test_check_negative_limit():
    bad_case(4, 'message_size_limit = -5')


def test_check_bad_boolean():
    bad_case(11, '    xclient = perhaps')


def test_check_bad_role():
    bad_case(9, '    role = "outbound"')


def test_check_bad_listen_address():
    bad_case(8, '    listen = "127.0.0.1:99999"')


def test_check_bad_listen_host():
    bad_case(8, '    listen = "not an address"')


def test_check_bad_upstream():
    bad_case(10, '    upstream = "127.0.0.1"')


def test_check_unknown_listener_option():
    bad_case(9, '    colour = "blue"', replace=False)


def test_check_missing_upstream():
    with Conf([]) as c:
        lines = good_lines(c.dir)
        del lines[9]
        c.write(lines)
        rc, out, err = run_moatd(["-t", "-c", c.path])
        eq(rc, 1, "exit status without upstream (stderr %r)" % err[-300:])
        check(c.path + ":" in err, "stderr does not name the file: %r" % err[-300:])


def test_check_no_listener():
    with Conf([]) as c:
        c.write(good_lines(c.dir)[:6])
        rc, out, err = run_moatd(["-t", "-c", c.path])
        eq(rc, 1, "exit status without any listener (stderr %r)" % err[-300:])


def test_check_several_errors_reported():
    with Conf([]) as c:
        lines = good_lines(c.dir)
        lines[2] = 'max_connections = "x"'
        lines[8] = '    role = "outbound"'
        c.write(lines)
        rc, out, err = run_moatd(["-t", "-c", c.path])
        eq(rc, 1, "exit status")
        check("%s:3:" % c.path in err, "line 3 error missing: %r" % err[-500:])


def test_check_missing_file():
    rc, out, err = run_moatd(["-t", "-c", "/nonexistent/moat.conf"])
    eq(rc, 1, "exit status for a missing file")
    check("/nonexistent/moat.conf" in err, "message does not name the file: %r" % err)


def test_check_garbage_file():
    with Conf([]) as c:
        with open(c.path, "wb") as f:
            f.write(b"\x00\x01\x02garbage {{{ \xff\xfe\n}}}}\n")
        rc, out, err = run_moatd(["-t", "-c", c.path])
        eq(rc, 1, "exit status for a garbage file")
        check(c.path + ":" in err, "no FILE: prefix: %r" % err[-300:])


def test_check_override_bad_value():
    with Conf([]) as c:
        c.write(good_lines(c.dir))
        rc, out, err = run_moatd(["-t", "-c", c.path, "-o", "max_connections=abc"])
        eq(rc, 1, "-o max_connections=abc exit status")
        rc, out, err = run_moatd(["-t", "-c", c.path, "-o", "no_such_option=1"])
        eq(rc, 1, "-o no_such_option=1 exit status")
        rc, out, err = run_moatd(["-t", "-c", c.path, "-o", "listener.nosuch.role=inbound"])
        check(rc == 1, "-o for a listener that does not exist: exit %s" % rc)
        rc, out, err = run_moatd(["-t", "-c", c.path, "-o", "listener.one.role=outbound"])
        eq(rc, 1, "-o listener.one.role=outbound exit status")
        rc, out, err = run_moatd(["-t", "-c", c.path, "-o", "garbage-without-equals"])
        eq(rc, 1, "-o without '=' exit status")


def test_check_override_good_value():
    with Conf([]) as c:
        c.write(good_lines(c.dir))
        rc, out, err = run_moatd(["-t", "-c", c.path, "-o", "max_connections=5", "-o", "listener.one.xclient=yes"])
        eq(rc, 0, "-t with good -o (stderr %r)" % err[-300:])


def test_check_override_xclient_no():
    with Conf([]) as c:
        c.write(good_lines(c.dir))
        rc, out, err = run_moatd(["-t", "-c", c.path, "-o", "listener.one.xclient=no"])
        eq(rc, 1, "-o listener.one.xclient=no without the ack")
        rc, out, err = run_moatd(["-t", "-c", c.path, "-o", "listener.one.xclient=no",
                                  "-o", "listener.one.proxy_address_untrusted=yes"])
        eq(rc, 0, "xclient=no with the ack (stderr %r)" % err[-300:])


def test_unknown_command_line_flag():
    rc, out, err = run_moatd(["-Z"])
    check(rc != 0, "moatd -Z exit status %s" % rc)


def test_override_hostname_runtime():
    with Rig(overrides=["hostname=override.test"]) as r:
        c = r.client()
        check(c.greeting.lines[0].startswith("220 override.test "), "greeting %s" % c.greeting)
        c.quit()


def test_override_listener_upstream_and_limit():
    up_real = Upstream()
    # config points at a dead port; -o points at the real upstream
    with up_real:
        dead = free_port()
        r = Rig(overrides=["listener.test.upstream=127.0.0.1:%d" % up_real.port,
                           "message_size_limit=4321"], start_upstream=False, upstream_port=dead, wait_probe=False)
        with r:
            c = r.ehlo_client()
            rep = c.expect("EHLO x.test", 250)
            check(any(l[4:] == "SIZE 4321" for l in rep.lines), "EHLO %s: want SIZE 4321 from -o" % rep)
            expect_reply(c.send_message(make_body()), 250, None, "relay to the -o upstream")
            c.quit()
            eq(len(up_real.wait_messages(1)), 1, "messages at the -o upstream")


def test_override_listener_listen():
    port2 = free_port()
    with Upstream() as up:
        md = Moatd([dict(name="test", listen="127.0.0.1:%d" % free_port(), role="inbound",
                         upstream="127.0.0.1:%d" % up.port, xclient=True)],
                   overrides=["listener.test.listen=127.0.0.1:%d" % port2])
        md.listeners[0]["listen"] = "127.0.0.1:%d" % port2  # what start() waits for
        try:
            md.start()
            c = Client(port2)
            expect_reply(c.greeting, 220)
            c.quit()
        finally:
            md.stop()
        shutil.rmtree(md.tmp, ignore_errors=True)


def test_include_file():
    with Upstream() as up:
        d = tempfile.mkdtemp(prefix="moattest.inc.")
        try:
            inc = os.path.join(d, "limits.conf")
            with open(inc, "w") as f:
                f.write('hostname = "included.test"\nmax_recipients = 2\n')
            md = Moatd([dict(name="test", listen="127.0.0.1:%d" % free_port(), role="inbound",
                             upstream="127.0.0.1:%d" % up.port, xclient=True)],
                       extra_conf='include("%s")' % inc)
            # hostname from the generated file would win if set first: drop it
            del md.options["hostname"]
            md.write_config()
            rc, out, err = run_moatd(["-t", "-c", md.conf])
            eq(rc, 0, "-t with include (stderr %r)" % err[-300:])
            md.start()
            try:
                port = int(md.listeners[0]["listen"].rsplit(":", 1)[1])
                c = Client(port)
                check(c.greeting.lines[0].startswith("220 included.test "), "greeting %s" % c.greeting)
                c.ehlo()
                c.expect("MAIL FROM:<a@example.org>", 250)
                c.expect("RCPT TO:<b1@example.net>", 250)
                c.expect("RCPT TO:<b2@example.net>", 250)
                c.expect("RCPT TO:<b3@example.net>", 452, "4.5.3")
                c.quit()
            finally:
                md.stop()
            shutil.rmtree(md.tmp, ignore_errors=True)
        finally:
            shutil.rmtree(d, ignore_errors=True)


def test_two_listeners():
    with Upstream() as up1, Upstream() as up2:
        p1, p2 = free_port(), free_port()
        md = Moatd([dict(name="in", listen="127.0.0.1:%d" % p1, role="inbound",
                         upstream="127.0.0.1:%d" % up1.port, xclient=True),
                    dict(name="sub", listen="127.0.0.1:%d" % p2, role="submission",
                         upstream="127.0.0.1:%d" % up2.port, xclient=True)])
        md.start()
        try:
            for port, tag in ((p1, "one"), (p2, "two")):
                c = Client(port)
                c.ehlo()
                expect_reply(c.send_message(make_body(subject=tag)), 250)
                c.quit()
            m1 = up1.wait_messages(1)
            m2 = up2.wait_messages(1)
            check(b"Subject: one" in m1[0].body and b"Subject: two" in m2[0].body,
                  "messages went to the wrong upstream")
        finally:
            md.stop()
        shutil.rmtree(md.tmp, ignore_errors=True)


def test_listen_port_in_use():
    import socket as _s
    blocker = _s.socket()
    blocker.setsockopt(_s.SOL_SOCKET, _s.SO_REUSEADDR, 1)
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    port = blocker.getsockname()[1]
    try:
        with Upstream() as up:
            md = Moatd([dict(name="t", listen="127.0.0.1:%d" % port, role="inbound",
                             upstream="127.0.0.1:%d" % up.port, xclient=True)])
            rc, out, err = run_moatd(md.argv()[1:], timeout=10)
            check(rc != 0, "moatd exit status %s with its port in use" % rc)
            check(err.strip(), "no error message with the port in use")
            shutil.rmtree(md.tmp, ignore_errors=True)
    finally:
        blocker.close()


if __name__ == "__main__":
    sys.exit(run_tests(globals()))
