#!/usr/bin/python3
"""The DMARC filter (RFC 7489) through moatd in proxy mode, with the real
SPF and DKIM filters before it (-o filters=spf,dkim,dmarc):

  - unbound (dnsrig.TestZones) serves the SPF records, the DKIM keys and
    the _dmarc records of a domain per policy and alignment mode;
  - messages are signed with dkimpy (dkimrig.DkimKeys); clients bind
    127.0.0.5 (authorised by every SPF record) or 127.0.0.6 (authorised by
    none) to pass or fail SPF (TESTRIG trap 15);
  - a DKIM-aligned message passes although SPF fails (forwarded mail); a
    forged From: of a p=reject domain gets 550 5.7.1; SPF aligned relaxed
    passes, aspf=s with a subdomain fails; p=quarantine gives add_header;
    p=none only scores; no record gives dmarc=none; a subdomain without a
    record falls back to the organizational domain's (sp=); pct=0 spares
    the message; a _dmarc lookup that times out (dnsrig.FaultDNS) is a
    temperror and the message is delivered; several From fields get 550;
    dmarc listed before dkim is a configuration error.
  - `moat dmarc DOMAIN` prints the record that applies (the organizational
    domain's for a subdomain); `moat dmarc report` prints the RFC 7489
    aggregate report of what moatd kept in a real redis-server, and
    refuses clearly with the memory backend.

Uses /usr/bin/python3 with python3-dnslib, python3-dkim, unbound,
redis-server, and build/san/moatd, build/san/moat.
"""

import os
import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from moattest import *  # noqa
from redisrig import Redis  # noqa
from dnsrig import TestZones, FaultDNS
from dkimrig import DkimKeys

KEYS = DkimKeys()
TMP = tempfile.mkdtemp(prefix="moattest.dmarc.")
GOOD, BAD = "127.0.0.5", "127.0.0.6"
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MOAT = os.environ.get("MOAT", os.path.join(ROOT, "build/san/moat"))

DMARC = {
    "reject.example": "v=DMARC1; p=reject; sp=quarantine; rua=mailto:agg@reject.example",
    "relaxed.example": "v=DMARC1; p=reject",
    "strict.example": "v=DMARC1; p=reject; aspf=s",
    "quar.example": "v=DMARC1; p=quarantine",
    "none.example": "v=DMARC1; p=none",
    "pct0.example": "v=DMARC1; p=quarantine; pct=0",
    "slow.example": "v=DMARC1; p=reject",
}
SPF_DOMAINS = list(DMARC) + ["nodmarc.example", "mail.relaxed.example", "mail.strict.example",
                             "forwarder.example"]


def records():
    recs = []
    for d in SPF_DOMAINS:
        ip = BAD if d == "forwarder.example" else GOOD    # the forwarder sends from .6
        recs.append((d, "TXT", "v=spf1 ip4:%s -all" % (GOOD if d != "forwarder.example" else "192.0.2.1")))
    for d, txt in DMARC.items():
        if d != "slow.example":
            recs.append(("_dmarc." + d, "TXT", txt))
    recs.append(("_dmarc.nodmarc.example", "TXT", "v=spf1 -all"))   # not a DMARC record
    for d in ("reject.example", "quar.example"):
        recs.append(KEYS.publish("s1._domainkey." + d, "rsa"))
    return recs


_zones = None


def zones():
    global _zones
    if _zones is None:
        _zones = TestZones(records())
        _zones.start()
    return _zones


def drig(*extra, ns=None):
    return Rig(overrides=["filters=spf,dkim,dmarc",
                          "resolver.nameservers=" + (ns or zones().address),
                          "resolver.timeout=2", "spf.score_fail=0"] + list(extra))


def message(frm="Alice <alice@reject.example>", extra=()):
    return make_body(headers=["From: %s" % frm] + list(extra) +
                     ["To: Bob <bob@example.net>", "Subject: figures",
                      "Date: Fri, 27 Nov 2026 12:00:00 +0000",
                      "Message-ID: <%d.%d@reject.example>" % (os.getpid(), time.time_ns())],
                     body_lines=["Hello Bob,", "", "the figures.", "", "-- ", "Alice"])


def signed(domain, frm=None):
    return KEYS.sign(message(frm or "Alice <alice@%s>" % domain), "s1", domain, "rsa")


def send(c, body, mail_from):
    c.expect("MAIL FROM:<%s>" % mail_from, 250, timeout=20)
    c.expect("RCPT TO:<rcpt@example.net>", 250)
    c.expect("DATA", 354)
    c.send(dot_stuff(body))
    return c.reply(timeout=20)


def ar_of(m):
    return " ".join(header_values(m.body, "Authentication-Results"))


def result_of(m):
    return " ".join(header_values(m.body, "X-Moat-Result"))


def deliver(r, body, mail_from, source, what):
    n = len(r.up.messages)
    c = r.ehlo_client("mail.client.example", source=source)
    expect_reply(send(c, body, mail_from), 250, None, what)
    c.quit()
    return r.up.wait_messages(n + 1, timeout=10)[n]


def test_dkim_aligned_passes_although_spf_fails():
    # forwarded mail: the forwarder's SPF fails, the author's signature holds
    with drig() as r:
        m = deliver(r, signed("reject.example"), "fwd@forwarder.example", BAD, "forwarded")
        ar = ar_of(m)
        check("spf=fail smtp.mailfrom=forwarder.example" in ar, "A-R %r" % ar)
        check("dkim=pass header.d=reject.example" in ar, "A-R %r" % ar)
        check("dmarc=pass (p=reject dis=none) header.from=reject.example" in ar, "A-R %r" % ar)
        check("DMARC_PASS(-1)" in result_of(m), "X-Moat-Result %r" % result_of(m))


def test_forged_from_of_reject_domain_refused():
    with drig() as r:
        c = r.ehlo_client("mail.client.example", source=BAD)
        rep = send(c, message(), "alice@reject.example")
        expect_reply(rep, 550, "5.7.1", "forged From")
        check("reject.example" in rep.text and "DMARC" in rep.text, "reply %r" % rep.text)
        c.quit()
        time.sleep(0.2)
        eq(len(r.up.delivered()), 0, "delivered")
        r.moatd.wait_log(r"DMARC_FAIL")


def test_spf_alignment_relaxed_and_strict():
    with drig() as r:
        m = deliver(r, message("<alice@relaxed.example>"), "bounce@mail.relaxed.example", GOOD,
                    "relaxed")
        ar = ar_of(m)
        check("spf=pass smtp.mailfrom=mail.relaxed.example" in ar, "A-R %r" % ar)
        check("dmarc=pass (p=reject dis=none) header.from=relaxed.example" in ar, "A-R %r" % ar)
        c = r.ehlo_client("mail.client.example", source=GOOD)
        rep = send(c, message("<alice@strict.example>"), "bounce@mail.strict.example")
        expect_reply(rep, 550, "5.7.1", "aspf=s, SPF for a subdomain")
        c.quit()
        # the same domain in MAIL FROM passes strict alignment
        m = deliver(r, message("<alice@strict.example>"), "bounce@strict.example", GOOD, "strict")
        check("dmarc=pass (p=reject dis=none) header.from=strict.example" in ar_of(m),
              "A-R %r" % ar_of(m))


def test_quarantine_adds_header():
    with drig() as r:
        m = deliver(r, message("<alice@quar.example>"), "x@forwarder.example", BAD, "quarantine")
        ar, res = ar_of(m), result_of(m)
        check("dmarc=fail (p=quarantine dis=quarantine) header.from=quar.example" in ar,
              "A-R %r" % ar)
        check("action=add_header" in res and "DMARC_FAIL(4)" in res, "X-Moat-Result %r" % res)
        eq(header_values(m.body, "X-Spam"), ["Yes"], "spam header")
        # the same with quarantine = score: delivered, scored, no spam header
    with drig("dmarc.quarantine=score") as r:
        m = deliver(r, message("<alice@quar.example>"), "x@forwarder.example", BAD, "q score")
        check("dis=none" in ar_of(m) and "action=accept" in result_of(m),
              "%r %r" % (ar_of(m), result_of(m)))


def test_p_none_only_scores_and_no_record_is_none():
    with drig() as r:
        m = deliver(r, message("<alice@none.example>"), "x@forwarder.example", BAD, "p=none")
        check("dmarc=fail (p=none dis=none) header.from=none.example" in ar_of(m),
              "A-R %r" % ar_of(m))
        check("DMARC_FAIL(1)" in result_of(m) and "action=accept" in result_of(m),
              "X-Moat-Result %r" % result_of(m))
        m = deliver(r, message("<alice@nodmarc.example>"), "x@forwarder.example", BAD, "none")
        check(re.search(r"\bdmarc=none header\.from=nodmarc\.example", ar_of(m)),
              "A-R %r" % ar_of(m))
        check("DMARC_NONE(0)" in result_of(m), "X-Moat-Result %r" % result_of(m))


def test_organizational_domain_fallback_uses_sp():
    with drig() as r:
        # no _dmarc.a.b.reject.example: reject.example's record, sp=quarantine
        m = deliver(r, message("<alice@a.b.reject.example>"), "x@forwarder.example", BAD, "org")
        check("dmarc=fail (p=quarantine dis=quarantine) header.from=a.b.reject.example"
              in ar_of(m), "A-R %r" % ar_of(m))
        # and a subdomain signature aligns relaxed with the organizational domain
        raw = KEYS.sign(message("<alice@a.b.reject.example>"), "s1", "reject.example", "rsa")
        m = deliver(r, raw, "x@forwarder.example", BAD, "org aligned")
        check("dmarc=pass" in ar_of(m), "A-R %r" % ar_of(m))


def test_pct_zero_spares():
    with drig() as r:
        m = deliver(r, message("<alice@pct0.example>"), "x@forwarder.example", BAD, "pct=0")
        check("dmarc=fail (p=quarantine dis=none) header.from=pct0.example" in ar_of(m),
              "A-R %r" % ar_of(m))
        check("action=accept" in result_of(m) and "DMARC_FAIL(1)" in result_of(m),
              "X-Moat-Result %r" % result_of(m))


def test_several_from_fields_refused():
    with drig() as r:
        c = r.ehlo_client("mail.client.example", source=GOOD)
        rep = send(c, message("<alice@relaxed.example>", extra=["From: <eve@evil.example>"]),
                   "bounce@relaxed.example")
        expect_reply(rep, 550, "5.7.1", "two From fields")
        check("more than one From" in rep.text, "reply %r" % rep.text)
        rep = send(c, message("<alice@relaxed.example>, <eve@evil.example>"),
                   "bounce@relaxed.example")
        expect_reply(rep, 550, "5.7.1", "two addresses")
        check("more than one address" in rep.text, "reply %r" % rep.text)
        c.quit()
    with drig("dmarc.bad_from=score") as r:
        m = deliver(r, message("<alice@relaxed.example>", extra=["From: <eve@evil.example>"]),
                    "bounce@relaxed.example", GOOD, "bad_from=score")
        check("DMARC_BAD_FROM(10)" in result_of(m), "X-Moat-Result %r" % result_of(m))


def test_dns_timeout_is_temperror_and_delivered():
    recs = [rr for rr in records() if not str(rr[0]).startswith("_dmarc.")]
    dns = FaultDNS(recs, default="answer", rules={"_dmarc.slow.example": "timeout"})
    dns.start()
    try:
        with drig("resolver.timeout=1", ns=dns.address) as r:
            t0 = time.time()
            m = deliver(r, message("<alice@slow.example>"), "x@forwarder.example", BAD,
                        "temperror")
            check(time.time() - t0 < 15, "took %.1fs" % (time.time() - t0))
            check(re.search(r"\bdmarc=temperror header\.from=slow\.example", ar_of(m)),
                  "A-R %r" % ar_of(m))
            check("DMARC_TEMPERROR" in result_of(m), "X-Moat-Result %r" % result_of(m))
    finally:
        dns.stop()


test_dns_timeout_is_temperror_and_delivered.timeout = 90


def test_order_is_checked():
    cfg = os.path.join(TMP, "order.conf")
    with open(cfg, "w") as f:
        f.write('hostname = "mx.example.net"\nlistener a { listen = "127.0.0.1:2525" '
                'upstream = "127.0.0.1:2526" }\nfilters = {"spf", "dmarc", "dkim"}\n')
    p = subprocess.run([MOATD, "-t", "-c", cfg], capture_output=True, text=True,
                       stdin=subprocess.DEVNULL)
    eq(p.returncode, 1, "moatd -t exit status (%s)" % p.stderr)
    check(re.search(r"dmarc: filters: dkim must be listed before dmarc", p.stderr),
          "error names the order: %r" % p.stderr)


def moat(r, *args):
    ov = [a for o in r.moatd.overrides for a in ("-o", o)]
    p = subprocess.run([MOAT, "-c", r.moatd.conf] + ov + list(args), capture_output=True,
                       text=True, timeout=30, stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout, p.stderr


def test_cli_shows_the_record_that_applies():
    with drig() as r:
        rc, out, err = moat(r, "dmarc", "a.b.reject.example")
        eq(rc, 0, "exit status (%s)" % err)
        check("organizational domain: reject.example" in out, out)
        check("record: _dmarc.reject.example (organizational domain)" in out, out)
        check("policy for a.b.reject.example: quarantine" in out, out)
        rc, out, err = moat(r, "dmarc", "nodmarc.example")
        eq(rc, 1, "no record: %s" % out)
        check("dmarc: none" in out, out)


def test_aggregate_report_from_redis():
    with Redis() as red:
        with drig("store.backend=redis", "store.redis_server=127.0.0.1:%d" % red.port,
                  "dmarc.report=yes", "dmarc.report_org_name=Moat Test") as r:
            for _ in range(2):
                deliver(r, signed("reject.example"), "fwd@forwarder.example", BAD, "pass")
            c = r.ehlo_client("mail.client.example", source=BAD)
            expect_reply(send(c, message(), "alice@reject.example"), 550, "5.7.1", "forged")
            c.quit()
            deliver(r, message("<alice@none.example>"), "x@forwarder.example", BAD, "other")

            def rows():
                rc, out, err = moat(r, "dmarc", "report", "--domain", "reject.example",
                                    "--since", "1d")
                return out if rc == 0 and out.count("<count>") == 2 else None
            check(wait_for(rows, timeout=5), "report rows: %r" % (moat(r, "dmarc", "report",
                  "--domain", "reject.example"),))
            root = ET.fromstring(rows())
            eq(root.findtext("report_metadata/org_name"), "Moat Test", "org_name")
            eq(root.findtext("policy_published/domain"), "reject.example", "domain")
            eq(root.findtext("policy_published/p"), "reject", "p")
            eq(root.findtext("policy_published/sp"), "quarantine", "sp")
            recs = {(x.findtext("row/policy_evaluated/disposition"),
                     x.findtext("row/policy_evaluated/dkim"), x.findtext("row/count"))
                    for x in root.findall("record")}
            eq(recs, {("none", "pass", "2"), ("reject", "fail", "1")}, "records")
            for x in root.findall("record"):
                eq(x.findtext("row/source_ip"), BAD, "source_ip")
                eq(x.findtext("identifiers/header_from"), "reject.example", "header_from")
                eq(x.findtext("auth_results/spf/domain"), "forwarder.example"
                   if x.findtext("row/count") == "2" else "reject.example", "spf domain")
            rc, out, err = moat(r, "dmarc", "report", "--domain", "quar.example")
            eq(rc, 1, "no data: %r" % err)
    with drig("dmarc.report=yes") as r:
        rc, out, err = moat(r, "dmarc", "report", "--domain", "reject.example")
        eq(rc, 78, "memory backend: %r" % err)
        check("memory backend" in err and "redis" in err, "error %r" % err)


if __name__ == "__main__":
    try:
        rc = run_tests(globals())
    finally:
        if _zones:
            _zones.stop()
        KEYS.cleanup()
        subprocess.run(["rm", "-rf", TMP])
    sys.exit(rc)
