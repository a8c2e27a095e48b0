#!/usr/bin/python3
"""SMTP smuggling: bare LF, bare CR and NUL in DATA. Only CRLF.CRLF
ends a message; a message containing any of them gets 550 5.5.2 after
its real end and NOTHING of it reaches the upstream; a "smuggled" MAIL
inside never reaches the upstream as a command."""

import sys
import os
import socket
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from moattest import *  # noqa

OPTS = {"message_size_limit": 1000000}

# sequences that some MTA somewhere took as end-of-data
VARIANTS = {
    "lf_dot_lf": b"\n.\n",
    "lf_dot_crlf": b"\n.\r\n",
    "cr_dot_cr": b"\r.\r",
    "crlf_dot_lf": b"\r\n.\n",
    "crlf_nul_dot_crlf": b"\r\n\x00.\r\n",
    "lf_dot_cr": b"\n.\r",
    "cr_dot_crlf": b"\r.\r\n",
    "crlf_dot_cr": b"\r\n.\r",
    "crlf_dot_cr_cr_lf": b"\r\n.\r\r\n",
    "crlf_dot_nul_crlf": b"\r\n.\x00\r\n",
    "cr_lf_dot_lf": b"\r\r\n.\n",
    "lf_lf_dot_lf_lf": b"\n\n.\n\n",
}

SMUGGLED = (b"MAIL FROM:<smuggled@evil.test>\r\nRCPT TO:<victim@example.net>\r\nDATA\r\n"
            b"From: <ceo@example.net>\r\nSubject: smuggled\r\n\r\nevil body\r\n")


def assert_nothing_relayed(r):
    time.sleep(0.3)
    eq(r.up.messages, [], "messages at upstream")
    eq(r.up.data_commands(), [], "DATA commands at upstream")
    for cmd in r.up.all_commands():
        check(b"smuggled" not in cmd and b"victim" not in cmd, "smuggled command reached upstream: %r" % cmd)
    for s in r.up.sessions:
        check(b"evil body" not in bytes(s.raw), "smuggled bytes reached upstream: %s" % short(bytes(s.raw)))


def smuggle(seq, chunked=False, pipelined=False):
    with Rig(options=OPTS) as r:
        c = r.ehlo_client()
        payload = b"From: <a@example.org>\r\nSubject: carrier\r\n\r\nhello" + seq + SMUGGLED + b"\r\n.\r\n"
        if pipelined:
            c.send(b"MAIL FROM:<carrier@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n")
            for code in (250, 250, 354):
                expect_reply(c.reply(), code)
        else:
            c.expect("MAIL FROM:<carrier@example.org>", 250)
            c.expect("RCPT TO:<b@example.net>", 250)
            c.expect("DATA", 354)
        if chunked:
            c.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for i in range(0, len(payload)):
                c.send(payload[i:i + 1])
                if i % 7 == 0:
                    time.sleep(0.001)
        else:
            c.send(payload)
        rep = c.reply()
        expect_reply(rep, 550, "5.5.2", "message with %r" % seq)
        # nothing more: no second reply for the smuggled commands
        c.send(b"NOOP\r\n")
        expect_reply(c.reply(), 250, None, "NOOP after the 550 (a stray reply would show here)")
        assert_nothing_relayed(r)
        # the session goes on normally
        body = make_body(subject="clean")
        expect_reply(c.send_message(body), 250, None, "clean message after the rejected one")
        c.quit()
        ms = r.up.wait_messages(1)
        eq([m.body for m in ms], [body], "messages at upstream")
        eq(ms[0].mail_from, "sender@example.org", "MAIL FROM of the delivered message")
        r.moatd.wait_log(r"msg .*result=rejected")


def _mk(name, seq, **kw):
    def t():
        smuggle(seq, **kw)
    t.__name__ = name
    return t


for _n, _s in VARIANTS.items():
    globals()["test_smuggle_" + _n] = _mk("test_smuggle_" + _n, _s)

globals()["test_smuggle_lf_dot_lf_bytewise"] = _mk("x", b"\n.\n", chunked=True)
globals()["test_smuggle_cr_dot_cr_bytewise"] = _mk("x", b"\r.\r", chunked=True)
globals()["test_smuggle_crlf_dot_lf_pipelined"] = _mk("x", b"\r\n.\n", pipelined=True)


def one_bad_message(payload, what):
    with Rig(options=OPTS) as r:
        c = r.ehlo_client()
        c.expect("MAIL FROM:<a@example.org>", 250)
        c.expect("RCPT TO:<b@example.net>", 250)
        c.expect("DATA", 354)
        c.send(payload)
        expect_reply(c.reply(), 550, "5.5.2", what)
        c.expect("NOOP", 250)
        c.quit()
        assert_nothing_relayed(r)


def test_bare_lf_in_header():
    one_bad_message(b"Subject: x\nX-Injected: y\r\n\r\nbody\r\n.\r\n", "bare LF in a header")


def test_bare_cr_in_header():
    one_bad_message(b"Subject: x\rX-Injected: y\r\n\r\nbody\r\n.\r\n", "bare CR in a header")


def test_nul_in_body():
    one_bad_message(b"Subject: x\r\n\r\nbo\x00dy\r\n.\r\n", "NUL in the body")


def test_bare_cr_before_end():
    # "hello\r" then the real CRLF.CRLF
    one_bad_message(b"Subject: x\r\n\r\nhello\r\r\n.\r\n", "bare CR right before the end")


def test_bare_lf_at_end_of_body():
    one_bad_message(b"Subject: x\r\n\r\nhello\n\r\n.\r\n", "bare LF at the end")


def test_all_lf_message():
    one_bad_message(b"Subject: unix\n\nline one\nline two\n.\n\r\n.\r\n", "LF-only message")


def test_bare_lf_first_byte():
    one_bad_message(b"\n.\r\n\r\n.\r\n", "bare LF as the first byte")


def test_lf_dot_lf_is_not_end():
    # after "\n.\n" the stream is still DATA: commands sent "after" it get no reply
    with Rig(options=OPTS) as r:
        c = r.ehlo_client()
        c.expect("MAIL FROM:<a@example.org>", 250)
        c.expect("RCPT TO:<b@example.net>", 250)
        c.expect("DATA", 354)
        c.send(b"Subject: x\r\n\r\nhello\n.\nNOOP\r\n")
        try:
            rep = c.reply(timeout=1.0)
            fail("moatd replied %s while the message was not ended (\\n.\\n taken as end of data)" % rep)
        except TestFailure as e:
            if "moatd replied" in str(e):
                raise
        c.send(b".\r\n")  # after "NOOP\r\n" this is CRLF.CRLF
        expect_reply(c.reply(), 550, "5.5.2")
        c.quit()
        assert_nothing_relayed(r)


def test_smuggle_then_upstream_connection_clean():
    # the upstream session used before the rejected message still works,
    # and holds no half transaction: envelope of the next message is exact
    with Rig(options=OPTS) as r:
        c = r.ehlo_client()
        b1 = make_body(subject="first")
        expect_reply(c.send_message(b1, mail_from="m1@example.org", rcpts=("r1@example.net",)), 250)
        c.expect("MAIL FROM:<carrier@example.org>", 250)
        c.expect("RCPT TO:<r2@example.net>", 250)
        c.expect("DATA", 354)
        c.send(b"Subject: x\r\n\r\nhi\n.\n" + SMUGGLED + b"\r\n.\r\n")
        expect_reply(c.reply(), 550, "5.5.2")
        b3 = make_body(subject="third")
        expect_reply(c.send_message(b3, mail_from="m3@example.org", rcpts=("r3@example.net",)), 250)
        c.quit()
        ms = r.up.wait_messages(2)
        time.sleep(0.2)
        eq([(m.mail_from, m.rcpts, m.body) for m in r.up.messages],
           [("m1@example.org", ["r1@example.net"], b1), ("m3@example.org", ["r3@example.net"], b3)],
           "messages at upstream")
        for cmd in r.up.all_commands():
            check(b"smuggled" not in cmd and b"victim" not in cmd, "smuggled command at upstream: %r" % cmd)


def test_crlf_dot_crlf_in_middle_really_ends():
    # control: a real CRLF.CRLF ends the message; what follows are commands
    with Rig(options=OPTS) as r:
        c = r.ehlo_client()
        c.expect("MAIL FROM:<a@example.org>", 250)
        c.expect("RCPT TO:<b@example.net>", 250)
        c.expect("DATA", 354)
        c.send(b"Subject: x\r\n\r\nhello\r\n.\r\nNOOP\r\n")
        expect_reply(c.reply(), 250)
        expect_reply(c.reply(), 250)
        c.quit()
        m = r.up.wait_messages(1)[0]
        eq(m.body, b"Subject: x\r\n\r\nhello\r\n", "body")


if __name__ == "__main__":
    sys.exit(run_tests(globals()))
