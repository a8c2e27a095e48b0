#!/usr/bin/python3
"""The SPF filter (RFC 7208) through the CLI and the proxy:

    moat -c CONF -o resolver.nameservers=127.0.0.1:PORT [-o resolver.timeout=N] \\
        spf CLIENT_IP SENDER HELO

prints spf=RESULT first (RFC 8601 token), then the mechanism that matched
and the explanation; exit 0 pass, 1 fail, 2 softfail, 3 neutral, 4 none,
5 temperror, 6 permerror. An empty SENDER is the null sender (checked as
postmaster@HELO).

  - the RFC 7208 test suite shipped with Debian's python3-spf (read from
    /usr/share/doc/python3-spf at test time; nothing copied): one case per
    scenario, the failing test names in the detail, the pass count in the
    summary case. Each scenario gets its own DNS server (spf_suite.SpfDNS)
    serving its zone data, with timeouts where the data says TIMEOUT.
  - own zones: every result, include and redirect chains, macros, exp=
    (and that hostile explanations come out clean and bounded), the limits
    of 10 DNS terms and 2 void lookups, IPv6 clients, timeouts within the
    time budget, type SPF (99) never asked for.
  - the same questions to two independent implementations: pyspf
    (spf.check2 through pydns, pointed at our server's port) and Mail::SPF
    (spfquery.mail-spf-perl, inside `unshare -mn` with a server on
    127.0.0.1:53 and a bind-mounted resolv.conf).
  - through the proxy (moatd, -o filters=spf): fail scored or rejected at
    MAIL (550 5.7.23), softfail scored, Received-SPF and
    Authentication-Results on a pass, temperror tempfailed (451 4.7.24),
    the null sender checked against the HELO name. Clients play hosts by
    binding 127.0.0.x source addresses (TESTRIG trap 15).

Names are under .example (libunbound answers test. itself, TESTRIG trap 7).
Uses /usr/bin/python3 with python3-dnslib, python3-yaml, python3-spf
(python3-dns), spf-tools-perl, util-linux (unshare), iproute2, and
build/san/moat, build/san/moatd.
"""

import concurrent.futures
import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from moattest import *  # noqa
from dnsrig import reverse_ipv6, QTYPE, RCODE
import spf_suite
from spf_suite import SpfDNS, moat_spf
from redisrig import Redis  # noqa

# ---------------------------------------------------------------- allowlist

# RFC 7208 suite tests that fail because of libspf2 1.2.10 itself, in a way
# moat cannot reasonably fix: libspf2 rejects records that RFC 7208 allows
# (a validator in front of it could only add errors, never accept more), or
# its macro expansion differs in a way moat does not control. Each was
# verified by running stock libspf2 (SPF_DNS_RESOLV, a small C driver)
# against the same DNS data: same result. Only the deviation described is
# allowed: "got" is the one result moat may give instead of the expected
# one; explanation="case" allows an explanation that differs only in
# letter case, explanation="default" one that is moat's default text (the
# result must still be right). A listed test that starts to pass is
# reported so the entry can go.
#
# Deliberately NOT listed (they fail, and should): records libspf2 accepts
# although RFC 7208 makes them a permerror (bad toplabels, empty
# domain-specs, invalid macro characters, duplicate exp=/redirect=,
# non-ASCII or control characters, "ip4:1.2.3.4/032", "redirect:"), which
# moat could catch in its DNS layer or with a syntax check before
# libspf2; and the failures that moat's own code or resolver cause.
SUITE_ALLOW = {}


def _allow(ids, reason, **shape):
    for i in ids.split():
        SUITE_ALLOW[i] = dict(shape, reason=reason)


_allow("a-nxdomain a-cidr4-0 a-cidr4-0-ip6 a-cidr6-0-ip4 a-cidr6-0-ip4mapped a-cidr6-0-ip6 "
       "a-cidr6-0-nxdomain mx-nxdomain mx-cidr4-0 mx-cidr4-0-ip6 mx-cidr6-0-ip4 "
       "mx-cidr6-0-ip4mapped mx-cidr6-0-ip6 mx-cidr6-0-nxdomain cidr4-0 cidr6-0-ip4 cidr6-ip4 "
       "cidr6-0",
       "libspf2 rejects a CIDR length of 0 (\"Invalid IPv4/IPv6 CIDR netmask (=0)\"), "
       "which RFC 7208 5.6 allows (a/0, mx//0, ip4:1.1.1.1/0)", got="permerror")
_allow("modifier-charset-good redirect-after-mechanisms2",
       "libspf2's parser rejects the unknown modifier name \"moo.cow-far_out\" (dots and "
       "underscores are allowed by RFC 7208 12 'name'); the second test redirects to it",
       got="permerror")
_allow("redirect-after-mechanisms1",
       "libspf2 reports \"v=spf1 redirect=SELF ~all\" as unlimited recursion before "
       "evaluating; RFC 7208 6.1 applies redirect only after ~all failed to match",
       got="permerror")
_allow("domain-name-truncation",
       "libspf2 never looks up an exp= name longer than 253 octets (no left truncation as "
       "RFC 7208 7.3 asks): the default explanation", explanation="default")
_allow("v-macro-ip6",
       "libspf2 writes %{i} of an IPv6 client in lower-case nibbles (as RFC 7208 7.3's own "
       "example, 2001:db8::cb01 -> ...b.c.0.0...); the suite's upper case only echoes its "
       "CAFE:BABE::1 input, and DNS names are case-insensitive",
       explanation="case")
_allow("upper-macro",
       "libspf2 URL-encodes upper-case macros with lower-case hex (%3d, not %3D)",
       explanation="case")

# ---------------------------------------------------------------- own zones

Z = "spf.example"
IN = "192.0.2.10"        # authorised by most records
OUT = "192.0.2.99"       # authorised by none
CTL_EXP = ("Bad\r\n550 5.7.1 injected\x00 bell\x07 escape\x1b[31m red\ttab\x7f "
           "end")
LONG_EXP = ["L%04d" % i + "x" * 245 for i in range(16)]     # 4000 octets, valid literals


def n(name):
    return "%s.%s" % (name, Z) if name else Z


def own_records():
    recs = [
        (n("pass"), "TXT", "v=spf1 ip4:%s -all" % IN),
        (n("soft"), "TXT", "v=spf1 ip4:%s ~all" % IN),
        (n("neutral"), "TXT", "v=spf1 ip4:%s ?all" % IN),
        (n("noall"), "TXT", "v=spf1 ip4:%s" % IN),
        (n("nospf"), "TXT", "google-site-verification=abc123"),
        (n("nospf"), "A", IN),
        (n("spfonly"), "SPF", "v=spf1 +all"),              # type 99 only: none
        (n("inc-tmp"), "TXT", "v=spf1 include:%s -all" % n("servfail")),
        (n("inc-timeout"), "TXT", "v=spf1 ip4:192.0.2.1 include:%s -all" % n("timeout")),
        (n("syntax"), "TXT", "v=spf1 ip4:192.0.2.300 -all"),
        (n("badmech"), "TXT", "v=spf1 frob:x.example -all"),
        (n("dup"), "TXT", "v=spf1 -all"),
        (n("dup"), "TXT", "v=spf1 +all"),
        (n("inc-none"), "TXT", "v=spf1 include:%s -all" % n("absent")),
        (n("red-none"), "TXT", "v=spf1 redirect=%s" % n("absent")),
        # include and redirect chains
        (n("inc1"), "TXT", "v=spf1 include:%s -all" % n("inc2")),
        (n("inc2"), "TXT", "v=spf1 ip4:192.0.2.21 include:%s ~all" % n("inc3")),
        (n("inc3"), "TXT", "v=spf1 ip4:192.0.2.20 -all"),
        (n("red1"), "TXT", "v=spf1 redirect=%s" % n("red2")),
        (n("red2"), "TXT", "v=spf1 ip4:192.0.2.31 redirect=%s" % n("red3")),
        (n("red3"), "TXT", "v=spf1 ip4:192.0.2.30 ~all"),
        (n("incred"), "TXT", "v=spf1 include:%s -all" % n("red1")),
        # macros
        (n("mac-i"), "TXT", "v=spf1 exists:%%{i}.ok.%s -all" % Z),
        ("192.0.2.40.ok." + Z, "A", "127.0.0.2"),
        (n("mac-ir"), "TXT", "v=spf1 exists:%{ir}.%{v}._spf.%{d} -all"),
        ("40.2.0.192.in-addr._spf." + n("mac-ir"), "A", "127.0.0.2"),
        (reverse_ipv6("2001:db8::40") + ".ip6._spf." + n("mac-ir"), "A", "127.0.0.2"),
        (n("mac-s"), "TXT", "v=spf1 exists:%%{s}.s.%s -all" % Z),
        ("alice@%s.s.%s" % (n("mac-s"), Z), "A", "127.0.0.2"),
        (n("mac-l"), "TXT", "v=spf1 exists:%%{l}.l.%s -all" % Z),
        ("alice.l." + Z, "A", "127.0.0.2"),
        ("postmaster.l." + Z, "A", "127.0.0.2"),
        (n("pm"), "TXT", "v=spf1 exists:%%{l}.l.%s -all" % Z),
        (n("inc-d"), "TXT", "v=spf1 include:%s -all" % n("mac-d")),
        (n("mac-d"), "TXT", "v=spf1 exists:%%{d}.d.%s -all" % Z),
        ("%s.d.%s" % (n("mac-d"), Z), "A", "127.0.0.2"),
        (n("d-other"), "TXT", "v=spf1 exists:%%{d}.d.%s -all" % Z),
        (n("mac-h"), "TXT", "v=spf1 exists:%%{h}.h.%s -all" % Z),
        ("good-helo.example.h." + Z, "A", "127.0.0.2"),
        # exp=
        (n("exp"), "TXT", "v=spf1 ip4:%s -all exp=why.%s" % (IN, n("exp"))),
        ("why." + n("exp"), "TXT", "%{s} is not allowed to send from %{i}"),
        (n("exp-ctl"), "TXT", "v=spf1 -all exp=why.%s" % n("exp-ctl")),
        ("why." + n("exp-ctl"), "TXT", CTL_EXP),
        (n("exp-long"), "TXT", "v=spf1 -all exp=why.%s" % n("exp-long")),
        ("why." + n("exp-long"), "TXT", LONG_EXP),
        (n("exp-300"), "TXT", "v=spf1 -all exp=why.%s" % n("exp-300")),
        ("why." + n("exp-300"), "TXT", "Not allowed " + "y" * 288),
        # limits: 10 DNS terms, 2 void lookups
        (n("lim10"), "TXT", "v=spf1 " + " ".join("include:l%d.lim.%s" % (i, Z)
                                                  for i in range(1, 11)) + " -all"),
        (n("lim11"), "TXT", "v=spf1 " + " ".join("include:l%d.lim.%s" % (i, Z)
                                                  for i in range(1, 12)) + " -all"),
        (n("void2"), "TXT", "v=spf1 a:v1.void.%s a:v2.void.%s -all" % (Z, Z)),
        (n("void3"), "TXT", "v=spf1 a:v1.void.%s a:v2.void.%s a:v3.void.%s -all" % (Z, Z, Z)),
        ("v2.void." + Z, "TXT", "no address here"),        # NODATA for A: void too
        # IPv6
        (n("six"), "TXT", "v=spf1 ip6:2001:db8::/64 -all"),
        (n("six-a"), "TXT", "v=spf1 a:%s -all" % n("host6")),
        (n("host6"), "AAAA", "2001:db8::25"),
        (n("host6"), "A", "192.0.2.25"),
        (n("loop6"), "TXT", "v=spf1 ip6:::1 -all"),
        (n("mx6"), "TXT", "v=spf1 mx -all"),
        (n("mx6"), "MX", (10, n("mail6"))),
        (n("mail6"), "AAAA", "2001:db8::30"),
        # the null sender (postmaster@HELO)
        (n("helo"), "TXT", "v=spf1 ip4:192.0.2.50 -all"),
        # the SPF record among ~14 KB of TXT records (TCP): more than one
        # 8 KB frame from the main process to the worker
        (n("bigtxt"), "TXT", "v=spf1 ip4:%s -all" % IN),
    ]
    for i in range(60):
        recs.append((n("bigtxt"), "TXT", "filler-%02d-%s" % (i, "x" * 220)))
    for i in range(1, 12):
        recs.append(("l%d.lim.%s" % (i, Z), "TXT", "v=spf1 -all"))
    return recs


OWN_RULES = {n("timeout"): "timeout", n("servfail"): "servfail", n("bigtxt"): "truncate"}

_own = None


def own_dns():
    global _own
    if _own is None:
        _own = SpfDNS(own_records(), rules=OWN_RULES).start()
    return _own


def spf(ip, sender, helo="mail.client.example", timeout=2, opts=(), limit=60, ns=None):
    r = moat_spf(ip, sender, helo, ns or own_dns().address, timeout=timeout, opts=opts,
                 limit=limit)
    check(r.rc is not None, "moat spf did not finish within %ds: %r" % (limit, r))
    check(not re.search(r"(?i)unknown command|usage:", r.err) or r.result,
          "moat has no spf command: %r" % r)
    return r


def expect(r, result, mech=None, what=""):
    probs = r.problems()
    check(not probs, "%s: %s; %r" % (what, "; ".join(probs), r))
    check(r.out.lstrip().startswith("spf=" + r.result),
          "%s: stdout must start with the spf=RESULT token: %r" % (what, r.out[:300]))
    check(r.result == result, "%s: got spf=%s, want spf=%s; %r" % (what, r.result, result, r))
    if mech:
        check(mech in r.out, "%s: the matching mechanism %r not in the output %r"
              % (what, mech, r.out[:500]))


def table(rows):
    """rows: (ip, sender, helo, want[, mechanism]). Collects every mismatch."""
    bad = []
    for row in rows:
        ip, sender, helo, want = row[:4]
        mech = row[4] if len(row) > 4 else None
        r = spf(ip, sender, helo)
        try:
            expect(r, want, mech, "%s %r %s" % (ip, sender, helo))
        except TestFailure as e:
            bad.append(str(e))
    check(not bad, "%d of %d wrong:\n  " % (len(bad), len(rows)) + "\n  ".join(bad))


# ---------------------------------------------------------------- the rig itself

def test_rig_spfdns_and_suite_loader():
    d = own_dns()
    from dnsrig import query, rr_values
    eq(rr_values(query("why." + n("exp-ctl"), "TXT", d.port)), [("TXT", CTL_EXP)],
       "exact TXT octets (control characters)")
    r = query("why." + n("exp-long"), "TXT", d.port, tcp=True)
    eq(b"".join(r.rr[0].rdata.data).decode(), "".join(LONG_EXP), "4000-octet TXT over TCP")
    with SpfDNS(own_records()) as d2:      # not own_dns(): it must never see type 99
        rr = query(n("spfonly"), "SPF", d2.port).rr
        eq([(QTYPE[x.rtype], bytes(x.rdata.data)) for x in rr],
           [("SPF", b"\x0bv=spf1 +all")], "type 99 record served")
        eq(rr_values(query(n("spfonly"), "TXT", d2.port)), [],
           "no TXT copy of a type 99 record")
    # a CNAME chain is followed, a loop is SERVFAIL
    with SpfDNS([("a.cn.example", "CNAME", "b.cn.example"), ("b.cn.example", "TXT", "x"),
                 ("l1.cn.example", "CNAME", "l2.cn.example"),
                 ("l2.cn.example", "CNAME", "L1.cn.example")]) as d3:
        eq(rr_values(query("a.cn.example", "TXT", d3.port)),
           [("CNAME", "b.cn.example."), ("TXT", "x")], "CNAME chain")
        eq(RCODE[query("l1.cn.example", "TXT", d3.port).header.rcode], "SERVFAIL", "CNAME loop")
    scns = spf_suite.load_suite()
    check(len(scns) >= 15, "scenarios in the suite: %d" % len(scns))
    total = sum(len(s.tests) for s in scns)
    check(total >= 190, "tests in the suite: %d" % total)
    # the suite's conventions: TXT copies of SPF records; TIMEOUT rules
    rl = [s for s in scns if s.description == "Record lookup"][0]
    check(("spfonly.example.net.", "TXT", ["v=spf1 -all"]) not in rl.records,
          "TXT: NONE must stop the TXT copy")
    eq(rl.rules.get("alltimeout.example.net."), "timeout", "bare TIMEOUT")
    eq(rl.rules.get(("spftimeout.example.net.", "TXT")), "answer", "TXT before TIMEOUT")


# ---------------------------------------------------------------- the RFC 7208 suite

_suite = None


def suite_results():
    """Runs the whole suite once (scenarios in parallel, 4 at a time)."""
    global _suite
    if _suite is None:
        check(spf_suite.moat_has_spf(), "%s has no spf command" % spf_suite.MOAT)
        scns = spf_suite.load_suite()
        with concurrent.futures.ThreadPoolExecutor(4) as ex:
            futs = [ex.submit(spf_suite.run_scenario, s, 1) for s in scns]
            res = [f.result() for f in futs]
        _suite = list(zip(scns, res))
    return _suite


def allowed_deviation(o):
    """Is the failing Outcome o exactly the deviation SUITE_ALLOW names?"""
    a = SUITE_ALLOW.get(o.test.id)
    if not a or o.run.problems():
        return False
    if "got" in a:
        return o.run.result == a["got"]
    if o.run.result not in o.test.results or o.run.result != "fail":
        return False
    if a.get("explanation") == "case":
        return o.test.explanation.lower() in o.run.out.lower()
    if a.get("explanation") == "default":
        return not any(s in o.run.out for s in o.test.scenario.plain_txt)
    return False


def _scenario_test(idx):
    def fn():
        scns = suite_results()
        check(idx < len(scns), "the suite has only %d scenarios" % len(scns))
        scn, (outs, spfq) = scns[idx]
        bad = [o for o in outs if not o.ok and not allowed_deviation(o)]
        for o in outs:
            if not o.ok and allowed_deviation(o):
                print("#   allowed deviation %s: %s (%s)" % (o.test.id, o.why,
                                                           SUITE_ALLOW[o.test.id]["reason"]))
            if o.ok and o.test.id in SUITE_ALLOW:
                print("#   allowlisted %s passes now: drop it from SUITE_ALLOW" % o.test.id)
        check(not bad, "%s: %d of %d failed: %s" % (
            scn.description, len(bad), len(outs),
            "; ".join("%s [%s %r %s] %s" % (o.test.id, o.test.host, o.test.mailfrom,
                                             o.test.helo, o.why) for o in bad)))
        check(not spfq, "type SPF (99) queries: %s" % sorted({q.name for q in spfq}))
    return fn


def _add_suite_tests():
    try:
        scns = spf_suite.load_suite()
    except Exception as e:      # reported by the summary case
        scns = []
        _add_suite_tests.error = e
    for s in scns:
        f = _scenario_test(s.index)
        f.__name__ = "test_rfc7208_%02d_%s" % (s.index, s.slug)
        f.timeout = 120
        globals()[f.__name__] = f


_add_suite_tests.error = None
_add_suite_tests()


def test_rfc7208_summary():
    if _add_suite_tests.error:
        fail("cannot load the RFC 7208 suite: %s" % _add_suite_tests.error)
    scns = suite_results()
    outs = [o for _, (oo, _) in scns for o in oo]
    ok = sum(o.ok for o in outs)
    allowed = sum(1 for o in outs if not o.ok and allowed_deviation(o))
    print("# RFC 7208 suite: %d of %d tests pass, %d allowlisted libspf2 deviation(s), "
          "%d scenario(s) (%s)" % (ok, len(outs), allowed, len(scns), spf_suite.suite_path()))
    bad = [o.test.id for o in outs if not o.ok and not allowed_deviation(o)]
    check(not bad, "%d of %d suite tests fail: %s" % (len(bad), len(outs), " ".join(bad)))


test_rfc7208_summary.timeout = 180


# ---------------------------------------------------------------- own zones: results

def test_every_result():
    table([
        (IN, "alice@" + n("pass"), "mail.client.example", "pass", "ip4:" + IN),
        (OUT, "alice@" + n("pass"), "mail.client.example", "fail", "-all"),
        (OUT, "alice@" + n("soft"), "mail.client.example", "softfail", "~all"),
        (IN, "alice@" + n("soft"), "mail.client.example", "pass"),
        (OUT, "alice@" + n("neutral"), "mail.client.example", "neutral", "?all"),
        (OUT, "alice@" + n("noall"), "mail.client.example", "neutral"),      # default: neutral
        (IN, "alice@" + n("nospf"), "mail.client.example", "none"),          # TXT, no SPF
        (IN, "alice@" + n("absent"), "mail.client.example", "none"),         # NXDOMAIN
        (IN, "alice@" + n("spfonly"), "mail.client.example", "none"),        # type 99 only
        (IN, "alice@" + n("syntax"), "mail.client.example", "permerror"),    # ip4:192.0.2.300
        (IN, "alice@" + n("badmech"), "mail.client.example", "permerror"),   # unknown mechanism
        (IN, "alice@" + n("dup"), "mail.client.example", "permerror"),       # two v=spf1
        (IN, "alice@" + n("inc-none"), "mail.client.example", "permerror"),  # include: none
        (IN, "alice@" + n("red-none"), "mail.client.example", "permerror"),  # redirect= none
        (IN, "ALICE@PASS.SPF.EXAMPLE", "mail.client.example", "pass"),       # case
    ])


def test_temperror_servfail_and_timeout_in_budget():
    r = spf(IN, "alice@" + n("servfail"), timeout=2)
    expect(r, "temperror", what="SERVFAIL for the record")
    check(r.elapsed < 10, "SERVFAIL took %.1fs" % r.elapsed)
    r = spf(IN, "alice@" + n("inc-tmp"), timeout=2)
    expect(r, "temperror", what="include: of a SERVFAILing domain")
    t0 = time.time()
    r = spf(IN, "alice@" + n("timeout"), timeout=2, limit=40)
    expect(r, "temperror", what="timeout with resolver.timeout=2")
    check(r.elapsed < 8, "timeout with resolver.timeout=2 took %.1fs" % r.elapsed)
    r = spf(OUT, "alice@" + n("inc-timeout"), timeout=2, limit=40)
    expect(r, "temperror", what="include: of a timing-out domain")
    check(r.elapsed < 8, "include timeout took %.1fs" % r.elapsed)
    # the default resolver timeout: still well inside an SMTP command's budget
    r = spf(IN, "alice@" + n("timeout"), timeout=None, limit=40)
    expect(r, "temperror", what="timeout with the default resolver timeout")
    check(r.elapsed < 30, "timeout with the default resolver timeout took %.1fs" % r.elapsed)
    check(time.time() - t0 < 60, "timeouts took %.1fs" % (time.time() - t0))


test_temperror_servfail_and_timeout_in_budget.timeout = 120


def test_include_and_redirect_chains():
    table([
        ("192.0.2.20", "a@" + n("inc1"), "h.example", "pass"),    # include in include
        ("192.0.2.21", "a@" + n("inc1"), "h.example", "pass"),
        (OUT, "a@" + n("inc1"), "h.example", "fail"),             # inner ~all: no match, -all
        ("192.0.2.30", "a@" + n("red1"), "h.example", "pass"),    # redirect twice
        ("192.0.2.31", "a@" + n("red1"), "h.example", "pass"),
        (OUT, "a@" + n("red1"), "h.example", "softfail"),         # the last record's ~all
        ("192.0.2.30", "a@" + n("incred"), "h.example", "pass"),  # include of a redirect
        (OUT, "a@" + n("incred"), "h.example", "fail"),
    ])


def test_macros():
    table([
        ("192.0.2.40", "a@" + n("mac-i"), "h.example", "pass"),              # %{i}
        ("192.0.2.41", "a@" + n("mac-i"), "h.example", "fail"),
        ("192.0.2.40", "a@" + n("mac-ir"), "h.example", "pass"),             # %{ir}.%{v}._spf
        ("2001:db8::40", "a@" + n("mac-ir"), "h.example", "pass"),           # ip6 nibbles
        ("192.0.2.41", "a@" + n("mac-ir"), "h.example", "fail"),
        ("2001:db8::41", "a@" + n("mac-ir"), "h.example", "fail"),
        (OUT, "alice@" + n("mac-s"), "h.example", "pass"),                   # %{s}
        (OUT, "bob@" + n("mac-s"), "h.example", "fail"),
        (OUT, "alice@" + n("mac-l"), "h.example", "pass"),                   # %{l}
        (OUT, "bob@" + n("mac-l"), "h.example", "fail"),
        (OUT, "a@" + n("inc-d"), "h.example", "pass"),                       # %{d} in include
        (OUT, "a@" + n("d-other"), "h.example", "fail"),
        (OUT, "a@" + n("mac-h"), "good-helo.example", "pass"),               # %{h}
        (OUT, "a@" + n("mac-h"), "bad-helo.example", "fail"),
    ])
    # the queries made for %{ir}.%{v}._spf.%{d}
    d = own_dns()
    check(d.queries_for("40.2.0.192.in-addr._spf." + n("mac-ir"), "A"),
          "no A query for 40.2.0.192.in-addr._spf.%s" % n("mac-ir"))


def test_exp_explanations_clean_and_bounded():
    r = spf(OUT, "alice@" + n("exp"))
    expect(r, "fail", what="exp=")
    want = "alice@%s is not allowed to send from %s" % (n("exp"), OUT)
    check(want in r.out, "explanation %r not in the output %r" % (want, r.out))
    r = spf(IN, "alice@" + n("exp"))
    expect(r, "pass", what="exp= on a pass")
    check("not allowed" not in r.out, "explanation on a pass: %r" % r.out)
    # control characters: a syntax error (default explanation) or cleaned; never raw
    r = spf(OUT, "alice@" + n("exp-ctl"))
    expect(r, "fail", what="exp with control characters")
    bad = sorted({"%02x" % ord(c) for c in r.out if (ord(c) < 0x20 and c not in "\n\t")
                  or ord(c) == 0x7f})
    check(not bad, "control characters %s in the output %r" % (bad, r.out))
    check(not re.search(r"(?m)^\s*550 5\.7\.1 injected", r.out),
          "injected line in the output %r" % r.out)
    # 300 and 4000 octets of valid explanation: bounded
    for name, size in (("exp-300", 300), ("exp-long", 4000)):
        r = spf(OUT, "alice@" + n(name))
        expect(r, "fail", what="%d-octet exp" % size)
        longest = max(len(l) for l in r.out.split("\n"))
        check(longest <= 1000 and len(r.out) < 3000,
              "a %d-octet explanation must come out bounded: longest line %d, %d chars of "
              "output" % (size, longest, len(r.out)))


def test_dns_term_limit():
    r = spf(OUT, "a@" + n("lim10"))
    expect(r, "fail", what="10 includes (the limit)")
    d = own_dns()
    t0 = time.time()
    r = spf(OUT, "a@" + n("lim11"))
    expect(r, "permerror", what="11 includes (over the limit)")
    # the 11th include is never looked up
    q = [x for x in d.queries_for("l11.lim." + Z) if x.time >= t0]
    check(not q, "the 11th include was looked up: %s" % (q,))


def test_void_lookup_limit():
    r = spf(OUT, "a@" + n("void2"))
    expect(r, "fail", what="2 void lookups")
    r = spf(OUT, "a@" + n("void3"))
    expect(r, "permerror", what="3 void lookups")


def test_ipv6_clients():
    table([
        ("2001:db8::5", "a@" + n("six"), "h.example", "pass", "ip6:2001:db8::/64"),
        ("2001:db8:1::5", "a@" + n("six"), "h.example", "fail"),
        (IN, "a@" + n("six"), "h.example", "fail"),
        ("2001:db8::25", "a@" + n("six-a"), "h.example", "pass"),    # a: with AAAA
        ("192.0.2.25", "a@" + n("six-a"), "h.example", "pass"),      # a: with A
        ("2001:db8::26", "a@" + n("six-a"), "h.example", "fail"),
        ("::1", "a@" + n("loop6"), "h.example", "pass"),
        ("::2", "a@" + n("loop6"), "h.example", "fail"),
        ("2001:db8::30", "a@" + n("mx6"), "h.example", "pass"),      # mx with AAAA
        ("2001:db8::31", "a@" + n("mx6"), "h.example", "fail"),
    ])
    # the default explanation names an IPv6 client readably (%{c}, RFC 7208 7.3),
    # not as the dotted nibbles of %{i}
    r = spf("2001:db8:1::5", "a@" + n("six"), "h.example")
    expl = [l for l in r.out.splitlines() if "explanation" in l.lower()]
    check(expl and "2001:db8:1::5" in expl[0] and not re.search(r"(?:[0-9a-f]\.){8}", expl[0]),
          "default explanation for an IPv6 client: %r" % expl)


def test_null_sender_uses_helo():
    table([
        ("192.0.2.50", "", n("helo"), "pass"),
        (OUT, "", n("helo"), "fail"),
        (OUT, "", n("pm"), "pass"),                                  # %{l} = postmaster
    ])


def test_large_txt_answer():
    d = own_dns()
    r = spf(IN, "a@" + n("bigtxt"))
    expect(r, "pass", what="an SPF record among 61 TXT records (~14 KB, over TCP)")
    check(d.queries_for(n("bigtxt"), "TXT", transport="tcp"),
          "no TCP query for %s: the test does not test what it should" % n("bigtxt"))
    r = spf(OUT, "a@" + n("bigtxt"))
    expect(r, "fail", what="the same record, another client")


def test_type_spf_never_queried():
    d = own_dns()
    r = spf(IN, "alice@" + n("spfonly"))
    expect(r, "none", what="type 99 record only")
    check(d.queries_for(n("spfonly"), "TXT"), "no TXT query for %s" % n("spfonly"))
    q = d.spf_type_queries()
    check(not q, "type SPF (99) queries: %s" % sorted({x.name for x in q}))


# ---------------------------------------------------------------- other implementations

CROSS = [
    (IN, "alice@" + n("pass"), "mail.client.example"),
    (OUT, "alice@" + n("pass"), "mail.client.example"),
    (OUT, "alice@" + n("soft"), "mail.client.example"),
    (OUT, "alice@" + n("neutral"), "mail.client.example"),
    (IN, "alice@" + n("nospf"), "mail.client.example"),
    (IN, "alice@" + n("dup"), "mail.client.example"),
    (IN, "alice@" + n("syntax"), "mail.client.example"),
    (IN, "alice@" + n("inc-none"), "mail.client.example"),
    ("192.0.2.20", "a@" + n("inc1"), "h.example"),
    (OUT, "a@" + n("inc1"), "h.example"),
    (OUT, "a@" + n("red1"), "h.example"),
    ("192.0.2.40", "a@" + n("mac-ir"), "h.example"),
    ("2001:db8::40", "a@" + n("mac-ir"), "h.example"),
    (OUT, "alice@" + n("mac-l"), "h.example"),
    (OUT, "a@" + n("mac-h"), "bad-helo.example"),
    (OUT, "a@" + n("lim10"), "h.example"),
    (OUT, "a@" + n("lim11"), "h.example"),
    (OUT, "a@" + n("void2"), "h.example"),
    (OUT, "a@" + n("void3"), "h.example"),
    ("2001:db8::5", "a@" + n("six"), "h.example"),
    ("192.0.2.50", "", n("helo")),
    (OUT, "", n("pm")),
]

# Triples where an implementation is known to differ, with the reason:
# {(triple, "pyspf"|"perl"): reason}. Empty: all three agree.
CROSS_KNOWN = {
}


def test_cross_check_pyspf_and_mail_spf_perl():
    perl = spf_suite.perl_check(own_records(), CROSS, rules=OWN_RULES)
    with SpfDNS(own_records(), rules=OWN_RULES) as d:
        bad = cross_check(d, perl)
    check(not bad, "%d disagreement(s):\n  " % len(bad) + "\n  ".join(bad))


def cross_check(d, perl):
    bad = []
    for trip, pl in zip(CROSS, perl):
        ip, sender, helo = trip
        m = spf(ip, sender, helo, ns=d.address)
        probs = m.problems()
        if probs:
            bad.append("%s: moat: %s" % (trip, "; ".join(probs)))
            continue
        py, _ = spf_suite.pyspf_check(ip, sender, helo, d.port)
        for who, res in (("pyspf", py), ("perl", pl)):
            if res != m.result and (trip, who) not in CROSS_KNOWN:
                bad.append("%s: moat spf=%s, %s %s" % (trip, m.result, who, res))
    return bad


test_cross_check_pyspf_and_mail_spf_perl.timeout = 120


# ---------------------------------------------------------------- through the proxy

PROXY_RECORDS = [
    ("example.org", "TXT", "v=spf1 ip4:127.0.0.5 -all"),
    ("soft.example.org", "TXT", "v=spf1 ip4:127.0.0.5 ~all"),
    ("helo.example.org", "TXT", "v=spf1 ip4:127.0.0.7 -all"),
    ("ctl.example.org", "TXT", "v=spf1 ip4:127.0.0.5 -all exp=why.ctl.example.org"),
    ("why.ctl.example.org", "TXT", "Go away %{i}\r\n250 2.0.0 injected\x1b[0m"),
    ("long.example.org", "TXT", "v=spf1 -all exp=why.long.example.org"),
    ("why.long.example.org", "TXT", LONG_EXP),
]
PROXY_RULES = {"tmp.example.org": "timeout"}
_proxy_dns = None


def proxy_dns():
    global _proxy_dns
    if _proxy_dns is None:
        _proxy_dns = SpfDNS(PROXY_RECORDS, rules=PROXY_RULES).start()
    return _proxy_dns


def srig(*extra):
    return Rig(overrides=["filters=spf", "resolver.nameservers=" + proxy_dns().address,
                          "resolver.timeout=2"] + list(extra))


def header_count(body, name):
    head = body.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    return len(re.findall(r"(?im)^%s:" % re.escape(name), head))


def send_ok(c, mail_from="sender@example.org", rcpts=("rcpt@example.net",)):
    c.expect("MAIL FROM:<%s>" % mail_from, 250)
    for x in rcpts:
        c.expect("RCPT TO:<%s>" % x, 250)
    c.expect("DATA", 354)
    c.send(dot_stuff(make_body()))
    return c.reply()


_DOT_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_QSTRING = r'"(?:[^"\\\r\n]|\\.)*"'


def parse_received_spf(v):
    """RFC 7208 9.1: result [comment] key=value; ... -> (result, comment,
    {key: value}); fails on bad syntax."""
    m = re.match(r"(pass|fail|softfail|neutral|none|temperror|permerror)(?=[ \t]|$)[ \t]*", v)
    check(m, "Received-SPF: no result first: %r" % v)
    rest = v[m.end():]
    comment = None
    if rest.startswith("("):
        depth, i = 0, 0
        while i < len(rest):
            ch = rest[i]
            if ch == "\\":
                i += 2
                continue
            depth += (ch == "(") - (ch == ")")
            i += 1
            if depth == 0:
                break
        check(depth == 0, "Received-SPF: unbalanced comment: %r" % v)
        comment, rest = rest[1:i - 1], rest[i:].lstrip()
    kv = {}
    pos = 0
    rx = re.compile(r"([A-Za-z][A-Za-z0-9_.-]*)=(%s|%s)[ \t]*(;[ \t]*|$)" % (_QSTRING, _DOT_ATOM))
    while pos < len(rest):
        mm = rx.match(rest, pos)
        check(mm, "Received-SPF: bad key=value at %r in %r" % (rest[pos:pos + 60], v))
        kv[mm.group(1).lower()] = mm.group(2)
        pos = mm.end()
        if not mm.group(3):
            break
    check(pos == len(rest), "Received-SPF: trailing junk %r in %r" % (rest[pos:], v))
    return m.group(1), comment, kv


def check_received_spf(body, result, ip, helo, envelope_from=None):
    eq(header_count(body, "Received-SPF"), 1, "Received-SPF fields")
    v = header_value(body, "Received-SPF")
    res, comment, kv = parse_received_spf(v)
    eq(res, result, "Received-SPF result (%r)" % v)
    eq(kv.get("client-ip"), ip, "Received-SPF client-ip (%r)" % v)
    eq(kv.get("helo"), helo, "Received-SPF helo (%r)" % v)
    eq(kv.get("receiver"), "moat.test", "Received-SPF receiver (%r)" % v)
    if envelope_from is not None:
        eq(kv.get("envelope-from"), '"%s"' % envelope_from, "Received-SPF envelope-from (%r)" % v)
    if "identity" in kv:
        check(kv["identity"] in ("mailfrom", "helo"), "identity %r" % kv["identity"])
    return kv


def result_header(m):
    return header_value(m.body, "X-Moat-Result") or ""


def test_proxy_fail_scored_by_default():
    with srig() as r:
        c = r.ehlo_client("client.example", source="127.0.0.6")
        expect_reply(send_ok(c), 250, None, "SPF fail, scored only")
        c.quit()
        m = r.up.wait_messages(1)[0]
        res = result_header(m)
        check("SPF_FAIL(8)" in res, "X-Moat-Result %r" % res)
        check(re.search(r"score=8\.00\b", res), "score in %r" % res)
        check_received_spf(m.body, "fail", "127.0.0.6", "client.example", "sender@example.org")
        ar = header_value(m.body, "Authentication-Results")
        check(ar and re.search(r"\bspf=fail smtp\.mailfrom=example\.org\b", ar),
              "Authentication-Results %r" % ar)


def test_proxy_reject_fail_at_mail():
    with srig("spf.reject_fail=yes") as r:
        c = r.ehlo_client("client.example", source="127.0.0.6")
        rep = c.expect("MAIL FROM:<sender@example.org>", 550, "5.7.23")
        # a hostile exp= TXT (CR LF, ESC) and a 4000-octet one: clean, bounded replies
        for dom in ("ctl.example.org", "long.example.org"):
            rep = c.expect("MAIL FROM:<sender@%s>" % dom, 550, "5.7.23")
            for l in rep.lines:
                check(len(l) + 2 <= 512, "reply line of %d octets: %r" % (len(l) + 2, l[:120]))
                check(not re.search(r"[\x00-\x1f\x7f]", l), "control character in %r" % l)
                check(l.startswith("550"), "reply line %r" % l)
            check(len(rep.text) < 4096, "reply of %d octets" % len(rep.text))
        c.expect("RSET", 250)
        c.quit()
        # pass still relayed
        c = r.ehlo_client("client.example", source="127.0.0.5")
        expect_reply(send_ok(c), 250, None, "SPF pass with reject_fail")
        c.quit()
        r.up.wait_messages(1)
        mails = [s for s in r.up.sessions
                 if any(v == "MAIL" for v in s.verbs())]
        eq(len(mails), 1, "upstream sessions with MAIL (only the pass)")
        eq(r.up.messages[0].mail_from, "sender@example.org", "relayed sender")


def test_proxy_softfail_scored():
    with srig("spf.reject_fail=yes") as r:
        c = r.ehlo_client("client.example", source="127.0.0.6")
        expect_reply(send_ok(c, "sender@soft.example.org"), 250, None, "softfail")
        c.quit()
        m = r.up.wait_messages(1)[0]
        res = result_header(m)
        check("SPF_SOFTFAIL(3)" in res, "X-Moat-Result %r" % res)
        check_received_spf(m.body, "softfail", "127.0.0.6", "client.example",
                           "sender@soft.example.org")


def test_proxy_pass_headers():
    with srig() as r:
        c = r.ehlo_client("client.example", source="127.0.0.5")
        expect_reply(send_ok(c), 250, None, "SPF pass")
        c.quit()
        m = r.up.wait_messages(1)[0]
        res = result_header(m)
        check("SPF_PASS(-1)" in res, "X-Moat-Result %r" % res)
        check_received_spf(m.body, "pass", "127.0.0.5", "client.example", "sender@example.org")
        head = m.body.split(b"\r\n\r\n", 1)[0] + b"\r\n"
        eq(head.count(b"\nAuthentication-Results:") + head.startswith(b"Authentication-Results:"),
           1, "Authentication-Results fields")
        check(re.search(rb"(?m)^Authentication-Results: moat\.test;\r\n\tspf=pass "
                        rb"smtp\.mailfrom=example\.org(?: \([^\r\n]*\))?\r\n", head),
              "Authentication-Results field: %r" % [l for l in head.split(b"\r\n")
                                                    if b"Authentication" in l or
                                                    l.startswith(b"\t")])


def test_proxy_temperror():
    # default: scored (0), delivered
    with srig() as r:
        c = r.ehlo_client("client.example", source="127.0.0.5")
        t0 = time.time()
        expect_reply(send_ok(c, "sender@tmp.example.org"), 250, None, "temperror scored")
        check(time.time() - t0 < 15, "MAIL with a DNS timeout took %.1fs" % (time.time() - t0))
        c.quit()
        m = r.up.wait_messages(1)[0]
        check_received_spf(m.body, "temperror", "127.0.0.5", "client.example",
                           "sender@tmp.example.org")
    # temperror=tempfail: 451 4.7.24 at MAIL, nothing upstream
    with srig("spf.temperror=tempfail") as r:
        c = r.ehlo_client("client.example", source="127.0.0.5")
        c.expect("MAIL FROM:<sender@tmp.example.org>", 451, "4.7.24", timeout=20)
        c.quit()
        time.sleep(0.2)
        check(not any(v == "MAIL" for s in r.up.sessions for v in s.verbs()),
              "MAIL reached the upstream: %s" % r.up.transcript())


test_proxy_temperror.timeout = 90


def test_proxy_reload_replaces_resolver():
    """The SPF workers resolve through moatd's resolver: a SIGHUP that
    changes the resolver section replaces it, a lookup in flight on the
    retired one still ends its check, and later checks use the new one
    (a pool left on the retired resolver would use it after it is freed:
    the sanitizers would say so when the rig stops)."""
    d = proxy_dns()
    with srig() as r:
        c = r.ehlo_client("client.example", source="127.0.0.5")
        expect_reply(send_ok(c), 250, None, "SPF pass before the reload")
        c.quit()
        # a check waiting on a lookup that times out (2 s), over the reload
        slow = r.ehlo_client("client.example", source="127.0.0.5")
        t0 = time.time()
        slow.send(b"MAIL FROM:<sender@tmp.example.org>\r\n")
        wait_for(lambda: d.queries_for("tmp.example.org"), 5, 0.05,
                 what="the TXT query for tmp.example.org")
        r.moatd.extra_conf = "resolver {\n    cache_size = 1048576\n}\n"
        r.moatd.write_config()
        r.moatd.signal(signal.SIGHUP)
        r.moatd.wait_log(r"reloaded: ", timeout=5)
        expect_reply(slow.reply(timeout=15), 250, None, "MAIL whose lookup spanned the reload")
        check(time.time() - t0 < 12, "MAIL over the reload took %.1fs" % (time.time() - t0))
        slow.expect("RSET", 250)
        slow.quit()
        # new lookups go out through the new resolver
        t1 = time.time()
        c = r.ehlo_client("client.example", source="127.0.0.5")
        expect_reply(send_ok(c, "sender@soft.example.org"), 250, None, "SPF after the reload")
        c.quit()
        m = r.up.wait_messages(2)[-1]
        check_received_spf(m.body, "pass", "127.0.0.5", "client.example",
                           "sender@soft.example.org")
        check([q for q in d.queries_for("soft.example.org", "TXT") if q.time >= t1],
              "no TXT query for soft.example.org after the reload")
        # and once more after a second replacement
        r.moatd.extra_conf = "resolver {\n    cache_size = 2097152\n}\n"
        r.moatd.write_config()
        r.moatd.signal(signal.SIGHUP)
        r.moatd.wait_log(r"reloaded: ", timeout=5, count=2)
        c = r.ehlo_client("client.example", source="127.0.0.6")
        expect_reply(send_ok(c), 250, None, "SPF after the second reload")
        c.quit()
        m = r.up.wait_messages(3)[-1]
        check_received_spf(m.body, "fail", "127.0.0.6", "client.example", "sender@example.org")


test_proxy_reload_replaces_resolver.timeout = 90


def test_proxy_shared_cache_holds_spf_records():
    """With resolver.shared_cache, the workers' lookups are answers in the
    store like any other: a second moatd sharing the Redis finds the SPF
    record there and does not ask DNS for it."""
    d = proxy_dns()
    with Redis() as red:
        ov = ("store.backend=redis", "store.redis_server=127.0.0.1:%d" % red.port,
              "resolver.shared_cache=yes")
        with srig(*ov) as r:
            c = r.ehlo_client("client.example", source="127.0.0.5")
            expect_reply(send_ok(c, "sender@helo.example.org"), 250, None, "first instance")
            c.quit()
            m = r.up.wait_messages(1)[0]
            check_received_spf(m.body, "fail", "127.0.0.5", "client.example",
                               "sender@helo.example.org")
        keys = red.cli("--scan", "--pattern", "*dns:TXT:helo.example.org*").split()
        check(keys, "no shared-cache entry for helo.example.org TXT in Redis")
        before = len(d.queries_for("helo.example.org", "TXT"))
        with srig(*ov) as r:
            c = r.ehlo_client("client.example", source="127.0.0.5")
            expect_reply(send_ok(c, "sender@helo.example.org"), 250, None, "second instance")
            c.quit()
            m = r.up.wait_messages(1)[0]
            check_received_spf(m.body, "fail", "127.0.0.5", "client.example",
                               "sender@helo.example.org")
        eq(len(d.queries_for("helo.example.org", "TXT")), before,
           "TXT queries for helo.example.org by the second instance (want the cached answer)")


test_proxy_shared_cache_holds_spf_records.timeout = 90


def test_proxy_null_sender_checks_helo():
    with srig("spf.reject_fail=yes") as r:
        c = r.ehlo_client("helo.example.org", source="127.0.0.7")
        expect_reply(send_ok(c, ""), 250, None, "null sender, HELO authorised")
        c.quit()
        m = r.up.wait_messages(1)[0]
        kv = check_received_spf(m.body, "pass", "127.0.0.7", "helo.example.org")
        ef = kv.get("envelope-from")
        check(ef in (None, '""', '"<>"', '"postmaster@helo.example.org"'),
              "envelope-from of the null sender %r" % ef)
        ar = header_value(m.body, "Authentication-Results")
        check(ar and re.search(r"\bspf=pass smtp\.(helo=helo\.example\.org|mailfrom="
                               r"(postmaster@)?helo\.example\.org)\b", ar),
              "Authentication-Results %r" % ar)
        c = r.ehlo_client("helo.example.org", source="127.0.0.6")
        c.expect("MAIL FROM:<>", 550, "5.7.23")
        c.quit()
        eq(len(r.up.delivered()), 1, "delivered")


def _cleanup():
    for d in (_own, _proxy_dns):
        if d is not None:
            d.stop()


if __name__ == "__main__":
    try:
        rc = run_tests(globals())
    finally:
        _cleanup()
    sys.exit(rc)
