#!/usr/bin/python3
"""Upstream failures at every stage: down, 4xx/5xx replies, closing,
never answering, slow, garbage, capability changes. The client must
get the upstream's reply or a 4xx, never a 250 for a message that was
not taken, and the session must stay usable."""

import sys
import os
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from moattest import *  # noqa

OPTS = {"message_size_limit": 1000000, "upstream_timeout": 2, "upstream_data_timeout": 2,
        "upstream_connect_timeout": 2}


def log_result(r, want):
    """The last msg log line has result=want (a regex)."""
    lines = r.moatd.wait_log(r"msg .*result=")
    d = parse_kv(lines[-1][lines[-1].index("msg "):])
    check(re.fullmatch(want, d.get("result", "")), "log result=%r, want %s: %r" % (d.get("result"), want, lines[-1]))
    return d


def transaction_until(c, stage):
    """Runs a transaction on an EHLO'd client; returns the first reply
    that is not the success reply for its step (or the final reply)."""
    rep = c.cmd("MAIL FROM:<a@example.org>")
    if rep.code != 250:
        return "mail", rep
    rep = c.cmd("RCPT TO:<b@example.net>")
    if rep.code != 250:
        return "rcpt", rep
    rep = c.cmd("DATA")
    if rep.code != 354:
        return "data", rep
    c.send(dot_stuff(make_body(body_lines=["line %d" % i for i in range(200)])))
    return "eod", c.reply(timeout=15)


def session_still_usable(r, c):
    """After a failure: heal the upstream, the same session delivers."""
    r.up.replies = {}
    r.up.close_at = set()
    r.up.hang_at = set()
    r.up.close_mid_data = None
    r.up.rcpt_replies = {}
    c.expect("RSET", 250)
    body = make_body(subject="after failure")
    fin = c.send_message(body, mail_from="retry@example.org")
    expect_reply(fin, 250, None, "message after the upstream recovered")
    c.quit()
    ms = [m for m in r.up.delivered() if m.mail_from == "retry@example.org"]
    eq(len(ms), 1, "retried message delivered")
    eq(ms[0].body, body, "retried body")


def fault_case(setup, want_stage, want_code, want_enh=None, want_text=None, result=None):
    with Rig(options=OPTS) as r:
        setup(r.up)
        c = r.ehlo_client()
        t0 = time.time()
        stage, rep = transaction_until(c, want_stage)
        eq(stage, want_stage, "stage of the failure (reply %s)" % rep)
        expect_reply(rep, want_code, want_enh, "reply at %s" % stage)
        if want_text:
            check(want_text in rep.text, "reply %s lacks %r" % (rep, want_text))
        if stage == "eod" and result:
            log_result(r, result)
        if stage == "eod" and rep.code != 250:
            eq([m for m in r.up.delivered()], [], "messages delivered upstream")
        session_still_usable(r, c)


# ---- upstream down

def test_upstream_down_at_mail():
    port = free_port()
    with Rig(options=OPTS, start_upstream=False, upstream_port=port) as r:
        c = r.ehlo_client()
        c.expect("MAIL FROM:<a@example.org>", 451, "4.4.1")
        c.expect("NOOP", 250)
        c.expect("RSET", 250)
        c.expect("MAIL FROM:<a@example.org>", 451, "4.4.1")
        # the upstream comes back: the same session now relays
        r.up.start()
        fin = c.send_message(make_body(), mail_from="back@example.org")
        expect_reply(fin, 250, None, "after the upstream came back")
        c.quit()
        eq([m.mail_from for m in r.up.wait_messages(1)], ["back@example.org"], "delivered")


def test_upstream_goes_down_between_sessions():
    with Rig(options=OPTS) as r:
        c = r.ehlo_client()
        expect_reply(c.send_message(make_body()), 250)
        c.quit()
        r.up.stop()
        time.sleep(0.2)
        c = r.ehlo_client()
        c.expect("MAIL FROM:<a@example.org>", 451, "4.4.1")
        c.quit()


def test_upstream_goes_down_within_session():
    # moatd's pooled upstream connection dies between two messages
    with Rig(options=OPTS) as r:
        c = r.ehlo_client()
        expect_reply(c.send_message(make_body()), 250)
        r.up.stop()
        time.sleep(0.3)
        rep = c.cmd("MAIL FROM:<a@example.org>")
        check(rep.code // 100 == 4, "MAIL after the upstream died: %s" % rep)
        c.expect("NOOP", 250)
        c.quit()


# ---- replies at each stage

def test_greeting_421():
    fault_case(lambda u: u.replies.update(greeting="421 4.3.2 upstream busy"), "mail", 4)


def test_greeting_554():
    with Rig(options=OPTS) as r:
        r.up.replies = {"greeting": "554 5.3.2 go away"}
        c = r.ehlo_client()
        rep = c.cmd("MAIL FROM:<a@example.org>")
        check(rep.code // 100 in (4, 5), "MAIL with upstream greeting 554: %s" % rep)
        check(rep.code // 100 == 4, "upstream refused the connection (554 greeting): client should get a 4xx, got %s" % rep)
        session_still_usable(r, c)


def test_ehlo_4xx():
    fault_case(lambda u: u.replies.update(ehlo="451 4.3.0 ehlo trouble"), "mail", 4)


def test_ehlo_5xx():
    fault_case(lambda u: u.replies.update(ehlo="502 5.5.2 no ehlo for you"), "mail", 4)


def test_mail_4xx_relayed():
    fault_case(lambda u: u.replies.update(mail="452 4.3.1 Insufficient system storage"),
               "mail", 452, "4.3.1", "Insufficient system storage")


def test_mail_5xx_relayed():
    fault_case(lambda u: u.replies.update(mail="553 5.7.1 <a@example.org>: Sender address rejected: spammer"),
               "mail", 553, "5.7.1", "Sender address rejected: spammer")


def test_mail_multiline_5xx_relayed():
    with Rig(options=OPTS) as r:
        r.up.replies = {"mail": "550-5.7.1 first\r\n550-5.7.1 second\r\n550 5.7.1 third"}
        c = r.ehlo_client()
        rep = c.cmd("MAIL FROM:<a@example.org>")
        eq(rep.lines, ["550-5.7.1 first", "550-5.7.1 second", "550 5.7.1 third"], "multi-line reply")
        session_still_usable(r, c)


def test_rcpt_4xx_relayed():
    fault_case(lambda u: u.replies.update(rcpt="450 4.2.0 <b@example.net>: Recipient address rejected: Greylisted"),
               "rcpt", 450, "4.2.0", "Greylisted")


def test_rcpt_5xx_relayed():
    fault_case(lambda u: u.replies.update(rcpt="550 5.1.1 <b@example.net>: Recipient address rejected: User unknown"),
               "rcpt", 550, "5.1.1", "User unknown")


def test_rcpt_some_rejected():
    with Rig(options=OPTS) as r:
        r.up.rcpt_replies = {"bad@example.net": "550 5.1.1 <bad@example.net>: User unknown",
                             "later@example.net": "450 4.2.1 try later"}
        c = r.ehlo_client()
        c.expect("MAIL FROM:<a@example.org>", 250)
        c.expect("RCPT TO:<good1@example.net>", 250)
        c.expect("RCPT TO:<bad@example.net>", 550, "5.1.1")
        c.expect("RCPT TO:<later@example.net>", 450, "4.2.1")
        c.expect("RCPT TO:<good2@example.net>", 250)
        c.expect("DATA", 354)
        body = make_body()
        c.send(dot_stuff(body))
        expect_reply(c.reply(), 250)
        c.quit()
        m = r.up.wait_messages(1)[0]
        eq(m.rcpts, ["good1@example.net", "good2@example.net"], "accepted rcpts at upstream")
        eq(m.body, body, "body")


def test_rcpt_rejected_pipelined_order():
    with Rig(options=OPTS) as r:
        r.up.rcpt_replies = {"bad@example.net": "550 5.1.1 User unknown"}
        r.up.delay = 0.05
        c = r.ehlo_client()
        c.send(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<x1@example.net>\r\nRCPT TO:<bad@example.net>\r\n"
               b"RCPT TO:<x2@example.net>\r\nDATA\r\n")
        codes = [c.reply().code for _ in range(5)]
        eq(codes, [250, 250, 550, 250, 354], "pipelined reply codes")
        c.send(dot_stuff(make_body()) + b"QUIT\r\n")
        expect_reply(c.reply(), 250)
        expect_reply(c.reply(), 221)
        eq(r.up.wait_messages(1)[0].rcpts, ["x1@example.net", "x2@example.net"], "rcpts")


def test_data_4xx():
    fault_case(lambda u: u.replies.update(data="451 4.3.0 no data now"), "eod", 4, result="tempfailed|failed")


def test_data_5xx_relayed():
    fault_case(lambda u: u.replies.update(data="554 5.5.1 Error: no valid recipients"), "eod", 554, "5.5.1",
               result="rejected|failed")


def test_data_answered_250_is_not_a_delivery():
    # An upstream that says 250 to DATA itself has taken no message: the
    # client must not hear 250 (it would lose the message), and nothing
    # may count as delivered.
    fault_case(lambda u: u.replies.update(data="250 2.0.0 ok"), "eod", 451, "4.4.2",
               result="tempfailed")


def test_eod_4xx_relayed():
    fault_case(lambda u: u.replies.update(eod="451 4.3.0 Error: queue file write error"), "eod", 451, "4.3.0",
               "queue file write error", result="tempfailed")


def test_eod_5xx_relayed():
    fault_case(lambda u: u.replies.update(eod="554 5.7.1 Message rejected: looks like spam"), "eod", 554, "5.7.1",
               "looks like spam", result="rejected")


def test_eod_5xx_multiline_relayed():
    with Rig(options=OPTS) as r:
        r.up.replies = {"eod": "550-5.7.1 Message content rejected\r\n550 5.7.1 see https://example.org/why"}
        c = r.ehlo_client()
        stage, rep = transaction_until(c, "eod")
        eq(rep.lines, ["550-5.7.1 Message content rejected", "550 5.7.1 see https://example.org/why"], "reply")
        session_still_usable(r, c)


# ---- closing at each stage

def test_close_at_greeting():
    fault_case(lambda u: u.close_at.add("greeting"), "mail", 4)


def test_close_at_ehlo():
    fault_case(lambda u: u.close_at.add("ehlo"), "mail", 4)


def test_close_at_xclient():
    fault_case(lambda u: u.close_at.add("xclient"), "mail", 4)


def test_close_at_mail():
    fault_case(lambda u: u.close_at.add("mail"), "mail", 4)


def test_close_at_rcpt():
    fault_case(lambda u: u.close_at.add("rcpt"), "rcpt", 4)


def test_close_at_data():
    fault_case(lambda u: u.close_at.add("data"), "eod", 4, result="tempfailed|failed")


def test_close_mid_data():
    fault_case(lambda u: setattr(u, "close_mid_data", 300), "eod", 4, result="tempfailed|failed")


def test_close_at_eod():
    fault_case(lambda u: u.close_at.add("eod"), "eod", 4, result="tempfailed|failed")


def test_421_at_mail_then_close():
    def setup(u):
        u.replies["mail"] = "421 4.3.2 shutting down"
    fault_case(setup, "mail", 4)


# ---- never answering

def hang_case(stage, want_stage):
    with Rig(options=OPTS) as r:
        r.up.hang_at = {stage}
        c = r.ehlo_client()
        t0 = time.time()
        got_stage, rep = transaction_until(c, want_stage)
        dt = time.time() - t0
        eq(got_stage, want_stage, "stage of the failure (reply %s)" % rep)
        expect_reply(rep, 4, None, "reply with the upstream hanging at %s" % stage)
        check(dt < 9, "took %.1fs with upstream_timeout=2" % dt)
        eq(r.up.delivered(), [], "delivered")
        session_still_usable(r, c)


def test_hang_at_greeting():
    hang_case("greeting", "mail")


def test_hang_at_ehlo():
    hang_case("ehlo", "mail")


def test_hang_at_xclient():
    hang_case("xclient", "mail")


def test_hang_at_mail():
    hang_case("mail", "mail")


def test_hang_at_rcpt():
    hang_case("rcpt", "rcpt")


def test_hang_at_data():
    hang_case("data", "eod")


def test_hang_at_eod():
    hang_case("eod", "eod")


# ---- slow, garbage

def test_slow_upstream():
    with Rig(options=OPTS) as r:
        r.up.delay = 0.3
        c = r.ehlo_client()
        bodies = [make_body(subject="slow %d" % i) for i in range(2)]
        for b in bodies:
            expect_reply(c.send_message(b), 250)
        c.quit()
        eq([m.body for m in r.up.wait_messages(2)], bodies, "bodies")


def test_slow_eod_within_data_timeout():
    with Rig(options=OPTS) as r:
        r.up.eod_delay = 1.0
        c = r.ehlo_client()
        expect_reply(c.send_message(make_body()), 250)
        c.quit()


def test_garbage_reply_at_mail():
    with Rig(options=OPTS) as r:
        r.up.replies = {"mail": "hello there, I am not SMTP"}
        c = r.ehlo_client()
        rep = c.cmd("MAIL FROM:<a@example.org>")
        expect_reply(rep, 4, None, "MAIL with a garbage upstream reply")
        session_still_usable(r, c)


def test_overlong_reply_line():
    with Rig(options=OPTS) as r:
        r.up.replies = {"rcpt": "250 2.1.5 " + "x" * 5000}
        c = r.ehlo_client()
        c.expect("MAIL FROM:<a@example.org>", 250)
        rep = c.cmd("RCPT TO:<b@example.net>")
        expect_reply(rep, 4, None, "RCPT with a 5000-octet upstream reply line")
        session_still_usable(r, c)


def test_reply_with_control_bytes_sanitized():
    with Rig(options=OPTS) as r:
        r.up.replies = {"mail": "550 5.7.1 bad\x1b[31m \x07 sender"}
        c = r.ehlo_client()
        rep = c.cmd("MAIL FROM:<a@example.org>")
        expect_reply(rep, 550, "5.7.1")
        check("\x1b" not in rep.text and "\x07" not in rep.text, "control bytes relayed to client: %r" % rep.text)
        c.quit()


# ---- XCLIENT and capabilities

def test_xclient_not_offered():
    caps = [c for c in DEFAULT_CAPS if not c.startswith("XCLIENT")]
    with Rig(options=OPTS, up=dict(caps=caps)) as r:
        c = r.ehlo_client()
        c.expect("MAIL FROM:<a@example.org>", 451, "4.3.5")
        c.quit()
        check(r.moatd.grep(r"(?i)xclient"), "no log line mentions XCLIENT")
        time.sleep(0.2)
        for cmd in r.up.all_commands():
            check(not cmd.upper().startswith(b"MAIL"), "MAIL relayed without XCLIENT: %r" % cmd)


def test_xclient_not_offered_later():
    caps = [c for c in DEFAULT_CAPS if not c.startswith("XCLIENT")]
    with Rig(options=OPTS) as r:
        r.up.caps = caps
        c = r.ehlo_client()
        c.expect("MAIL FROM:<a@example.org>", 451, "4.3.5")
        c.quit()
        check(r.moatd.grep(r"(?i)xclient"), "no log line mentions XCLIENT")
        for cmd in r.up.all_commands():
            check(not cmd.upper().startswith(b"MAIL"), "MAIL relayed without XCLIENT: %r" % cmd)


def test_xclient_refused():
    with Rig(options=OPTS) as r:
        r.up.replies = {"xclient": "550 5.7.0 Error: insufficient authorization"}
        c = r.ehlo_client()
        c.expect("MAIL FROM:<a@example.org>", 451, "4.3.5")
        c.quit()
        check(r.moatd.grep(r"(?i)xclient"), "no log line mentions XCLIENT")
        for cmd in r.up.all_commands():
            check(not cmd.upper().startswith(b"MAIL"), "MAIL relayed after XCLIENT was refused: %r" % cmd)


def test_xclient_4xx():
    with Rig(options=OPTS) as r:
        r.up.replies = {"xclient": "421 4.3.2 busy"}
        c = r.ehlo_client()
        rep = c.cmd("MAIL FROM:<a@example.org>")
        expect_reply(rep, 4, None, "MAIL with XCLIENT 421")
        session_still_usable(r, c)


def test_caps_shrink_later():
    # probe saw 8BITMIME (advertised to the client); the session's upstream lacks it
    caps = [c for c in DEFAULT_CAPS if c != "8BITMIME"]
    with Rig(options=OPTS) as r:
        r.up.caps = caps
        c = r.ehlo_client()
        rep = c.cmd("MAIL FROM:<a@example.org>")
        expect_reply(rep, 451, "4.3.0", "MAIL when the upstream lost 8BITMIME")
        c.quit()
        for cmd in r.up.all_commands():
            check(not cmd.upper().startswith(b"MAIL"), "MAIL relayed to a lesser upstream: %r" % cmd)


def test_caps_shrink_after_xclient():
    # the EHLO after XCLIENT lacks DSN, which moatd advertised
    with Rig(options=OPTS) as r:
        r.up.caps_after_xclient = [c for c in DEFAULT_CAPS if c != "DSN"]
        c = r.ehlo_client()
        c.expect("MAIL FROM:<a@example.org>", 451, "4.3.0")
        c.quit()
        for cmd in r.up.all_commands():
            check(not cmd.upper().startswith(b"MAIL"), "MAIL relayed to a lesser upstream: %r" % cmd)


def test_caps_grow_later_fine():
    caps = DEFAULT_CAPS + ["CHUNKING", "STARTTLS"]
    with Rig(options=OPTS) as r:
        r.up.caps = caps
        c = r.ehlo_client()
        expect_reply(c.send_message(make_body()), 250)
        c.quit()
        for cmd in r.up.all_commands():
            check(not cmd.upper().startswith((b"BDAT", b"STARTTLS")), "moatd used %r" % cmd)


def test_upstream_smaller_size():
    caps = [c if not c.startswith("SIZE") else "SIZE 5000" for c in DEFAULT_CAPS]
    with Rig(options=OPTS, up=dict(caps=caps)) as r:
        c = r.client()
        rep = c.expect("EHLO client.test", 250)
        check("250-SIZE 5000" in rep.lines or "250 SIZE 5000" in rep.lines, "EHLO %s: want SIZE 5000" % rep)
        c.expect("MAIL FROM:<a@example.org> SIZE=6000", 552, "5.3.4")
        c.expect("MAIL FROM:<a@example.org>", 250)
        c.expect("RCPT TO:<b@example.net>", 250)
        c.expect("DATA", 354)
        c.send(dot_stuff(make_body(body_lines=["s" * 70] * 100)))
        # moatd refuses it itself, or relays the upstream's 552
        expect_reply(c.reply(), 552, "5.3.4", "message over the upstream's SIZE")
        c.quit()
        time.sleep(0.2)
        eq(r.up.delivered(), [], "messages delivered upstream")


if __name__ == "__main__":
    sys.exit(run_tests(globals()))
