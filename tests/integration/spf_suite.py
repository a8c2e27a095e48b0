#!/usr/bin/python3
"""spf_suite.py - SPF helpers for test_spf.py.

Pieces:

  SpfDNS            a FaultDNS (dnsrig.py) that builds its records with
                    dnslib objects (no zone-file text, so TXT strings with
                    control or non-ASCII octets and owner names with "@"
                    come out exactly) and follows CNAME chains inside its
                    data like a recursive server (a loop gives SERVFAIL)
  load_suite()      the RFC 7208 test suite (rfc7208-tests.yml.gz, shipped
                    with Debian's python3-spf and read from
                    /usr/share/doc/python3-spf at test time, never copied)
                    as a list of Scenario: records, FaultDNS rules, tests
  moat_spf()        one `moat spf CLIENT SENDER HELO` run -> SpfRun
  run_scenario()    every test of one scenario against moat -> [Outcome]
  pyspf_check()     pyspf's spf.check2() against a server on 127.0.0.1:PORT
  perl_check()      spfquery.mail-spf-perl (Mail::SPF) for a batch of
                    triples, inside `unshare -mn` with a server on
                    127.0.0.1:53 and a bind-mounted /etc/resolv.conf

The suite's zone data follows the conventions of pyspf's test driver
(testspf.py): a name whose entries have no TXT record (not even "TXT:
NONE") gets a TXT copy of each of its SPF records; a bare "TIMEOUT"
entry makes every query for the name time out except for the types
listed before it; names that are not in the data do not exist.  SPF
(type 99) records are served as type 99, so an implementation that still
asks for them finds them (and SpfDNS.queries shows the question).

Run as `unshare -mn /usr/bin/python3 spf_suite.py perl-batch SPEC.json`
this module is the inside half of perl_check().

Uses /usr/bin/python3 with python3-dnslib, python3-yaml, python3-spf
(and python3-dns, its DNS library), spf-tools-perl, util-linux (unshare),
iproute2 (ip) and mount.
"""

import atexit
import collections
import gzip
import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from dnslib import RR, QTYPE, RCODE, DNSLabel, TXT, A, AAAA, MX, PTR, CNAME, NS  # noqa: E402
from dnsrig import FaultDNS, absname, parse_records, record_line, DNSRigError  # noqa: E402

ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
MOAT = os.environ.get("MOAT") or os.path.join(ROOT, "build", "san", "moat")
PY = "/usr/bin/python3"
SPFQUERY_PERL = "/usr/bin/spfquery.mail-spf-perl"
SUITE_DIR = "/usr/share/doc/python3-spf"
SUITE_FILES = ("rfc7208-tests.yml.gz", "rfc7208-tests.yml")

RESULTS = ("pass", "fail", "softfail", "neutral", "none", "temperror", "permerror")
EXIT_CODE = {r: i for i, r in enumerate(RESULTS)}
SAN = re.compile(r"AddressSanitizer|LeakSanitizer|runtime error:")


# ---------------------------------------------------------------- DNS

def _octets(v):
    return v.encode("utf-8") if isinstance(v, str) else bytes(v)


def txt_parts(value):
    """A TXT/SPF value -> list of byte strings of <= 255 octets."""
    if isinstance(value, (list, tuple)):
        parts = [_octets(v) for v in value]
        for p in parts:
            if len(p) > 255:
                raise DNSRigError("TXT string longer than 255 octets: %r..." % p[:40])
        return parts or [b""]
    b = _octets(value)
    return [b[i:i + 255] for i in range(0, len(b), 255)] or [b""]


def build_rr(rec):
    """A record tuple (name, TYPE, value[, ttl]) or zone-file line -> [RR]."""
    if isinstance(rec, str):
        return parse_records([rec])
    name, rtype, value = rec[0], rec[1].upper(), rec[2]
    ttl = int(rec[3]) if len(rec) > 3 else 300
    owner = DNSLabel(absname(name))
    if rtype in ("TXT", "SPF"):
        rd = TXT(txt_parts(value))
    elif rtype == "A":
        rd = A(str(ipaddress.IPv4Address(value)))
    elif rtype == "AAAA":
        rd = AAAA(str(ipaddress.IPv6Address(value)))
    elif rtype == "MX":
        if isinstance(value, (list, tuple)):
            pref, host = value
        else:
            pref, host = value.split()
        rd = MX(DNSLabel(absname(str(host)) if str(host) not in ("", ".") else "."),
                int(pref))
    elif rtype in ("PTR", "CNAME", "NS"):
        rd = {"PTR": PTR, "CNAME": CNAME, "NS": NS}[rtype](DNSLabel(absname(value)))
    else:
        return parse_records([record_line(rec)])
    return [RR(owner, getattr(QTYPE, rtype), ttl=ttl, rdata=rd)]


class SpfDNS(FaultDNS):
    """FaultDNS with exact records (see the module docstring). Same
    constructor, attributes and behaviours as FaultDNS."""

    def __init__(self, records=(), default="answer", rules=None, port=None):
        super().__init__(records, default=default, rules=rules, port=port)
        self._built = None
        self._built_key = None

    def _rrs(self):
        key = (id(self.records), len(self.records))
        if self._built is None or key != self._built_key:
            out = []
            for rec in self.records:
                out.extend(build_rr(rec))
            self._built, self._built_key = out, key
        return self._built

    def _answer(self, req):
        rep = req.reply()
        rep.header.ra = 1
        qt = QTYPE[req.q.qtype]
        rrs = self._rrs()
        name = absname(str(req.q.qname))
        seen = set()
        while True:
            owned = [rr for rr in rrs if absname(str(rr.rname)) == name]
            match = [rr for rr in owned if QTYPE[rr.rtype] == qt]
            if match:
                for rr in match:
                    rep.add_answer(rr)
                return rep
            cname = [rr for rr in owned if QTYPE[rr.rtype] == "CNAME"] if qt != "CNAME" else []
            if cname:
                seen.add(name)
                name = absname(str(cname[0].rdata.label))
                if name in seen or len(seen) > 8:
                    # a CNAME loop: what a recursive server says
                    return self._rcode(req, RCODE.SERVFAIL)
                rep.add_answer(cname[0])
                continue
            if not owned:
                rep.header.rcode = RCODE.NXDOMAIN
            rep.add_auth(self._soa_for(name, rrs))
            return rep

    def spf_type_queries(self):
        """Questions of type SPF (99) received."""
        return [q for q in self.queries if q.type in ("SPF", "TYPE99", 99)]


# ---------------------------------------------------------------- the suite

class SuiteTest:
    def __init__(self, tid, scenario, data):
        self.id = tid
        self.scenario = scenario
        self.host = str(data["host"])
        self.mailfrom = str(data.get("mailfrom", "") or "")
        self.helo = str(data.get("helo", "") or "")
        res = data["result"]
        self.results = [res] if isinstance(res, str) else list(res)
        self.explanation = data.get("explanation")
        self.spec = data.get("spec")
        self.description = " ".join(str(data.get("description", "")).split())

    def __repr__(self):
        return "<%s %s %s %s -> %s>" % (self.id, self.host, self.mailfrom, self.helo,
                                        "/".join(self.results))


class Scenario:
    def __init__(self, index, data):
        self.index = index
        self.description = data.get("description", "scenario %d" % index)
        self.records, self.rules = zone_records(data.get("zonedata") or {})
        self.tests = [SuiteTest(k, self, v) for k, v in (data.get("tests") or {}).items()]
        # TXT strings that are no SPF record (exp= texts and the like): a
        # test expecting the default explanation must not show them
        self.plain_txt = []
        for rec in self.records:
            if rec[1] == "TXT":
                s = b"".join(txt_parts(rec[2])).decode("utf-8", "replace")
                if not s.lower().startswith("v=spf") and "%" not in s and len(s.strip()) >= 6:
                    self.plain_txt.append(s)

    @property
    def slug(self):
        return re.sub(r"[^a-z0-9]+", "_", self.description.lower()).strip("_")

    def __repr__(self):
        return "<Scenario %d %s: %d tests>" % (self.index, self.description, len(self.tests))


def zone_records(zonedata):
    """The suite's zonedata -> (records, FaultDNS rules); see the module
    docstring for the conventions (those of pyspf's testspf.py)."""
    records, rules = [], {}
    for name, entries in zonedata.items():
        n = absname(str(name))
        has_txt = False
        spf_values = []
        seen_types = set()
        timed_out = False
        out = []
        for e in entries or ():
            if e == "TIMEOUT":
                timed_out = True
                break               # nothing after it is ever reached
            if not isinstance(e, dict):
                raise DNSRigError("zonedata %s: cannot use entry %r" % (name, e))
            for t, v in e.items():
                t = t.upper()
                if t in ("TXT", "SPF") and isinstance(v, str):
                    v = [v]
                if t == "TXT":
                    has_txt = True
                if v == "TIMEOUT":
                    rules[(n, t)] = "timeout"
                    continue
                if t in ("TXT", "SPF") and list(v) == ["NONE"]:
                    continue
                if t == "SPF":
                    spf_values.append(v)
                seen_types.add(t)
                out.append((n, t, v))
        if not has_txt and not timed_out:
            for v in spf_values:
                out.append((n, "TXT", v))
                seen_types.add("TXT")
        if timed_out:
            rules[n] = "timeout"
            for t in seen_types:
                rules.setdefault((n, t), "answer")
        records.extend(out)
    return records, rules


def suite_path():
    for f in SUITE_FILES:
        p = os.path.join(SUITE_DIR, f)
        if os.path.exists(p):
            return p
    return None


def load_suite(path=None):
    """The RFC 7208 test suite -> [Scenario]."""
    import yaml
    path = path or suite_path()
    if not path:
        raise FileNotFoundError("RFC 7208 test suite not found under %s (install python3-spf; "
                                "a dpkg path-exclude of /usr/share/doc removes it)" % SUITE_DIR)
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    return [Scenario(i, d) for i, d in enumerate(docs)]


# ---------------------------------------------------------------- moat spf

_conf = None


def moat_conf():
    """A minimal moat.conf (one listener; spf has defaults)."""
    global _conf
    if _conf is None or not os.path.exists(_conf):
        d = tempfile.mkdtemp(prefix="moattest.spf.")
        atexit.register(shutil.rmtree, d, True)
        _conf = os.path.join(d, "moat.conf")
        with open(_conf, "w") as f:
            f.write('listener in {\n    listen = "127.0.0.1:2525"\n'
                    '    upstream = "127.0.0.1:10025"\n}\n')
    return _conf


class SpfRun:
    """One `moat spf` run. result: the first spf=RESULT token of stdout
    (None if there is none)."""

    def __init__(self, argv, rc, out, err, elapsed):
        self.argv, self.rc, self.out, self.err, self.elapsed = argv, rc, out, err, elapsed
        m = re.search(r"(?<![\w.-])spf=([a-z]+)\b", out)
        self.result = m.group(1) if m else None

    @property
    def first_line(self):
        return self.out.split("\n", 1)[0]

    def problems(self):
        """What is wrong with the run itself (not its result): a list."""
        p = []
        if self.rc is None:
            p.append("did not finish")
            return p
        if self.result is None:
            p.append("no spf=RESULT token in stdout")
        elif self.result not in EXIT_CODE:
            p.append("unknown result spf=%s" % self.result)
        elif self.rc != EXIT_CODE[self.result]:
            p.append("exit status %s for spf=%s (want %d)" % (self.rc, self.result,
                                                             EXIT_CODE[self.result]))
        if SAN.search(self.err):
            p.append("sanitizer report: " + self.err[SAN.search(self.err).start():][:600])
        return p

    def __repr__(self):
        return "exit %s after %.2fs, stdout %r, stderr %r" % (
            self.rc, self.elapsed, self.out[-1200:], self.err[-800:])


def moat_spf(ip, sender, helo, ns, timeout=None, opts=(), limit=60, binary=None):
    """Runs `moat -c CONF -o resolver.nameservers=NS spf IP SENDER HELO`."""
    argv = [binary or MOAT, "-c", moat_conf(), "-o", "resolver.nameservers=" + ns]
    if timeout is not None:
        argv += ["-o", "resolver.timeout=%d" % timeout]
    for o in opts:
        argv += ["-o", o]
    argv += ["spf", ip, sender, helo]
    t0 = time.time()
    try:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=limit)
        rc, out, err = p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as e:
        rc, out, err = None, e.stdout or b"", e.stderr or b""
    return SpfRun(argv, rc, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"),
                  time.time() - t0)


def moat_has_spf(binary=None):
    """True if the moat binary knows the spf command."""
    b = binary or MOAT
    if not os.access(b, os.X_OK):
        return False
    r = moat_spf("127.0.0.1", "a@b.example", "c.example", "127.0.0.1:9", timeout=1,
                 limit=20, binary=b)
    return r.result is not None


# ---------------------------------------------------------------- suite runs

Outcome = collections.namedtuple("Outcome", "test run ok why")


def judge(t, run):
    """(ok, why) of one suite test's moat run."""
    probs = run.problems()
    if probs:
        return False, "; ".join(probs)
    if run.result not in t.results:
        return False, "got %s, want %s (moat said: %s)" % (
            run.result, "|".join(t.results), " ".join(run.out.split())[:300])
    if run.result == "fail" and t.explanation is not None:
        if t.explanation == "DEFAULT":
            for s in t.scenario.plain_txt:
                if s in run.out:
                    return False, "explanation: the default one wanted, output shows %r" % s
        elif t.explanation not in run.out:
            return False, "explanation %r not in the output %r" % (t.explanation, run.out[:400])
    return True, ""


def run_scenario(scn, timeout=1, opts=(), binary=None):
    """Runs every test of scn against moat with its own SpfDNS.
    Returns ([Outcome], [SPF-type queries])."""
    with SpfDNS(scn.records, rules=scn.rules) as dns:
        out = []
        for t in scn.tests:
            r = moat_spf(t.host, t.mailfrom, t.helo, dns.address, timeout=timeout, opts=opts,
                         binary=binary)
            ok, why = judge(t, r)
            if not ok:
                # A loaded machine can make the test server miss a 1 s
                # query timeout; a wrong answer stays wrong with a longer
                # one, a slow server does not.
                r = moat_spf(t.host, t.mailfrom, t.helo, dns.address, timeout=timeout * 5,
                             opts=opts, binary=binary)
                ok, why2 = judge(t, r)
                why = why2 if not ok else ""
            out.append(Outcome(t, r, ok, why))
        return out, dns.spf_type_queries()


# ---------------------------------------------------------------- pyspf

def pyspf_check(ip, sender, helo, port, querytime=10):
    """pyspf's spf.check2() with its DNS (pydns) pointed at
    127.0.0.1:port. Returns (result, explanation)."""
    import spf
    import DNS
    DNS.defaults["server"] = ["127.0.0.1"]
    DNS.defaults["port"] = port
    DNS.defaults["server_rotate"] = 0
    # pyspf prefers dnspython when it is installed (python3-dkim brings
    # it), and dnspython asks the system's resolver: use pydns, the one
    # pointed at the test server.
    spf.DNS = DNS
    spf.DNSLookup = spf.DNSLookup_pydns
    return spf.check2(i=ip, s=sender, h=helo, querytime=querytime)


# ---------------------------------------------------------------- Mail::SPF

def perl_check(records, triples, rules=None, limit=120):
    """spfquery.mail-spf-perl for each (ip, sender, helo) in triples, with
    an SpfDNS serving records on 127.0.0.1:53 inside a new network and
    mount namespace (resolv.conf cannot name a port). A null sender is
    checked as postmaster@HELO (RFC 7208 2.4). Returns [result]."""
    with tempfile.TemporaryDirectory(prefix="moattest.spfperl.") as d:
        spec = os.path.join(d, "spec.json")
        with open(spec, "w") as f:
            json.dump({"records": [list(r) if not isinstance(r, str) else r for r in records],
                       "rules": [[list(k) if isinstance(k, tuple) else k, v]
                                 for k, v in (rules or {}).items()],
                       "triples": [list(t) for t in triples], "dir": d}, f)
        p = subprocess.run(["unshare", "-mn", PY, os.path.abspath(__file__), "perl-batch", spec],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=limit)
        if p.returncode != 0:
            raise RuntimeError("perl-batch exit %s: %s %s" % (p.returncode, p.stdout[-1500:],
                                                              p.stderr[-1500:]))
        return json.loads(p.stdout.strip().splitlines()[-1])


def _perl_batch(spec_path):
    """Inside `unshare -mn`: loopback up, SpfDNS on 127.0.0.1:53, a
    resolv.conf naming it bind-mounted over /etc/resolv.conf, then one
    spfquery run per triple (so a null sender can use postmaster@HELO)."""
    with open(spec_path) as f:
        spec = json.load(f)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    rc = os.path.join(spec["dir"], "resolv.conf")
    with open(rc, "w") as f:
        f.write("nameserver 127.0.0.1\noptions timeout:2 attempts:1\n")
    subprocess.run(["mount", "--bind", rc, "/etc/resolv.conf"], check=True)
    recs = [tuple(r) if isinstance(r, list) else r for r in spec["records"]]
    rules = {(tuple(k) if isinstance(k, list) else k): v for k, v in spec["rules"]}
    results = []
    with SpfDNS(recs, rules=rules, port=53):
        lines = []
        for ip, sender, helo in spec["triples"]:
            ident = sender if sender else "postmaster@" + helo
            lines.append("%s %s %s" % (ip, ident, helo))
        p = subprocess.run([SPFQUERY_PERL, "--file", "-"], input="\n".join(lines) + "\n",
                           capture_output=True, text=True, timeout=100)
        for m in re.finditer(r"(?m)^Received-SPF: (\w+)", p.stdout):
            results.append(m.group(1).lower())
        if len(results) != len(lines):
            sys.stderr.write(p.stdout + p.stderr)
            raise SystemExit("spfquery gave %d results for %d triples" % (len(results), len(lines)))
    print(json.dumps(results))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "perl-batch":
        _perl_batch(sys.argv[2])
    elif len(sys.argv) >= 2 and sys.argv[1] == "list":
        for s in load_suite():
            print(s)
            for t in s.tests:
                print("   ", t)
    else:
        sys.stderr.write("usage: spf_suite.py perl-batch SPEC.json | list\n")
        sys.exit(2)
