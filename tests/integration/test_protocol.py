#!/usr/bin/python3
"""Refusals and limits that moatd decides itself: unknown and refused
commands, sequence errors, syntax, parameters, sizes, line lengths,
recipients, errors, timeouts, connection limits."""

import sys
import os
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from moattest import *  # noqa

OPTS = {"message_size_limit": 1000000}


def no_verbs_upstream(r, verbs):
    time.sleep(0.2)
    for c in r.up.all_commands():
        v = c.split(b" ", 1)[0].upper()
        check(v not in verbs, "command relayed to the upstream: %r" % c)


def test_unknown_command():
    with Rig(options=OPTS) as r:
        c = r.ehlo_client()
        c.expect("FROBNICATE now", 502, "5.5.2")
        c.expect("HELLO", 502, "5.5.2")
        c.expect("NOOP", 250)
        c.quit()


def test_vrfy_expn_etrn_refused():
    with Rig(options=OPTS) as r:
        c = r.ehlo_client()
        c.expect("MAIL FROM:<a@example.org>", 250)  # so an upstream connection exists
        c.expect("VRFY postmaster", 502, "5.5.1")
        c.expect("EXPN staff", 502, "5.5.1")
        c.expect("ETRN example.org", 502, "5.5.1")
        c.expect("RCPT TO:<b@example.net>", 250)
        c.quit()
        no_verbs_upstream(r, (b"VRFY", b"EXPN", b"ETRN"))


def test_extension_commands_refused_not_relayed():
    with Rig(options=OPTS) as r:
        c = r.ehlo_client()
        c.expect("MAIL FROM:<a@example.org>", 250)
        c.expect("RCPT TO:<b@example.net>", 250)
        c.expect("STARTTLS", 502, "5.5.1")
        c.expect("AUTH PLAIN AGFsaWNlAHNlY3JldA==", 502, "5.5.1")
        c.expect("BDAT 10 LAST", 502, "5.5.1")
        c.expect("XCLIENT ADDR=10.0.0.1 NAME=spoofed.example", 502, "5.5.1")
        c.expect("XFORWARD ADDR=10.0.0.1", 502, "5.5.1")
        c.expect("DATA", 354)
        body = make_body()
        c.send(dot_stuff(body))
        expect_reply(c.reply(), 250)
        c.quit()
        no_verbs_upstream(r, (b"STARTTLS", b"AUTH", b"BDAT", b"XFORWARD"))
        m = r.up.wait_messages(1)[0]
        eq(m.body, body, "body")
        # the only XCLIENT the upstream saw is moatd's own, with the real address
        for s in r.up.sessions:
            for x in s.xclient:
                eq(x.get("ADDR"), "127.0.0.1", "XCLIENT ADDR at upstream")
                check("spoofed" not in str(x), "client's XCLIENT relayed: %r" % x)


def test_extension_commands_before_ehlo_refused():
    with Rig(options=OPTS) as r:
        c = r.client()
        c.expect("STARTTLS", 502, "5.5.1")
        c.expect("XCLIENT ADDR=10.0.0.1", 502, "5.5.1")
        c.quit()


def test_mail_before_helo():
    with Rig(options=OPTS) as r:
        c = r.client()
        c.expect("MAIL FROM:<a@example.org>", 503, "5.5.1")
        c.ehlo()
        c.expect("MAIL FROM:<a@example.org>", 250)
        c.quit()


def test_rcpt_before_mail():
    with Rig(options=OPTS) as r:
        c = r.ehlo_client()
        c.expect("RCPT TO:<b@example.net>", 503, "5.5.1")
        c.quit()


def test_data_before_mail():
    with Rig(options=OPTS) as r:
        c = r.ehlo_client()
        rep = c.cmd("DATA")
        check(rep.code in (503, 554), "DATA before MAIL: %s" % rep)
        c.expect("NOOP", 250)
        c.quit()


def test_data_without_accepted_recipient():
    with Rig(options=OPTS) as r:
        r.up.rcpt_replies = {"nobody@example.net": "550 5.1.1 <nobody@example.net>: no such user"}
        c = r.ehlo_client()
        c.expect("MAIL FROM:<a@example.org>", 250)
        rep = c.expect("RCPT TO:<nobody@example.net>", 550, "5.1.1")
        c.expect("DATA", 554, "5.5.1")
        c.expect("NOOP", 250)
        c.quit()
        no_verbs_upstream(r, (b"DATA",))


def test_data_without_recipient_pipelined():
    # a pipelining client sends the message right after DATA; every line
    # of it is then a command and must not reach the upstream
    with Rig(options=OPTS) as r:
        r.up.rcpt_replies = {"nobody@example.net": "550 5.1.1 no such user"}
        c = r.ehlo_client()
        c.send(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<nobody@example.net>\r\nDATA\r\n")
        expect_reply(c.reply(), 250)
        expect_reply(c.reply(), 550)
        expect_reply(c.reply(), 554, "5.5.1")
        c.send(b"MAIL FROM:<inner@example.org>\r\n.\r\nQUIT\r\n")
        rep = c.reply()
        # the MAIL line is now a real client command (allowed); "." is junk
        rep2 = c.reply()
        check(rep2.code >= 500, "'.' as a command: %s" % rep2)
        expect_reply(c.reply(), 221)
        no_verbs_upstream(r, (b"DATA", b"."))


def test_bad_syntax():
    with Rig(options=OPTS) as r:
        c = r.ehlo_client()
        c.expect("MAIL FROM:a@example.org", 501, "5.5.4")
        c.expect("MAIL TO:<a@example.org>", 501, "5.5.4")
        c.expect("MAIL", 501, "5.5.4")
        c.expect("MAIL FROM:", 501, "5.5.4")
        c.expect("MAIL FROM:<a@example.org>", 250)
        c.expect("RCPT FROM:<b@example.net>", 501, "5.5.4")
        c.expect("RCPT TO:b@example.net", 501, "5.5.4")
        c.expect("RCPT", 501, "5.5.4")
        c.quit()


def test_bad_syntax_ehlo():
    with Rig(options=OPTS) as r:
        c = r.client()
        rep = c.cmd("EHLO")
        expect_reply(rep, 501, "5.5.4", "EHLO without argument")
        rep = c.cmd("HELO")
        expect_reply(rep, 501, "5.5.4", "HELO without argument")
        c.quit()


def test_bad_addresses():
    with Rig(options=OPTS) as r:
        c = r.ehlo_client()
        for a in ("<a@b@example.org>", "<a@>", "<@>", "<a b@example.org>"):
            rep = c.cmd("MAIL FROM:" + a)
            check(rep.code == 501 and rep.enhanced in ("5.1.7", "5.5.4"),
                  "MAIL FROM:%s: got %s, want 501 5.1.7" % (a, rep))
        c.expect("MAIL FROM:<a@example.org>", 250)
        for a in ("<>", "<x@y@example.net>", "<b@>", "<a b@example.net>"):
            rep = c.cmd("RCPT TO:" + a)
            check(rep.code == 501 and rep.enhanced in ("5.1.3", "5.5.4"),
                  "RCPT TO:%s: got %s, want 501 5.1.3" % (a, rep))
        c.quit()
        no_verbs_upstream(r, (b"RCPT",))


def test_path_too_long():
    with Rig(options=OPTS) as r:
        c = r.ehlo_client()
        rep = c.cmd("MAIL FROM:<%s@example.org>" % ("a" * 300))
        check(rep.code == 501 or rep.code == 553 or rep.code == 552,
              "MAIL with a 300-octet path: %s" % rep)
        check(rep.code // 100 == 5, "MAIL with a 300-octet path: %s" % rep)
        c.quit()


def test_unknown_params():
    with Rig(options=OPTS) as r:
        c = r.ehlo_client()
        c.expect("MAIL FROM:<a@example.org> FOO=bar", 555, "5.5.4")
        c.expect("MAIL FROM:<a@example.org> XYZZY", 555, "5.5.4")
        c.expect("MAIL FROM:<a@example.org> BODY=8BITMIME", 250)
        c.expect("RCPT TO:<b@example.net> BAR=1", 555, "5.5.4")
        c.expect("RCPT TO:<b@example.net> SIZE=10", 555, "5.5.4")
        c.expect("RCPT TO:<b@example.net>", 250)
        c.quit()
        time.sleep(0.2)
        for cmd in r.up.all_commands():
            check(b"FOO" not in cmd and b"BAR" not in cmd and b"XYZZY" not in cmd,
                  "unknown parameter relayed: %r" % cmd)


def test_size_param_over_limit():
    with Rig(options={"message_size_limit": 10000}) as r:
        c = r.ehlo_client()
        c.expect("MAIL FROM:<a@example.org> SIZE=10001", 552, "5.3.4")
        c.expect("MAIL FROM:<a@example.org> SIZE=99999999999999999999999", (552, 555, 501))
        c.expect("MAIL FROM:<a@example.org> SIZE=10000", 250)
        c.quit()
        time.sleep(0.2)
        for cmd in r.up.all_commands():
            check(b"SIZE=10001" not in cmd and b"9999999" not in cmd, "oversized MAIL relayed: %r" % cmd)


def test_command_line_too_long():
    with Rig(options=OPTS) as r:
        c = r.ehlo_client()
        c.expect("NOOP " + "x" * 600, 500, "5.5.2")
        c.expect("NOOP", 250)
        c.expect("MAIL FROM:<%s@example.org>" % ("a" * 50), 250)
        c.expect("RCPT TO:<b@example.net> " + "NOTIFY=NEVER " * 60, 500, "5.5.2")
        c.expect("RCPT TO:<b@example.net>", 250)
        c.quit()


def test_command_line_limit_boundary():
    with Rig(options={"message_size_limit": 1000000, "max_command_line": 512}) as r:
        c = r.ehlo_client()
        # 512 octets including CRLF: allowed; 513: too long
        c.expect("NOOP " + "y" * (512 - 2 - 5), 250)
        c.expect("NOOP " + "y" * (513 - 2 - 5), 500, "5.5.2")
        c.expect("NOOP", 250)
    with Rig(options={"message_size_limit": 1000000, "max_command_line": 1024}) as r:
        c = r.ehlo_client()
        c.expect("NOOP " + "y" * (1024 - 2 - 5), 250)
        c.expect("NOOP " + "y" * (1025 - 2 - 5), 500, "5.5.2")
        c.expect("NOOP", 250)
        c.quit()


def test_huge_command_line_no_crlf():
    # 1 MB without a line break: refused, moatd must not buffer it all or die
    with Rig(options=OPTS) as r:
        c = r.ehlo_client()
        try:
            c.send(b"NOOP " + b"z" * 1000000)
            c.send(b"\r\n")
        except OSError:
            pass
        try:
            rep = c.reply(timeout=5)
            expect_reply(rep, 500, "5.5.2")
        except ConnClosed:
            pass  # dropping such a client is acceptable
        c2 = r.ehlo_client()
        c2.quit()


def test_control_chars_in_command():
    with Rig(options=OPTS) as r:
        c = r.ehlo_client()
        rep = c.cmd(b"NOOP a\x00b")
        check(rep.code in (500, 501), "NUL in command: %s" % rep)
        rep = c.cmd(b"MAIL FROM:<a\x01@example.org>")
        check(rep.code in (500, 501), "control char in MAIL: %s" % rep)
        c.quit()


def test_bare_lf_command_not_a_line():
    # only CRLF ends a command: "NOOP\nMAIL FROM:<x>" is one bad line
    with Rig(options=OPTS) as r:
        c = r.ehlo_client()
        rep = c.cmd(b"NOOP\nMAIL FROM:<smuggle@example.org>")
        check(rep.code >= 500, "bare LF in a command line: %s" % rep)
        c.expect("NOOP", 250)
        rep = c.cmd("RCPT TO:<b@example.net>")
        expect_reply(rep, 503, "5.5.1", "RCPT (the bare-LF MAIL must not have counted)")
        c.quit()
        time.sleep(0.2)
        for cmd in r.up.all_commands():
            check(b"smuggle" not in cmd, "bare-LF command relayed: %r" % cmd)


def test_max_recipients():
    with Rig(options={"message_size_limit": 1000000, "max_recipients": 3}) as r:
        c = r.ehlo_client()
        c.expect("MAIL FROM:<a@example.org>", 250)
        for i in range(3):
            c.expect("RCPT TO:<r%d@example.net>" % i, 250)
        c.expect("RCPT TO:<r3@example.net>", 452, "4.5.3")
        c.expect("RCPT TO:<r4@example.net>", 452, "4.5.3")
        c.expect("DATA", 354)
        c.send(dot_stuff(make_body()))
        expect_reply(c.reply(), 250)
        c.quit()
        m = r.up.wait_messages(1)[0]
        eq(m.rcpts, ["r0@example.net", "r1@example.net", "r2@example.net"], "rcpts at upstream")
        time.sleep(0.1)
        for cmd in r.up.all_commands():
            check(b"r3@" not in cmd and b"r4@" not in cmd, "excess RCPT relayed: %r" % cmd)


def test_max_errors():
    with Rig(options={"message_size_limit": 1000000, "max_errors": 3}) as r:
        c = r.ehlo_client()
        errors = 0
        got421 = False
        for i in range(6):
            try:
                rep = c.cmd("BOGUS%d" % i)
            except ConnClosed:
                fail("connection closed without a 421 after %d errors" % errors)
            if rep.code == 421:
                got421 = True
                break
            check(rep.code >= 500, "reply to BOGUS: %s" % rep)
            errors += 1
        check(got421, "no 421 after %d error replies (max_errors=3)" % errors)
        check(errors in (2, 3), "421 after %d error replies, max_errors=3" % errors)
        check(c.wait_closed(3), "connection not closed after 421")


def test_client_timeout():
    with Rig(options={"message_size_limit": 1000000, "client_timeout": 1}) as r:
        c = r.ehlo_client()
        t0 = time.time()
        rep = c.reply(timeout=6)
        dt = time.time() - t0
        expect_reply(rep, 421, "4.4.2", "idle client")
        check(0.8 <= dt <= 4, "421 after %.1fs, client_timeout=1" % dt)
        check(c.wait_closed(3), "connection not closed after 421")
test_client_timeout.timeout = 30


def test_client_timeout_before_greeting_reply():
    with Rig(options={"message_size_limit": 1000000, "client_timeout": 1}) as r:
        c = r.client()
        rep = c.reply(timeout=6)
        expect_reply(rep, 421, "4.4.2", "idle client before EHLO")
        check(c.wait_closed(3), "connection not closed after 421")


def test_data_timeout():
    with Rig(options={"message_size_limit": 1000000, "data_timeout": 1}) as r:
        c = r.ehlo_client()
        c.expect("MAIL FROM:<a@example.org>", 250)
        c.expect("RCPT TO:<b@example.net>", 250)
        c.expect("DATA", 354)
        c.send(b"Subject: stalled\r\n\r\npart")
        try:
            rep = c.reply(timeout=6)
            expect_reply(rep, 421, None, "stalled DATA")
        except ConnClosed:
            fail("connection closed without a 421 on data_timeout")
        check(c.wait_closed(3), "connection not closed after 421")
        time.sleep(0.2)
        eq(r.up.delivered(), [], "messages delivered upstream")


def test_max_connections():
    with Rig(options={"message_size_limit": 1000000, "max_connections": 2}) as r:
        a = r.client()
        b = r.client()
        expect_reply(a.greeting, 220)
        expect_reply(b.greeting, 220)
        c = r.client()
        expect_reply(c.greeting, 421, "4.7.0", "third connection, max_connections=2")
        check(c.wait_closed(3), "over-limit connection not closed")
        a.quit()
        time.sleep(0.3)
        d = r.client()
        expect_reply(d.greeting, 220, None, "after one session ended")
        d.quit()
        b.quit()


def test_max_connections_per_client():
    with Rig(options={"message_size_limit": 1000000, "max_connections_per_client": 2}) as r:
        a = r.client()
        b = r.client()
        c = r.client()
        expect_reply(c.greeting, 421, "4.7.0", "third connection from 127.0.0.1")
        other = r.client(source="127.0.0.2")
        expect_reply(other.greeting, 220, None, "connection from 127.0.0.2")
        other.quit()
        a.quit()
        time.sleep(0.3)
        d = r.client()
        expect_reply(d.greeting, 220)
        d.quit()
        b.quit()


def test_message_size_limit():
    with Rig(options={"message_size_limit": 10000}) as r:
        c = r.ehlo_client()
        c.expect("MAIL FROM:<a@example.org>", 250)
        c.expect("RCPT TO:<b@example.net>", 250)
        c.expect("DATA", 354)
        big = make_body(body_lines=["line %05d %s" % (i, "q" * 60) for i in range(300)])
        c.send(dot_stuff(big))
        expect_reply(c.reply(), 552, "5.3.4", "message over message_size_limit")
        # session still usable, a small message goes through
        small = make_body()
        expect_reply(c.send_message(small), 250, None, "small message afterwards")
        c.quit()
        ms = r.up.wait_messages(1)
        eq([m.body for m in ms], [small], "messages at upstream")
        l = r.moatd.wait_log(r"msg .*result=rejected")


def test_message_size_boundary():
    body = make_body(body_lines=["p" * 70] * 100)
    with Rig(options={"message_size_limit": len(body)}) as r:
        c = r.ehlo_client()
        expect_reply(c.send_message(body), 250, None, "message of exactly message_size_limit octets")
        c.quit()
        eq(r.up.wait_messages(1)[0].body, body, "body")


def test_text_line_too_long():
    with Rig(options=OPTS) as r:
        c = r.ehlo_client()
        body = make_body(body_lines=["ok", "w" * 999, "after"])  # 1001 octets with CRLF
        c.expect("MAIL FROM:<a@example.org>", 250)
        c.expect("RCPT TO:<b@example.net>", 250)
        c.expect("DATA", 354)
        c.send(dot_stuff(body))
        expect_reply(c.reply(), 552, "5.3.4", "line of 1001 octets")
        expect_reply(c.send_message(make_body()), 250, None, "next message")
        c.quit()
        eq(len(r.up.wait_messages(1)), 1, "messages at upstream")
        time.sleep(0.2)
        eq(len(r.up.messages), 1, "messages at upstream")
        check(b"w" * 999 not in r.up.messages[0].body, "long-line message relayed")


def test_text_line_limit_configurable():
    with Rig(options={"message_size_limit": 1000000, "max_text_line": 2000}) as r:
        c = r.ehlo_client()
        ok = make_body(body_lines=["a" * 1998])
        expect_reply(c.send_message(ok), 250, None, "line of 2000 octets, max_text_line=2000")
        bad = make_body(body_lines=["a" * 1999])
        expect_reply(c.send_message(bad), 552, "5.3.4", "line of 2001 octets, max_text_line=2000")
        c.quit()


def test_noop_rset_quit():
    with Rig(options=OPTS) as r:
        c = r.client()
        c.expect("NOOP", 250)
        c.expect("RSET", 250)
        c.ehlo()
        c.expect("NOOP", 250)
        c.expect("RSET", 250)
        c.expect("QUIT", 221)
        check(c.wait_closed(3), "not closed after QUIT")


def test_errors_do_not_reach_upstream():
    with Rig(options=OPTS) as r:
        c = r.ehlo_client()
        c.expect("MAIL FROM:<a@example.org>", 250)
        c.cmd("RCPT TO:<bad address>")
        c.cmd("JUNK")
        c.cmd("MAIL FROM:<again@example.org>")   # nested MAIL: 503
        c.expect("RCPT TO:<ok@example.net>", 250)
        c.quit()
        time.sleep(0.2)
        cmds = [x for x in r.up.all_commands() if not x.upper().startswith((b"EHLO", b"XCLIENT", b"QUIT", b"RSET", b"NOOP"))]
        eq(cmds, [b"MAIL FROM:<a@example.org>", b"RCPT TO:<ok@example.net>"], "commands at upstream")


def test_nested_mail():
    with Rig(options=OPTS) as r:
        c = r.ehlo_client()
        c.expect("MAIL FROM:<a@example.org>", 250)
        c.expect("MAIL FROM:<b@example.org>", 503, "5.5.1")
        c.quit()


if __name__ == "__main__":
    sys.exit(run_tests(globals()))
