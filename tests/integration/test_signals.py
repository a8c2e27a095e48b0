#!/usr/bin/python3
"""SIGTERM (stop accepting, 421 4.3.2 to idle sessions, let a
transaction in flight finish within shutdown_timeout, exit 0) and SIGHUP
(re-read the config; sessions in flight keep theirs; a broken file is
logged and the old config stays)."""

import sys
import os
import signal
import socket
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from moattest import *  # noqa

OPTS = {"message_size_limit": 1000000}


def refused(port):
    s = socket.socket()
    s.settimeout(2)
    try:
        s.connect(("127.0.0.1", port))
    except OSError:
        return True
    # accepted by the kernel: moatd must not serve it
    try:
        d = s.recv(100)
        return not d.startswith(b"220")
    except OSError:
        return True
    finally:
        s.close()


def exit_status(r, timeout):
    try:
        return r.moatd.proc.wait(timeout)
    except Exception:
        fail("moatd still running %.0fs after SIGTERM" % timeout)


def test_sigterm_idle_sessions():
    with Rig(options=dict(OPTS, shutdown_timeout=10)) as r:
        a = r.client()               # greeted only
        b = r.ehlo_client()          # after EHLO
        c = r.ehlo_client()
        c.expect("MAIL FROM:<a@example.org>", 250)   # inside a transaction, but idle between commands
        c.expect("RCPT TO:<b@example.net>", 250)
        t0 = time.time()
        r.moatd.signal(signal.SIGTERM)
        for cl, name in ((a, "greeted session"), (b, "EHLO'd session")):
            rep = cl.reply(timeout=3)
            expect_reply(rep, 421, "4.3.2", name)
            check(cl.wait_closed(2), "%s not closed after 421" % name)
        dt = time.time() - t0
        check(dt < 2.5, "idle sessions got their 421 after %.1fs (want at once)" % dt)
        # the session with an open envelope is not sending data: it may be
        # given the rest of shutdown_timeout; it must end with 421 4.3.2
        rep = None
        try:
            rep = c.reply(timeout=12)
        except ConnClosed:
            pass
        if rep is not None:
            expect_reply(rep, 421, "4.3.2", "session with an open envelope")
        rc = exit_status(r, 12)
        eq(rc, 0, "exit status after SIGTERM")
        r.moatd.check_sanitizers()
        eq(r.up.delivered(), [], "delivered")
test_sigterm_idle_sessions.timeout = 40


def test_sigterm_stops_accepting():
    with Rig(options=dict(OPTS, shutdown_timeout=5)) as r:
        c = r.ehlo_client()
        c.expect("MAIL FROM:<a@example.org>", 250)
        c.expect("RCPT TO:<b@example.net>", 250)
        c.expect("DATA", 354)
        c.send(b"Subject: in flight\r\n\r\n")
        r.moatd.signal(signal.SIGTERM)
        time.sleep(0.5)
        check(r.moatd.running(), "moatd exited at once with a transaction in flight")
        check(refused(r.port), "new connection served after SIGTERM")
        c.send(b"rest\r\n.\r\n")
        expect_reply(c.reply(timeout=5), 250)
        exit_status(r, 8)


def test_sigterm_transaction_in_flight_finishes():
    with Rig(options=dict(OPTS, shutdown_timeout=10)) as r:
        c = r.ehlo_client()
        c.expect("MAIL FROM:<a@example.org>", 250)
        c.expect("RCPT TO:<b@example.net>", 250)
        c.expect("DATA", 354)
        body = make_body(body_lines=["line %d" % i for i in range(100)])
        wire = dot_stuff(body)
        c.send(wire[:500])
        t0 = time.time()
        r.moatd.signal(signal.SIGTERM)
        time.sleep(1.0)
        c.send(wire[500:])
        expect_reply(c.reply(timeout=8), 250, None, "message finished during shutdown")
        # then 421 4.3.2, at once or in answer to the next command
        try:
            rep = c.reply(timeout=1.5)
        except TestFailure:
            rep = c.cmd("NOOP", timeout=3)
        expect_reply(rep, 421, "4.3.2", "after the transaction during shutdown")
        check(c.wait_closed(3), "not closed after 421")
        rc = exit_status(r, 5)
        eq(rc, 0, "exit status")
        check(time.time() - t0 < 8, "exit took %.1fs" % (time.time() - t0))
        eq([m.body for m in r.up.delivered()], [body], "delivered")
        r.moatd.check_sanitizers()
test_sigterm_transaction_in_flight_finishes.timeout = 40


def test_sigterm_waiting_for_upstream_finishes():
    with Rig(options=dict(OPTS, shutdown_timeout=10)) as r:
        r.up.eod_delay = 1.5
        c = r.ehlo_client()
        c.expect("MAIL FROM:<a@example.org>", 250)
        c.expect("RCPT TO:<b@example.net>", 250)
        c.expect("DATA", 354)
        c.send(dot_stuff(make_body()))
        time.sleep(0.3)
        r.moatd.signal(signal.SIGTERM)
        expect_reply(c.reply(timeout=8), 250, None, "upstream's reply during shutdown")
        rc = exit_status(r, 8)
        eq(rc, 0, "exit status")
        eq(len(r.up.delivered()), 1, "delivered")
        r.moatd.check_sanitizers()
test_sigterm_waiting_for_upstream_finishes.timeout = 40


def test_sigterm_shutdown_timeout():
    with Rig(options=dict(OPTS, shutdown_timeout=2)) as r:
        c = r.ehlo_client()
        c.expect("MAIL FROM:<a@example.org>", 250)
        c.expect("RCPT TO:<b@example.net>", 250)
        c.expect("DATA", 354)
        c.send(b"Subject: stalled\r\n\r\nhalf a line")
        t0 = time.time()
        r.moatd.signal(signal.SIGTERM)
        try:
            rep = c.reply(timeout=8)
            expect_reply(rep, 421, "4.3.2", "stalled transaction at shutdown_timeout")
        except ConnClosed:
            fail("closed without 421 4.3.2 at shutdown_timeout")
        dt = time.time() - t0
        check(1.5 <= dt <= 5, "421 after %.1fs, shutdown_timeout=2" % dt)
        rc = exit_status(r, 5)
        eq(rc, 0, "exit status")
        eq(r.up.delivered(), [], "delivered")
        r.moatd.check_sanitizers()
test_sigterm_shutdown_timeout.timeout = 40


def test_sigterm_no_sessions_exits_fast():
    with Rig(options=OPTS) as r:
        t0 = time.time()
        rc = r.moatd.stop()
        eq(rc, 0, "exit status")
        check(time.time() - t0 < 3, "exit took %.1fs" % (time.time() - t0))


def test_sigint_exits():
    with Rig(options=OPTS) as r:
        r.moatd.signal(signal.SIGINT)
        rc = exit_status(r, 8)
        eq(rc, 0, "exit status after SIGINT")


def wait_greeting_name(r, name, timeout=5):
    end = time.time() + timeout
    last = None
    while time.time() < end:
        c = r.client()
        last = c.greeting.lines[0]
        c.quit()
        if last.startswith("220 %s " % name):
            return
        time.sleep(0.2)
    fail("greeting still %r, want hostname %s" % (last, name))


def test_sighup_reload_hostname():
    with Rig(options=OPTS) as r:
        wait_greeting_name(r, "moat.test", 1)
        r.moatd.options["hostname"] = "reloaded.test"
        r.moatd.write_config()
        r.moatd.signal(signal.SIGHUP)
        wait_greeting_name(r, "reloaded.test")
        c = r.ehlo_client()
        rep = c.expect("EHLO x.test", 250)
        check(rep.lines[0].startswith("250-reloaded.test"), "EHLO after reload: %s" % rep)
        expect_reply(c.send_message(make_body()), 250)
        c.quit()


def test_sighup_session_in_flight_keeps_config():
    with Rig(options=OPTS) as r:
        old = r.client()
        r.moatd.options["hostname"] = "new.test"
        r.moatd.options["max_recipients"] = 1
        r.moatd.write_config()
        r.moatd.signal(signal.SIGHUP)
        wait_greeting_name(r, "new.test")
        rep = old.expect("EHLO old.client", 250)
        check(rep.lines[0].startswith("250-moat.test"), "session from before the reload: EHLO %s" % rep)
        old.expect("MAIL FROM:<a@example.org>", 250)
        old.expect("RCPT TO:<b1@example.net>", 250)
        old.expect("RCPT TO:<b2@example.net>", 250)    # old max_recipients
        old.expect("DATA", 354)
        old.send(dot_stuff(make_body()))
        expect_reply(old.reply(), 250)
        old.quit()
        new = r.ehlo_client()
        new.expect("MAIL FROM:<a@example.org>", 250)
        new.expect("RCPT TO:<b1@example.net>", 250)
        new.expect("RCPT TO:<b2@example.net>", 452, "4.5.3")  # new max_recipients
        new.quit()


def test_sighup_broken_config_keeps_old():
    with Rig(options=OPTS) as r:
        r.moatd.options["hostname"] = "second.test"
        r.moatd.write_config()
        r.moatd.signal(signal.SIGHUP)
        wait_greeting_name(r, "second.test")
        n_before = len(r.moatd.log_lines())
        r.moatd.write_config("this is { not a valid = config\n\x00garbage\n")
        r.moatd.signal(signal.SIGHUP)
        time.sleep(1.0)
        check(r.moatd.running(), "moatd exited on SIGHUP with a broken config")
        new_log = "\n".join(r.moatd.log_lines()[n_before:])
        check(r.moatd.conf in new_log, "broken config not logged with its file name: %r" % new_log[-500:])
        wait_greeting_name(r, "second.test", 2)
        c = r.ehlo_client()
        body = make_body()
        expect_reply(c.send_message(body), 250, None, "relaying with the old config")
        c.quit()
        eq(r.up.wait_messages(1)[-1].body, body, "body")
        # fixed again: the next HUP applies
        r.moatd.options["hostname"] = "third.test"
        r.moatd.write_config()
        r.moatd.signal(signal.SIGHUP)
        wait_greeting_name(r, "third.test")


def test_sighup_semantic_error_keeps_old():
    with Rig(options=OPTS) as r:
        r.moatd.options["max_connections"] = "many"
        r.moatd.write_config()
        r.moatd.signal(signal.SIGHUP)
        time.sleep(0.8)
        check(r.moatd.running(), "moatd exited on SIGHUP with a bad value")
        wait_greeting_name(r, "moat.test", 2)
        check(r.moatd.grep(re.escape(r.moatd.conf) + r":\d+:"), "no FILE:LINE: error logged")


def test_sighup_keeps_overrides():
    with Rig(options=OPTS, overrides=["hostname=cli.test"]) as r:
        wait_greeting_name(r, "cli.test", 1)
        r.moatd.options["hostname"] = "file.test"
        r.moatd.options["max_recipients"] = 1
        r.moatd.write_config()
        r.moatd.signal(signal.SIGHUP)
        # the reload happened (max_recipients), the -o still wins
        def reloaded():
            c = r.ehlo_client()
            c.expect("MAIL FROM:<a@example.org>", 250)
            c.expect("RCPT TO:<b1@example.net>", 250)
            rep = c.cmd("RCPT TO:<b2@example.net>")
            c.quit()
            return rep.code == 452
        wait_for(reloaded, 5, 0.2, what="max_recipients = 1 after SIGHUP")
        wait_greeting_name(r, "cli.test", 1)


def test_sighup_many_times_under_load():
    with Rig(options=OPTS) as r:
        c = r.ehlo_client()
        for i in range(10):
            r.moatd.signal(signal.SIGHUP)
            expect_reply(c.send_message(make_body(subject="hup %d" % i)), 250)
            time.sleep(0.05)
        c.quit()
        eq(len(r.up.wait_messages(10)), 10, "messages")


if __name__ == "__main__":
    sys.exit(run_tests(globals()))
