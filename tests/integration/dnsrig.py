"""dnsrig.py - real DNS servers on loopback for moat's integration tests.

Needs /usr/bin/python3 (Debian's python3-dnslib) and /usr/sbin/unbound.
Use names under .example (never .test: libunbound answers test. itself
with NXDOMAIN and never asks the server).

  TestZones     unbound as a throwaway authoritative-like server with
                static local zones, on 127.0.0.1:PORT (UDP and TCP)
  FaultDNS      a scriptable dnslib server (thread, UDP and TCP) for the
                faults a real server won't give on demand; records every
                query it receives
  dnsbl_records records of an RFC 5782 DNS list (IPv4, IPv6, names),
                RFC 5782 section 5 test points included
  dead_port()   a port (UDP and TCP) that nobody listens on
  query()       one dnslib query (for the rig's own checks)

Records, for both servers, are a list of
  ("name", "TYPE", value[, ttl])      ttl default 300
      A/AAAA/NS/CNAME/PTR value: str
      MX value: "10 mx.example.org" or (10, "mx.example.org")
      TXT value: str (one string; cut into 255-octet strings if longer)
                 or a list/tuple of strings (several strings)
      anything else: the zone-file rdata text
or zone-file lines: "2.0.0.127.bl.example. 300 IN A 127.0.0.2",
  'x.example. 300 IN TXT "first string" "second"'.
Names are absolute whether or not they end in a dot.

TestZones(records, zones=None)
  zones: the static local zones ("bl.example", ...). Default: the
  owners of the SOA records given, else the last two labels of each
  record's name. Every zone without an SOA gets one (negative TTL 60),
  so NXDOMAIN/NODATA answers carry it. Names under a zone that have no
  data get NXDOMAIN; names with data but not of the type asked, NODATA.
  Names outside every zone get REFUSED (outside="refuse"; or "static"
  for NXDOMAIN), so nothing ever leaves the machine.

    with TestZones([("a.bl.example", "A", "127.0.0.2")]) as z:
        z.port, z.address ("127.0.0.1:PORT"), z.unbound_addr ("127.0.0.1@PORT")
        z.add([...]); z.remove("a.bl.example"); z.reload()   # restart, same port
        z.set_records([...])                                 # replace + reload
        z.query("a.bl.example", "A")  -> dnslib DNSRecord

FaultDNS(records=(), default="answer", rules=None)
  behaviours: "answer" (the records; NXDOMAIN for an unknown name, NODATA
  for a known name without that type), "timeout" (never answer),
  "servfail", "refused", "nxdomain", "nodata", "formerr", "truncate" (UDP:
  TC=1, no records; TCP: the full answer), "slow:MS" (the answer after MS
  milliseconds), "garbage" (the query id then malformed bytes),
  "wrongid" (a valid answer with another id), "tcp-close" (TCP: close
  without answering; UDP: truncate).
  rules: {name: behaviour}; a key may be "*.zone" (any name below
  zone) or (name, "TYPE"). A behaviour may be a list: the Nth query for
  that rule gets list[min(N, len-1)] (e.g. ["servfail", "answer"]).
  Attributes default, rules, records may be changed while running.

    with FaultDNS([("x.example", "A", "192.0.2.1")], default="answer",
                  rules={"slow.example": "slow:1500"}) as f:
        f.port, f.address
        f.queries  -> list of Query(name, type, transport, time, id)
        f.queries_for("x.example", "A", transport="tcp")
        f.clear()
"""

import collections
import ipaddress
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

from dnslib import DNSRecord, RR, QTYPE, RCODE, EDNS0, TXT

UNBOUND = os.environ.get("UNBOUND") or "/usr/sbin/unbound"


class DNSRigError(Exception):
    pass


# ---------------------------------------------------------------- names, records

def absname(name):
    """'a.example' -> 'a.example.' (lower case)."""
    name = name.strip().lower()
    return name if name.endswith(".") else name + "."


def reverse_ipv4(ip):
    """'192.0.2.99' -> '99.2.0.192'."""
    return ".".join(reversed(str(ipaddress.IPv4Address(ip)).split(".")))


def reverse_ipv6(ip):
    """'2001:db8::1' -> the 32 nibbles reversed, dot-separated (RFC 5782 2.4)."""
    h = ipaddress.IPv6Address(ip).exploded.replace(":", "")
    return ".".join(reversed(h))


def reverse_ip(ip):
    a = ipaddress.ip_address(ip)
    return reverse_ipv4(ip) if a.version == 4 else reverse_ipv6(ip)


def dnsbl_name(ip, zone):
    """The name an IP list is asked for: dnsbl_name('127.0.0.2', 'bl.example')
    -> '2.0.0.127.bl.example.'"""
    return reverse_ip(ip) + "." + absname(zone)


def txt_quote(s):
    """One TXT character-string in zone-file syntax: quoted, with \\" \\\\
    and \\DDD for octets outside printable ASCII."""
    if isinstance(s, str):
        s = s.encode("utf-8")
    out = ['"']
    for c in s:
        if c in (0x22, 0x5c):
            out.append("\\" + chr(c))
        elif 0x20 <= c < 0x7f and c != 0x27:
            out.append(chr(c))
        else:
            out.append("\\%03d" % c)
    out.append('"')
    return "".join(out)


def txt_strings(value):
    """TXT value -> list of byte strings (<= 255 octets each)."""
    if isinstance(value, (list, tuple)):
        parts = [v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in value]
        for p in parts:
            if len(p) > 255:
                raise DNSRigError("TXT string longer than 255 octets: %r..." % p[:40])
        return parts
    b = value.encode("utf-8") if isinstance(value, str) else bytes(value)
    if not b:
        return [b""]
    return [b[i:i + 255] for i in range(0, len(b), 255)]


def record_line(rec):
    """A record (tuple or zone-file line) -> 'name. TTL IN TYPE rdata'."""
    if isinstance(rec, str):
        line = rec.strip()
        parts = line.split(None, 1)
        if not parts:
            raise DNSRigError("empty record")
        return absname(parts[0]) + (" " + parts[1] if len(parts) > 1 else "")
    if len(rec) == 3:
        name, rtype, value = rec
        ttl = 300
    elif len(rec) == 4:
        name, rtype, value, ttl = rec
    else:
        raise DNSRigError("record must be (name, type, value[, ttl]): %r" % (rec,))
    rtype = rtype.upper()
    if rtype == "TXT":
        rdata = " ".join(txt_quote(s) for s in txt_strings(value))
    elif rtype == "MX":
        if isinstance(value, (list, tuple)):
            rdata = "%d %s" % (value[0], absname(value[1]))
        else:
            pref, host = value.split()
            rdata = "%d %s" % (int(pref), absname(host))
    elif rtype in ("NS", "CNAME", "PTR"):
        rdata = absname(value)
    elif rtype == "A":
        rdata = str(ipaddress.IPv4Address(value))
    elif rtype == "AAAA":
        rdata = str(ipaddress.IPv6Address(value))
    else:
        rdata = str(value)
    return "%s %d IN %s %s" % (absname(name), int(ttl), rtype, rdata)


def line_owner_type(line):
    """('name.', 'TYPE') of a record line (TTL and class optional)."""
    toks = line.split()
    i = 1
    while i < len(toks) and (toks[i].isdigit() or toks[i].upper() in ("IN", "CH", "HS")):
        i += 1
    if i >= len(toks):
        raise DNSRigError("cannot parse record %r" % line)
    return absname(toks[0]), toks[i].upper()


def parse_records(records):
    """records -> list of dnslib RR.

    TXT records given as tuples are built from their octets, not through
    dnslib's zone lexer: that reads \\DDD as octal (RFC 1035 5.1 says
    decimal, as txt_quote() writes it for unbound's zone files) and
    UTF-8-encodes what it read, so a control or non-ASCII octet would be
    served as other bytes."""
    out = []
    for rec in records:
        if not isinstance(rec, str) and len(rec) in (3, 4) and str(rec[1]).upper() == "TXT":
            ttl = int(rec[3]) if len(rec) == 4 else 300
            out.append(RR(absname(rec[0]), QTYPE.TXT, ttl=ttl, rdata=TXT(txt_strings(rec[2]))))
            continue
        line = record_line(rec)
        rrs = RR.fromZone(line)
        if not rrs:
            raise DNSRigError("cannot parse record %r" % line)
        out.extend(rrs)
    return out


def soa_line(zone, serial=1, neg_ttl=60):
    z = absname(zone)
    return "%s 3600 IN SOA ns.%s hostmaster.%s %d 3600 600 86400 %d" % (z, z, z, serial, neg_ttl)


# RFC 5782 section 5 test points
TEST_TXT = "RFC 5782 test point"


def dnsbl_records(zone, listed_ips=None, listed_names=None, test_points=True, ttl=300,
                  soa=True):
    """Records of a DNS list zone (RFC 5782).

    listed_ips: {ip: value}, IPv4 or IPv6 (the name is the reversed
      address, nibbles for IPv6, under zone)
    listed_names: {domain: value} (the name is domain.zone, for
      domain-name lists)
    value: "127.0.0.2" (A only), ("127.0.0.2", "txt reason") (A and TXT),
      (["127.0.0.2", "127.0.0.4"], "reason") (several A), or
      (a, None) (no TXT). TXT may be a list of strings.
    test_points: adds 127.0.0.2 (listed, A 127.0.0.2 + TXT), ::FFFF:7F00:2
      (listed) and TEST.zone (listed); 127.0.0.1, ::FFFF:7F00:1 and
      INVALID.zone stay absent (NXDOMAIN). Set False to leave them out.
    soa: adds the zone's SOA (which also tells TestZones the zone).
    Returns a list of record tuples for TestZones/FaultDNS.
    """
    z = absname(zone)
    recs = []
    if soa:
        recs.append(soa_line(z))

    def add(name, value):
        if isinstance(value, str):
            a_list, txt = [value], None
        else:
            a_list, txt = value
            if isinstance(a_list, str):
                a_list = [a_list]
        for a in a_list or ():
            recs.append((name, "A", a, ttl))
        if txt is not None:
            recs.append((name, "TXT", txt, ttl))

    listed_ips = dict(listed_ips or {})
    listed_names = dict(listed_names or {})
    if test_points:
        listed_ips.setdefault("127.0.0.2", ("127.0.0.2", TEST_TXT))
        listed_ips.setdefault("::ffff:7f00:2", ("127.0.0.2", TEST_TXT))
        listed_names.setdefault("test", ("127.0.0.2", TEST_TXT))
    for ip, value in listed_ips.items():
        add(dnsbl_name(ip, z), value)
    for dom, value in listed_names.items():
        add(absname(dom.rstrip(".") + "." + z), value)
    return recs


# ---------------------------------------------------------------- ports, queries

def _bind_both(port=0):
    """Binds a UDP and a TCP socket on 127.0.0.1 to one port (port 0:
    any). Returns (udp, tcp) or None if the port is taken."""
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind(("127.0.0.1", port))
    except OSError:
        u.close()
        return None
    p = u.getsockname()[1]
    t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        t.bind(("127.0.0.1", p))
    except OSError:
        u.close()
        t.close()
        return None
    return u, t


def free_dns_port():
    """A port free on 127.0.0.1 for both UDP and TCP right now."""
    for _ in range(50):
        s = _bind_both(0)
        if s:
            p = s[0].getsockname()[1]
            s[0].close()
            s[1].close()
            return p
    raise DNSRigError("no free UDP+TCP port")


def dead_port():
    """A port on 127.0.0.1 where nothing listens (UDP gets ICMP port
    unreachable, TCP a reset): a dead nameserver."""
    return free_dns_port()


def query(name, qtype="A", port=53, host="127.0.0.1", tcp=False, timeout=2.0, rd=True):
    """One query with dnslib; returns the parsed reply (DNSRecord).
    Raises socket.timeout / OSError on no answer."""
    q = DNSRecord.question(absname(name), qtype)
    q.header.rd = 1 if rd else 0
    raw = q.send(host, port, tcp=tcp, timeout=timeout)
    return DNSRecord.parse(raw)


def rr_values(reply, qtype=None):
    """[(TYPE, rdata text)] of the answer section (TXT: the strings joined)."""
    out = []
    for rr in reply.rr:
        t = QTYPE[rr.rtype]
        if qtype and t != qtype:
            continue
        if t == "TXT":
            v = b"".join(rr.rdata.data).decode("utf-8", "replace")
        else:
            v = str(rr.rdata)
        out.append((t, v))
    return out


# ---------------------------------------------------------------- TestZones

class TestZones:
    """unbound as a throwaway server of static local zones on
    127.0.0.1:PORT (UDP and TCP). See the module docstring."""

    __test__ = False  # not a pytest class

    def __init__(self, records=(), zones=None, port=None, outside="refuse", keep=None,
                 extra_config=()):
        self.records = list(records)
        self.zones = [absname(z) for z in zones] if zones else None
        self.port = port or free_dns_port()
        self.port_chosen = port is None
        self.outside = outside
        self.extra_config = list(extra_config)
        self.keep = bool(os.environ.get("MOAT_TEST_KEEP")) if keep is None else keep
        self.dir = None
        self.proc = None
        self.serial = 0
        self.log_fh = None

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    @property
    def unbound_addr(self):
        return "127.0.0.1@%d" % self.port

    # -- records
    def add(self, records, reload=False):
        self.records.extend(records)
        if reload:
            self.reload()

    def remove(self, name, rtype=None, reload=False):
        n = absname(name)
        keep = []
        for r in self.records:
            o, t = line_owner_type(record_line(r))
            if o == n and (rtype is None or t == rtype.upper()):
                continue
            keep.append(r)
        self.records = keep
        if reload:
            self.reload()

    def set_records(self, records, zones=None):
        self.records = list(records)
        if zones is not None:
            self.zones = [absname(z) for z in zones]
        self.reload()

    def zone_list(self):
        lines = [record_line(r) for r in self.records]
        zones = list(self.zones or [])
        if not zones:
            for l in lines:
                o, t = line_owner_type(l)
                if t == "SOA" and o not in zones:
                    zones.append(o)
            for l in lines:
                o, t = line_owner_type(l)
                if any(o == z or o.endswith("." + z) for z in zones):
                    continue
                labels = o.rstrip(".").split(".")
                z = ".".join(labels[-2:]) + "."
                if z not in zones:
                    zones.append(z)
        return zones

    def config_text(self):
        lines = [record_line(r) for r in self.records]
        zones = self.zone_list()
        have_soa = {line_owner_type(l)[0] for l in lines if line_owner_type(l)[1] == "SOA"}
        for l in lines:
            o, _ = line_owner_type(l)
            if not any(o == z or o.endswith("." + z) for z in zones):
                raise DNSRigError("record %r is outside the zones %r" % (l, zones))
        d = self.dir
        c = [
            "server:",
            '    directory: "%s"' % d,
            '    chroot: ""',
            '    username: ""',
            '    pidfile: "%s/unbound.pid"' % d,
            '    logfile: "%s/unbound.log"' % d,
            "    use-syslog: no",
            "    do-daemonize: no",
            "    verbosity: 1",
            "    log-queries: no",
            "    interface: 127.0.0.1@%d" % self.port,
            "    port: %d" % self.port,
            "    do-ip4: yes",
            "    do-ip6: no",
            "    do-udp: yes",
            "    do-tcp: yes",
            "    num-threads: 1",
            "    so-reuseport: no",
            "    access-control: 127.0.0.0/8 allow",
            '    module-config: "iterator"',
            "    rrset-roundrobin: no",
            "    minimal-responses: yes",
            "    qname-minimisation: no",
            "    max-udp-size: 4096",
            "    edns-buffer-size: 1232",
            '    local-zone: "." %s' % self.outside,
        ]
        for z in zones:
            c.append('    local-zone: "%s" static' % z)
            if z not in have_soa:
                c.append("    local-data: '%s'" % soa_line(z, serial=self.serial))
        for l in lines:
            o, t = line_owner_type(l)
            if t == "SOA":
                # bump the serial so a reload can be seen
                toks = l.split()
                i = [k for k, x in enumerate(toks) if x.upper() == "SOA"][0]
                if len(toks) > i + 3 and toks[i + 3].isdigit():
                    toks[i + 3] = str(int(toks[i + 3]) + self.serial)
                l = " ".join(toks)
            c.append("    local-data: '%s'" % l.replace("'", "\\039"))
        c.extend("    " + x for x in self.extra_config)
        c.append("remote-control:")
        c.append("    control-enable: no")
        return "\n".join(c) + "\n"

    # -- lifecycle
    def start(self, timeout=10.0):
        """Starts unbound. A port taken in the meantime (a resolver's random
        UDP source port can be any port) is waited for on a reload, or
        replaced by a fresh one when this rig chose it."""
        for attempt in range(25):
            try:
                return self._start_once(timeout)
            except DNSRigError as e:
                if "Address already in use" not in str(e) or attempt == 24:
                    raise
                if self.port_chosen and self.serial == 0:
                    self.port = free_dns_port()
                time.sleep(0.2)

    def _start_once(self, timeout):
        if self.dir is None:
            self.dir = tempfile.mkdtemp(prefix="moattest.dns.")
        self.conf = os.path.join(self.dir, "unbound.conf")
        with open(self.conf, "w") as f:
            f.write(self.config_text())
        chk = subprocess.run([UNBOUND + "-checkconf", self.conf], stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if chk.returncode != 0:
            raise DNSRigError("unbound-checkconf %s: %s" % (
                self.conf, chk.stdout.decode("utf-8", "replace")[-2000:]))
        # never the caller's stdout (a pipe reader would wait forever)
        self.log_fh = open(os.path.join(self.dir, "unbound.out"), "ab")
        self.proc = subprocess.Popen([UNBOUND, "-d", "-c", self.conf],
                                     stdin=subprocess.DEVNULL, stdout=self.log_fh,
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     close_fds=True)
        if self not in _live:
            _live.append(self)
        probe = self.zone_list()[0] if self.zone_list() else "."
        end = time.time() + timeout
        last = None
        while time.time() < end:
            if self.proc.poll() is not None:
                self._close_log()
                raise DNSRigError("unbound exited with status %s: %s" % (
                    self.proc.returncode, self.log()[-2000:]))
            try:
                r = query(probe, "SOA", self.port, timeout=0.3)
                if r.header.rcode == RCODE.NOERROR and r.rr:
                    # TCP as well
                    query(probe, "SOA", self.port, tcp=True, timeout=1.0)
                    return self
                last = r
            except (OSError, socket.timeout) as e:
                last = e
            time.sleep(0.03)
        self.stop()
        raise DNSRigError("unbound on port %d did not answer within %.0fs (%s): %s" % (
            self.port, timeout, last, self.log()[-2000:]))

    def reload(self):
        """Restarts unbound with the current records, same port."""
        self.serial += 1
        if self.proc is not None:
            self._kill()
        return self.start()

    def _kill(self):
        p = self.proc
        self.proc = None
        if p is not None and p.poll() is None:
            try:
                p.send_signal(signal.SIGTERM)
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
            except ProcessLookupError:
                pass
        self._close_log()

    def _close_log(self):
        if self.log_fh:
            self.log_fh.close()
            self.log_fh = None

    def stop(self):
        self._kill()
        if self in _live:
            _live.remove(self)
        if self.dir and not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def log(self):
        out = []
        for n in ("unbound.log", "unbound.out"):
            try:
                with open(os.path.join(self.dir or "", n), "rb") as f:
                    out.append(f.read().decode("utf-8", "replace"))
            except OSError:
                pass
        return "\n".join(out)

    def query(self, name, qtype="A", tcp=False, timeout=2.0):
        return query(name, qtype, self.port, tcp=tcp, timeout=timeout)

    def __enter__(self):
        return self.start()

    def __exit__(self, *a):
        self.stop()
        return False


# ---------------------------------------------------------------- FaultDNS

Query = collections.namedtuple("Query", "name type transport time id")

BEHAVIOURS = ("answer", "timeout", "servfail", "refused", "nxdomain", "nodata", "formerr",
              "truncate", "garbage", "wrongid", "tcp-close")


class FaultDNS:
    """A scriptable DNS server on 127.0.0.1:PORT (UDP and TCP), in threads.
    See the module docstring."""

    def __init__(self, records=(), default="answer", rules=None, port=None):
        self.records = list(records)
        self.default = default
        self.rules = dict(rules or {})
        self.queries = []
        self.lock = threading.Lock()
        self.counts = collections.Counter()
        self.stop_ev = threading.Event()
        self.threads = []
        self.timers = []
        self.conns = []
        socks = None
        for _ in range(50):
            socks = _bind_both(port or 0)
            if socks or port:
                break
        if not socks:
            raise DNSRigError("cannot bind UDP+TCP port %s" % port)
        self.udp, self.tcp = socks
        self.port = self.udp.getsockname()[1]

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    # -- records and behaviour
    def _rrs(self):
        return parse_records(self.records)

    def behaviour_for(self, name, qtype):
        """The behaviour for one query (consumes a step of a list rule)."""
        n = absname(name)
        key = None
        for k in ((n, qtype), (n.rstrip("."), qtype)):
            if k in self.rules:
                key = k
                break
        if key is None:
            for k in self.rules:
                if isinstance(k, tuple):
                    continue
                ka = absname(k) if not k.startswith("*.") else k
                if ka == n:
                    key = k
                    break
        if key is None:
            for k in self.rules:
                if isinstance(k, str) and k.startswith("*."):
                    suf = absname(k[2:])
                    if n.endswith("." + suf):
                        key = k
                        break
        b = self.rules[key] if key is not None else self.default
        if isinstance(b, (list, tuple)):
            with self.lock:
                i = self.counts[key]
                self.counts[key] += 1
            b = b[min(i, len(b) - 1)]
        return b

    def queries_for(self, name=None, qtype=None, transport=None):
        n = absname(name) if name else None
        with self.lock:
            return [q for q in self.queries
                    if (n is None or q.name == n) and (qtype is None or q.type == qtype)
                    and (transport is None or q.transport == transport)]

    def clear(self):
        with self.lock:
            self.queries = []
            self.counts.clear()

    def _answer(self, req):
        """The full answer from the records."""
        rep = req.reply()  # QR, RD copied, RA, AA
        rep.header.ra = 1
        qn = absname(str(req.q.qname))
        qt = QTYPE[req.q.qtype]
        rrs = self._rrs()
        owned = [rr for rr in rrs if absname(str(rr.rname)) == qn]
        match = [rr for rr in owned if QTYPE[rr.rtype] == qt or
                 (QTYPE[rr.rtype] == "CNAME" and qt != "CNAME")]
        if match:
            for rr in match:
                rep.add_answer(rr)
        else:
            if not owned:
                rep.header.rcode = RCODE.NXDOMAIN
            soa = self._soa_for(qn, rrs)
            rep.add_auth(soa)
        return rep

    def _soa_for(self, qn, rrs):
        best = None
        for rr in rrs:
            if QTYPE[rr.rtype] == "SOA":
                o = absname(str(rr.rname))
                if qn == o or qn.endswith("." + o):
                    if best is None or len(o) > len(absname(str(best.rname))):
                        best = rr
        if best is None:
            labels = qn.rstrip(".").split(".")
            z = ".".join(labels[-2:]) + "."
            best = RR.fromZone(soa_line(z))[0]
        return best

    def _rcode(self, req, rcode):
        rep = req.reply()
        rep.header.ra = 1
        rep.header.rcode = rcode
        if rcode in (RCODE.NXDOMAIN, RCODE.NOERROR):
            rep.add_auth(self._soa_for(absname(str(req.q.qname)), self._rrs()))
        if rcode in (RCODE.SERVFAIL, RCODE.REFUSED, RCODE.FORMERR):
            rep.header.aa = 0
        return rep

    def _respond(self, data, transport):
        """Returns (delay seconds, reply bytes or None, close_tcp)."""
        try:
            req = DNSRecord.parse(data)
        except Exception:
            return 0, None, False
        if not req.questions:
            return 0, None, False
        qn = absname(str(req.q.qname))
        qt = QTYPE[req.q.qtype]
        with self.lock:
            self.queries.append(Query(qn, qt, transport, time.time(), req.header.id))
        b = self.behaviour_for(qn, qt)
        delay = 0.0
        if isinstance(b, str) and b.startswith("slow:"):
            delay = float(b[5:]) / 1000.0
            b = "answer"
        edns = None
        for ar in req.ar:
            if ar.rtype == QTYPE.OPT:
                edns = ar
        if b == "timeout":
            return 0, None, False
        if b == "tcp-close":
            if transport == "tcp":
                return 0, None, True
            b = "truncate"
        if b == "answer":
            rep = self._answer(req)
        elif b == "servfail":
            rep = self._rcode(req, RCODE.SERVFAIL)
        elif b == "refused":
            rep = self._rcode(req, RCODE.REFUSED)
        elif b == "formerr":
            rep = self._rcode(req, RCODE.FORMERR)
        elif b == "nxdomain":
            rep = self._rcode(req, RCODE.NXDOMAIN)
        elif b == "nodata":
            rep = self._rcode(req, RCODE.NOERROR)
        elif b == "truncate":
            if transport == "udp":
                rep = req.reply()
                rep.header.ra = 1
                rep.header.tc = 1
            else:
                rep = self._answer(req)
        elif b == "garbage":
            junk = bytes(random.Random(req.header.id).getrandbits(8) for _ in range(23))
            raw = struct.pack("!HHHHHH", req.header.id, 0x8180, 1, 3, 0, 0) + junk
            return delay, raw, False
        elif b == "wrongid":
            rep = self._answer(req)
            rep.header.id = (req.header.id + 1) & 0xffff
        else:
            raise DNSRigError("FaultDNS: unknown behaviour %r" % (b,))
        if edns is not None:
            rep.add_ar(EDNS0(udp_len=4096))
        raw = rep.pack()
        if transport == "udp":
            limit = max(512, edns.rclass if edns is not None else 512)
            if len(raw) > limit:
                t = req.reply()
                t.header.ra = 1
                t.header.tc = 1
                t.header.rcode = rep.header.rcode
                raw = t.pack()
        return delay, raw, False

    # -- servers
    def start(self):
        self.stop_ev.clear()
        self.udp.settimeout(0.2)
        self.tcp.listen(32)
        self.tcp.settimeout(0.2)
        for fn in (self._udp_loop, self._tcp_loop):
            t = threading.Thread(target=fn, daemon=True)
            t.start()
            self.threads.append(t)
        return self

    def _later(self, delay, fn):
        if delay <= 0:
            fn()
            return
        t = threading.Timer(delay, fn)
        t.daemon = True
        with self.lock:
            self.timers.append(t)
        t.start()

    def _udp_loop(self):
        while not self.stop_ev.is_set():
            try:
                data, peer = self.udp.recvfrom(65535)
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                delay, raw, _ = self._respond(data, "udp")
            except Exception as e:  # never kill the server thread
                sys.stderr.write("FaultDNS: %s\n" % e)
                continue
            if raw is None:
                continue

            def send(raw=raw, peer=peer):
                try:
                    self.udp.sendto(raw, peer)
                except OSError:
                    pass
            self._later(delay, send)

    def _tcp_loop(self):
        while not self.stop_ev.is_set():
            try:
                c, _ = self.tcp.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.conns.append(c)
            t = threading.Thread(target=self._tcp_conn, args=(c,), daemon=True)
            t.start()

    def _tcp_conn(self, c):
        c.settimeout(0.5)
        buf = b""
        wlock = threading.Lock()
        try:
            while not self.stop_ev.is_set():
                try:
                    d = c.recv(65535)
                except socket.timeout:
                    continue
                if not d:
                    return
                buf += d
                while len(buf) >= 2:
                    n = struct.unpack("!H", buf[:2])[0]
                    if len(buf) < 2 + n:
                        break
                    msg, buf = buf[2:2 + n], buf[2 + n:]
                    delay, raw, close = self._respond(msg, "tcp")
                    if close:
                        return
                    if raw is None:
                        continue

                    def send(raw=raw):
                        with wlock:
                            try:
                                c.sendall(struct.pack("!H", len(raw)) + raw)
                            except OSError:
                                pass
                    self._later(delay, send)
        except OSError:
            return
        finally:
            try:
                c.close()
            except OSError:
                pass

    def stop(self):
        self.stop_ev.set()
        for t in self.threads:
            t.join(2)
        self.threads = []
        with self.lock:
            for t in self.timers:
                t.cancel()
            self.timers = []
            for c in self.conns:
                try:
                    c.close()
                except OSError:
                    pass
            self.conns = []
        for s in (self.udp, self.tcp):
            try:
                s.close()
            except OSError:
                pass

    def __enter__(self):
        return self.start()

    def __exit__(self, *a):
        self.stop()
        return False


# every TestZones started and not stopped (killed at exit)
_live = []


def _cleanup():
    for z in list(_live):
        try:
            z.stop()
        except Exception:
            pass


import atexit  # noqa: E402
atexit.register(_cleanup)
