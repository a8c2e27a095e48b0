#!/usr/bin/python3
"""moatd as a milter of a real, throwaway Postfix (smtpd_milters), which
relays to Postfix's smtp-sink.

The same filters as in proxy mode (access, dnsbl and the test filter of
tests/hooks/test_hook.c in build/san/moatd-hooktest) decide through the
milter protocol: rejections carry moat's code and text in Postfix's reply
to the client, headers are added at the top and removed, the msg log line
carries Postfix's queue id; SIGHUP to moatd reloads the milter process,
SIGTERM stops it, a killed one is restarted. A few callback-level cases
run under miltertest (OpenDKIM's milter test driver) when it is
installed."""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from moattest import *  # noqa
from dnsrig import TestZones, dnsbl_records
from test_postfix import Postfix
from dkimrig import DkimKeys

MILTER_CF = """
smtpd_milters = inet:127.0.0.1:{port}
non_smtpd_milters =
milter_default_action = tempfail
milter_protocol = 6
milter_connect_macros = j {{daemon_name}}
milter_helo_macros = {{tls_version}} {{cipher}}
milter_mail_macros = i {{auth_authen}} {{auth_type}}
milter_end_of_data_macros = i
milter_command_timeout = 20s
milter_macro_daemon_name = mx-in
"""


class MilterPostfix(Postfix):
    """test_postfix's throwaway Postfix, with moat as its milter."""

    def __init__(self, milter_port):
        super().__init__()
        with open(os.path.join(self.dir, "main.cf"), "a") as f:
            f.write(MILTER_CF.format(port=milter_port))


_zones = None


def zones():
    global _zones
    if _zones is None:
        _zones = TestZones(dnsbl_records("bl.example", {
            "127.0.0.5": ("127.0.0.2", "Listed for milter tests")})).start()
    return _zones


def milter_conf(port, denied="denied@example.net", extra="", quarantine="none",
                filters=("access", "dnsbl", "test")):
    return "\n".join([
        "filters = {%s}" % ", ".join('"%s"' % f for f in filters),
        "milter {",
        '    socket = "inet:%d@127.0.0.1"' % port,
        '    quarantine_on = "%s"' % quarantine,
        "}",
        "access {",
        "    sender = {'%s reject \"5.7.1 Sender refused by moat\"'}" % denied,
        "}",
        "test {",
        '    on_error = "tempfail"',
        "}",
        "resolver {",
        '    nameservers = {"%s"}' % zones().address,
        "    timeout = 3",
        "}",
        "dnsbl {",
        "    wait = 1500",
        "    zone bl.example {",
        '        codes = {"127.0.0.2"}',
        "    }",
        "}",
        extra,
    ])


class MilterRig:
    def __init__(self, listeners=(), denied="denied@example.net", overrides=(), **conf):
        self.port = free_port()
        self.pf = MilterPostfix(self.port)
        self.moatd = Moatd(list(listeners), binary=MOATD_HOOKTEST, overrides=overrides,
                           extra_conf=milter_conf(self.port, denied, **conf))

    def __enter__(self):
        try:
            self.moatd.start()
            wait_for(lambda: port_listening(self.port), 10, what="the milter socket")
            self.moatd.wait_log(r"dnsbl: zone bl\.example passes its test points", timeout=10)
            self.pf.start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, et, ev, tb):
        try:
            if self.moatd.running():
                self.moatd.stop(check_exit=et is None)
        finally:
            self.pf.stop()
        return False

    def client(self, source="127.0.0.7"):
        c = Client(self.pf.smtpd, source=source)
        c.expect("EHLO client.example", 250)
        return c

    def milter_pids(self):
        out = subprocess.run(["pgrep", "-f", "-P", str(self.moatd.proc.pid), "--", "-M"],
                             capture_output=True, text=True).stdout.split()
        return [int(p) for p in out]

    def milter_alive(self, pid):
        try:
            os.kill(pid, 0)
            with open("/proc/%d/stat" % pid) as f:
                return f.read().split()[2] != "Z"
        except OSError:
            return False


def timed(seconds):
    def deco(fn):
        fn.timeout = seconds
        return fn
    return deco


def delivered_with(pf, marker, timeout=15):
    got = wait_for(lambda: [d for d in pf.delivered() if marker in d], timeout)
    check(got, "message %r did not reach smtp-sink; Postfix log: %s" % (marker, pf.log()[-1500:]))
    return got[0]


def head_of(msg):
    """The header block as Postfix passed it on (smtp-sink's own X-* and
    Received lines, which it puts first, left out)."""
    head = msg.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0].decode("utf-8", "replace")
    m = re.search(r"^Received: from \S+ \(\[127\.0\.0\.1\]\)\n\tby sink\.example[^\n]*\n(\t[^\n]*\n)*",
                  head, re.M)
    return head[m.end():] if m else head


@timed(90)
def test_milter_filters_through_postfix():
    with MilterRig() as r:
        # 1. a message passes: headers edited, result header at the top
        c = r.client("127.0.0.7")
        body = make_body(headers=[
            "From: <alice@example.net>", "To: <bob@example.org>", "Subject: milter pass",
            "Authentication-Results: moat.test; spf=pass smtp.mailfrom=forged.example",
            "Authentication-Results: other.example; spf=fail",
            "X-Test-Add: yes", "X-Test-Remove: please", "X-Folded: first",
            "\tsecond line"], body_lines=["milter pass body", ".leading dot"])
        rep = c.send_message(body, mail_from="alice@example.net", rcpts=("bob@example.org",))
        expect_reply(rep, 250)
        qid = re.search(r"queued as ([0-9A-F]+)", str(rep)).group(1)
        c.quit()
        msg = delivered_with(r.pf, b"milter pass body")
        head = head_of(msg)
        names = [l.split(":", 1)[0] for l in head.split("\n") if l and l[0] not in " \t"]
        check(names[:3] == ["X-Test-Seen", "X-Moat-Result", "Received"],
              "moat's headers at the top, in the order added, above Postfix's Received: %r"
              % head[:400])
        check("X-Test-Seen: yes" in head, "the test filter's added header: %r" % head)
        check("X-Test-Remove" not in head, "X-Test-Remove removed: %r" % head)
        check("moat.test; spf=pass" not in head,
              "forged Authentication-Results claiming moat's id removed: %r" % head)
        check("Authentication-Results: other.example; spf=fail" in head,
              "another server's Authentication-Results kept: %r" % head)
        check("X-Folded: first\n\tsecond line" in head, "folded header intact: %r" % head)
        check(b"\n.leading dot" in msg.replace(b"\r\n", b"\n"), "body intact")
        lines = wait_for(lambda: [l for l in r.moatd.msg_lines() if l.get("queue_id") == qid], 5)
        check(lines, "msg line with Postfix's queue id %s: %s" % (qid, r.moatd.grep(r"msg ")))
        m = lines[0]
        eq(m.get("client"), "127.0.0.7", "client in the msg line")
        eq(m.get("listener"), "mx-in", "listener ({daemon_name}) in the msg line")
        eq(m.get("helo"), "client.example", "helo in the msg line")
        eq(m.get("from"), "<alice@example.net>", "from in the msg line")
        eq(m.get("rcpts"), "<bob@example.org>", "rcpts in the msg line")
        eq(m.get("result"), "accepted", "result in the msg line")
        check(m.get("stages_ms", "").startswith("connect:"), "stages_ms: %r" % m)
        check(not r.moatd.grep(r"no queue id|no \{daemon_name\}"),
              "macros reach moat: %s" % r.moatd.grep(r"warning"))

        # 2. an access-denied sender: refused at MAIL with moat's text
        c = r.client("127.0.0.7")
        rep = c.cmd("MAIL FROM:<denied@example.net>")
        eq(rep.code, 550, "MAIL from a denied sender: %s" % rep)
        check("5.7.1 Sender refused by moat" in str(rep), "moat's text in Postfix's reply: %s" % rep)
        # 3. the test filter rejects one recipient, keeps the other
        c.expect("MAIL FROM:<carol@example.net>", 250)
        rep = c.cmd("RCPT TO:<hook-reject@example.org>")
        eq(rep.code, 550, "RCPT refused by the test filter: %s" % rep)
        check("rejected by test hook" in str(rep), "moat's text: %s" % rep)
        c.expect("RCPT TO:<bob@example.org>", 250)
        c.expect("DATA", 354)
        c.send(dot_stuff(make_body(headers=["From: <carol@example.net>", "Subject: hook",
                                            "X-Test-Hook: reject"], body_lines=["rejected body"])))
        rep = c.reply()
        eq(rep.code, 550, "end of data refused by the test filter: %s" % rep)
        check("message rejected by test hook" in str(rep), "moat's text: %s" % rep)
        # 4. a filter error with on_error = tempfail
        c.expect("MAIL FROM:<carol@example.net>", 250)
        c.expect("RCPT TO:<bob@example.org>", 250)
        c.expect("DATA", 354)
        c.send(dot_stuff(make_body(headers=["From: <carol@example.net>", "Subject: err",
                                            "X-Test-Hook: error"], body_lines=["error body"])))
        rep = c.reply()
        eq(rep.code, 451, "a failing filter with on_error = tempfail: %s" % rep)
        # 5. discard: Postfix says 250 and drops it
        c.expect("MAIL FROM:<carol@example.net>", 250)
        c.expect("RCPT TO:<bob@example.org>", 250)
        c.expect("DATA", 354)
        c.send(dot_stuff(make_body(headers=["From: <carol@example.net>", "Subject: discard",
                                            "X-Test-Hook: discard"], body_lines=["discarded body"])))
        expect_reply(c.reply(), 250)
        c.quit()
        results = [l.get("result") for l in r.moatd.msg_lines()]
        check(results.count("rejected") == 1 and "tempfailed" in results and "discarded" in results,
              "msg lines for reject, tempfail, discard: %r" % results)

        # 6. a DNSBL-listed client: refused at RCPT (as in proxy mode) with moat's text
        c = Client(r.pf.smtpd, source="127.0.0.5")
        c.expect("EHLO listed.example", 250)
        c.expect("MAIL FROM:<alice@example.net>", 250)
        rep = c.cmd("RCPT TO:<bob@example.org>")
        eq(rep.code, 554, "RCPT from a listed client: %s" % rep)
        check("Client host [127.0.0.5] blocked using bl.example; Listed for milter tests"
              in str(rep), "moat's DNSBL text in Postfix's reply: %s" % rep)
        c.quit()
        r.moatd.wait_log(r"client=127\.0\.0\.5: rejected by filter dnsbl at stage rcpt: 554")
        time.sleep(0.5)
        check(not [d for d in r.pf.delivered() if b"discarded body" in d or b"rejected body" in d],
              "rejected and discarded messages must not be delivered")


@timed(90)
def test_milter_dkim_sign_and_verify():
    """Postfix + moat as milter: mail from a sign_networks client leaves
    signed (RSA and Ed25519) and dkimpy verifies what smtp-sink got; a
    dkimpy-signed message from elsewhere is verified (dkim=pass in
    Authentication-Results), a tampered one fails."""
    keys = DkimKeys()
    zones().add([keys.publish("rsa1._domainkey.example.net", "rsa"),
                 keys.publish("ed1._domainkey.example.net", "ed25519"),
                 keys.publish("s1._domainkey.example.com", "rsa")], reload=True)
    conf = "\n".join([
        "dkim {",
        '    key k1 { domain = "example.net" selector = "rsa1" file = "%s" }' % keys.rsa_path,
        '    key k2 { domain = "example.net" selector = "ed1" file = "%s" }' % keys.ed_path,
        '    signing_table = {"example.net k1 k2"}',
        '    sign_networks = {"127.0.0.9/32"}',
        "}"])
    try:
        with MilterRig(filters=("access", "dnsbl", "dkim"), extra=conf) as r:
            c = r.client("127.0.0.9")
            body = make_body(headers=[
                "From: Alice <alice@example.net>", "To: <bob@example.org>",
                "Subject: milter signed", "Date: Fri, 27 Nov 2026 12:00:00 +0000",
                "Message-ID: <signed.%d@example.net>" % os.getpid()],
                body_lines=["signed through the milter", "", "-- ", "Alice"])
            expect_reply(c.send_message(body, mail_from="alice@example.net",
                                        rcpts=("bob@example.org",)), 250)
            c.quit()
            msg = delivered_with(r.pf, b"signed through the milter")
            res = keys.results(msg)
            eq(sorted((d, s) for d, s, _ in res), [("example.net", "ed1"), ("example.net", "rsa1")],
               "signatures on the delivered message: %r" % head_of(msg)[:600])
            check(all(ok for _, _, ok in res), "dkimpy verifies the milter's signatures: %r\n%s"
                  % (res, head_of(msg)))
            # inbound: verified, not signed
            raw = keys.sign(make_body(headers=[
                "From: Carol <carol@example.com>", "To: <bob@example.org>",
                "Subject: from outside", "Date: Fri, 27 Nov 2026 12:00:00 +0000"],
                body_lines=["verified by the milter"]), "s1", "example.com")
            for marker, data in ((b"verified by the milter", raw),
                                 (b"tampered in transit", raw.replace(b"verified by the milter",
                                                                      b"tampered in transit"))):
                c = r.client("127.0.0.7")
                expect_reply(c.send_message(data, mail_from="carol@example.com",
                                            rcpts=("bob@example.org",)), 250)
                c.quit()
                head = head_of(delivered_with(r.pf, marker))
                check("DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.net"
                      not in head, "inbound mail not signed: %r" % head)
                want = "dkim=pass header.d=example.com header.s=s1" if marker.startswith(
                    b"verified") else "dkim=fail header.d=example.com header.s=s1"
                check(want in re.sub(r"\s+", " ", head), "%s in %r" % (want, head))
    finally:
        keys.cleanup()


@timed(90)
def test_milter_spf_fail_rejected_with_moats_text():
    """SPF in milter mode (worker processes started by the milter process):
    a sender whose domain's SPF fails for the client is refused at MAIL
    with moat's 550 5.7.23 and the domain's explanation in Postfix's
    reply; a passing one goes through with spf=pass in
    Authentication-Results."""
    zones().add([("spf-fail.example.net", "TXT", "v=spf1 ip4:192.0.2.1 -all"),
                 ("spf-pass.example.net", "TXT", "v=spf1 ip4:127.0.0.7 -all")], reload=True)
    with MilterRig(filters=("access", "dnsbl", "spf"),
                   extra="spf {\n    reject_fail = yes\n}\n") as r:
        c = r.client("127.0.0.7")
        rep = c.cmd("MAIL FROM:<alice@spf-fail.example.net>")
        eq(rep.code, 550, "MAIL from an SPF-failing sender: %s" % rep)
        check("5.7.23" in str(rep) and "spf-fail.example.net" in str(rep),
              "moat's SPF text in Postfix's reply: %s" % rep)
        c.expect("RSET", 250)
        body = make_body(headers=["From: <carol@spf-pass.example.net>", "To: <bob@example.org>",
                                  "Subject: spf pass"], body_lines=["spf pass through milter"])
        expect_reply(c.send_message(body, mail_from="carol@spf-pass.example.net",
                                    rcpts=("bob@example.org",)), 250)
        c.quit()
        head = head_of(delivered_with(r.pf, b"spf pass through milter"))
        check(re.search(r"spf=pass smtp\.mailfrom=spf-pass\.example\.net", head),
              "Authentication-Results: %r" % head)


@timed(90)
def test_milter_metrics_listener():
    """The milter process serves its own metrics (milter.metrics_listen):
    a message Postfix passed through moat's milter is counted there."""
    mport = free_port()
    with MilterRig(overrides=["milter.metrics_listen=127.0.0.1:%d" % mport]) as r:
        wait_for(lambda: port_listening(mport), 10, what="the milter's metrics listener")
        c = r.client("127.0.0.7")
        body = make_body(headers=["From: <alice@example.net>", "To: <bob@example.org>",
                                  "Subject: counted"], body_lines=["counted by the milter"])
        expect_reply(c.send_message(body, mail_from="alice@example.net",
                                    rcpts=("bob@example.org",)), 250)
        c.quit()
        delivered_with(r.pf, b"counted by the milter")

        def accepted():
            import urllib.request
            with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % mport, timeout=5) as u:
                text = u.read().decode()
            m = re.search(r'^moat_messages_total\{action="accept"\} (\d+)', text, re.M)
            return int(m.group(1)) if m else None
        check(wait_for(lambda: accepted() == 1, 5),
              "moat_messages_total{action=\"accept\"} in the milter's metrics: %r" % accepted())


@timed(90)
def test_milter_reload_and_restart():
    """SIGHUP reloads the milter process (new connections see the new
    access list); a milter process that dies is restarted; the proxy
    listener works beside it."""
    up_port = free_port()
    with MilterRig() as r:
        r.moatd.signal(signal.SIGHUP)    # nothing changed yet: still fine
        r.moatd.wait_log(r"milter: reloaded", timeout=10)
        c = r.client("127.0.0.7")
        c.expect("MAIL FROM:<newly-denied@example.net>", 250)
        c.quit()
        r.moatd.extra_conf = milter_conf(r.port, denied="newly-denied@example.net")
        r.moatd.write_config()
        r.moatd.signal(signal.SIGHUP)
        r.moatd.wait_log(r"milter: reloaded", timeout=10, count=2)
        c = r.client("127.0.0.7")
        rep = c.cmd("MAIL FROM:<newly-denied@example.net>")
        eq(rep.code, 550, "after reload, the new access entry applies: %s" % rep)
        c.expect("RSET", 250)
        c.expect("MAIL FROM:<denied@example.net>", 250)
        c.quit()
        # a bad configuration: logged, the running one stays
        good = r.moatd.extra_conf
        r.moatd.extra_conf = good + "\nmax_errors = -5\n"
        r.moatd.write_config()
        r.moatd.signal(signal.SIGHUP)
        r.moatd.wait_log(r"reload failed", timeout=10)
        r.moatd.extra_conf = good
        r.moatd.write_config()
        # the milter process dies: moatd restarts it
        pids = r.milter_pids()
        eq(len(pids), 1, "one milter process")
        os.kill(pids[0], signal.SIGKILL)
        r.moatd.wait_log(r"milter: process %d died \(killed by signal 9\); restarting" % pids[0])
        r.moatd.wait_log(r"milter: started process", count=2, timeout=10)
        wait_for(lambda: port_listening(r.port), 10, what="the restarted milter")
        time.sleep(0.3)
        c = r.client("127.0.0.7")
        rep = c.send_message(make_body(body_lines=["after restart"]), mail_from="alice@example.net",
                             rcpts=("bob@example.org",))
        expect_reply(rep, 250)
        c.quit()
        delivered_with(r.pf, b"after restart")


@timed(60)
def test_milter_with_proxy_listener_and_sigterm():
    """The proxy and the milter in one moatd, one configuration; SIGTERM
    stops both processes (no orphan)."""
    with MilterRig() as r:
        lport = free_port()
        r.moatd.stop()
        m = Moatd([dict(name="inbound", listen="127.0.0.1:%d" % lport, role="inbound",
                        upstream="127.0.0.1:%d" % r.pf.smtpd, xclient=True)],
                  binary=MOATD_HOOKTEST, extra_conf=milter_conf(r.port))
        r.moatd = m
        m.start()
        wait_for(lambda: port_listening(r.port), 10, what="the milter socket")
        # through moat's proxy, then Postfix, then moat's milter: both log
        c = Client(lport, source="127.0.0.8")
        c.expect("EHLO both.example", 250)
        rep = c.send_message(make_body(body_lines=["proxy and milter"]),
                             mail_from="alice@example.net", rcpts=("bob@example.org",))
        expect_reply(rep, 250)
        c.quit()
        msg = delivered_with(r.pf, b"proxy and milter")
        eq(head_of(msg).count("X-Moat-Result:"), 2, "one result header from each front end")
        lines = wait_for(lambda: len(m.msg_lines()) >= 2 and m.msg_lines(), 5)
        check(lines, "two msg lines: %s" % m.grep("msg "))
        eq(sorted(l.get("listener") for l in lines), ["inbound", "mx-in"], "listeners")
        eq(len(set(l.get("queue_id") for l in lines)), 1, "the same Postfix queue id in both")
        pids = r.milter_pids()
        eq(len(pids), 1, "one milter process")
        m.stop()
        check(wait_for(lambda: not r.milter_alive(pids[0]), 5), "milter process left behind")
        check(m.grep(r"milter: process %d ended \(exit status 0\)" % pids[0]),
              "moatd reaped its milter process: %s" % m.log()[-800:])


@timed(90)
def test_milter_concurrent_sessions():
    """Many MTA connections at once: one libmilter thread each, every stage
    through the one loop thread; every message is logged once and arrives."""
    source = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
    with MilterRig() as r:
        p = subprocess.run([source, "-s", "10", "-m", "60", "-c", "-f", "alice@example.net",
                            "-t", "bob@example.org", "-S", "concurrent", "-M", "client.example",
                            "127.0.0.1:%d" % r.pf.smtpd],
                           capture_output=True, text=True, timeout=60)
        eq(p.returncode, 0, "smtp-source exit status (%s)" % p.stderr[-500:])
        got = wait_for(lambda: len(r.moatd.msg_lines()) >= 60 and r.moatd.msg_lines(), 20)
        check(got, "60 msg lines, got %d" % len(r.moatd.msg_lines()))
        eq(len(got), 60, "msg lines")
        eq(len(set(l.get("queue_id") for l in got)), 60, "one line per queue id")
        check(all(l.get("result") == "accepted" for l in got), "all accepted")
        wait_for(lambda: len(r.pf.delivered()) >= 60, 30)
        eq(len(r.pf.delivered()), 60, "messages at the sink")


MT_SCRIPT = r"""
conn = mt.connect("inet:%(port)d@127.0.0.1", 40, 0.25)
if conn == nil then error("no connection") end
mt.macro(conn, SMFIC_CONNECT, "j", "mta.example", "{daemon_name}", "mt-smtpd")
if mt.conninfo(conn, "client.example", "127.0.0.9") ~= nil then error("conninfo") end
if mt.getreply(conn) ~= SMFIR_CONTINUE then error("connect not continued") end
if mt.helo(conn, "client.example") ~= nil then error("helo") end
mt.macro(conn, SMFIC_MAIL, "i", "MT12345")
if mt.mailfrom(conn, "<alice@example.net>") ~= nil then error("mail") end
if mt.getreply(conn) ~= SMFIR_CONTINUE then error("mail not continued") end
if mt.rcptto(conn, "<hook-tempfail@example.org>") ~= nil then error("rcpt") end
if mt.getreply(conn) ~= SMFIR_REPLYCODE then error("rcpt hook-tempfail: expected a reply code") end
if mt.rcptto(conn, "<bob@example.org>") ~= nil then error("rcpt") end
if mt.getreply(conn) ~= SMFIR_CONTINUE then error("rcpt not continued") end
mt.header(conn, "From", "alice@example.net")
mt.header(conn, "X-Test-Score", "2.5")
mt.header(conn, "X-Test-Remove", "a")
mt.header(conn, "X-Test-Remove", "b")
mt.eoh(conn)
mt.bodystring(conn, "line one\r\nline two\r\n")
if mt.eom(conn) ~= nil then error("eom") end
if not mt.eom_check(conn, MT_HDRINSERT, "X-Moat-Result") then error("no X-Moat-Result insert") end
if not mt.eom_check(conn, MT_HDRDELETE, "X-Test-Remove") then error("no X-Test-Remove delete") end
if mt.eom_check(conn, MT_QUARANTINE) then error("quarantined below add_header") end
-- a second message scores add_header: quarantined, X-Spam added
if mt.mailfrom(conn, "<alice@example.net>") ~= nil then error("mail 2") end
if mt.rcptto(conn, "<bob@example.org>") ~= nil then error("rcpt 2") end
mt.header(conn, "X-Test-Score", "7")
mt.eoh(conn)
mt.bodystring(conn, "spammy\r\n")
if mt.eom(conn) ~= nil then error("eom 2") end
if not mt.eom_check(conn, MT_QUARANTINE) then error("not quarantined at add_header") end
if not mt.eom_check(conn, MT_HDRINSERT, "X-Spam", " Yes") then error("no X-Spam: Yes") end
mt.disconnect(conn)
"""


def run_miltertest(port, script):
    """Runs a miltertest (Lua) script, its %(port)d filled in, against the
    milter socket on port; it must exit 0."""
    wait_for(lambda: port_listening(port), 10, what="the milter socket")
    tmp = tempfile.mkdtemp(prefix="moat-mt.")
    try:
        path = os.path.join(tmp, "t.lua")
        with open(path, "w") as f:
            f.write(script % {"port": port})
        p = subprocess.run(["miltertest", "-s", path], capture_output=True, text=True, timeout=30)
        eq(p.returncode, 0, "miltertest exit status (%s %s)" % (p.stdout[-500:], p.stderr[-500:]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@timed(40)
def test_miltertest_callbacks():
    if not shutil.which("miltertest"):
        print("# miltertest not installed: skipped")
        return
    port = free_port()
    m = Moatd([], binary=MOATD_HOOKTEST, extra_conf=milter_conf(port, quarantine="add_header"))
    m.start()
    try:
        run_miltertest(port, MT_SCRIPT)
        line = m.wait_log(r"msg session=.* queue_id=MT12345")[0]
        kv = parse_kv(line[line.index("msg "):])
        eq(kv.get("listener"), "mt-smtpd", "listener from {daemon_name}")
        eq(kv.get("client"), "127.0.0.9", "client from xxfi_connect")
        eq(kv.get("rcpts"), "<bob@example.org>", "the tempfailed recipient is not counted")
        check("TEST_SCORE(2.5)" in kv.get("symbols", ""), "symbols: %r" % kv)
        m.wait_log(r"tempfailed by filter test at stage rcpt: 451 4\.7\.1 deferred by test hook")
        m.wait_log(r"message quarantined: moat: score 7\.00 \(add_header\)")
    finally:
        m.stop()


MT_AUTH_SCRIPT = r"""
conn = mt.connect("inet:%(port)d@127.0.0.1", 40, 0.25)
if conn == nil then error("no connection") end
mt.macro(conn, SMFIC_CONNECT, "j", "mta.example", "{daemon_name}", "mt-submission")
if mt.conninfo(conn, "laptop.example", "192.0.2.77") ~= nil then error("conninfo") end
mt.macro(conn, SMFIC_HELO, "{tls_version}", "TLSv1.3", "{cipher}", "TLS_AES_256_GCM_SHA384")
if mt.helo(conn, "laptop.example") ~= nil then error("helo") end
mt.macro(conn, SMFIC_MAIL, "i", "MTAUTH1", "{auth_authen}", "alice", "{auth_type}", "PLAIN")
if mt.mailfrom(conn, "<alice@example.net>") ~= nil then error("mail") end
if mt.rcptto(conn, "<bob@example.org>") ~= nil then error("rcpt") end
mt.header(conn, "From", "Alice <alice@example.net>")
mt.header(conn, "To", "bob@example.org")
mt.header(conn, "Subject", "authenticated")
mt.eoh(conn)
mt.bodystring(conn, "signed because authenticated\r\n")
if mt.eom(conn) ~= nil then error("eom") end
if not mt.eom_check(conn, MT_HDRINSERT, "DKIM-Signature") then error("not signed") end
if not mt.eom_check(conn, MT_HDRINSERT, "Message-ID") then error("no Message-ID added before signing") end
mt.disconnect(conn)
"""


@timed(40)
def test_miltertest_auth_and_tls_macros():
    """{auth_authen} from the MTA: the session counts as authenticated, its
    mail is signed (sign_authenticated), and the log line shows the user and
    the TLS macros."""
    if not shutil.which("miltertest"):
        print("# miltertest not installed: skipped")
        return
    keys = DkimKeys()
    port = free_port()
    conf = ('dkim {\n  key k1 { domain = "example.net" selector = "rsa1" file = "%s" }\n'
            '  signing_table = {"example.net k1"}\n}\n' % keys.rsa_path)
    m = Moatd([], binary=MOATD_HOOKTEST,
              extra_conf=milter_conf(port, filters=("access", "dkim"), extra=conf))
    m.start()
    try:
        run_miltertest(port, MT_AUTH_SCRIPT)
        line = m.wait_log(r"msg session=.* queue_id=MTAUTH1")[0]
        kv = parse_kv(line[line.index("msg "):])
        eq(kv.get("auth"), "alice", "auth user from {auth_authen}: %r" % line)
        eq(kv.get("tls"), "TLSv1.3", "tls from {tls_version}: %r" % line)
        eq(kv.get("cipher"), "TLS_AES_256_GCM_SHA384", "cipher from {cipher}: %r" % line)
        check("bits" not in kv, "no bits= when the MTA does not say: %r" % line)
        m.wait_log(r"signed for alice@example\.net with d=example\.net s=rsa1")
    finally:
        m.stop()
        keys.cleanup()


if __name__ == "__main__":
    rc = run_tests(globals())
    if _zones is not None:
        _zones.stop()
    sys.exit(rc)
