#!/usr/bin/python3
"""Relaying through moatd: greeting, EHLO, envelope and body byte for
byte, dot-stuffing, pipelining, several messages, RSET, ESMTP
parameters, replies relayed, the per-message log line."""

import sys
import os
import subprocess
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from moattest import *  # noqa

OPTS = {"message_size_limit": 1000000}


def ehlo_keywords(r):
    return [l[4:].split(" ")[0].upper() for l in r.lines[1:]], [l[4:] for l in r.lines[1:]]


def relay_one(body, mail_from="sender@example.org", rcpts=("rcpt@example.net",), opts=None,
              mail_params=""):
    with Rig(options=opts or OPTS) as r:
        c = r.ehlo_client()
        c.expect("MAIL FROM:<%s>%s" % (mail_from, mail_params), 250)
        for a in rcpts:
            c.expect("RCPT TO:<%s>" % a, 250)
        c.expect("DATA", 354)
        c.send(dot_stuff(body))
        fin = c.reply()
        expect_reply(fin, 250, None, "final reply")
        c.quit()
        msgs = r.up.wait_messages(1)
        eq(len(msgs), 1, "messages at upstream")
        m = msgs[0]
        eq(m.body, body, "body at upstream")
        eq(m.data_raw, dot_stuff(body), "DATA bytes on the wire (dot-stuffing)")
        eq(m.mail_from, mail_from, "MAIL FROM at upstream")
        eq(m.rcpts, list(rcpts), "RCPT TOs at upstream")
        return r, m, fin


def test_greeting():
    with Rig(options=OPTS) as r:
        c = r.client()
        expect_reply(c.greeting, 220, None, "greeting")
        check(c.greeting.lines[0].startswith("220 moat.test ESMTP"),
              "greeting %r does not start with '220 moat.test ESMTP'" % c.greeting.lines[0])
        eq(len(c.greeting.lines), 1, "greeting lines")
        c.quit()


def test_ehlo_capabilities():
    caps = DEFAULT_CAPS + ["STARTTLS", "AUTH PLAIN LOGIN", "CHUNKING", "XFORWARD NAME ADDR",
                           "ETRN", "VRFY", "BINARYMIME"]
    with Rig(options=OPTS, up=dict(caps=caps)) as r:
        c = r.client()
        rep = c.expect("EHLO client.test", 250)
        check(rep.lines[0].startswith("250-moat.test"), "first EHLO line %r" % rep.lines[0])
        kws, full = ehlo_keywords(rep)
        for k in ("PIPELINING", "SIZE", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES", "DSN"):
            check(k in kws, "EHLO lacks %s: %s" % (k, rep))
        check("SIZE 1000000" in full, "want 'SIZE 1000000' (message_size_limit): %s" % rep)
        for k in ("STARTTLS", "AUTH", "CHUNKING", "XCLIENT", "XFORWARD", "BINARYMIME"):
            check(k not in kws, "EHLO must not advertise %s: %s" % (k, rep))
        c.quit()


def test_ehlo_follows_upstream_caps():
    with Rig(options=OPTS, up=dict(caps=["PIPELINING", "SIZE 5000", "XCLIENT NAME ADDR PORT PROTO HELO"])) as r:
        c = r.client()
        rep = c.expect("EHLO client.test", 250)
        kws, full = ehlo_keywords(rep)
        check("PIPELINING" in kws, "PIPELINING missing: %s" % rep)
        check("SIZE 5000" in full, "want the upstream's smaller SIZE 5000: %s" % rep)
        for k in ("8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES", "DSN"):
            check(k not in kws, "%s advertised though the upstream lacks it: %s" % (k, rep))
        c.quit()


def test_helo():
    with Rig(options=OPTS) as r:
        c = r.client()
        rep = c.expect("HELO client.test", 250)
        eq(len(rep.lines), 1, "HELO reply lines")
        fin = c.send_message(make_body())
        expect_reply(fin, 250, None, "final reply after HELO")
        c.quit()
        r.up.wait_messages(1)


def test_lowercase_commands():
    with Rig(options=OPTS) as r:
        c = r.client()
        c.expect("ehlo client.test", 250)
        c.expect("mail from:<low@example.org>", 250)
        c.expect("rcpt to:<low@example.net>", 250)
        c.expect("data", 354)
        c.send(dot_stuff(make_body()))
        expect_reply(c.reply(), 250)
        c.expect("quit", 221)
        m = r.up.wait_messages(1)[0]
        eq((m.mail_from, m.rcpts), ("low@example.org", ["low@example.net"]), "envelope")


def test_no_upstream_connection_before_mail():
    with Rig(options=OPTS) as r:
        n0 = len(r.up.sessions)
        c = r.ehlo_client()
        c.expect("NOOP", 250)
        c.expect("RSET", 250)
        c.expect("EHLO again.test", 250)
        time.sleep(0.3)
        eq(len(r.up.sessions), n0, "upstream connections before MAIL")
        c.expect("MAIL FROM:<a@example.org>", 250)
        wait_for(lambda: len(r.up.sessions) == n0 + 1, 3, what="one upstream connection at MAIL")
        c.quit()


def test_simple_message_exact():
    relay_one(make_body())


def test_envelope_exact_lines():
    r, m, fin = relay_one(make_body(), mail_from="first.last+tag@sub.example.org",
                          rcpts=("a@example.net", "b.c@example.com", "postmaster"))
    eq(m.mail_line, b"MAIL FROM:<first.last+tag@sub.example.org>", "MAIL line at upstream")
    eq(m.rcpt_lines, [b"RCPT TO:<a@example.net>", b"RCPT TO:<b.c@example.com>", b"RCPT TO:<postmaster>"],
       "RCPT lines at upstream")


def test_null_sender():
    relay_one(make_body(), mail_from="")


def test_8bit_body():
    body = make_body(body_lines=["Gr\u00fc\u00dfe aus K\u00f6ln \u2014 \u65e5\u672c\u8a9e".encode("utf-8"),
                                 bytes(range(0x80, 0x100)).replace(b"\x85", b"x"),
                                 b"\xff\xfe\xfd invalid utf-8 \xc3"])
    relay_one(body, mail_params=" BODY=8BITMIME")


def test_long_legal_line():
    # 998 octets + CRLF = 1000 = max_text_line: legal.
    body = make_body(body_lines=[b"x" * 998, b"z" * 500, b"w" * 998])
    relay_one(body)


def test_long_legal_line_dot_stuffed():
    # RFC 5321 4.5.3.1.6: 1000 octets per text line "not counting the
    # leading dot duplicated for transparency": ".yyy" (998 octets) arrives
    # as 999 octets + CRLF on the wire and is legal.
    body = make_body(body_lines=[b"." + b"y" * 997])
    relay_one(body)


def test_single_dot_line_and_dotdot():
    body = make_body(body_lines=[b".", b"..", b"...", b".. leading two", b". leading one",
                                 b"text", b".", b"", b"."])
    r, m, fin = relay_one(body)
    check(b"\r\n..\r\n...\r\n....\r\n" in m.data_raw, "dot-stuffing on the wire: %s" % short(m.data_raw))


def test_first_line_dot():
    relay_one(b".starts with a dot\r\n..two\r\n")


def test_empty_body():
    relay_one(b"")


def test_only_crlf_body():
    relay_one(b"\r\n")
    relay_one(b"\r\n\r\n\r\n")


def test_headers_only():
    relay_one(b"Subject: nothing else\r\n")


def test_whitespace_preserved():
    relay_one(make_body(body_lines=[b"trailing spaces   ", b"\ttab", b"  leading", b" . space dot",
                                    b"\x0cform feed", b"end \t"]))


def test_crlf_at_end_exact():
    # the client's CRLF before "." belongs to the content; nothing added or lost
    body = b"Subject: t\r\n\r\nlast line"
    with Rig(options=OPTS) as r:
        c = r.ehlo_client()
        c.expect("MAIL FROM:<a@example.org>", 250)
        c.expect("RCPT TO:<b@example.net>", 250)
        c.expect("DATA", 354)
        c.send(body + b"\r\n.\r\n")
        expect_reply(c.reply(), 250)
        m = r.up.wait_messages(1)[0]
        eq(m.body, body + b"\r\n", "body")
        eq(m.data_raw, body + b"\r\n.\r\n", "wire")
        c.quit()


def test_pipelined_batch():
    with Rig(options=OPTS) as r:
        c = r.client()
        c.send(b"EHLO client.test\r\nMAIL FROM:<pipe@example.org>\r\nRCPT TO:<one@example.net>\r\n"
               b"RCPT TO:<two@example.net>\r\nDATA\r\n")
        reps = [c.reply() for _ in range(5)]
        for rep, code in zip(reps, (250, 250, 250, 250, 354)):
            expect_reply(rep, code, None, "pipelined replies %s" % reps)
        body = make_body(body_lines=[".dot", "pipelined"])
        c.send(dot_stuff(body) + b"QUIT\r\n")
        expect_reply(c.reply(), 250, None, "end of data")
        expect_reply(c.reply(), 221, None, "QUIT")
        check(c.wait_closed(3), "connection not closed after QUIT")
        m = r.up.wait_messages(1)[0]
        eq(m.body, body, "body")
        eq(m.rcpts, ["one@example.net", "two@example.net"], "rcpts")


def test_pipelined_two_transactions_one_send():
    with Rig(options=OPTS) as r:
        c = r.ehlo_client()
        b1 = make_body(subject="one")
        b2 = make_body(subject="two")
        c.send(b"MAIL FROM:<a1@example.org>\r\nRCPT TO:<r1@example.net>\r\nDATA\r\n")
        for code in (250, 250, 354):
            expect_reply(c.reply(), code)
        c.send(dot_stuff(b1) + b"MAIL FROM:<a2@example.org>\r\nRCPT TO:<r2@example.net>\r\nDATA\r\n")
        for code in (250, 250, 250, 354):
            expect_reply(c.reply(), code)
        c.send(dot_stuff(b2) + b"RSET\r\nNOOP\r\nQUIT\r\n")
        for code in (250, 250, 250, 221):
            expect_reply(c.reply(), code)
        ms = r.up.wait_messages(2)
        eq([(m.mail_from, m.rcpts, m.body) for m in ms],
           [("a1@example.org", ["r1@example.net"], b1), ("a2@example.org", ["r2@example.net"], b2)],
           "messages")


def test_several_messages_one_upstream_connection():
    with Rig(options=OPTS) as r:
        c = r.ehlo_client()
        bodies = [make_body(subject="msg %d" % i, body_lines=["n=%d" % i, "." * (i + 1)]) for i in range(5)]
        for i, b in enumerate(bodies):
            fin = c.send_message(b, mail_from="s%d@example.org" % i, rcpts=("r%d@example.net" % i,))
            expect_reply(fin, 250, None, "message %d" % i)
        c.quit()
        ms = r.up.wait_messages(5)
        eq([m.body for m in ms], bodies, "bodies")
        eq([m.mail_from for m in ms], ["s%d@example.org" % i for i in range(5)], "senders")
        eq(len(r.up.mail_sessions()), 1, "upstream connections used for 5 messages")


def test_rset_discards_envelope():
    with Rig(options=OPTS) as r:
        c = r.ehlo_client()
        c.expect("MAIL FROM:<old@example.org>", 250)
        c.expect("RCPT TO:<old@example.net>", 250)
        c.expect("RSET", 250)
        c.expect("MAIL FROM:<new@example.org>", 250)
        c.expect("RCPT TO:<new@example.net>", 250)
        c.expect("DATA", 354)
        body = make_body()
        c.send(dot_stuff(body))
        expect_reply(c.reply(), 250)
        c.quit()
        m = r.up.wait_messages(1)[0]
        eq((m.mail_from, m.rcpts, m.body), ("new@example.org", ["new@example.net"], body), "message after RSET")


def test_rset_then_data_refused():
    with Rig(options=OPTS) as r:
        c = r.ehlo_client()
        c.expect("MAIL FROM:<old@example.org>", 250)
        c.expect("RCPT TO:<old@example.net>", 250)
        c.expect("RSET", 250)
        rep = c.cmd("DATA")
        check(rep.code in (503, 554), "DATA after RSET: %s" % rep)
        c.quit()
        time.sleep(0.2)
        eq(r.up.data_commands(), [], "DATA commands at upstream")


def test_ehlo_resets_transaction():
    with Rig(options=OPTS) as r:
        c = r.ehlo_client()
        c.expect("MAIL FROM:<old@example.org>", 250)
        c.expect("RCPT TO:<old@example.net>", 250)
        c.expect("EHLO again.test", 250)
        rep = c.cmd("RCPT TO:<x@example.net>")
        expect_reply(rep, 503, "5.5.1", "RCPT after EHLO reset")
        fin = c.send_message(make_body(), mail_from="new@example.org", rcpts=("new@example.net",))
        expect_reply(fin, 250)
        c.quit()
        m = r.up.wait_messages(1)[0]
        eq((m.mail_from, m.rcpts), ("new@example.org", ["new@example.net"]), "envelope")


def test_many_recipients():
    rc = ["user%03d@example.net" % i for i in range(60)]
    relay_one(make_body(), rcpts=rc)


def test_large_message_exact():
    lines = [("%06d " % i).encode() + b"abcdefghijklmnopqrstuvwxyz0123456789" * 2 for i in range(12000)]
    lines[100] = b"."
    lines[200] = b".."
    relay_one(make_body(body_lines=lines))


def test_esmtp_params_relayed():
    with Rig(options=OPTS) as r:
        c = r.ehlo_client()
        c.expect("MAIL FROM:<p@example.org> SIZE=1234 BODY=8BITMIME RET=HDRS ENVID=abc+2Bdef", 250)
        c.expect("RCPT TO:<q@example.net> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;q+40example.net", 250)
        c.expect("DATA", 354)
        c.send(dot_stuff(make_body()))
        expect_reply(c.reply(), 250)
        c.quit()
        m = r.up.wait_messages(1)[0]
        ml = m.mail_line.decode()
        for p in ("SIZE=1234", "BODY=8BITMIME", "RET=HDRS", "ENVID=abc+2Bdef"):
            check(p in ml.split(" "), "MAIL at upstream lacks %s: %r" % (p, ml))
        rl = m.rcpt_lines[0].decode()
        for p in ("NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;q+40example.net"):
            check(p in rl.split(" "), "RCPT at upstream lacks %s: %r" % (p, rl))


def test_smtputf8_relayed():
    with Rig(options=OPTS) as r:
        c = r.ehlo_client()
        c.expect("MAIL FROM:<j\u00f6rg@b\u00fccher.example> SMTPUTF8".encode(), 250)
        c.expect("RCPT TO:<\u7528\u6237@\u4f8b\u5b50.example>".encode(), 250)
        c.expect("DATA", 354)
        body = make_body(headers=["Subject: \u00fc\u00f1\u00ee\u00e7\u00f8d\u00e9".encode()])
        c.send(dot_stuff(body))
        expect_reply(c.reply(), 250)
        c.quit()
        m = r.up.wait_messages(1)[0]
        eq(m.mail_line, "MAIL FROM:<j\u00f6rg@b\u00fccher.example> SMTPUTF8".encode(), "MAIL line")
        eq(m.rcpt_lines, ["RCPT TO:<\u7528\u6237@\u4f8b\u5b50.example>".encode()], "RCPT line")
        eq(m.body, body, "body")


def test_params_not_offered_not_relayed():
    # upstream without DSN: moatd does not advertise DSN, and must never
    # pass NOTIFY/RET/ENVID/ORCPT on (555 5.5.4 or dropping are both fine)
    caps = ["PIPELINING", "SIZE 20480000", "8BITMIME", "ENHANCEDSTATUSCODES",
            "XCLIENT NAME ADDR PORT PROTO HELO"]
    with Rig(options=OPTS, up=dict(caps=caps)) as r:
        c = r.ehlo_client()
        rep = c.cmd("MAIL FROM:<p@example.org> RET=FULL")
        check(rep.code in (250, 555), "MAIL with RET (DSN not offered): %s" % rep)
        if rep.code != 250:
            expect_reply(rep, 555, "5.5.4")
            c.expect("MAIL FROM:<p@example.org>", 250)
        rep = c.cmd("RCPT TO:<q@example.net> NOTIFY=NEVER")
        check(rep.code in (250, 555), "RCPT with NOTIFY (DSN not offered): %s" % rep)
        c.expect("RSET", 250)
        c.quit()
        time.sleep(0.2)
        for cmd in r.up.all_commands():
            for p in (b"RET=", b"NOTIFY=", b"ENVID=", b"ORCPT="):
                check(p not in cmd.upper(), "DSN parameter relayed to an upstream without DSN: %r" % cmd)


def test_upstream_replies_relayed_verbatim():
    up = dict()
    with Rig(options=OPTS, up=up) as r:
        r.up.replies = {
            "mail": "250 2.1.0 Sender looks fine, says upstream",
            "rcpt": "250-2.1.5 first line\r\n250-2.1.5 second line\r\n250 2.1.5 third line",
            "eod": "250 2.0.0 Ok: queued as ABC123XYZ",
        }
        c = r.ehlo_client()
        rep = c.expect("MAIL FROM:<a@example.org>", 250)
        eq(rep.lines, ["250 2.1.0 Sender looks fine, says upstream"], "MAIL reply")
        rep = c.expect("RCPT TO:<b@example.net>", 250)
        eq(rep.lines, ["250-2.1.5 first line", "250-2.1.5 second line", "250 2.1.5 third line"],
           "multi-line RCPT reply")
        c.expect("DATA", 354)
        c.send(dot_stuff(make_body()))
        rep = c.reply()
        eq(rep.lines, ["250 2.0.0 Ok: queued as ABC123XYZ"], "final reply")
        c.quit()
        l = r.moatd.wait_log(r"msg .*result=accepted")
        d = parse_kv(l[0][l[0].index("msg "):])
        eq(d.get("queue_id"), "ABC123XYZ", "queue_id in log line %r" % l[0])


def test_queue_id_pattern():
    """The queue id is taken from the final reply by queue_id_pattern: an
    Exim-style reply with its pattern; a reply the pattern does not match
    gives queue_id=-; a pattern without a group is a config error."""
    with Rig(options=OPTS, overrides=["queue_id_pattern=id=([-0-9A-Za-z]+)"]) as r:
        r.up.replies = {"eod": "250 OK id=1tZq7a-0004Xb-2K"}
        for _ in range(2):
            c = r.ehlo_client()
            c.expect("MAIL FROM:<a@example.org>", 250)
            c.expect("RCPT TO:<b@example.net>", 250)
            c.expect("DATA", 354)
            c.send(dot_stuff(make_body()))
            expect_reply(c.reply(), 250)
            c.quit()
            r.up.replies = {"eod": "250 2.0.0 Ok: queued as ABC123"}
        lines = r.moatd.wait_log(r"msg .*result=accepted", count=2)
        ids = [parse_kv(l[l.index("msg "):]).get("queue_id") for l in lines]
        eq(ids, ["1tZq7a-0004Xb-2K", "-"], "queue ids by the Exim pattern")
    p = subprocess.run([MOATD, "-t", "-c", "/dev/null", "-o", "queue_id_pattern=queued as .*"],
                       capture_output=True, text=True, stdin=subprocess.DEVNULL)
    check(p.returncode != 0 and "queue_id_pattern" in p.stderr and "group" in p.stderr,
          "a pattern without a group: %r" % p.stderr)


def test_log_line_fields():
    with Rig(options=OPTS) as r:
        c = r.ehlo_client("logger.client.test")
        body = make_body()
        fin = c.send_message(body, mail_from="logsender@example.org",
                             rcpts=("l1@example.net", "l2@example.net"))
        expect_reply(fin, 250)
        c.quit()
        m = r.up.wait_messages(1)[0]
        lines = r.moatd.wait_log(r"(^|\s)msg ")
        line = lines[-1]
        d = parse_kv(line[line.index("msg "):])
        for k in ("session", "client", "helo", "from", "rcpts", "size", "result", "reply", "queue_id", "time"):
            check(k in d, "msg log line lacks %s=: %r" % (k, line))
        check("127.0.0.1" in d["client"], "client=%r" % d["client"])
        eq(d["helo"], "logger.client.test", "helo=")
        eq(d["from"], "<logsender@example.org>", "from=")
        check("l1@example.net" in d["rcpts"] and "l2@example.net" in d["rcpts"], "rcpts=%r" % d["rcpts"])
        eq(d["result"], "accepted", "result=")
        check(d["reply"].startswith("250"), "reply=%r" % d["reply"])
        eq(d["queue_id"], m.queue_id, "queue_id=")
        size = int(d["size"])
        check(abs(size - len(body)) <= 5, "size=%d, message is %d octets" % (size, len(body)))


def test_quit_closes():
    with Rig(options=OPTS) as r:
        c = r.ehlo_client()
        rep = c.cmd("QUIT")
        expect_reply(rep, 221)
        check(c.wait_closed(3), "connection still open after 221")


def test_client_disconnect_mid_data_nothing_relayed():
    with Rig(options=OPTS) as r:
        c = r.ehlo_client()
        c.expect("MAIL FROM:<a@example.org>", 250)
        c.expect("RCPT TO:<b@example.net>", 250)
        c.expect("DATA", 354)
        c.send(b"Subject: cut\r\n\r\npartial body\r\n")
        c.close()
        time.sleep(0.5)
        eq(r.up.messages, [], "messages at upstream")
        c2 = r.ehlo_client()
        expect_reply(c2.send_message(make_body()), 250, None, "next session")
        c2.quit()


def test_concurrent_sessions():
    with Rig(options=OPTS) as r:
        errors = []

        def worker(i):
            try:
                c = Client(r.port)
                c.ehlo("w%d.test" % i)
                for j in range(3):
                    b = make_body(subject="w%d m%d" % (i, j), body_lines=["x" * (i * 50 + j)])
                    fin = c.send_message(b, mail_from="w%d@example.org" % i,
                                         rcpts=("m%d@example.net" % j,))
                    expect_reply(fin, 250)
                c.quit()
            except Exception as e:
                errors.append("worker %d: %s" % (i, e))

        ts = [threading.Thread(target=worker, args=(i,)) for i in range(12)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        check(not errors, "; ".join(errors))
        ms = r.up.wait_messages(36)
        eq(len(ms), 36, "messages delivered")


if __name__ == "__main__":
    sys.exit(run_tests(globals()))
