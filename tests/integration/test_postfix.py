#!/usr/bin/python3
"""moatd in front of a real, throwaway Postfix (smtpd with XCLIENT), which
relays to Postfix's smtp-sink: the set-up the README describes.

Checks that Postfix sees the real client through XCLIENT (its log says
client=...[127.0.0.5], and its relay check applies to that address, not to
moat's), that the message arrives intact, and that Postfix's queue id
reaches moat's log line."""

import glob
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from moattest import *  # noqa

MASTER_CF = """\
127.0.0.1:{smtpd} inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"""

MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {dir}/queue
data_directory = {dir}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = pf.example
mydomain = example
myorigin = pf.example
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
# moat's own address is trusted: only XCLIENT can make a client untrusted.
mynetworks = 127.0.0.1/32
relay_domains = example.org
relayhost = [127.0.0.1]:{sink}
smtp_dns_support_level = disabled
smtpd_peername_lookup = no
smtpd_authorized_xclient_hosts = 127.0.0.1
smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination
maillog_file = {dir}/maillog
maillog_file_prefixes = {dir}
alias_maps =
alias_database =
local_recipient_maps =
biff = no
"""


class Postfix:
    def __init__(self):
        # Below /srv, not /tmp: Postfix's checks dislike world-writable parents.
        os.makedirs("/srv", exist_ok=True)
        self.dir = tempfile.mkdtemp(prefix="moat-postfix.", dir="/srv")
        os.chmod(self.dir, 0o755)
        self.smtpd = free_port()
        self.sink_port = free_port()
        self.sink_dir = os.path.join(self.dir, "sink")
        os.makedirs(self.sink_dir)
        os.chmod(self.sink_dir, 0o777)
        os.makedirs(os.path.join(self.dir, "data"))
        os.makedirs(os.path.join(self.dir, "queue"))
        pw = pwd.getpwnam("postfix")
        os.chown(os.path.join(self.dir, "data"), pw.pw_uid, pw.pw_gid)
        with open(os.path.join(self.dir, "main.cf"), "w") as f:
            f.write(MAIN_CF.format(dir=self.dir, sink=self.sink_port))
        with open(os.path.join(self.dir, "master.cf"), "w") as f:
            f.write(MASTER_CF.format(smtpd=self.smtpd))
        self.sink = None

    def start(self):
        self.sink = subprocess.Popen(
            [SMTP_SINK, "-u", "nobody", "-h", "sink.example", "-d", self.sink_dir + "/%H%M%S.",
             "127.0.0.1:%d" % self.sink_port, "50"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # postfix reports failures only to syslog or a tty: give it a tty.
        r = subprocess.run(["script", "-qec", "postfix -c %s start" % self.dir, "/dev/null"],
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
        if not wait_for(lambda: port_listening(self.smtpd), 15):
            fail("Postfix did not start: %s %s" % (r.stdout[-800:], self.log()[-800:]))
        wait_for(lambda: port_listening(self.sink_port), 5)

    def log(self):
        try:
            with open(os.path.join(self.dir, "maillog")) as f:
                return f.read()
        except OSError:
            return ""

    def delivered(self):
        """The messages smtp-sink has written. It writes a file as the
        message comes in: one changed in the last 0.3 s may be partial
        and is left for the next call."""
        out = []
        now = time.time()
        for p in sorted(glob.glob(self.sink_dir + "/*")):
            try:
                if now - os.stat(p).st_mtime < 0.3:
                    continue
                with open(p, "rb") as f:
                    out.append(f.read())
            except OSError:
                pass
        return out

    def stop(self):
        subprocess.run(["script", "-qec", "postfix -c %s abort" % self.dir, "/dev/null"],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
        if self.sink:
            self.sink.terminate()
            self.sink.wait(5)
        if not os.environ.get("MOAT_TEST_KEEP"):
            shutil.rmtree(self.dir, ignore_errors=True)


def with_postfix(fn):
    def run():
        pf = Postfix()
        try:
            pf.start()
            fn(pf)
        finally:
            pf.stop()
    run.__name__ = fn.__name__
    run.timeout = 90
    return run


def moatd_for(pf):
    port = free_port()
    m = Moatd([dict(name="inbound", listen="127.0.0.1:%d" % port, role="inbound",
                    upstream="127.0.0.1:%d" % pf.smtpd, xclient=True)])
    m.start()
    return m, port


@with_postfix
def test_postfix_sees_real_client_via_xclient(pf):
    m, port = moatd_for(pf)
    try:
        c = Client(port, source="127.0.0.5")
        c.expect("EHLO client.example", 250)
        body = make_body(body_lines=["Hello through moat and Postfix.", ".leading dot"])
        rep = c.send_message(body, mail_from="alice@example.net", rcpts=("bob@example.org",))
        expect_reply(rep, 250)
        check(re.search(r"queued as [0-9A-F]+", str(rep)), "Postfix's queue id in the reply: %s" % rep)
        qid = re.search(r"queued as ([0-9A-F]+)", str(rep)).group(1)
        c.quit()
        # Postfix logged the client moat told it about, not moat itself.
        check(wait_for(lambda: re.search(r"%s: client=\S*\[127\.0\.0\.5\]" % qid, pf.log()), 10),
              "Postfix log lacks client=[127.0.0.5] for %s: %s" % (qid, pf.log()[-1500:]))
        check(wait_for(lambda: re.search(r"disconnect from \S*\[127\.0\.0\.5\] ehlo=2 xclient=", pf.log()), 5),
              "Postfix log should show EHLO, XCLIENT, EHLO again: %s" % pf.log()[-800:])
        # The message went through Postfix to the sink, body intact.
        got = wait_for(lambda: [d for d in pf.delivered() if b"Hello through moat and Postfix." in d], 15)
        check(got, "message did not reach smtp-sink through Postfix; Postfix log: %s" % pf.log()[-1500:])
        check(b"\r\n.leading dot\r\n" in got[0] or b"\n.leading dot\n" in got[0],
              "leading-dot line not intact: %r" % got[0][-300:])
        # moat's log line carries Postfix's queue id.
        lines = m.msg_lines()
        eq(len(lines), 1, "msg log lines")
        eq(lines[0].get("queue_id"), qid, "queue_id in moat's log line")
        eq(lines[0].get("client"), "127.0.0.5", "client in moat's log line")
    finally:
        m.stop()


@with_postfix
def test_postfix_relay_check_applies_to_real_client(pf):
    """Without XCLIENT, Postfix would see 127.0.0.1 (in mynetworks) and relay
    anywhere. With it, the outside client is refused relaying."""
    m, port = moatd_for(pf)
    try:
        c = Client(port, source="127.0.0.5")
        c.expect("EHLO client.example", 250)
        c.expect("MAIL FROM:<alice@example.net>", 250)
        r = c.cmd("RCPT TO:<victim@elsewhere.example.com>")
        check(r.code in (454, 554), "relay to a foreign domain must be refused by Postfix, got %s" % r)
        check("Relay access denied" in str(r), "Postfix's own reply text relayed: %s" % r)
        c.expect("RCPT TO:<bob@example.org>", 250)
        c.quit()
        check(wait_for(lambda: re.search(r"reject: RCPT from \S*\[127\.0\.0\.5\]", pf.log()), 5),
              "Postfix log: %s" % pf.log()[-1000:])
    finally:
        m.stop()


@with_postfix
def test_postfix_several_messages_one_session(pf):
    m, port = moatd_for(pf)
    try:
        c = Client(port, source="127.0.0.7")
        c.expect("EHLO multi.example", 250)
        for i in range(3):
            rep = c.send_message(make_body(body_lines=["message number %d" % i]),
                                 mail_from="a%d@example.net" % i, rcpts=("bob@example.org",))
            expect_reply(rep, 250)
        c.quit()
        # smtp-sink writes a file as the message comes in: wait for the
        # contents, not only for three files
        got = wait_for(lambda: all(any(b"message number %d" % i in d for d in pf.delivered())
                                   for i in range(3)) and pf.delivered(), 15)
        check(got, "3 messages expected at the sink, got %d" % len(pf.delivered()))
        for i in range(3):
            check(any(b"message number %d" % i in d for d in got), "message %d missing" % i)
        eq(len(re.findall(r"client=\S*\[127\.0\.0\.7\]", pf.log())), 3, "Postfix client= lines")
    finally:
        m.stop()


@with_postfix
def test_postfix_keeps_moats_dkim_signature(pf):
    """moatd signs (the client is in sign_networks) before Postfix: with
    XCLIENT the client is not one of Postfix's local_header_rewrite_clients,
    so Postfix adds no Message-ID or Date and rewrites no address, and the
    signature still verifies in dkimpy after Postfix relayed the message to
    smtp-sink; an 8-bit body arrives unconverted (smtp-sink offers
    8BITMIME)."""
    from dkimrig import DkimKeys
    keys = DkimKeys()
    keys.publish("rsa1._domainkey.example.net", "rsa")
    port = free_port()
    m = Moatd([dict(name="inbound", listen="127.0.0.1:%d" % port, role="inbound",
                    upstream="127.0.0.1:%d" % pf.smtpd, xclient=True)],
              overrides=["filters=dkim"],
              extra_conf='dkim {\n  key k1 { domain = "example.net" selector = "rsa1" '
                         'file = "%s" }\n  signing_table = {"example.net k1"}\n'
                         '  sign_networks = {"127.0.0.5/32"}\n}\n' % keys.rsa_path)
    m.start()
    try:
        c = Client(port, source="127.0.0.5")
        c.expect("EHLO client.example", 250)
        cases = [("with ids", ["Date: Fri, 27 Nov 2026 12:00:00 +0000",
                               "Message-ID: <pf.%d@example.net>" % os.getpid()], b"plain"),
                 ("without Message-ID and Date", [], b"plain"),
                 ("8-bit body", ["Content-Type: text/plain; charset=utf-8",
                                 "Content-Transfer-Encoding: 8bit"], "caf\u00e9".encode())]
        for what, extra, word in cases:
            body = make_body(headers=["From: Alice <alice@example.net>", "To: <bob@example.org>",
                                      "Subject: signed %s" % what] + extra,
                             body_lines=[b"marker " + what.encode() + b" " + word])
            expect_reply(c.send_message(body, mail_from="alice@example.net",
                                        rcpts=("bob@example.org",)), 250, None, what)
        c.quit()
        for what, _, word in cases:
            marker = b"marker " + what.encode() + b" " + word
            got = wait_for(lambda: [d for d in pf.delivered() if marker in d], 15)
            check(got, "%s: not delivered; Postfix log: %s" % (what, pf.log()[-1000:]))
            res = keys.results(got[0])
            eq([(d, s) for d, s, _ in res], [("example.net", "rsa1")], "%s: signatures" % what)
            check(res[0][2], "%s: dkimpy does not verify the signature after Postfix: %r"
                  % (what, got[0][:1500]))
    finally:
        m.stop()
        keys.cleanup()


if __name__ == "__main__":
    sys.exit(run_tests(globals()))
