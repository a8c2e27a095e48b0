#!/usr/bin/python3
"""The DKIM filter in moatd (proxy mode), against independent
implementations:

  - signing: mail from sign_networks (or a submission listener) is signed
    with every key the signing table names for its From: domain (RSA and
    Ed25519 together); what arrives upstream verifies with dkimpy, keys
    published in a real DNS server (unbound, dnsrig.TestZones) and also
    handed to dkimpy directly; mail from elsewhere or from a domain the
    table does not name is not signed.
  - verification: messages signed by dkimpy (rsa-sha256, ed25519-sha256,
    simple and relaxed) pass, with dkim=pass header.d= header.s= header.b=
    in moat's Authentication-Results and DKIM_PASS in X-Moat-Result; a
    changed body or a changed signed header fails (DKIM_FAIL scored); a key
    server that does not answer gives temperror, not fail; a forged
    Authentication-Results with moat's authserv-id that the signature
    covers is verified first and removed after.

Uses /usr/bin/python3 with python3-dkim (dkimpy), python3-nacl, openssl,
unbound (dnsrig), and build/san/moatd.
"""

import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from moattest import *  # noqa
from dnsrig import TestZones, FaultDNS
from dkimrig import DkimKeys

KEYS = DkimKeys()
TMP = tempfile.mkdtemp(prefix="moattest.dkim.")
RSA_PATH, ED_PATH = KEYS.rsa_path, KEYS.ed_path
RECORDS = [KEYS.publish("rsa1._domainkey.example.org", "rsa"),
           KEYS.publish("ed1._domainkey.example.org", "ed25519"),
           KEYS.publish("s1._domainkey.example.com", "rsa"),
           KEYS.publish("e1._domainkey.example.com", "ed25519")]
dkimpy_results = KEYS.results


_zones = None


def zones():
    global _zones
    if _zones is None:
        _zones = TestZones(RECORDS)
        _zones.start()
    return _zones


SIGN_CONF = """dkim {
    key k1 { domain = "example.org" selector = "rsa1" file = "%s" }
    key k2 { domain = "example.org" selector = "ed1" file = "%s" }
    signing_table = {"example.org k1 k2"}
}
""" % (RSA_PATH, ED_PATH)


def srig(*extra, role="inbound"):
    """A rig whose moatd signs with k1 (RSA) and k2 (Ed25519)."""
    r = Rig(overrides=["filters=dkim"] + list(extra), role=role)
    r.moatd.extra_conf = SIGN_CONF
    r.moatd.write_config()
    return r


def drig(*extra, role="inbound"):
    return Rig(overrides=["filters=dkim", "resolver.nameservers=" + zones().address,
                          "resolver.timeout=2"] + list(extra), role=role)


def send(c, body, mail_from="sender@example.org"):
    c.expect("MAIL FROM:<%s>" % mail_from, 250)
    c.expect("RCPT TO:<rcpt@example.net>", 250)
    c.expect("DATA", 354)
    c.send(dot_stuff(body))
    return c.reply()


def head_of(body):
    return body.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")


def message(frm="Alice <alice@example.org>", extra=(), body_lines=None):
    return make_body(headers=["From: %s" % frm, "To: Bob <bob@example.net>",
                              "Subject: quarterly figures",
                              "Date: Fri, 27 Nov 2026 12:00:00 +0000",
                              "Message-ID: <%d.%d@example.org>" % (os.getpid(), time.time_ns())]
                     + list(extra),
                     body_lines=body_lines or ["Hello Bob,", "", "  the figures are in.",
                                               "", "", "-- ", "Alice", "", ""])


# ---------------------------------------------------------------- signing

def test_sign_rsa_and_ed25519_verified_by_dkimpy():
    with srig('dkim.sign_networks={"127.0.0.0/8"}') as r:
        c = r.ehlo_client("client.example.org")
        expect_reply(send(c, message()), 250, None, "signed message")
        c.quit()
        m = r.up.wait_messages(1)[0]
        res = dkimpy_results(m.body)
        eq(sorted((d, s) for d, s, _ in res), [("example.org", "ed1"), ("example.org", "rsa1")],
           "signatures")
        check(all(ok for _, _, ok in res), "dkimpy verifies: %r\n%s" % (res, head_of(m.body)))
        sig = " ".join(header_values(m.body, "DKIM-Signature"))
        check("a=rsa-sha256" in sig and "a=ed25519-sha256" in sig, "algorithms: %r" % sig)
        check("c=relaxed/relaxed" in sig, "canonicalization: %r" % sig)
        # oversigned: From listed once more than present
        h = re.search(r"h=([^;]*);", sig).group(1).replace(" ", "").lower().split(":")
        eq(h.count("from"), 2, "from in h= (oversigned): %r" % h)
        # the body was not touched by signing, and the message arrived once
        check(m.body.endswith(b"-- \r\nAlice\r\n\r\n\r\n"), "body tail %r" % m.body[-40:])
        r.moatd.wait_log(r"signed for alice@example\.org with d=example\.org s=rsa1")


def test_signature_breaks_when_altered_after():
    # the signature moat made fails in dkimpy when a signed header or the
    # body is changed, and when a From is added above the oversigned one
    with srig('dkim.sign_networks={"127.0.0.0/8"}') as r:
        c = r.ehlo_client("client.example.org")
        expect_reply(send(c, message()), 250, None, "signed message")
        c.quit()
        raw = r.up.wait_messages(1)[0].body
    check(all(ok for _, _, ok in dkimpy_results(raw)), "unaltered verifies")
    for what, alt in [("body", raw.replace(b"figures are in", b"figures are IN")),
                      ("subject", raw.replace(b"Subject: quarterly", b"Subject: Quarterly!")),
                      ("added From", raw.replace(b"From: Alice", b"From: Mallory <m@example.org>\r\nFrom: Alice", 1))]:
        res = dkimpy_results(alt)
        check(not any(ok for _, _, ok in res), "%s altered still verifies: %r" % (what, res))


def test_submission_listener_signs_and_others_do_not():
    # a submission listener signs without sign_networks
    with srig(role="submission") as r:
        c = r.ehlo_client("client.example.org")
        expect_reply(send(c, message()), 250, None, "submission")
        c.quit()
        m = r.up.wait_messages(1)[0]
        eq(len(header_values(m.body, "DKIM-Signature")), 2, "signatures on submission")
    # an inbound listener, client outside sign_networks: not signed, verified
    with srig('dkim.sign_networks={"10.0.0.0/8"}',
              "resolver.nameservers=" + zones().address) as r:
        c = r.ehlo_client("client.example.org")
        expect_reply(send(c, message()), 250, None, "inbound")
        c.quit()
        m = r.up.wait_messages(1)[0]
        eq(header_values(m.body, "DKIM-Signature"), [], "no signature on inbound mail")
        ar = " ".join(header_values(m.body, "Authentication-Results"))
        check("dkim=none" in ar, "Authentication-Results %r" % ar)
        eq(r.moatd.grep(r"not signed"), [], "inbound mail is no signing candidate: no log line")
    # a From domain the table does not name: not signed (the envelope
    # sender is only the fallback when From: has no address)
    with srig('dkim.sign_networks={"127.0.0.0/8"}') as r:
        c = r.ehlo_client("client.example.org")
        expect_reply(send(c, message(frm="<carol@example.net>")), 250, None, "other domain")
        c.quit()
        m = r.up.wait_messages(1)[0]
        eq(header_values(m.body, "DKIM-Signature"), [], "foreign From: not signed")
        r.moatd.wait_log(r"session=\S+: dkim: not signed: no signing_table entry matches "
                         r"carol@example\.net \(signing candidate: client in sign_networks\)")


def test_bad_key_file_is_a_config_error():
    loose = os.path.join(TMP, "loose.private")
    with open(loose, "wb") as g:
        g.write(KEYS.rsa_pem)
    os.chmod(loose, 0o644)
    cfg = os.path.join(TMP, "bad.conf")
    with open(cfg, "w") as f:
        f.write('hostname = "mx.example.net"\nlistener a { listen = "127.0.0.1:2525" '
                'upstream = "127.0.0.1:2526" }\nfilters = {"dkim"}\n'
                'dkim {\n  key k1 { domain = "example.org" selector = "s" file = "%s" }\n'
                '  signing_table = {"example.org k1", "example.net nokey"}\n}\n' % loose)
    p = subprocess.run([MOATD, "-t", "-c", cfg], capture_output=True, text=True,
                       stdin=subprocess.DEVNULL)
    eq(p.returncode, 1, "moatd -t exit status (%s)" % p.stderr)
    check(re.search(r"bad\.conf:\d+: .*k1.*file.*readable by others", p.stderr),
          "key mode error names file and line: %r" % p.stderr)


# ---------------------------------------------------------------- verifying

def signed(sel="s1", domain="example.com", alg="rsa", canon=(b"relaxed", b"relaxed"),
           msg=None, include=None, length=False):
    raw = msg or message(frm="Carol <carol@example.com>")
    return KEYS.sign(raw, sel, domain, alg, canon=canon, include=include, length=length)


def ar_of(m):
    return " ".join(header_values(m.body, "Authentication-Results"))


def test_verify_dkimpy_signatures():
    cases = [("rsa relaxed", dict()),
             ("rsa simple", dict(canon=(b"simple", b"simple"))),
             ("ed25519 relaxed", dict(sel="e1", alg="ed25519")),
             ("ed25519 simple/relaxed", dict(sel="e1", alg="ed25519",
                                             canon=(b"simple", b"relaxed")))]
    with drig() as r:
        for what, kw in cases:
            c = r.ehlo_client("mail.example.com")
            expect_reply(send(c, signed(**kw), "carol@example.com"), 250, None, what)
            c.quit()
        msgs = r.up.wait_messages(len(cases))
        for (what, kw), m in zip(cases, msgs):
            ar = ar_of(m)
            check(re.search(r"\bdkim=pass header\.d=example\.com header\.s=%s header\.b=\S{8}"
                            % kw.get("sel", "s1"), ar), "%s: Authentication-Results %r" % (what, ar))
            res = header_values(m.body, "X-Moat-Result")[0]
            check("DKIM_PASS(-0.5)" in res, "%s: X-Moat-Result %r" % (what, res))


def test_verify_tampered_fails():
    good = signed()
    cases = [("body changed", good.replace(b"figures are in", b"figures are out")),
             ("signed header changed", good.replace(b"Subject: quarterly", b"Subject: Quarterly")),
             ("From added above", good.replace(b"From: Carol", b"From: Eve <eve@example.com>\r\nFrom: Carol", 1))]
    with drig() as r:
        for what, raw in cases:
            c = r.ehlo_client("mail.example.com")
            expect_reply(send(c, raw, "carol@example.com"), 250, None, what)
            c.quit()
        for (what, _), m in zip(cases, r.up.wait_messages(len(cases))):
            ar = ar_of(m)
            check(re.search(r"\bdkim=(fail|permerror) header\.d=example\.com", ar),
                  "%s: Authentication-Results %r" % (what, ar))
            check("dkim=pass" not in ar, "%s passed: %r" % (what, ar))
            res = header_values(m.body, "X-Moat-Result")[0]
            check(re.search(r"DKIM_(FAIL\(3\)|PERMERROR\(1\))", res), "%s: %r" % (what, res))


def test_verify_key_dns_timeout_is_temperror():
    dns = FaultDNS(default="timeout")
    dns.start()
    try:
        with Rig(overrides=["filters=dkim", "resolver.nameservers=%s" % dns.address,
                            "resolver.timeout=1", "dkim.timeout=8"]) as r:
            c = r.ehlo_client("mail.example.com")
            expect_reply(send(c, signed(), "carol@example.com"), 250, None, "key times out")
            c.quit()
            m = r.up.wait_messages(1)[0]
            ar = ar_of(m)
            check("dkim=temperror header.d=example.com" in ar, "Authentication-Results %r" % ar)
            check("dkim=fail" not in ar, "a DNS failure is no fail: %r" % ar)
    finally:
        dns.stop()


def test_forged_authentication_results_verified_then_removed():
    forged = ["Authentication-Results: moat.test; dkim=pass header.d=bank.example"]
    raw = signed(msg=message(frm="Carol <carol@example.com>", extra=forged),
                 include=[b"from", b"to", b"subject", b"date", b"authentication-results"])
    with drig() as r:
        c = r.ehlo_client("mail.example.com")
        expect_reply(send(c, raw, "carol@example.com"), 250, None, "forged A-R")
        c.quit()
        m = r.up.wait_messages(1)[0]
        ars = header_values(m.body, "Authentication-Results")
        check(not any("bank.example" in a for a in ars), "forged field kept: %r" % ars)
        check(any(re.search(r"\bdkim=pass header\.d=example\.com", a) for a in ars),
              "the signature covering it verified first: %r" % ars)


if __name__ == "__main__":
    try:
        run_tests(globals())
    finally:
        if _zones:
            _zones.stop()
        KEYS.cleanup()
        subprocess.run(["rm", "-rf", TMP])
