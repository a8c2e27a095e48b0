#!/usr/bin/python3
"""The filter pipeline through the real proxy and a recording upstream:
the access filter at each stage (reject, tempfail, allow, discard,
score), scoring thresholds and the result header, symbols that carry
from connect/HELO into every message, dry-run (global and per filter),
on_error, header edits, the msg log line's filter fields, list files,
reload, `moat check` and configuration errors."""

import os
import re
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from moattest import *  # noqa

MOAT = os.environ.get("MOAT") or os.path.join(ROOT, "build", "san", "moat")
MOAT_HOOKTEST = (os.environ.get("MOAT_HOOKTEST")
                 or os.path.join(ROOT, "build", "san", "moat-hooktest"))

OPTS = {"message_size_limit": 1000000}


# ---------------------------------------------------------------- helpers

def section(name, opts):
    """`name { ... }` in moat.conf syntax; list values from Python lists."""
    if opts is None:
        return []
    out = ["%s {" % name]
    for k, v in opts.items():
        if isinstance(v, (list, tuple)):
            out.append("    %s = {%s}" % (k, ", ".join(Moatd.fmt(x) for x in v)))
        else:
            out.append("    %s = %s" % (k, Moatd.fmt(v)))
    out.append("}")
    return out


def filter_conf(filters=("access",), access=None, scoring=None):
    lines = ["filters = {%s}" % ", ".join('"%s"' % f for f in filters)]
    lines += section("access", access)
    lines += section("scoring", scoring)
    return "\n".join(lines)


def frig(access=None, scoring=None, filters=("access",), overrides=(), binary=None, options=None):
    """A Rig whose config file has the given filters and sections."""
    r = Rig(options=dict(OPTS, **(options or {})), overrides=list(overrides), binary=binary)
    r.moatd.extra_conf = filter_conf(filters, access, scoring)
    r.moatd.write_config()
    return r


def transaction(c, mail_from="sender@example.org", rcpts=("rcpt@example.net",), body=None):
    """MAIL, RCPT..., DATA, the message; returns the final reply."""
    c.expect("MAIL FROM:<%s>" % mail_from, 250)
    for rc in rcpts:
        c.expect("RCPT TO:<%s>" % rc, 250)
    c.expect("DATA", 354)
    c.send(dot_stuff(body if body is not None else make_body()))
    return c.reply()


def split_head(body):
    head, _, rest = body.partition(b"\r\n\r\n")
    return head.split(b"\r\n"), rest


def msg_line(r, n=1, timeout=5.0):
    """The n-th msg log line, once it is there."""
    wait_for(lambda: len(r.moatd.msg_lines()) >= n, timeout,
             what="%d msg log line(s)" % n)
    return r.moatd.msg_lines()[n - 1]


def no_upstream_data(r, what):
    eq(r.up.data_commands(), [], "DATA commands at the upstream (%s)" % what)
    eq(r.up.messages, [], "messages at the upstream (%s)" % what)


def run(argv, timeout=30, stdin=None):
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, input=stdin)
    return p.returncode, p.stdout, p.stderr


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def line_of(path, needle):
    """1-based number of the first line of path containing needle."""
    with open(path) as f:
        for i, l in enumerate(f, 1):
            if needle in l:
                return i
    fail("%r not in %s" % (needle, path))


# ---------------------------------------------------------------- access, each stage

def test_access_client_reject_and_tempfail_at_connect():
    acc = {"client": ['127.0.0.5 reject "5.7.1 Your network is blocked here"',
                      "127.0.0.6 tempfail",
                      '127.0.0.16/30 tempfail "4.7.1 Slow down, neighbour"']}
    with frig(access=acc) as r:
        n0 = len(r.up.sessions)
        c = r.client(source="127.0.0.5")
        eq(str(c.greeting), "554 5.7.1 Your network is blocked here", "greeting for a denied client")
        check(c.wait_closed(3), "connection of a denied client not closed")
        c = r.client(source="127.0.0.6")
        eq(str(c.greeting), "421 4.7.1 Try again later", "greeting for a tempfailed client (closes: 421)")
        check(c.wait_closed(3), "connection of a tempfailed client not closed")
        c = r.client(source="127.0.0.18")     # in 127.0.0.16/30
        eq(str(c.greeting), "421 4.7.1 Slow down, neighbour", "greeting for a client in a tempfailed network")
        c.close()
        ok = r.client(source="127.0.0.7")
        expect_reply(ok.greeting, 220, None, "greeting for a client not listed")
        ok.ehlo()
        expect_reply(transaction(ok), 250)
        ok.quit()
        eq(len(r.up.mail_sessions()), 1, "upstream sessions with MAIL (only the listed-free client's)")
        check(len(r.up.sessions) == n0 + 1, "upstream connections: %d new, want 1" % (len(r.up.sessions) - n0))
        r.moatd.wait_log(r"client=127\.0\.0\.5: rejected by filter access at stage connect: 554 "
                         r"5\.7\.1 Your network is blocked here")


def test_access_helo_reject():
    acc = {"helo": ['.bad.example reject "5.7.1 Bad HELO name"', "grey.example tempfail"]}
    with frig(access=acc) as r:
        c = r.client()
        rep = c.cmd("EHLO host.bad.example")
        eq(str(rep), "550 5.7.1 Bad HELO name", "EHLO host.bad.example")
        c.expect("MAIL FROM:<a@example.org>", 503)          # no HELO was accepted
        rep = c.cmd("HELO grey.example")
        eq(str(rep), "451 4.7.1 Try again later", "HELO grey.example")
        c.expect("EHLO bad.example", 250)     # .bad.example is below bad.example only
        expect_reply(transaction(c), 250)
        c.quit()
        eq(len(r.up.wait_messages(1)), 1, "messages delivered")
        eq(len(r.up.mail_sessions()), 1, "upstream sessions with MAIL")


def test_new_helo_replaces_the_last_helos_decision():
    acc = {"helo": ["bin.example discard", "friend.example allow"]}
    with frig(access=acc, filters=("access", "test"), binary=MOATD_HOOKTEST) as r:
        c = r.client()
        c.expect("EHLO bin.example", 250)
        expect_reply(transaction(c, mail_from="one@example.org"), 250)     # discarded
        c.expect("EHLO other.example", 250)
        expect_reply(transaction(c, mail_from="two@example.org"), 250)     # relayed
        c.expect("EHLO friend.example", 250)
        c.expect("MAIL FROM:<three@example.org>", 250)
        c.expect("RCPT TO:<hook-reject@example.net>", 250)                 # exempt
        c.expect("RSET", 250)
        c.expect("EHLO other.example", 250)
        c.expect("MAIL FROM:<four@example.org>", 250)
        c.expect("RCPT TO:<hook-reject@example.net>", 550, "5.7.1")        # no longer exempt
        c.quit()
        time.sleep(0.2)
        eq([m.mail_from for m in r.up.messages], ["two@example.org"], "messages at the upstream")
        eq([l["result"] for l in r.moatd.msg_lines()[:2]], ["discarded", "accepted"], "msg line results")


def test_access_sender_reject_at_mail():
    acc = {"sender": ['spammer@example.com reject "5.7.1 We do not want your mail"',
                      'slow.example tempfail "4.7.1 Come back later"',
                      "spam.example reject"]}
    with frig(access=acc) as r:
        c = r.ehlo_client()
        rep = c.cmd("MAIL FROM:<spammer@example.com>")
        eq(str(rep), "550 5.7.1 We do not want your mail", "MAIL from a denied sender")
        rep = c.cmd("MAIL FROM:<anyone@slow.example>")
        eq(str(rep), "451 4.7.1 Come back later", "MAIL from a tempfailed domain")
        rep = c.cmd("MAIL FROM:<x@SPAM.example>")
        eq(str(rep), "550 5.7.1 Access denied", "MAIL from a denied domain (default text)")
        c.expect("RCPT TO:<b@example.net>", 503)            # no transaction was started
        time.sleep(0.2)
        eq([x for x in r.up.all_commands() if x.upper().startswith(b"MAIL")], [],
           "MAIL commands at the upstream")
        expect_reply(transaction(c, mail_from="fine@example.org"), 250)
        c.quit()
        eq([m.mail_from for m in r.up.wait_messages(1)], ["fine@example.org"], "senders delivered")


def test_access_recipient_reject_one_of_two():
    acc = {"recipient": ['nobody@example.net reject "5.1.1 No such user here"',
                         "later@ tempfail"]}
    with frig(access=acc) as r:
        c = r.ehlo_client()
        c.expect("MAIL FROM:<a@example.org>", 250)
        rep = c.cmd("RCPT TO:<nobody@example.net>")
        eq(str(rep), "550 5.1.1 No such user here", "RCPT to a denied recipient")
        rep = c.cmd("RCPT TO:<later@other.example>")
        eq(str(rep), "451 4.7.1 Try again later", "RCPT to a tempfailed local part")
        c.expect("RCPT TO:<good@example.net>", 250)
        c.expect("DATA", 354)
        body = make_body()
        c.send(dot_stuff(body))
        expect_reply(c.reply(), 250)
        c.quit()
        m = r.up.wait_messages(1)[0]
        eq(m.rcpts, ["good@example.net"], "recipients at the upstream")
        for cmd in r.up.all_commands():
            check(b"nobody@" not in cmd and b"later@" not in cmd, "refused RCPT relayed: %r" % cmd)
        ml = msg_line(r)
        eq(ml["rcpts"], "<good@example.net>", "msg line rcpts")
        eq(ml["result"], "accepted", "msg line result")


# ---------------------------------------------------------------- allow

def test_access_allow_exempts_later_filters():
    acc = {"client": ["127.0.0.7 allow", "127.0.0.66 allow"]}
    with frig(access=acc, filters=("access", "test"), binary=MOATD_HOOKTEST) as r:
        # the test filter refuses 127.0.0.66 at connect; the allow entry comes first
        c = r.client(source="127.0.0.66")
        expect_reply(c.greeting, 220, None, "greeting for allowed 127.0.0.66")
        c.quit()
        # the test filter rejects hook-reject@ at RCPT, but not for an allowed client
        c = r.client(source="127.0.0.7")
        c.ehlo()
        c.expect("MAIL FROM:<a@example.org>", 250)
        c.expect("RCPT TO:<hook-reject@example.net>", 250)
        c.expect("DATA", 354)
        body = make_body(headers=["From: <a@example.org>", "Subject: allowed", "X-Test-Hook: reject"])
        c.send(dot_stuff(body))
        expect_reply(c.reply(), 250, None, "end of data for an allowed client (X-Test-Hook: reject)")
        c.quit()
        m = r.up.wait_messages(1)[0]
        eq(m.rcpts, ["hook-reject@example.net"], "recipients of the allowed client")
        res = header_value(m.body, "X-Moat-Result")
        check(res and "ACCESS_CLIENT_ALLOW(0)" in res, "result header of the allowed message: %r" % res)
        # another client gets the test filter's verdict
        o = r.client(source="127.0.0.8")
        o.ehlo()
        o.expect("MAIL FROM:<a@example.org>", 250)
        rep = o.cmd("RCPT TO:<hook-reject@example.net>")
        eq(str(rep), "550 5.7.1 rejected by test hook", "RCPT hook-reject for a client not allowed")
        o.quit()
        c = r.client(source="127.0.0.66")
        # (allowed again: the test filter never got to refuse it)
        expect_reply(c.greeting, 220)
        c.quit()


# ---------------------------------------------------------------- scoring

def test_score_reject_at_end_of_data():
    acc = {"sender": ["scored@example.com score 20"]}
    with frig(access=acc, scoring={"reject": 15, "add_header": 6}) as r:
        c = r.ehlo_client()
        rep = transaction(c, mail_from="scored@example.com")
        eq(str(rep), "550 5.7.1 Message rejected as spam", "final reply for a message scoring 20")
        c.quit()
        time.sleep(0.2)
        no_upstream_data(r, "rejected by score")
        ml = msg_line(r)
        eq(ml["result"], "rejected", "msg line result")
        eq(ml["status"], "550", "msg line status")
        eq(ml["action"], "reject", "msg line action")
        eq(ml["score"], "20.00", "msg line score")
        check("ACCESS_SENDER(20)" in ml["symbols"], "msg line symbols: %r" % ml["symbols"])


def test_score_add_header_and_result_header():
    acc = {"sender": ["marked@example.com score 7"]}
    with frig(access=acc, scoring={"reject": 15, "add_header": 6}) as r:
        c = r.ehlo_client()
        body = make_body()
        expect_reply(transaction(c, mail_from="marked@example.com", body=body), 250)
        c.quit()
        m = r.up.wait_messages(1)[0]
        lines, rest = split_head(m.body)
        eq(lines[0], b"X-Spam: Yes", "first header line of a message scoring 7")
        check(lines[1].startswith(b"X-Moat-Result: "), "second header line: %r" % lines[1])
        res = header_value(m.body, "X-Moat-Result")
        check(re.fullmatch(r"score=7\.00 action=add_header symbols=ACCESS_SENDER\(7\)", res),
              "result header %r" % res)
        # the rest is the message as sent
        eq(b"\r\n".join(lines[2:]) + b"\r\n\r\n" + rest, body, "message after the added fields")
        ml = msg_line(r)
        eq(ml["action"], "add_header", "msg line action")
        eq(ml["score"], "7.00", "msg line score")


def test_connect_and_helo_symbols_in_every_message():
    acc = {"client": ["127.0.0.8 score 2.5"], "helo": ["scored.helo.example score 1"]}
    with frig(access=acc) as r:
        c = r.client(source="127.0.0.8")
        expect_reply(c.greeting, 220)
        c.ehlo("scored.helo.example")
        bodies = [make_body(subject="one"), make_body(subject="two")]
        for b in bodies:
            expect_reply(transaction(c, body=b), 250)
        c.quit()
        msgs = r.up.wait_messages(2)
        for i, m in enumerate(msgs):
            res = header_value(m.body, "X-Moat-Result")
            check(res, "message %d has no result header: %r" % (i + 1, m.body[:300]))
            check("ACCESS_CLIENT(2.5)" in res and "ACCESS_HELO(1)" in res,
                  "message %d result header lacks the session's symbols: %r" % (i + 1, res))
            check(res.startswith("score=3.50 action=accept "), "message %d result header: %r" % (i + 1, res))
            eq(m.body.split(b"\r\n", 1)[1], bodies[i], "message %d after the result header" % (i + 1))
        # the msg log line's filter fields
        for n in (1, 2):
            ml = msg_line(r, n)
            for k in ("symbols", "score", "action", "stages_ms"):
                check(k in ml, "msg line %d lacks %s=: %s" % (n, k, ml["_"]))
            eq(ml["score"], "3.50", "msg line %d score" % n)
            eq(ml["action"], "accept", "msg line %d action" % n)
            check("ACCESS_CLIENT(2.5)" in ml["symbols"] and "ACCESS_HELO(1)" in ml["symbols"],
                  "msg line %d symbols %r" % (n, ml["symbols"]))
            st = dict(kv.split(":") for kv in ml["stages_ms"].split(","))
            eq(sorted(st), sorted(["connect", "helo", "mail", "rcpt", "eom"]), "stages_ms stages")
            for k, v in st.items():
                ms = float(v)
                check(0 <= ms < 5000, "stages_ms %s=%s" % (k, v))
        # a second session without the scored HELO: only the client's symbol
        c = r.client(source="127.0.0.8")
        c.ehlo("other.example")
        expect_reply(transaction(c), 250)
        c.quit()
        res = header_value(r.up.wait_messages(3)[2].body, "X-Moat-Result")
        check(res.startswith("score=2.50 ") and "ACCESS_HELO" not in res, "third message: %r" % res)


# ---------------------------------------------------------------- dry-run

DRY_ACC = {"sender": ['blocked@example.com reject "5.7.1 Blocked sender"',
                      "heavy@example.com score 20"]}


def check_dry_run(r, global_dry):
    c = r.ehlo_client()
    rep = c.cmd("MAIL FROM:<blocked@example.com>")
    expect_reply(rep, 250, None, "MAIL from a sender the filter would reject (dry-run)")
    c.expect("RCPT TO:<b@example.net>", 250)
    c.expect("DATA", 354)
    c.send(dot_stuff(make_body()))
    expect_reply(c.reply(), 250, None, "final reply in dry-run")
    expect_reply(transaction(c, mail_from="heavy@example.com"), 250, None,
                 "final reply for a message scoring 20 in dry-run")
    c.quit()
    msgs = r.up.wait_messages(2)
    eq([m.mail_from for m in msgs], ["blocked@example.com", "heavy@example.com"], "delivered senders")
    r.moatd.wait_log(r"dry-run: filter access would reject at stage mail: 5\.7\.1 Blocked sender")
    for i, m in enumerate(msgs):
        res = header_value(m.body, "X-Moat-Result")
        check(res and " would=reject" in res, "message %d result header: %r" % (i + 1, res))
        check(("dry_run=yes" in res) == global_dry, "message %d result header dry_run=: %r" % (i + 1, res))
        ml = msg_line(r, i + 1)
        eq(ml["result"], "accepted", "msg line %d result" % (i + 1))
        eq(ml["action"], "accept", "msg line %d action" % (i + 1))
        eq(ml.get("would"), "reject", "msg line %d would" % (i + 1))
    res2 = header_value(msgs[1].body, "X-Moat-Result")
    check("ACCESS_SENDER(20)" in res2, "second result header: %r" % res2)
    # a dry-run filter's symbols do not count towards the score
    check(res2.startswith("score=20.00 " if global_dry else "score=0.00 "), "second result header: %r" % res2)


def test_dry_run_global():
    with frig(access=DRY_ACC, overrides=["dry_run=yes"]) as r:
        check_dry_run(r, True)


def test_dry_run_per_filter():
    with frig(access=DRY_ACC, overrides=["access.dry_run=yes"]) as r:
        check_dry_run(r, False)


# ---------------------------------------------------------------- discard

def test_access_discard():
    acc = {"sender": ["newsletter@example.org discard"]}
    with frig(access=acc) as r:
        c = r.ehlo_client()
        rep = transaction(c, mail_from="newsletter@example.org")
        expect_reply(rep, 250, None, "final reply for a discarded message")
        # the session goes on normally
        expect_reply(transaction(c, mail_from="friend@example.org"), 250)
        c.quit()
        msgs = r.up.wait_messages(1)
        time.sleep(0.2)
        eq([m.mail_from for m in r.up.messages], ["friend@example.org"], "messages at the upstream")
        eq(len(r.up.data_commands()), 1, "DATA commands at the upstream")
        ml = msg_line(r, 1)
        eq(ml["from"], "<newsletter@example.org>", "first msg line from")
        eq(ml["result"], "discarded", "msg line result")
        eq(ml["action"], "discard", "msg line action")
        check("ACCESS_SENDER_DENY" in ml["symbols"], "msg line symbols %r" % ml["symbols"])
        eq(msg_line(r, 2)["result"], "accepted", "second msg line result")
        r.moatd.wait_log(r"message discarded by access")
        del msgs


# ---------------------------------------------------------------- on_error

def error_body():
    return make_body(headers=["From: <a@example.org>", "Subject: fail", "X-Test-Hook: error"])


def test_filter_error_continue_by_default():
    with frig(filters=("test",), binary=MOATD_HOOKTEST) as r:
        c = r.ehlo_client()
        body = error_body()
        expect_reply(transaction(c, body=body), 250, None, "filter error, on_error=continue")
        c.quit()
        m = r.up.wait_messages(1)[0]
        eq(m.body.split(b"\r\n", 1)[1], body, "message after the result header")
        r.moatd.wait_log(r"warning: session=\w+: filter test failed at stage eom: asked to fail by "
                         r"X-Test-Hook; on_error=continue")


def test_filter_error_tempfail_and_reject():
    for mode, want in (("tempfail", "451 4.7.1 Temporary filter failure, try again later"),
                       ("reject", "550 5.7.1 Rejected: a filter failed")):
        with frig(filters=("test",), binary=MOATD_HOOKTEST, overrides=["test.on_error=" + mode]) as r:
            c = r.ehlo_client()
            rep = transaction(c, body=error_body())
            eq(str(rep), want, "final reply with test.on_error=%s" % mode)
            c.quit()
            time.sleep(0.2)
            no_upstream_data(r, "on_error=" + mode)
            r.moatd.wait_log(r"filter test failed at stage eom: .*; on_error=%s" % mode)
            eq(msg_line(r)["result"], "tempfailed" if mode == "tempfail" else "rejected", "msg line result")


# ---------------------------------------------------------------- header edits

def test_header_edits_reach_the_upstream():
    orig_head = [b"From: <a@example.org>", b"To: <b@example.net>", b"X-Test-Add: yes",
                 b"X-Test-Remove: first", b"Subject: edits", b"X-Test-Remove: second,",
                 b"\tfolded", b"Message-ID: <edits@test>"]
    body_lines = [b"Body line one.", b"X-Test-Remove: in the body, kept", b"", b".dot line", b"end"]
    body = b"\r\n".join(orig_head) + b"\r\n\r\n" + b"\r\n".join(body_lines) + b"\r\n"
    kept = [l for l in orig_head if not l.startswith(b"X-Test-Remove") and l != b"\tfolded"]
    with frig(filters=("test",), binary=MOATD_HOOKTEST) as r:
        c = r.ehlo_client()
        expect_reply(transaction(c, body=body), 250)
        c.quit()
        m = r.up.wait_messages(1)[0]
        lines, rest = split_head(m.body)
        eq(lines[0], b"X-Test-Seen: yes", "first header line (added at the top)")
        check(lines[1].startswith(b"X-Moat-Result: score=0.00 action=accept"), "second header line %r" % lines[1])
        eq(lines[2:], kept, "the original header lines, X-Test-Remove removed")
        eq(rest, b"\r\n".join(body_lines) + b"\r\n", "body")
    # without the result header: byte for byte the message plus the added field
    with frig(filters=("test",), binary=MOATD_HOOKTEST, overrides=["scoring.result_header="]) as r:
        c = r.ehlo_client()
        expect_reply(transaction(c, body=body), 250)
        c.quit()
        eq(r.up.wait_messages(1)[0].body,
           b"X-Test-Seen: yes\r\n" + b"\r\n".join(kept) + b"\r\n\r\n" + b"\r\n".join(body_lines) + b"\r\n",
           "message at the upstream")


# ---------------------------------------------------------------- list files

def test_list_files():
    tmp = tempfile.mkdtemp(prefix="moattest.")
    write(os.path.join(tmp, "clients.txt"),
          "# clients we do not talk to\n"
          "\n"
          '127.0.0.9 reject "5.7.1 Listed in the client file"   # a comment after the entry\n'
          "   # an indented comment\n"
          "127.0.0.10 score 3\n")
    write(os.path.join(tmp, "senders.txt"), "# senders\nfiled@example.com reject\n")
    r = Rig(options=OPTS)
    r.moatd.tmp = tmp
    r.moatd.own_tmp = True
    r.moatd.conf = os.path.join(tmp, "moat.conf")
    r.moatd.logfile = os.path.join(tmp, "moatd.log")
    r.moatd.extra_conf = filter_conf(access={"client_file": "clients.txt",
                                             "sender_file": os.path.join(tmp, "senders.txt"),
                                             "sender": ["inline@example.com reject"]})
    r.moatd.write_config()
    with r:
        c = r.client(source="127.0.0.9")
        eq(str(c.greeting), "554 5.7.1 Listed in the client file", "greeting for a client in the file")
        c.close()
        c = r.client(source="127.0.0.10")
        c.ehlo()
        rep = c.cmd("MAIL FROM:<filed@example.com>")
        eq(str(rep), "550 5.7.1 Access denied", "MAIL from a sender in the file")
        rep = c.cmd("MAIL FROM:<inline@example.com>")
        eq(str(rep), "550 5.7.1 Access denied", "MAIL from an inline sender next to the file")
        expect_reply(transaction(c), 250)
        c.quit()
        res = header_value(r.up.wait_messages(1)[0].body, "X-Moat-Result")
        check(res and "ACCESS_CLIENT(3)" in res, "result header %r" % res)
        r.moatd.wait_log(r"rejected by filter access at stage connect")
    # a bad line: moatd -t fails and names the file and its line
    bad = write(os.path.join(tmp, "clients.txt"),
                "# clients\n127.0.0.9 reject\n10.1.2.3/8 reject\n2001:db8::/32 frobnicate\n")
    md = Moatd([r.listener], options=OPTS, tmp=tmp)
    md.extra_conf = filter_conf(access={"client_file": "clients.txt"})
    md.write_config()
    rc, out, err = run(md.argv(["-t"]))
    eq(rc, 1, "moatd -t exit status with a bad list file (stderr %r)" % err)
    check(re.search(r"^%s:\d+: access: client_file: %s:3: .*10\.1\.2\.3/8" % (re.escape(md.conf), re.escape(bad)),
                    err, re.M), "error for line 3 of the list file: %r" % err)
    check(re.search(r"%s:4: .*unknown action \"frobnicate\"" % re.escape(bad), err),
          "error for line 4 of the list file: %r" % err)
    # a missing file
    md.extra_conf = filter_conf(access={"helo_file": "nonexistent.txt"})
    md.write_config()
    rc, out, err = run(md.argv(["-t"]))
    eq(rc, 1, "moatd -t exit status with a missing list file")
    check("nonexistent.txt" in err, "missing list file named: %r" % err)


# ---------------------------------------------------------------- reload

def test_reload_access_list():
    with frig(access={"client": ["127.0.0.11 reject"]}) as r:
        c = r.client(source="127.0.0.11")
        expect_reply(c.greeting, 554, "5.7.1", "before the reload")
        c.close()
        old = r.client(source="127.0.0.12")       # a session from before the reload
        expect_reply(old.greeting, 220)
        r.moatd.extra_conf = filter_conf(access={"client": ["127.0.0.12 reject"]})
        r.moatd.write_config()
        r.moatd.signal(signal.SIGHUP)
        r.moatd.wait_log(r"reloaded: ")
        c = r.client(source="127.0.0.11")
        expect_reply(c.greeting, 220, None, "127.0.0.11 after the reload")
        c.quit()
        c = r.client(source="127.0.0.12")
        expect_reply(c.greeting, 554, "5.7.1", "127.0.0.12 after the reload")
        c.close()
        # the session from before keeps its configuration
        old.ehlo()
        expect_reply(transaction(old), 250)
        old.quit()
        # a broken entry: logged with file:line, the running configuration stays
        r.moatd.extra_conf = filter_conf(access={"client": ["127.0.0.13 reject", "127.0.0.14 frobnicate"]})
        r.moatd.write_config()
        ln = line_of(r.moatd.conf, "127.0.0.14 frobnicate")
        r.moatd.signal(signal.SIGHUP)
        r.moatd.wait_log(r"reload failed: 1 error")
        r.moatd.wait_log(r"%s:%d: access: client: entry 2 .*unknown action" % (re.escape(r.moatd.conf), ln))
        check(r.moatd.running(), "moatd exited on a reload with a bad access entry")
        c = r.client(source="127.0.0.12")
        expect_reply(c.greeting, 554, "5.7.1", "127.0.0.12 after the failed reload")
        c.close()
        c = r.client(source="127.0.0.13")
        expect_reply(c.greeting, 220, None, "127.0.0.13 after the failed reload")
        c.quit()


# ---------------------------------------------------------------- moat check

CHECK_ACC = {"sender": ["marked@example.com score 7", "heavy@example.com score 20",
                        'blocked@example.com reject "5.7.1 Blocked sender"',
                        "later@example.com tempfail", "news@example.com discard"]}


def moat_check(conf, mail_from, msgfile, binary=MOAT, extra=(), ip="127.0.0.1"):
    return run([binary, "-c", conf] + list(extra) +
               ["check", "--ip", ip, "--helo", "client.test", "--from", mail_from,
                "--rcpt", "rcpt@example.net", msgfile])


def test_moat_check_matches_moatd():
    with frig(access=CHECK_ACC, scoring={"reject": 15, "add_header": 6}) as r:
        msgfile = os.path.join(r.moatd.tmp, "msg.eml")
        body = make_body()
        with open(msgfile, "wb") as f:
            f.write(body.replace(b"\r\n", b"\n"))       # bare LF: read as CRLF
        cases = [("fine@example.com", 0, "accept", 250),
                 ("marked@example.com", 1, "add_header", 250),
                 ("later@example.com", 2, "tempfail", 451),
                 ("heavy@example.com", 3, "reject", 550),
                 ("blocked@example.com", 3, "reject", 550),
                 ("news@example.com", 4, "discard", 250)]
        c = r.ehlo_client()
        for sender, status, action, code in cases:
            rc, out, err = moat_check(r.moatd.conf, sender, msgfile)
            eq(rc, status, "moat check exit status for %s (stdout %r, stderr %r)" % (sender, out, err))
            check(re.search(r"(?m)^symbols:$", out), "no symbols: in %r" % out)
            check(re.search(r"(?m)^score: ", out), "no score: in %r" % out)
            check(re.search(r"(?m)^action: %s\b" % action, out), "action %s not in %r" % (action, out))
            # moatd, same input
            rep = c.cmd("MAIL FROM:<%s>" % sender)
            if rep.code != 250:
                eq(rep.code, code, "moatd MAIL reply for %s (%s)" % (sender, rep))
                continue
            c.expect("RCPT TO:<rcpt@example.net>", 250)
            c.expect("DATA", 354)
            c.send(dot_stuff(body))
            rep = c.reply()
            eq(rep.code, code, "moatd final reply for %s (%s)" % (sender, rep))
        c.quit()
        time.sleep(0.2)
        eq([m.mail_from for m in r.up.messages], ["fine@example.com", "marked@example.com"],
           "messages moatd relayed")
        # the verdict's details
        rc, out, err = moat_check(r.moatd.conf, "marked@example.com", msgfile)
        check(re.search(r"(?m)^  ACCESS_SENDER\s+7\.00\s+access\s+sender marked@example\.com", out),
              "symbol line in %r" % out)
        check(re.search(r"(?m)^score: 7\.00$", out), "score in %r" % out)
        check(re.search(r"(?m)^  add +X-Spam: Yes$", out), "spam header edit in %r" % out)
        check(re.search(r"(?m)^  add +X-Moat-Result: score=7\.00 action=add_header "
                        r"symbols=ACCESS_SENDER\(7\)$", out), "result header edit in %r" % out)
        rc, out, err = moat_check(r.moatd.conf, "blocked@example.com", msgfile)
        check(re.search(r"(?m)^stage mail .*reject 5\.7\.1 Blocked sender \(filter access\)", out),
              "refusing stage in %r" % out)
        # dry-run through -o: reported, not applied
        rc, out, err = moat_check(r.moatd.conf, "heavy@example.com", msgfile, extra=["-o", "dry_run=yes"])
        eq(rc, 0, "moat check -o dry_run=yes exit status (%r)" % out)
        check(re.search(r"(?m)^would: reject", out), "would: line in %r" % out)
        # usage, unreadable message, configuration error
        rc, out, err = run([MOAT, "-c", r.moatd.conf, "check", "--ip", "127.0.0.1", msgfile])
        eq(rc, 64, "moat check without --helo/--rcpt")
        rc, out, err = moat_check(r.moatd.conf, "a@example.com", os.path.join(r.moatd.tmp, "nope.eml"))
        eq(rc, 65, "moat check with a missing message file")
        rc, out, err = moat_check(r.moatd.conf, "a@example.com", msgfile, extra=["-o", "filters=nope"])
        eq(rc, 78, "moat check with a configuration error (stderr %r)" % err)
        check("nope" in err, "configuration error printed: %r" % err)


def test_moat_check_hooktest_and_client_stage():
    with frig(access={"client": ["127.0.0.5 reject"]}, filters=("access", "test"),
              binary=MOATD_HOOKTEST) as r:
        def msg(hook):
            p = os.path.join(r.moatd.tmp, "m-%s.eml" % hook)
            with open(p, "wb") as f:
                f.write(make_body(headers=["From: <a@example.org>", "X-Test-Hook: %s" % hook]))
            return p
        rc, out, err = moat_check(r.moatd.conf, "a@example.org", msg("reject"), binary=MOAT_HOOKTEST)
        eq(rc, 3, "moat-hooktest check, X-Test-Hook: reject (%r %r)" % (out, err))
        check("message rejected by test hook" in out, "reject text in %r" % out)
        rc, out, err = moat_check(r.moatd.conf, "a@example.org", msg("discard"), binary=MOAT_HOOKTEST)
        eq(rc, 4, "moat-hooktest check, X-Test-Hook: discard (%r)" % out)
        rc, out, err = moat_check(r.moatd.conf, "a@example.org", msg("none"), binary=MOAT_HOOKTEST)
        eq(rc, 0, "moat-hooktest check, no hook header (%r)" % out)
        rc, out, err = moat_check(r.moatd.conf, "a@example.org", msg("none"), binary=MOAT_HOOKTEST,
                                  ip="127.0.0.5")
        eq(rc, 3, "moat-hooktest check from a denied client (%r)" % out)
        check(re.search(r"(?m)^stage connect\s+127\.0\.0\.5: reject 5\.7\.1 Access denied", out),
              "connect stage in %r" % out)
        # the same messages through moatd-hooktest
        c = r.ehlo_client()
        expect_reply(transaction(c, body=open(msg("reject"), "rb").read()), 550, "5.7.1")
        expect_reply(transaction(c, body=open(msg("discard"), "rb").read()), 250)
        expect_reply(transaction(c, body=open(msg("none"), "rb").read()), 250)
        c.quit()
        c = r.client(source="127.0.0.5")
        expect_reply(c.greeting, 554, "5.7.1")
        c.close()
        time.sleep(0.2)
        eq(len(r.up.messages), 1, "messages moatd-hooktest relayed")


# ---------------------------------------------------------------- configuration errors

def test_config_errors():
    port = free_port()
    md = Moatd([dict(name="t", listen="127.0.0.1:%d" % port, role="inbound",
                     upstream="127.0.0.1:%d" % free_port())], options=OPTS)

    def expect_error(extra, needle, pattern, argv_extra=()):
        md.extra_conf = extra
        md.write_config()
        rc, out, err = run(md.argv(["-t"] + list(argv_extra)))
        eq(rc, 1, "moatd -t exit status for %r (stderr %r)" % (extra, err))
        ln = line_of(md.conf, needle)
        rx = r"^%s:%d: %s" % (re.escape(md.conf), ln, pattern)
        check(re.search(rx, err, re.M), "want /%s/ in %r" % (rx, err))
        return err

    expect_error('filters = {"access", "nosuch"}', '"nosuch"',
                 r'filters: expected the name of a filter \([a-z, ]*\baccess\b[a-z, ]*\), got "nosuch"')
    expect_error(filter_conf(access={"client": ["192.0.2.0/24 reject", "192.0.2.1/24 reject"]}),
                 "192.0.2.1/24", r'access: client: entry 2 "192\.0\.2\.1/24 reject": "192\.0\.2\.1/24": address bits set')
    expect_error(filter_conf(access={"sender": ["example.org reject 5.7.1 no quotes"]}),
                 "no quotes", r"access: sender: entry 1 .*reply text goes in double quotes")
    expect_error(filter_conf(access={"recipient": ['a@example.org tempfail "5.7.1 wrong class"']}),
                 "wrong class", r"access: recipient: entry 1 .*tempfail needs a 4\.x\.x status code")
    expect_error(filter_conf(access={"on_error": "sometimes"}), "sometimes",
                 r'on_error: expected one of "continue", "tempfail", "reject"; got "sometimes"')
    # the same through -o
    md.extra_conf = filter_conf(access={})
    md.write_config()
    rc, out, err = run(md.argv(["-t", "-o", "access.on_error=maybe"]))
    eq(rc, 1, "moatd -t -o access.on_error=maybe")
    check("access.on_error=maybe" in err and "got \"maybe\"" in err, "stderr %r" % err)
    rc, out, err = run(md.argv(["-t", "-o", 'access.client={"192.0.2.0/24 reject", "10.0.0.0/8 allow"}',
                                "-o", "access.sender=a@example.org reject,example.net score 2"]))
    eq((rc, err), (0, ""), "moatd -t with list values given by -o")
    rc, out, err = run([MOAT, "-c", md.conf, "-o", 'access.client={"192.0.2.0/24 reject", "10.0.0.0/8 allow"}',
                        "config"])
    eq(rc, 0, "moat config with -o list (stderr %r)" % err)
    check(re.search(r'client = \{"192\.0\.2\.0/24 reject", ?"10\.0\.0\.0/8 allow"\}', out),
          "access.client in moat config output: %r" % [l for l in out.splitlines() if "client" in l])


def test_header_limits_and_many_forged_auth_results():
    """A header block over the limits is refused (552), never read as
    body (which would hide forged fields from the filters); thousands of
    forged Authentication-Results fields are all removed, quickly."""
    with Rig(options=OPTS, overrides=["filters=access"]) as r:
        c = r.ehlo_client()
        c.expect("MAIL FROM:<a@example.org>", 250)
        c.expect("RCPT TO:<b@example.net>", 250)
        c.expect("DATA", 354)
        c.send(b"a: b\r\n" * 10001 + b"\r\nbody\r\n.\r\n")
        expect_reply(c.reply(timeout=20), 552, "5.3.4", "10001 header fields")
        forged = b"Authentication-Results: moat.test; spf=pass\r\n" * 9000
        t0 = time.time()
        rep = c.send_message(forged + b"Subject: kept\r\n\r\nbody\r\n")
        expect_reply(rep, 250, None, "a message with 9000 forged fields")
        check(time.time() - t0 < 5, "9000 forged fields took %.1fs" % (time.time() - t0))
        c.quit()
        got = r.up.wait_messages(1, timeout=10)
        body = got[-1].body
        check(b"spf=pass" not in body, "a forged Authentication-Results reached the upstream")
        check(b"Subject: kept" in body, "the other fields must stay")


if __name__ == "__main__":
    sys.exit(run_tests(globals()))
