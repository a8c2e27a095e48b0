#!/usr/bin/python3
"""The resolver (filters/resolver.c) through the CLI:

    moat -c FILE -o resolver.nameservers=127.0.0.1:PORT [-o resolver.timeout=N] dns NAME [TYPE]

against real DNS servers on loopback (dnsrig.py): unbound serving static
zones (TestZones) and a scriptable dnslib server for faults (FaultDNS).
Checks answers of each type, NXDOMAIN vs NODATA, that failures
(SERVFAIL, REFUSED, timeouts, dead or garbling servers) are temporary
errors and never "no such name", TCP fallback on truncation, large TXT
records, and failover between nameservers.

Not tested here: the cache. Two lookups in one process cannot be made
through the CLI (each `moat dns` is a new process with an empty cache);
the cache is for the unit tests and the DNS-list filter tests.

Uses /usr/bin/python3 (python3-dnslib) and /usr/sbin/unbound. Names are
under .example: libunbound answers test. itself (RFC 6761) and never
asks the server.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from moattest import *  # noqa
from dnsrig import (TestZones, FaultDNS, dnsbl_records, dnsbl_name, dead_port, query,
                    rr_values, RCODE)

MOAT = os.environ.get("MOAT") or os.path.join(ROOT, "build", "san", "moat")
SAN = re.compile(r"AddressSanitizer|LeakSanitizer|runtime error:")
FIELDS = ("status", "rcode", "ttl", "secure", "time")
TYPES = ("A", "AAAA", "TXT", "MX", "PTR", "NS", "CNAME")

# An 800-octet TXT record in several strings, like a DKIM record of a
# 4096-bit RSA key ("v=DKIM1; k=rsa; p=" + ~736 base64 characters).
_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_KEY = "v=DKIM1; k=rsa; p=MIICIjANBgkqhkiG9w0BAQEFAAOCAg8AMIICCgKCAgEA" + \
    "".join(_B64[(i * 7 + 3) % 64] for i in range(730)) + "IDAQAB"
DKIM_4096 = [_KEY[i:i + 250] for i in range(0, len(_KEY), 250)]
# 1600 octets: more than an EDNS buffer of 1232, so UDP truncates and TCP carries it
HUGE_TXT = ["%04d" % i + "x" * 196 for i in range(8)]

RECORDS = [
    ("a.example.org", "A", "192.0.2.10", 300),
    ("a.example.org", "A", "192.0.2.11", 300),
    ("six.example.org", "AAAA", "2001:db8::25", 600),
    ("spf.example.org", "TXT", ["v=spf1 ip4:192.0.2.0/24 ", "include:_spf.example.net ",
                                "-all"], 300),
    ("quote.example.org", "TXT", 'say "hi"', 300),
    ("example.org", "MX", "10 mx.example.org", 300),
    ("example.org", "MX", "20 mx2.example.org", 300),
    ("mx.example.org", "A", "192.0.2.25", 300),
    ("alias.example.org", "CNAME", "a.example.org", 300),
    ("s4096._domainkey.example.org", "TXT", DKIM_4096, 300),
    ("huge.example.org", "TXT", HUGE_TXT, 300),
    ("8.7.6.5.in-addr.arpa", "PTR", "host.example.org", 300),
] + dnsbl_records("bl.example", {"192.0.2.99": ("127.0.0.3", "listed for tests")})

_zones = None
_confdir = None


def zones():
    """One unbound for the whole file (started on first use)."""
    global _zones
    if _zones is None:
        _zones = TestZones(RECORDS).start()
    return _zones


def conf():
    global _confdir
    if _confdir is None:
        _confdir = tempfile.mkdtemp(prefix="moattest.resolver.")
        with open(os.path.join(_confdir, "moat.conf"), "w") as f:
            f.write('listener in {\n    listen = "127.0.0.1:2525"\n'
                    '    upstream = "127.0.0.1:10025"\n}\n')
    return os.path.join(_confdir, "moat.conf")


class DnsResult:
    def __init__(self, rc, out, err, elapsed):
        self.rc, self.out, self.err, self.elapsed = rc, out, err, elapsed
        self.f = {}
        self.records = []
        self.other = []
        for line in out.splitlines():
            m = re.match(r"^(%s):\s*(.*?)\s*$" % "|".join(FIELDS), line)
            if m:
                self.f[m.group(1)] = m.group(2)
                continue
            m = re.match(r"^(%s)\s+(.*?)\s*$" % "|".join(TYPES), line)
            if m:
                self.records.append((m.group(1), m.group(2)))
                continue
            if line.strip():
                self.other.append(line)

    @property
    def status(self):
        return self.f.get("status")

    def values(self, rtype):
        out = []
        for t, v in self.records:
            if t != rtype:
                continue
            if rtype == "TXT" and len(v) >= 2 and v[0] == '"' and v[-1] == '"':
                v = re.sub(r'\\(.)', r'\1', v[1:-1])
            elif rtype in ("MX", "PTR", "NS", "CNAME"):
                v = v.strip('"').rstrip(".")
            out.append(v)
        return out

    def __repr__(self):
        return "exit %s after %.2fs, stdout %r, stderr %r" % (
            self.rc, self.elapsed, self.out[-1500:], self.err[-1500:])


def moat_dns(name, rtype=None, nameservers=None, timeout=None, opts=(), limit=20):
    """Runs moat dns; returns a DnsResult. nameservers: list of
    "127.0.0.1:PORT" (default: the file's TestZones)."""
    if not os.access(MOAT, os.X_OK):
        fail("moat binary %s not built" % MOAT)
    if nameservers is None:
        nameservers = [zones().address]
    args = [MOAT, "-c", conf(), "-o", "resolver.nameservers=" + ",".join(nameservers)]
    if timeout is not None:
        args += ["-o", "resolver.timeout=%d" % timeout]
    for o in opts:
        args += ["-o", o]
    args += ["dns", name] + ([rtype] if rtype else [])
    t0 = time.time()
    try:
        p = subprocess.run(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=limit)
    except subprocess.TimeoutExpired:
        fail("%s did not exit within %ds" % (" ".join(args), limit))
    r = DnsResult(p.returncode, p.stdout.decode("utf-8", "replace"),
                  p.stderr.decode("utf-8", "replace"), time.time() - t0)
    check(not SAN.search(r.err), "sanitizer report: " + r.err[-3000:])
    check(not re.search(r"unknown command", r.err), "moat has no dns command: %r" % r)
    return r


def expect(r, status, rc, rcode=None):
    check(r.status == status and r.rc == rc,
          "want status %s exit %d; %r" % (status, rc, r))
    if rcode is not None:
        eq(r.f.get("rcode"), str(rcode), "rcode (%r)" % r)
    check("time" in r.f and re.match(r"^\d+ ms$", r.f["time"]),
          "want a 'time: N ms' line; %r" % r)
    check("secure" in r.f and r.f["secure"] in ("yes", "no"),
          "want a 'secure: yes|no' line; %r" % r)
    check(not r.other, "unexpected output lines %r; %r" % (r.other, r))


def expect_temporary(r, allowed=("servfail", "timeout", "error")):
    """A failure: exit 2, a temporary status, never nxdomain/nodata/ok."""
    check(r.status not in ("nxdomain", "nodata", "ok"),
          "a failed lookup must not be reported as %s; %r" % (r.status, r))
    check(r.rc == 2 and r.status in allowed,
          "want exit 2 and status in %s; %r" % ("/".join(allowed), r))
    check(not r.records, "no records on failure; %r" % r)


# ---------------------------------------------------------------- the rig itself

def test_rig_testzones():
    z = zones()
    r = z.query("a.example.org", "A")
    eq(sorted(v for _, v in rr_values(r)), ["192.0.2.10", "192.0.2.11"], "A records")
    eq(RCODE[z.query("nothing.example.org", "A").header.rcode], "NXDOMAIN", "rcode")
    r = z.query("six.example.org", "A")
    eq((RCODE[r.header.rcode], len(r.rr), len(r.auth)), ("NOERROR", 0, 1), "NODATA")
    # RFC 5782 section 5 test points
    eq(rr_values(z.query(dnsbl_name("127.0.0.2", "bl.example"), "A")), [("A", "127.0.0.2")],
       "127.0.0.2 listed")
    eq(RCODE[z.query(dnsbl_name("127.0.0.1", "bl.example"), "A").header.rcode], "NXDOMAIN",
       "127.0.0.1 not listed")
    eq(rr_values(z.query(dnsbl_name("::ffff:7f00:2", "bl.example"), "A")),
       [("A", "127.0.0.2")], "::FFFF:7F00:2 listed")
    eq(RCODE[z.query(dnsbl_name("::ffff:7f00:1", "bl.example"), "A").header.rcode],
       "NXDOMAIN", "::FFFF:7F00:1 not listed")
    eq(rr_values(z.query("TEST.bl.example", "A")), [("A", "127.0.0.2")], "TEST listed")
    eq(RCODE[z.query("INVALID.bl.example", "A").header.rcode], "NXDOMAIN", "INVALID")
    eq(rr_values(z.query("99.2.0.192.bl.example", "TXT")), [("TXT", "listed for tests")], "TXT")
    r = z.query("s4096._domainkey.example.org", "TXT", tcp=True)
    eq(rr_values(r), [("TXT", "".join(DKIM_4096))], "big TXT over TCP")
    eq(RCODE[z.query("elsewhere.example.com", "A").header.rcode], "REFUSED",
       "outside the zones")


def test_rig_faultdns():
    with FaultDNS([("x.example", "A", "192.0.2.1")],
                  rules={"t.example": "truncate", "s.example": "servfail",
                         "w.example": "timeout", "q.example": ["refused", "answer"]}) as f:
        eq(rr_values(query("x.example", "A", f.port)), [("A", "192.0.2.1")], "answer")
        eq(RCODE[query("nope.example", "A", f.port).header.rcode], "NXDOMAIN", "unknown name")
        eq(RCODE[query("s.example", "A", f.port).header.rcode], "SERVFAIL", "servfail")
        eq(RCODE[query("q.example", "A", f.port).header.rcode], "REFUSED", "1st of a list")
        eq(RCODE[query("q.example", "A", f.port).header.rcode], "NXDOMAIN", "2nd of a list")
        eq(query("t.example", "A", f.port).header.tc, 1, "TC over UDP")
        eq(query("t.example", "A", f.port, tcp=True).header.tc, 0, "no TC over TCP")
        try:
            query("w.example", "A", f.port, timeout=0.3)
            fail("timeout behaviour answered")
        except OSError:
            pass
        eq([(q.name, q.type, q.transport) for q in f.queries_for("t.example")],
           [("t.example.", "A", "udp"), ("t.example.", "A", "tcp")], "recorded queries")


def test_rig_reload():
    with TestZones([("r.example.net", "A", "192.0.2.1")]) as z:
        r = moat_dns("new.example.net", "A", [z.address], timeout=3)
        expect(r, "nxdomain", 1)
        z.add([("new.example.net", "A", "192.0.2.2")], reload=True)
        eq(rr_values(z.query("new.example.net")), [("A", "192.0.2.2")], "after reload")
        r = moat_dns("new.example.net", "A", [z.address], timeout=3)
        expect(r, "ok", 0)
        eq(r.values("A"), ["192.0.2.2"], "A after reload (%r)" % r)


# ---------------------------------------------------------------- answers

def test_a():
    r = moat_dns("a.example.org", "A")
    expect(r, "ok", 0, rcode=0)
    eq(sorted(r.values("A")), ["192.0.2.10", "192.0.2.11"], "A records (%r)" % r)
    check(r.f.get("ttl", "").isdigit() and 0 < int(r.f["ttl"]) <= 300, "ttl; %r" % r)
    eq(r.f.get("secure"), "no", "secure (no trust anchor)")


def test_default_type_is_a():
    r = moat_dns("a.example.org")
    expect(r, "ok", 0)
    eq(sorted(r.values("A")), ["192.0.2.10", "192.0.2.11"], "A records (%r)" % r)


def test_aaaa():
    r = moat_dns("six.example.org", "AAAA")
    expect(r, "ok", 0, rcode=0)
    eq(r.values("AAAA"), ["2001:db8::25"], "AAAA (%r)" % r)
    check(0 < int(r.f.get("ttl", "0")) <= 600, "ttl; %r" % r)


def test_txt_strings_joined():
    r = moat_dns("spf.example.org", "TXT")
    expect(r, "ok", 0, rcode=0)
    eq(r.values("TXT"), ["v=spf1 ip4:192.0.2.0/24 include:_spf.example.net -all"],
       "TXT joined (%r)" % r)
    check(r.records[0][1].startswith('"') and r.records[0][1].endswith('"'),
          "TXT value double-quoted; %r" % r)


def test_txt_with_quotes():
    r = moat_dns("quote.example.org", "TXT")
    expect(r, "ok", 0)
    eq(r.values("TXT"), ['say "hi"'], "TXT with a double quote (%r)" % r)


def test_mx():
    r = moat_dns("example.org", "MX")
    expect(r, "ok", 0, rcode=0)
    eq(sorted(r.values("MX")), ["10 mx.example.org", "20 mx2.example.org"], "MX (%r)" % r)


def test_ptr():
    r = moat_dns("8.7.6.5.in-addr.arpa", "PTR")
    expect(r, "ok", 0)
    eq(r.values("PTR"), ["host.example.org"], "PTR (%r)" % r)


def test_cname_followed():
    r = moat_dns("alias.example.org", "A")
    expect(r, "ok", 0)
    eq(sorted(r.values("A")), ["192.0.2.10", "192.0.2.11"], "A through a CNAME (%r)" % r)


def test_dnsbl_test_points():
    r = moat_dns(dnsbl_name("127.0.0.2", "bl.example"), "A")
    expect(r, "ok", 0)
    eq(r.values("A"), ["127.0.0.2"], "127.0.0.2 listed (%r)" % r)
    r = moat_dns(dnsbl_name("127.0.0.1", "bl.example"), "A")
    expect(r, "nxdomain", 1, rcode=3)
    r = moat_dns(dnsbl_name("::ffff:7f00:2", "bl.example"), "TXT")
    expect(r, "ok", 0)
    eq(len(r.values("TXT")), 1, "TXT of ::FFFF:7F00:2 (%r)" % r)


# ---------------------------------------------------------------- negative answers

def test_nxdomain():
    r = moat_dns("nothing.example.org", "A")
    expect(r, "nxdomain", 1, rcode=3)
    eq(r.records, [], "records")


def test_nodata():
    r = moat_dns("six.example.org", "A")
    expect(r, "nodata", 1, rcode=0)
    eq(r.records, [], "records")
    r = moat_dns("a.example.org", "TXT")
    expect(r, "nodata", 1, rcode=0)


def test_nxdomain_from_faultdns():
    with FaultDNS(default="nxdomain") as f:
        r = moat_dns("gone.example", "A", [f.address], timeout=3)
        expect(r, "nxdomain", 1, rcode=3)


# ---------------------------------------------------------------- failures

def test_servfail():
    with FaultDNS(default="servfail") as f:
        r = moat_dns("sf.example", "A", [f.address], timeout=3)
        expect_temporary(r, ("servfail", "error"))
        check(f.queries_for("sf.example"), "the server was asked")


def test_refused():
    with FaultDNS(default="refused") as f:
        r = moat_dns("rf.example", "TXT", [f.address], timeout=3)
        expect_temporary(r, ("servfail", "error"))
        check(f.queries_for("rf.example"), "the server was asked")


def test_timeout():
    with FaultDNS(default="timeout") as f:
        r = moat_dns("slowpoke.example", "A", [f.address], timeout=1)
        expect_temporary(r, ("timeout",))
        check(r.elapsed < 2.5, "a 1 s timeout took %.2fs; %r" % (r.elapsed, r))
        check(f.queries_for("slowpoke.example"), "the server was asked")


def test_dead_nameserver():
    p = dead_port()
    r = moat_dns("a.example.org", "A", ["127.0.0.1:%d" % p], timeout=2)
    expect_temporary(r)
    check(r.elapsed < 3.5, "a 2 s timeout took %.2fs; %r" % (r.elapsed, r))


def test_garbage_answer():
    with FaultDNS(default="garbage") as f:
        r = moat_dns("junk.example", "A", [f.address], timeout=2)
        expect_temporary(r)
        check(r.elapsed < 3.5, "a 2 s timeout took %.2fs; %r" % (r.elapsed, r))


def test_wrong_id_ignored():
    # an answer with another query id must not be taken (spoofing)
    with FaultDNS([("w.example", "A", "192.0.2.66")], default="wrongid") as f:
        r = moat_dns("w.example", "A", [f.address], timeout=2)
        expect_temporary(r)


def test_slow_answer_within_deadline():
    with FaultDNS([("late.example", "A", "192.0.2.77")], default="slow:600") as f:
        r = moat_dns("late.example", "A", [f.address], timeout=4)
        expect(r, "ok", 0)
        eq(r.values("A"), ["192.0.2.77"], "A (%r)" % r)
        check(int(r.f["time"].split()[0]) >= 500, "time line below the server's delay; %r" % r)


# ---------------------------------------------------------------- sizes and transports

def test_truncated_udp_retried_over_tcp():
    recs = [("tc.example", "TXT", ["only over", " tcp"]), ("tc.example", "A", "192.0.2.5")]
    with FaultDNS(recs, default="truncate") as f:
        r = moat_dns("tc.example", "TXT", [f.address], timeout=3)
        expect(r, "ok", 0)
        eq(r.values("TXT"), ["only over tcp"], "TXT (%r)" % r)
        check(f.queries_for("tc.example", "TXT", transport="tcp"),
              "no TCP query after TC=1: %r" % (f.queries,))


def test_large_txt():
    r = moat_dns("s4096._domainkey.example.org", "TXT")
    expect(r, "ok", 0)
    eq(r.values("TXT"), ["".join(DKIM_4096)], "800-octet TXT")


def test_txt_larger_than_edns_buffer():
    # from unbound (truncates at the client's EDNS size) ...
    r = moat_dns("huge.example.org", "TXT")
    expect(r, "ok", 0)
    eq(r.values("TXT"), ["".join(HUGE_TXT)], "1600-octet TXT from unbound")
    # ... and from FaultDNS, which records the transport
    with FaultDNS([("huge.example", "TXT", HUGE_TXT)]) as f:
        r = moat_dns("huge.example", "TXT", [f.address], timeout=3)
        expect(r, "ok", 0)
        eq(r.values("TXT"), ["".join(HUGE_TXT)], "1600-octet TXT from FaultDNS")
        check(f.queries_for("huge.example", transport="tcp"), "TCP used: %r" % (f.queries,))


# ---------------------------------------------------------------- several nameservers

def test_first_nameserver_dead():
    p = dead_port()
    r = moat_dns("a.example.org", "A", ["127.0.0.1:%d" % p, zones().address], timeout=5)
    expect(r, "ok", 0)
    eq(sorted(r.values("A")), ["192.0.2.10", "192.0.2.11"], "A from the second (%r)" % r)


def test_first_nameserver_silent():
    with FaultDNS(default="timeout") as f:
        r = moat_dns("a.example.org", "A", [f.address, zones().address], timeout=5)
        expect(r, "ok", 0)
        eq(sorted(r.values("A")), ["192.0.2.10", "192.0.2.11"], "A from the second (%r)" % r)


def test_first_nameserver_servfail():
    with FaultDNS(default="servfail") as f:
        r = moat_dns("a.example.org", "A", [f.address, zones().address], timeout=5)
        expect(r, "ok", 0)
        eq(sorted(r.values("A")), ["192.0.2.10", "192.0.2.11"], "A from the second (%r)" % r)


def _cleanup():
    if _zones is not None:
        _zones.stop()
    if _confdir and not os.environ.get("MOAT_TEST_KEEP"):
        shutil.rmtree(_confdir, ignore_errors=True)


if __name__ == "__main__":
    try:
        rc = run_tests(globals())
    finally:
        _cleanup()
    sys.exit(rc)
