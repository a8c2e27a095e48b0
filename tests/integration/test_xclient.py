#!/usr/bin/python3
"""XCLIENT to the upstream: sequence, attributes, xtext; xclient = no
with its Received: header; refusal to start without the ack."""

import sys
import os
import re
import subprocess
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from moattest import *  # noqa

OPTS = {"message_size_limit": 1000000}


def mail_session(r):
    ss = r.up.mail_sessions()
    eq(len(ss), 1, "upstream sessions with MAIL")
    return ss[0]


def test_xclient_sequence_and_attrs():
    with Rig(options=OPTS) as r:
        c = r.ehlo_client("client.test")
        expect_reply(c.send_message(make_body()), 250)
        c.quit()
        s = mail_session(r)
        verbs = s.verbs()
        eq(verbs[:4], ["EHLO", "XCLIENT", "EHLO", "MAIL"], "upstream command sequence")
        x = s.xclient[0]
        eq(sorted(x), ["ADDR", "HELO", "NAME", "PORT", "PROTO"], "XCLIENT attributes (LOGIN has no value to send)")
        eq(x["ADDR"], "127.0.0.1", "ADDR")
        eq(x["NAME"], "[UNAVAILABLE]", "NAME")
        eq(x["PORT"], str(c.local_port), "PORT (client's source port)")
        eq(x["PROTO"], "ESMTP", "PROTO")
        eq(x["HELO"], "client.test", "HELO")
        # XCLIENT line format
        line = [cmd for cmd in s.commands if cmd.upper().startswith(b"XCLIENT")][0]
        check(re.fullmatch(rb"XCLIENT( [A-Z]+=\S+)+", line), "XCLIENT line %r" % line)


def test_xclient_proto_smtp_for_helo():
    with Rig(options=OPTS) as r:
        c = r.client()
        c.expect("HELO old.client.test", 250)
        expect_reply(c.send_message(make_body()), 250)
        c.quit()
        x = mail_session(r).xclient[0]
        eq(x.get("PROTO"), "SMTP", "PROTO after HELO")
        eq(x.get("HELO"), "old.client.test", "HELO")


def test_xclient_helo_xtext():
    with Rig(options=OPTS) as r:
        c = r.client()
        c.expect("EHLO client+tag=1.test", 250)
        expect_reply(c.send_message(make_body()), 250)
        c.quit()
        x = mail_session(r).xclient[0]
        eq(x.get("HELO"), "client+2Btag+3D1.test", "xtext-encoded HELO")


def test_xclient_helo_address_literal():
    with Rig(options=OPTS) as r:
        c = r.client()
        c.expect("EHLO [127.0.0.1]", 250)
        expect_reply(c.send_message(make_body()), 250)
        c.quit()
        x = mail_session(r).xclient[0]
        eq(x.get("HELO"), "[127.0.0.1]", "HELO")


def test_xclient_other_source_address():
    with Rig(options=OPTS) as r:
        c = r.client(source="127.0.0.2")
        c.ehlo()
        expect_reply(c.send_message(make_body()), 250)
        c.quit()
        x = mail_session(r).xclient[0]
        eq(x.get("ADDR"), "127.0.0.2", "ADDR")
        eq(x.get("PORT"), str(c.local_port), "PORT")


def test_xclient_only_offered_attrs():
    caps = [c for c in DEFAULT_CAPS if not c.startswith("XCLIENT")] + ["XCLIENT ADDR HELO"]
    with Rig(options=OPTS, up=dict(caps=caps)) as r:
        c = r.ehlo_client()
        expect_reply(c.send_message(make_body()), 250)
        c.quit()
        x = mail_session(r).xclient[0]
        eq(sorted(x), ["ADDR", "HELO"], "XCLIENT attributes sent")


def test_xclient_once_per_upstream_session():
    with Rig(options=OPTS) as r:
        c = r.ehlo_client()
        for i in range(3):
            expect_reply(c.send_message(make_body(subject="n%d" % i)), 250)
        c.quit()
        s = mail_session(r)
        eq(len(s.xclient), 1, "XCLIENT commands in one upstream session")
        eq(len(s.messages), 3, "messages")
        for m in s.messages:
            eq(m.xclient and m.xclient.get("ADDR"), "127.0.0.1", "XCLIENT in effect for each message")


def test_message_unchanged_with_xclient():
    with Rig(options=OPTS) as r:
        c = r.ehlo_client()
        body = make_body()
        expect_reply(c.send_message(body), 250)
        c.quit()
        eq(r.up.wait_messages(1)[0].body, body, "body (no header added with xclient = yes)")


def received_rig():
    return Rig(options=OPTS, xclient=False, proxy_address_untrusted=True,
               up=dict(caps=[c for c in DEFAULT_CAPS if not c.startswith("XCLIENT")]))


def split_first_header(body):
    """Returns (first header with continuation lines, rest)."""
    lines = body.split(b"\r\n")
    n = 1
    while n < len(lines) and lines[n][:1] in (b" ", b"\t"):
        n += 1
    return b"\r\n".join(lines[:n]) + b"\r\n", b"\r\n".join(lines[n:])


def test_xclient_no_received_header():
    with received_rig() as r:
        c = r.ehlo_client("rcvd.client.test")
        body = make_body()
        expect_reply(c.send_message(body), 250)
        c.quit()
        m = r.up.wait_messages(1)[0]
        for s in r.up.sessions:
            eq(s.xclient, [], "XCLIENT sent with xclient = no")
        check(m.body.startswith(b"Received: "), "message does not start with Received: %s" % short(m.body))
        hdr, rest = split_first_header(m.body)
        eq(rest, body, "message after the Received: header")
        h = hdr.decode("utf-8", "replace")
        check("127.0.0.1" in h, "Received: lacks the client address: %r" % h)
        check("rcvd.client.test" in h, "Received: lacks the HELO name: %r" % h)
        check("moat.test" in h, "Received: lacks moatd's hostname: %r" % h)
        check(re.search(r";\s*\w{3}, \d{1,2} \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4}", h),
              "Received: lacks an RFC 5322 date: %r" % h)
        for ln in hdr.split(b"\r\n")[:-1]:
            check(len(ln) <= 998, "Received: line too long")


def test_xclient_no_received_every_message():
    with received_rig() as r:
        c = r.ehlo_client()
        bodies = [make_body(subject="r%d" % i) for i in range(3)] + [b"", b".dot first\r\n"]
        for b in bodies:
            expect_reply(c.send_message(b), 250)
        c.quit()
        ms = r.up.wait_messages(len(bodies))
        for b, m in zip(bodies, ms):
            check(m.body.startswith(b"Received: "), "no Received: on %s" % short(m.body))
            eq(split_first_header(m.body)[1], b, "body after Received:")
            eq(m.data_raw, dot_stuff(m.body), "dot-stuffing")


def test_xclient_no_without_ack_refuses_start():
    up = Upstream().start()
    try:
        port = free_port()
        for ack in (None, False):
            md = Moatd([dict(name="t", listen="127.0.0.1:%d" % port, role="inbound",
                             upstream="127.0.0.1:%d" % up.port, xclient=False,
                             proxy_address_untrusted=ack)], options=OPTS)
            p = subprocess.run(md.argv(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=15)
            check(p.returncode != 0, "moatd started with xclient = no and proxy_address_untrusted = %s" % ack)
            err = p.stderr.decode("utf-8", "replace")
            check(re.search(r"(?i)xclient|proxy_address_untrusted", err),
                  "refusal does not name the problem: %r" % err[-500:])
            check(not re.search(r"AddressSanitizer|runtime error|LeakSanitizer", err), "sanitizer: " + err[-2000:])
            t = subprocess.run(md.argv(["-t"]), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=15)
            eq(t.returncode, 1, "moatd -t exit status with xclient = no, ack %s" % ack)
            check(md.conf.encode() in t.stderr, "-t message does not name the file: %r" % t.stderr[-300:])
            import shutil
            shutil.rmtree(md.tmp, ignore_errors=True)
    finally:
        up.stop()


if __name__ == "__main__":
    sys.exit(run_tests(globals()))
