#!/usr/bin/python3
"""The DNS list filter (filters/dnsbl.c) through the real proxy, and
`moat dnsbl`, against real DNS servers on loopback (dnsrig.py):

  TestZones (unbound, static zones): client lists with listed and
  unlisted IPv4 and IPv6 addresses, bitmask codes, TXT reasons (one with
  CR LF in it), RFC 5782 test points, an allowlist (negative score), a
  broken zone (answers 192.0.2.1, no test points), a zone answering the
  refused code 127.255.255.254, name lists for HELO, MAIL FROM and From:.
  FaultDNS: zones that time out, SERVFAIL, or answer late.

Clients play different hosts by binding 127.0.0.x source addresses
(TESTRIG trap 15), looked up as x.0.0.127.ZONE. Names are under .example
(libunbound answers test. itself, trap 7).

Uses /usr/bin/python3 (python3-dnslib), /usr/sbin/unbound, build/san/moatd
and build/san/moat.
"""

import os
import re
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from moattest import *  # noqa
from dnsrig import TestZones, FaultDNS, dnsbl_records

MOAT = os.environ.get("MOAT") or os.path.join(ROOT, "build", "san", "moat")

# TXT with CR LF: must reach the SMTP reply as one line
BL_TXT = "Listed for tests\r\n250 2.0.0 injected"
BL_TXT_CLEAN = "Listed for tests 250 2.0.0 injected"

RECORDS = (
    dnsbl_records("bl.example", {
        "127.0.0.5": ("127.0.0.2", BL_TXT),
        "127.0.0.6": ("127.0.0.4", "bitmask listing"),       # &4 counts
        "127.0.0.11": ("127.0.0.8", "code that does not count"),
        "2001:db8::5": ("127.0.0.2", "IPv6 listing"),
    })
    + dnsbl_records("score.example", {
        "127.0.0.7": ("127.0.0.3", "scored listing"),          # &2 3 + &1 1 = 4
        "127.0.0.8": ("127.0.0.3", "scored listing"),
    })
    + dnsbl_records("wl.example", {"127.0.0.7": ("127.0.0.2", "known good")})
    # a squatted domain: answers 192.0.2.1, no test points
    + dnsbl_records("broken.example", {"127.0.0.9": "192.0.2.1", "127.0.0.2": "192.0.2.1"},
                    test_points=False)
    # a list refusing this resolver (as Spamhaus does for public resolvers)
    + dnsbl_records("refused.example", {"127.0.0.10": "127.255.255.254"})
    # name lists
    + dnsbl_records("rhs.example", listed_names={
        "bad.example": ("127.0.0.2", "bad domain"),
        "spam-helo.example": ("127.0.0.2", "bad helo"),
    })
    + dnsbl_records("fromlist.example", listed_names={
        "forged.example": ("127.0.0.2", "forged From"),
    })
)

ZONES = """
    zone bl.example {
        codes = {"127.0.0.2", "&4"}
    }
    zone score.example {
        action = "score"
        codes = {"&2 3", "&1 1"}
    }
    zone wl.example {
        action = "score"
        score = -5
        symbol = "DNSWL_TEST"
    }
    zone broken.example { }
    zone refused.example { }
    zone rhs.example {
        lookup = "helo"
    }
    zone rhs-sender.example {
        lookup = "sender"
    }
    zone fromlist.example {
        lookup = "from"
    }
"""

_zones = None


def zones():
    """One unbound for the whole file."""
    global _zones
    if _zones is None:
        # rhs-sender.example: the same listings as rhs.example
        recs = list(RECORDS) + dnsbl_records("rhs-sender.example", listed_names={
            "bad.example": ("127.0.0.2", "bad sender domain")})
        _zones = TestZones(recs).start()
    return _zones


def dnsbl_conf(ns, zones_text=ZONES, wait=1500, extra="", filters=("access", "dnsbl"),
               access_recipient=("postmaster@ allow",)):
    return "\n".join([
        "filters = {%s}" % ", ".join('"%s"' % f for f in filters),
        "access {",
        "    recipient = {%s}" % ", ".join('"%s"' % a for a in access_recipient),
        "}",
        "resolver {",
        '    nameservers = {"%s"}' % ns,
        "    timeout = 3",
        "}",
        "dnsbl {",
        "    wait = %d" % wait,
        extra,
        zones_text,
        "}",
    ])


def drig(ns=None, overrides=(), **kw):
    r = Rig(overrides=list(overrides))
    r.moatd.extra_conf = dnsbl_conf(ns or zones().address, **kw)
    r.moatd.write_config()
    return r


def healthy(r, zones_ok=("bl.example",), broken=()):
    """Waits until the activate hook's test-point checks are done."""
    for z in zones_ok:
        r.moatd.wait_log(r"dnsbl: zone %s passes its test points" % re.escape(z), timeout=8)
    for z in broken:
        r.moatd.wait_log(r"dnsbl: zone %s is broken" % re.escape(z), timeout=8)


def msg_lines(r, n, timeout=5.0):
    wait_for(lambda: len(r.moatd.msg_lines()) >= n, timeout, what="%d msg line(s)" % n)
    return r.moatd.msg_lines()


def send_ok(c, mail_from="sender@example.org", rcpts=("rcpt@example.net",), body=None):
    c.expect("MAIL FROM:<%s>" % mail_from, 250)
    for x in rcpts:
        c.expect("RCPT TO:<%s>" % x, 250)
    c.expect("DATA", 354)
    c.send(dot_stuff(body if body is not None else make_body()))
    return c.reply()


def run(argv, timeout=30):
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


# ---------------------------------------------------------------- through the proxy

def test_listed_client_rejected_at_rcpt_unlisted_passes():
    with drig() as r:
        healthy(r, ("bl.example", "score.example", "rhs.example"), broken=("broken.example",))
        # listed: 554 5.7.1 at RCPT, with the TXT, on one line
        c = r.ehlo_client(source="127.0.0.5")
        c.expect("MAIL FROM:<sender@example.org>", 250)
        rep = c.expect("RCPT TO:<rcpt@example.net>", 554, "5.7.1")
        eq(rep.lines, ["554 5.7.1 Service unavailable; Client host [127.0.0.5] blocked using "
                       "bl.example; " + BL_TXT_CLEAN], "reject reply")
        c.quit()
        r.moatd.wait_log(r"rejected by filter dnsbl at stage rcpt: 554 5\.7\.1 Service unavailable")
        # a bitmask code (&4) counts too; 127.0.0.8 (no &4 bit) does not
        c = r.ehlo_client(source="127.0.0.6")
        c.expect("MAIL FROM:<sender@example.org>", 250)
        rep = c.expect("RCPT TO:<rcpt@example.net>", 554, "5.7.1")
        check("bitmask listing" in rep.text, "TXT of the bitmask hit in %s" % rep)
        c.quit()
        c = r.ehlo_client(source="127.0.0.11")
        expect_reply(send_ok(c), 250, None, "127.0.0.11: a code that does not count")
        c.quit()
        # unlisted: passes, no DNSBL symbol
        c = r.ehlo_client(source="127.0.0.20")
        expect_reply(send_ok(c), 250, None, "unlisted client")
        c.quit()
        msgs = r.up.wait_messages(2)
        res = header_value(msgs[-1].body, "X-Moat-Result")
        check(res and "DNSBL" not in res, "result header of an unlisted client: %r" % res)
        eq(len(r.up.messages), 2, "messages relayed")


def test_scoring_zone_and_allowlist():
    with drig() as r:
        healthy(r, ("score.example", "wl.example"))
        c = r.ehlo_client(source="127.0.0.8")
        expect_reply(send_ok(c), 250, None, "scored client")
        c.quit()
        c = r.ehlo_client(source="127.0.0.7")          # scored 4, allowlisted -5
        expect_reply(send_ok(c), 250, None, "allowlisted client")
        c.quit()
        msgs = r.up.wait_messages(2)
        res = header_value(msgs[0].body, "X-Moat-Result")
        check(re.search(r"score=4\.00 .*DNSBL_SCORE_EXAMPLE\(4\)", res or ""),
              "result header of the scored client: %r" % res)
        res = header_value(msgs[1].body, "X-Moat-Result")
        check(re.search(r"score=-1\.00", res or "") and "DNSWL_TEST(-5)" in res
              and "DNSBL_SCORE_EXAMPLE(4)" in res, "result header of the allowlisted client: %r" % res)
        ml = msg_lines(r, 2)
        check("DNSBL_SCORE_EXAMPLE(4)" in ml[0]["symbols"], "msg line symbols %r" % ml[0]["symbols"])
        eq(ml[1]["score"], "-1.00", "msg line score with the allowlist")


def test_broken_and_refused_zones_ignored():
    with drig() as r:
        healthy(r, ("refused.example",), broken=("broken.example",))
        ln = r.moatd.grep(r"dnsbl: zone broken\.example is broken")[0]
        check("it answers 192.0.2.1 for 2.0.0.127.broken.example, outside 127.0.0.0/8" in ln,
              "why: %r" % ln)
        # 127.0.0.9 is "listed" in the broken zone (192.0.2.1): ignored
        c = r.ehlo_client(source="127.0.0.9")
        expect_reply(send_ok(c), 250, None, "client listed only in the broken zone")
        c.quit()
        # 127.0.0.10: the refused code 127.255.255.254 is logged, never scored
        c = r.ehlo_client(source="127.0.0.10")
        expect_reply(send_ok(c), 250, None, "client with a refused code")
        c.quit()
        msgs = r.up.wait_messages(2)
        for m in msgs:
            res = header_value(m.body, "X-Moat-Result")
            check("DNSBL" not in res, "result header %r" % res)
        r.moatd.wait_log(r"dnsbl: zone refused\.example answered 127\.255\.255\.254 for "
                         r"10\.0\.0\.127\.refused\.example: a refused code")
        # logged once an hour at most
        c = r.ehlo_client(source="127.0.0.10")
        c.quit()
        time.sleep(0.3)
        eq(len(r.moatd.grep(r"refused\.example answered")), 1, "refused-code log lines")


def test_broken_zone_recovers_on_reload():
    fixme = dnsbl_records("fixme.example", {"127.0.0.5": "127.0.0.2"}, test_points=False)
    with TestZones(fixme) as z, drig(ns=z.address, zones_text="zone fixme.example { }") as r:
        r.moatd.wait_log(r"dnsbl: zone fixme\.example is broken: test point "
                         r"2\.0\.0\.127\.fixme\.example is not listed", timeout=8)
        c = r.ehlo_client(source="127.0.0.5")      # ignored while broken
        c.expect("MAIL FROM:<sender@example.org>", 250)
        c.expect("RCPT TO:<rcpt@example.net>", 250)
        c.quit()
        z.set_records(dnsbl_records("fixme.example", {"127.0.0.5": "127.0.0.2"}))
        # a new resolver (another timeout), so no cached NXDOMAIN; reload re-checks
        r.moatd.extra_conf = r.moatd.extra_conf.replace("timeout = 3", "timeout = 4")
        r.moatd.write_config()
        r.moatd.signal(signal.SIGHUP)
        r.moatd.wait_log(r"dnsbl: zone fixme\.example passes its test points again", timeout=8)
        c = r.ehlo_client(source="127.0.0.5")
        c.expect("MAIL FROM:<sender@example.org>", 250)
        c.expect("RCPT TO:<rcpt@example.net>", 554, "5.7.1")
        c.quit()


def test_helo_sender_and_from_lists():
    with drig() as r:
        healthy(r, ("rhs.example", "rhs-sender.example", "fromlist.example"))
        # HELO name listed: refused at RCPT; a new EHLO with a clean name clears it
        c = r.ehlo_client("spam-helo.example", source="127.0.0.20")
        c.expect("MAIL FROM:<sender@example.org>", 250)
        rep = c.expect("RCPT TO:<rcpt@example.net>", 554, "5.7.1")
        check("Helo command [spam-helo.example] blocked using rhs.example; bad helo" in rep.text,
              "helo reject %s" % rep)
        c.expect("RSET", 250)
        c.ehlo("good.example")
        expect_reply(send_ok(c), 250, None, "after a clean EHLO")
        # an address literal is not looked up
        c.ehlo("[127.0.0.20]")
        # MAIL FROM domain listed
        c.expect("MAIL FROM:<someone@bad.example>", 250)
        rep = c.expect("RCPT TO:<rcpt@example.net>", 554, "5.7.1")
        check("Sender address [bad.example] blocked using rhs-sender.example" in rep.text,
              "sender reject %s" % rep)
        c.expect("RSET", 250)
        # From: header domain listed: rejected at the end of the message
        body = make_body(headers=["From: Someone <boss@Forged.Example>", "To: <rcpt@example.net>",
                                  "Subject: test"])
        rep = send_ok(c, body=body)
        expect_reply(rep, 554, "5.7.1", "From: list reject")
        check("From address [forged.example] blocked using fromlist.example" in rep.text,
              "from reject %s" % rep)
        # <> is not looked up
        expect_reply(send_ok(c, mail_from=""), 250, None, "null sender")
        c.quit()
        eq(len(r.up.wait_messages(2)), 2, "messages relayed")


def test_access_allow_exempts_postmaster():
    with drig() as r:
        healthy(r)
        c = r.ehlo_client(source="127.0.0.5")
        c.expect("MAIL FROM:<sender@example.org>", 250)
        c.expect("RCPT TO:<rcpt@example.net>", 554, "5.7.1")
        c.expect("RCPT TO:<postmaster@example.net>", 250)
        c.expect("DATA", 354)
        c.send(dot_stuff(make_body()))
        expect_reply(c.reply(), 250, None, "message to postmaster")
        c.quit()
        m = r.up.wait_messages(1)[0]
        eq(m.rcpts, ["postmaster@example.net"], "recipients relayed")
        # a reload re-activates the health checks (one timer, zones copied)
        r.moatd.signal(signal.SIGHUP)
        r.moatd.wait_log(r"reloaded")
        c = r.ehlo_client(source="127.0.0.5")
        c.expect("MAIL FROM:<sender@example.org>", 250)
        c.expect("RCPT TO:<rcpt@example.net>", 554, "5.7.1")
        c.quit()


def test_dry_run_lets_listed_client_through():
    with drig(overrides=["dnsbl.dry_run=yes"]) as r:
        healthy(r)
        c = r.ehlo_client(source="127.0.0.5")
        expect_reply(send_ok(c), 250, None, "listed client in dry-run")
        c.quit()
        r.up.wait_messages(1)
        r.moatd.wait_log(r"dry-run: filter dnsbl would reject at stage rcpt: 5\.7\.1 Service "
                         r"unavailable; Client host \[127\.0\.0\.5\]")


def test_timeouts_servfail_and_late_answers():
    recs = dnsbl_records("bl.example", {"127.0.0.5": ("127.0.0.2", "listed")})
    for z in ("slow.example", "fail.example", "late.example"):
        recs += dnsbl_records(z, {"127.0.0.9": ("127.0.0.2", "listed in %s" % z)})
    rules = {"*.slow.example": "timeout", "*.fail.example": "servfail",
             "9.0.0.127.late.example": "slow:1800"}
    zt = """
        zone bl.example { }
        zone slow.example { }
        zone fail.example { }
        zone late.example { }
    """
    with FaultDNS(recs, rules=rules) as f, drig(ns=f.address, zones_text=zt, wait=1000) as r:
        healthy(r, ("bl.example",))
        t0 = time.time()
        c = r.client(source="127.0.0.9")
        dt = time.time() - t0
        expect_reply(c.greeting, 220, None, "greeting")
        check(dt < 2.0, "greeting after %.2fs (wait 1 s)" % dt)
        c.ehlo()
        c.expect("MAIL FROM:<sender@example.org>", 250)
        t0 = time.time()
        c.expect("RCPT TO:<rcpt@example.net>", 250)   # SERVFAIL and timeouts never reject
        check(time.time() - t0 < 1.0, "RCPT reply took %.2fs" % (time.time() - t0))
        c.expect("DATA", 354)
        c.send(dot_stuff(make_body()))
        expect_reply(c.reply(), 250, None, "message from a client behind failing zones")
        c.quit()
        m = r.up.wait_messages(1)[0]
        res = header_value(m.body, "X-Moat-Result")
        check("DNSBL_TEMPFAIL(0)" in res and "DNSBL_FAIL" not in res and "DNSBL_SLOW" not in res
              and "DNSBL_LATE" not in res, "result header %r" % res)
        r.moatd.wait_log(r"dnsbl: zone slow\.example: lookup of 9\.0\.0\.127\.slow\.example "
                         r"failed: no answer within wait")
        r.moatd.wait_log(r"dnsbl: zone fail\.example: lookup of 9\.0\.0\.127\.fail\.example "
                         r"failed: servfail")
        r.moatd.wait_log(r"dnsbl: late answer from late\.example ignored", timeout=4)
        ml = msg_lines(r, 1)[0]
        check("DNSBL_TEMPFAIL(0)" in ml["symbols"], "msg line symbols %r" % ml["symbols"])
        # failures are logged once a minute per zone at most
        c = r.ehlo_client(source="127.0.0.9")
        c.quit()
        time.sleep(1.3)
        eq(len(r.moatd.grep(r"zone fail\.example: lookup")), 1, "servfail log lines")
        # the listed client is still refused though other zones fail
        c = r.ehlo_client(source="127.0.0.5")
        c.expect("MAIL FROM:<sender@example.org>", 250)
        c.expect("RCPT TO:<rcpt@example.net>", 554, "5.7.1")
        c.quit()
        # a client that leaves while the stage waits (and one that leaves at
        # once after its message, with answers still due): nothing leaks (the
        # rig checks the sanitizer log at exit)
        c = r.client(source="127.0.0.9", greet=False)
        c.close()
        time.sleep(0.2)


# ---------------------------------------------------------------- moat dnsbl, moatd -t

def conf_file(ns, zones_text=ZONES):
    d = tempfile.mkdtemp(prefix="moattest.dnsbl.")
    path = os.path.join(d, "moat.conf")
    with open(path, "w") as f:
        f.write('listener in {\n    listen = "127.0.0.1:2525"\n'
                '    upstream = "127.0.0.1:10025"\n}\n')
        f.write(dnsbl_conf(ns, zones_text) + "\n")
    return path


def test_moat_dnsbl_cli():
    z = zones()
    path = conf_file(z.address)
    rc, out, err = run([MOAT, "-c", path, "dnsbl", "127.0.0.5"])
    eq(rc, 1, "exit status for a listed address (stderr %r)" % err[-300:])
    block = out.split("zone bl.example ")[1].split("\n\n")[0]
    for want in ("query:  5.0.0.127.bl.example", "status: listed", "codes:  127.0.0.2",
                 'txt:    "%s"' % BL_TXT_CLEAN, "health: ok", "symbol: DNSBL_BL_EXAMPLE 5.00",
                 "reject: 554 5.7.1 Service unavailable; Client host [127.0.0.5] blocked using "
                 "bl.example; " + BL_TXT_CLEAN):
        check(want in block, "%r not in the bl.example block:\n%s" % (want, block))
    check("zone rhs.example" not in out, "a name list in an address lookup:\n%s" % out)

    rc, out, err = run([MOAT, "-c", path, "dnsbl", "127.0.0.20"])
    eq(rc, 0, "exit status for an unlisted address (out %r)" % out[-500:])
    check("status: listed" not in out, out)

    rc, out, err = run([MOAT, "-c", path, "dnsbl", "2001:db8::5"])
    eq(rc, 1, "exit status for a listed IPv6 address")
    check("5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.example" in out, out)

    rc, out, err = run([MOAT, "-c", path, "dnsbl", "127.0.0.9"])
    eq(rc, 0, "exit status for an address only the broken zone lists (out %r)" % out[-800:])
    check(re.search(r"zone broken\.example .*\n.*\n  status: broken zone", out), out)

    rc, out, err = run([MOAT, "-c", path, "dnsbl", "127.0.0.10"])
    eq(rc, 0, "exit status for a refused code")
    check("status: refused code" in out, out)

    rc, out, err = run([MOAT, "-c", path, "dnsbl", "someone@bad.example"])
    eq(rc, 1, "exit status for a listed sender domain (out %r)" % out[-800:])
    check("query:  bad.example.rhs-sender.example" in out and "Sender address [bad.example]" in out,
          out)

    with FaultDNS([], default="servfail") as f:
        path = conf_file(f.address, "zone bl.example { }")
        rc, out, err = run([MOAT, "-c", path, "dnsbl", "127.0.0.5"])
        eq(rc, 2, "exit status when the lookup fails (out %r)" % out[-500:])
        check("status: dns failure (servfail)" in out, out)


def test_moatd_t_bad_codes_names_file_and_line():
    path = conf_file("127.0.0.1:53", """
    zone bl.example {
        codes = {"127.0.0.2", "192.0.2.1"}
    }
""")
    with open(path) as f:
        lineno = [i for i, l in enumerate(f, 1) if "192.0.2.1" in l][0]
    rc, out, err = run([MOATD, "-t", "-c", path])
    eq(rc, 1, "moatd -t exit status (stderr %r)" % err[-500:])
    want = "%s:%d: dnsbl: zone bl.example: codes: entry 2 \"192.0.2.1\"" % (path, lineno)
    check(want in err, "%r not in stderr %r" % (want, err[-800:]))


if __name__ == "__main__":
    try:
        rc = run_tests(globals())
    finally:
        if _zones is not None:
            _zones.stop()
    sys.exit(rc)
