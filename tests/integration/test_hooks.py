#!/usr/bin/python3
"""Filter hooks, with build/san/moatd-hooktest (moatd plus the test
filter of tests/hooks/): connect refusal, asynchronous (timer) and
threaded RCPT verdicts, a filter that never answers (its timeout), an
end-of-data verdict on headers."""

import sys
import os
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from moattest import *  # noqa

OPTS = {"message_size_limit": 1000000}


def hrig(**kw):
    # the result header is tested in test_pipeline.py; here bodies are compared
    ov = kw.pop("overrides", ["filters=test", "test.timeout=1", "scoring.result_header="])
    return Rig(options=dict(OPTS, **kw.pop("options", {})), binary=MOATD_HOOKTEST, overrides=ov, **kw)


def test_connect_refused_by_hook():
    with hrig() as r:
        n0 = len(r.up.sessions)
        c = r.client(source="127.0.0.66")
        expect_reply(c.greeting, 554, "5.7.1", "greeting for 127.0.0.66")
        check("refused by test hook" in c.greeting.text, "greeting text %s" % c.greeting)
        # whatever follows, no transaction starts and nothing reaches the upstream
        try:
            c.cmd("EHLO x.test", timeout=3)
            rep = c.cmd("MAIL FROM:<a@example.org>", timeout=3)
            check(rep.code != 250, "MAIL accepted after the hook refused the connection: %s" % rep)
            rep = c.cmd("RCPT TO:<b@example.net>", timeout=3)
            check(rep.code != 250, "RCPT accepted after the hook refused the connection: %s" % rep)
        except (ConnClosed, OSError):
            pass
        time.sleep(0.3)
        eq(len(r.up.sessions), n0, "upstream connections")
        other = r.client(source="127.0.0.67")
        expect_reply(other.greeting, 220, None, "greeting for 127.0.0.67")
        other.quit()


def test_rcpt_hook_reject_async():
    with hrig() as r:
        c = r.ehlo_client()
        c.expect("MAIL FROM:<a@example.org>", 250)
        t0 = time.time()
        rep = c.cmd("RCPT TO:<hook-reject@example.net>")
        dt = time.time() - t0
        expect_reply(rep, 550, "5.7.1", "RCPT hook-reject")
        check("rejected by test hook" in rep.text, "reply text %s" % rep)
        check(dt >= 0.045, "reply after %.3fs, the hook's timer is 50 ms" % dt)
        c.expect("RCPT TO:<hook-reject-more@example.net>", 550, "5.7.1")
        c.expect("RCPT TO:<fine@example.net>", 250)
        c.expect("DATA", 354)
        body = make_body()
        c.send(dot_stuff(body))
        expect_reply(c.reply(), 250)
        c.quit()
        m = r.up.wait_messages(1)[0]
        eq(m.rcpts, ["fine@example.net"], "rcpts at upstream")
        for cmd in r.up.all_commands():
            check(b"hook-reject" not in cmd, "hook-rejected RCPT relayed: %r" % cmd)


def test_rcpt_hook_tempfail_thread():
    with hrig() as r:
        c = r.ehlo_client()
        c.expect("MAIL FROM:<a@example.org>", 250)
        rep = c.cmd("RCPT TO:<hook-tempfail@example.net>")
        expect_reply(rep, 451, "4.7.1", "RCPT hook-tempfail")
        check("deferred by test hook" in rep.text, "reply text %s" % rep)
        c.expect("RCPT TO:<ok@example.net>", 250)
        c.expect("DATA", 354)
        c.send(dot_stuff(make_body()))
        expect_reply(c.reply(), 250)
        c.quit()
        eq(r.up.wait_messages(1)[0].rcpts, ["ok@example.net"], "rcpts at upstream")
        for cmd in r.up.all_commands():
            check(b"hook-tempfail" not in cmd, "hook-deferred RCPT relayed: %r" % cmd)


def test_rcpt_hooks_pipelined_order():
    with hrig() as r:
        c = r.ehlo_client()
        c.send(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<hook-reject@example.net>\r\n"
               b"RCPT TO:<one@example.net>\r\nRCPT TO:<hook-tempfail@example.net>\r\n"
               b"RCPT TO:<two@example.net>\r\nDATA\r\n")
        reps = [c.reply() for _ in range(6)]
        eq([x.code for x in reps], [250, 550, 250, 451, 250, 354], "pipelined reply codes (%s)" % reps)
        c.send(dot_stuff(make_body()) + b"QUIT\r\n")
        expect_reply(c.reply(), 250)
        expect_reply(c.reply(), 221)
        eq(r.up.wait_messages(1)[0].rcpts, ["one@example.net", "two@example.net"], "rcpts")


def test_mail_hook_hang_times_out():
    with hrig() as r:
        c = r.ehlo_client()
        t0 = time.time()
        rep = c.cmd("MAIL FROM:<hook-hang@example.org>", timeout=10)
        dt = time.time() - t0
        expect_reply(rep, 250, None, "MAIL hook-hang after the filter timeout")
        check(0.9 <= dt <= 4, "MAIL reply after %.1fs, test.timeout=1" % dt)
        c.expect("RCPT TO:<b@example.net>", 250)
        c.expect("DATA", 354)
        body = make_body()
        c.send(dot_stuff(body))
        expect_reply(c.reply(), 250)
        c.quit()
        m = r.up.wait_messages(1)[0]
        eq(m.mail_from, "hook-hang@example.org", "MAIL at upstream")
        eq(m.body, body, "body")
        check(r.moatd.grep(r"filter test failed at stage mail: timed out after 1s \(timeout\); on_error=continue"),
              "no log line about the filter's timeout")


def test_hook_hang_client_disconnects():
    # the session goes away while its hook is pending: no crash, no leak
    with hrig() as r:
        c = r.ehlo_client()
        c.send(b"MAIL FROM:<hook-hang@example.org>\r\n")
        time.sleep(0.2)
        c.close()
        c2 = r.ehlo_client()
        c2.send(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<hook-reject@example.net>\r\n")
        time.sleep(0.01)
        c2.close()
        c3 = r.ehlo_client()
        c3.send(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<hook-tempfail@example.net>\r\n")
        c3.close()
        time.sleep(1.8)
        c4 = r.ehlo_client()
        expect_reply(c4.send_message(make_body()), 250)
        c4.quit()
        r.moatd.check_sanitizers()


def test_eod_header_hook_reject():
    with hrig() as r:
        c = r.ehlo_client()
        body = make_body(headers=["From: <a@example.org>", "X-Test-Hook: reject", "Subject: hooked"])
        c.expect("MAIL FROM:<a@example.org>", 250)
        c.expect("RCPT TO:<b@example.net>", 250)
        c.expect("DATA", 354)
        c.send(dot_stuff(body))
        rep = c.reply()
        expect_reply(rep, 550, "5.7.1", "message with X-Test-Hook: reject")
        check("message rejected by test hook" in rep.text, "reply text %s" % rep)
        # session goes on
        ok = make_body()
        expect_reply(c.send_message(ok), 250)
        c.quit()
        time.sleep(0.2)
        eq([m.body for m in r.up.messages], [ok], "messages at upstream")
        eq(len(r.up.data_commands()), 1, "DATA commands at upstream")
        r.moatd.wait_log(r"msg .*result=rejected")


def test_eod_header_hook_body_only_not_rejected():
    with hrig() as r:
        c = r.ehlo_client()
        body = make_body(body_lines=["X-Test-Hook: reject", "in the body, not a header"])
        expect_reply(c.send_message(body), 250, None, "X-Test-Hook: reject in the body only")
        c.quit()
        eq(r.up.wait_messages(1)[0].body, body, "body")


def test_eod_header_hook_spooled_message():
    with hrig(options={"message_memory_limit": 4096}) as r:
        c = r.ehlo_client()
        body = make_body(headers=["From: <a@example.org>", "X-Test-Hook: reject"],
                         body_lines=["filler line %d %s" % (i, "f" * 50) for i in range(2000)])
        expect_reply(c.send_message(body), 550, "5.7.1", "spooled message with X-Test-Hook: reject")
        c.quit()
        time.sleep(0.2)
        eq(r.up.messages, [], "messages at upstream")


def test_normal_relay_with_hooks():
    with hrig() as r:
        c = r.ehlo_client()
        bodies = [make_body(subject="h%d" % i) for i in range(3)]
        for b in bodies:
            expect_reply(c.send_message(b), 250)
        c.quit()
        eq([m.body for m in r.up.wait_messages(3)], bodies, "bodies")


def test_hooks_concurrent():
    with hrig() as r:
        errors = []

        def worker(i):
            try:
                c = Client(r.port)
                c.ehlo("w%d" % i)
                c.expect("MAIL FROM:<w%d@example.org>" % i, 250)
                c.expect("RCPT TO:<hook-reject-%d@example.net>" % i, 550, "5.7.1")
                c.expect("RCPT TO:<hook-tempfail-%d@example.net>" % i, 451, "4.7.1")
                c.expect("RCPT TO:<ok%d@example.net>" % i, 250)
                c.expect("DATA", 354)
                c.send(dot_stuff(make_body(subject="w%d" % i)))
                expect_reply(c.reply(), 250)
                c.quit()
            except Exception as e:
                errors.append("worker %d: %s" % (i, e))

        ts = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        check(not errors, "; ".join(errors))
        eq(len(r.up.wait_messages(16)), 16, "messages")


def test_hook_hang_then_sigterm():
    # shutdown with a hook pending must not hang or crash
    with hrig(options={"shutdown_timeout": 3}) as r:
        c = r.ehlo_client()
        c.send(b"MAIL FROM:<hook-hang@example.org>\r\n")
        time.sleep(0.2)
        t0 = time.time()
        rc = r.moatd.stop()
        eq(rc, 0, "exit status")
        check(time.time() - t0 < 6, "exit took %.1fs" % (time.time() - t0))


if __name__ == "__main__":
    sys.exit(run_tests(globals()))
