#!/usr/bin/python3
"""Realism: swaks -> moatd -> Postfix's smtp-sink, checking what arrived
in smtp-sink's per-message dump files (-d)."""

import sys
import os
import glob
import re
import shutil
import subprocess
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from moattest import *  # noqa


class Sink:
    """smtp-sink on a free port dumping each message to dir (-d)."""

    def __init__(self, extra=()):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="moattest.sink.")
        os.chmod(self.dir, 0o777)
        self.extra = list(extra)
        self.proc = None

    def start(self):
        if not os.access(SMTP_SINK, os.X_OK):
            fail("smtp-sink not installed (%s)" % SMTP_SINK)
        argv = [SMTP_SINK, "-u", "nobody", "-h", "sink.test", "-d", self.dir + "/%H%M%S."] + \
            self.extra + ["127.0.0.1:%d" % self.port, "100"]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_for(lambda: port_listening(self.port), 5, what="smtp-sink listening")
        return self

    def stop(self):
        if self.proc:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def dumps(self):
        out = []
        for p in sorted(glob.glob(os.path.join(self.dir, "*"))):
            with open(p, "rb") as f:
                out.append(f.read())
        return out

    def wait_dumps(self, n, timeout=5):
        wait_for(lambda: len(self.dumps()) >= n, timeout, what="%d smtp-sink dump(s), have %d" % (n, len(self.dumps())))
        return self.dumps()

    def __enter__(self):
        return self.start()

    def __exit__(self, *a):
        self.stop()


def sink_moatd(sink, xclient=True, ack=None, options=None):
    port = free_port()
    opts = {"message_size_limit": 10000000}
    opts.update(options or {})
    md = Moatd([dict(name="sink", listen="127.0.0.1:%d" % port, role="inbound",
                     upstream="127.0.0.1:%d" % sink.port, xclient=xclient,
                     proxy_address_untrusted=ack)], options=opts)
    return md, port


class SinkRig:
    """smtp-sink answers XCLIENT with 250 (Postfix's smtpd with 220, which
    moatd requires), so by default moatd runs with xclient = no and
    smtp-sink with -C (no XCLIENT)."""

    def __init__(self, sink_extra=("-C",), xclient=False, ack=True, **kw):
        kw.update(xclient=xclient, ack=ack)
        self.sink = Sink(sink_extra)
        self.kw = kw

    def __enter__(self):
        self.sink.start()
        self.moatd, self.port = sink_moatd(self.sink, **self.kw)
        # register for the runner's diagnostics
        self.rig = type("R", (), {})()
        self.rig.moatd = self.moatd
        self.rig.up = Upstream()
        import moattest
        moattest._current_rigs.append(self.rig)
        try:
            self.moatd.start()
        except BaseException:
            self.sink.stop()
            raise
        return self

    def __exit__(self, et, ev, tb):
        try:
            self.moatd.stop(check_exit=et is None)
        finally:
            self.sink.stop()
        return False


def swaks_ok(port, *args):
    rc, out = swaks(["--server", "127.0.0.1:%d" % port] + list(args), timeout=30)
    if rc != 0:
        fail("swaks exit %d: %s" % (rc, out[-1500:]))
    return out


def parse_dump(d):
    """-> (dict of smtp-sink's X- records (lists), message bytes)."""
    lines = d.split(b"\n")
    recs = {}
    i = 0
    while i < len(lines):
        ln = lines[i]
        if ln.startswith(b"Received: from "):
            i += 3   # smtp-sink's three-line Received: header
            break
        k, _, v = ln.partition(b": ")
        recs.setdefault(k.decode(), []).append(v.decode("utf-8", "replace"))
        i += 1
    return recs, b"\n".join(lines[i:])


def test_swaks_several_messages():
    with SinkRig() as s:
        for i in range(4):
            out = swaks_ok(s.port, "--ehlo", "swaks%d.client.test" % i, "--from", "from%d@example.org" % i,
                           "--to", "to%d@example.net,cc%d@example.net" % (i, i),
                           "--header", "Subject: swaks message %d" % i,
                           "--body", "Body of message %d\n.leading dot\n..two dots\n.\nend" % i)
            check("<-  250 2.0.0 Ok" in out or "<-  250 " in out.split("-> .")[-1], "swaks output: %s" % out[-500:])
        dumps = s.sink.wait_dumps(4)
        eq(len(dumps), 4, "messages at smtp-sink")
        seen = set()
        for d in dumps:
            recs, msg = parse_dump(d)
            m = re.search(rb"Subject: swaks message (\d)", msg)
            check(m, "no subject in %s" % short(msg))
            i = int(m.group(1))
            seen.add(i)
            eq(recs["X-Client-Addr"], ["127.0.0.1"], "X-Client-Addr")
            eq(recs["X-Client-Proto"], ["ESMTP"], "X-Client-Proto")
            eq(recs["X-Mail-Args"], ["<from%d@example.org>" % i], "X-Mail-Args")
            eq(recs["X-Rcpt-Args"], ["<to%d@example.net>" % i, "<cc%d@example.net>" % i], "X-Rcpt-Args")
            check(msg.startswith(b"Received: "), "no Received: from moatd first: %s" % short(msg))
            first = msg.split(b"\n")[0]
            check(("swaks%d.client.test" % i).encode() in msg.split(b"\nDate:")[0],
                  "moatd's Received: lacks the client's HELO: %s" % short(msg[:400]))
            want = ("Body of message %d\n.leading dot\n..two dots\n.\nend" % i).encode()
            check(want in msg.replace(b"\r\n", b"\n"), "body (dots) wrong: %s" % short(msg))
        eq(seen, {0, 1, 2, 3}, "messages seen")


def test_swaks_xclient_250_reply():
    # smtp-sink answers XCLIENT with "250" where Postfix's smtpd says
    # "220": moatd (which wants 220) tempfails with 451 4.3.5.
    with SinkRig(sink_extra=(), xclient=True, ack=None) as s:
        rc, out = swaks(["--server", "127.0.0.1:%d" % s.port, "--from", "a@example.org", "--to", "b@example.net"])
        check("451 4.3.5" in out, "swaks through moatd (xclient) to smtp-sink: %s" % out[-600:])
        eq(s.sink.dumps(), [], "messages at smtp-sink")


def test_swaks_pipelining_and_8bit():
    with SinkRig() as s:
        body = "Gr\u00fc\u00dfe \u2014 8-bit body\nline 2"
        out = swaks_ok(s.port, "--pipeline", "--from", "p@example.org", "--to", "q@example.net",
                       "--header", "Subject: pipelined", "--body", body,
                       "--add-header", "Content-Type: text/plain; charset=utf-8",
                       "--add-header", "Content-Transfer-Encoding: 8bit")
        recs, msg = parse_dump(s.sink.wait_dumps(1)[0])
        check(body.encode("utf-8") in msg.replace(b"\r\n", b"\n"), "8-bit body: %s" % short(msg))


def test_swaks_attachment():
    with SinkRig() as s:
        d = tempfile.mkdtemp(prefix="moattest.att.")
        try:
            att = os.path.join(d, "data.bin")
            with open(att, "wb") as f:
                f.write(os.urandom(150000))
            swaks_ok(s.port, "--from", "a@example.org", "--to", "b@example.net", "--attach", "@" + att)
            recs, msg = parse_dump(s.sink.wait_dumps(1)[0])
            check(len(msg) > 200000, "attachment message too small at smtp-sink: %d" % len(msg))
        finally:
            shutil.rmtree(d, ignore_errors=True)


def test_swaks_spooled_large():
    with SinkRig(options={"message_memory_limit": 16384}) as s:
        lines = "\n".join("line %05d %s" % (i, "y" * 60) for i in range(6000))
        bf = os.path.join(s.sink.dir, "..", os.path.basename(s.sink.dir) + ".body")
        with open(bf, "w") as f:
            f.write(lines)
        try:
            swaks_ok(s.port, "--from", "a@example.org", "--to", "b@example.net", "--body", "@" + bf)
        finally:
            os.unlink(bf)
        recs, msg = parse_dump(s.sink.wait_dumps(1)[0])
        check(lines.encode() in msg.replace(b"\r\n", b"\n"), "large body not intact at smtp-sink")


def test_swaks_xclient_no_received():
    with SinkRig() as s:
        swaks_ok(s.port, "--ehlo", "plain.client.test", "--from", "a@example.org", "--to", "b@example.net",
                 "--header", "Subject: received test")
        recs, msg = parse_dump(s.sink.wait_dumps(1)[0])
        check(msg.startswith(b"Received: "), "message at smtp-sink does not start with moatd's Received: %s" % short(msg))
        first = msg.split(b"\n\n")[0]
        check(b"plain.client.test" in first and b"127.0.0.1" in first, "Received: %s" % short(first))


def test_swaks_refusals():
    with SinkRig() as s:
        rc, out = swaks(["--server", "127.0.0.1:%d" % s.port, "--from", "a@example.org", "--to", "b@example.net",
                         "-tls"], timeout=30)
        check(rc != 0, "swaks -tls succeeded through moatd (STARTTLS must not be offered)")
        check("STARTTLS" not in [l.split()[-1] for l in out.splitlines() if l.startswith("<-  250")],
              "STARTTLS advertised")
        rc, out = swaks(["--server", "127.0.0.1:%d" % s.port, "--from", "a@example.org", "--to", "b@example.net",
                         "--body", "x" * 50, "--header", "X-Long: " + "L" * 1200], timeout=30)
        check(rc != 0 and "552" in out, "over-long header line: swaks rc=%d %s" % (rc, out[-600:]))
        time.sleep(0.3)
        eq(s.sink.dumps(), [], "messages at smtp-sink")


if __name__ == "__main__":
    sys.exit(run_tests(globals()))
