#!/usr/bin/python3
"""DKIM signing and keys through the CLI, checked by independent
implementations:

    moat keygen -d DOMAIN -s SELECTOR [-k rsa|ed25519] [-b BITS] [-t] [-D DIR]
    moat sign -d DOMAIN -s SELECTOR -k KEYFILE [-c CANON] [FILE]
    moat -o resolver.nameservers=... keycheck -d DOMAIN -s SELECTOR [-k KEYFILE]

Keys come from `moat keygen`; their .txt records are published in a
real DNS server (unbound, dnsrig.TestZones). Messages signed by
`moat sign` (filters/dkim_sign.c and filters/dkim_canon.c, as in the
daemon) must verify with
  - dkimpy (python3-dkim, python3-nacl for Ed25519), its DNS lookups
    sent to TestZones through its dnsfunc hook;
  - Mail::DKIM (libmail-dkim-perl) with a Net::DNS resolver pointed at
    TestZones: RSA only, Debian 12's version has no ed25519-sha256;
  - OpenDKIM's opendkim-testmsg, RSA and Ed25519.
    It reads /etc/resolv.conf and has no port option, so it runs under
    `unshare -m -n` with a private loopback, a dnslib server on port 53
    and a resolv.conf bind-mounted over the real one (needs root).
Also: key files of other tools (opendkim-genkey, openssl PKCS#1,
dkimpy's dknewkey) sign, keygen writes what opendkim-genkey writes,
and keycheck reports match, mismatch, missing, revoked, testing,
several records and DNS failures.

Uses /usr/bin/python3 (python3-dkim, python3-dnslib), /usr/sbin/unbound,
perl, opendkim-genkey, opendkim-testmsg, dknewkey, openssl. Names under
example.org / .example only.
"""

import base64
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from moattest import *  # noqa
from dnsrig import TestZones, dead_port, query, QTYPE

import dkim

MOAT = os.environ.get("MOAT") or os.path.join(ROOT, "build", "san", "moat")
SAN = re.compile(r"AddressSanitizer|LeakSanitizer|runtime error:")
DOMAIN = "example.org"

MESSAGE = (
    "Received: from client.example (client.example [192.0.2.1])\n"
    "\tby mx.example.org; Mon, 1 Jan 2024 00:00:00 +0000\n"
    "From: Alice Example <alice@example.org>\n"
    "To: bob@example.net,\n"
    "    carol@example.net\n"
    "Cc: dave@example.net\n"
    "Subject:  A   folded\n"
    "\tsubject line  \n"
    "Date: Mon, 1 Jan 2024 00:00:00 +0000\n"
    "Message-ID: <1234@example.org>\n"
    "MIME-Version: 1.0\n"
    "Content-Type: text/plain; charset=utf-8\n"
    "Content-Transfer-Encoding: 8bit\n"
    "\n"
    "Hello Bob,\n"
    "\n"
    "  some   spaced \t text \t\n"
    "From the start of a line, and caf\u00e9 in UTF-8.\n"
    ".a line with a dot\n"
    + "x" * 900 + "\n"
    "\n"
    "\n"
).encode("utf-8")

CANONS = ("relaxed/relaxed", "simple/simple", "relaxed/simple", "simple/relaxed")

_work = None
_zones = None
_records = []


def work():
    global _work
    if _work is None:
        _work = tempfile.mkdtemp(prefix="moattest.dkimsign.")
        os.chmod(_work, 0o700)
    return _work


def run(args, input=None, timeout=120, env=None, umask=None):
    """Runs a command; returns (rc, stdout bytes, stderr text). Fails on a
    sanitizer report."""
    pre = (lambda: os.umask(umask)) if umask is not None else None
    p = subprocess.run(args, input=input, capture_output=True, timeout=timeout, env=env,
                       preexec_fn=pre)
    err = p.stderr.decode("utf-8", "replace")
    if SAN.search(err):
        fail("sanitizer report from %s: %s" % (args[0], err[-3000:]))
    return p.returncode, p.stdout, err


def moat(*args, **kw):
    if not os.access(MOAT, os.X_OK):
        fail("moat binary %s not built" % MOAT)
    return run([MOAT] + list(args), **kw)


def txt_strings(path):
    """The strings of a zone-file stub as opendkim-genkey writes it."""
    with open(path) as f:
        return re.findall(r'"([^"]*)"', f.read())


_keys = {}


def key(sel, *opts):
    """A key made by moat keygen in the work directory (once per
    selector); returns the private key path."""
    if sel not in _keys:
        d = os.path.join(work(), "keys")
        os.makedirs(d, exist_ok=True)
        rc, out, err = moat("keygen", "-d", DOMAIN, "-s", sel, "-D", d, *opts)
        eq(rc, 0, "moat keygen -s %s exit status (%s)" % (sel, err))
        _keys[sel] = os.path.join(d, sel + ".private")
    return _keys[sel]


def zones():
    """One unbound for the file, serving the keygen records and the
    special cases keycheck reports."""
    global _zones
    if _zones is not None:
        return _zones
    recs = []
    for sel, opts in (("rsa", ()), ("ed", ("-k", "ed25519")), ("big", ("-b", "4096")),
                      ("tst", ("-k", "ed25519", "-t")), ("other", ("-b", "1024"))):
        k = key(sel, *opts)
        recs.append(("%s._domainkey.%s" % (sel, DOMAIN), "TXT",
                     txt_strings(k[:-len(".private")] + ".txt")))
    other = "".join(txt_strings(key("other")[:-len(".private")] + ".txt"))
    recs += [
        ("mism._domainkey." + DOMAIN, "TXT", other),
        ("revoked._domainkey." + DOMAIN, "TXT", "v=DKIM1; k=rsa; p="),
        ("two._domainkey." + DOMAIN, "TXT", other),
        ("two._domainkey." + DOMAIN, "TXT", "v=DKIM1; k=rsa; p=MIIBIjAN"),
        ("garbage._domainkey." + DOMAIN, "TXT", "this is no key record"),
        ("www." + DOMAIN, "A", "192.0.2.80"),
    ]
    _records[:] = recs
    _zones = TestZones(recs).start()
    return _zones


def dns_txt(name, timeout=5):
    """dkimpy's dnsfunc: the TXT record from TestZones (TCP: a 4096-bit
    key does not fit 512 octets)."""
    n = name.decode() if isinstance(name, bytes) else name
    r = query(n, "TXT", zones().port, tcp=True, timeout=timeout)
    for rr in r.rr:
        if QTYPE[rr.rtype] == "TXT":
            return b"".join(rr.rdata.data)
    return None


def sign(sel, msg=MESSAGE, canon="relaxed/relaxed", keyfile=None, extra=()):
    rc, out, err = moat("sign", "-d", DOMAIN, "-s", sel, "-k", keyfile or key(sel),
                        "-c", canon, *extra, input=msg)
    eq(rc, 0, "moat sign exit status (stderr %r)" % err)
    check(out.startswith(b"DKIM-Signature:"), "output starts with the signature: %r"
          % out[:100])
    return out


def crlf(b):
    return re.sub(rb"(?<!\r)\n", b"\r\n", b)


def dkimpy_ok(msg, idx=0):
    """dkimpy's verdict on signature idx (its errors count as a failure)."""
    try:
        return dkim.DKIM(crlf(msg)).verify(idx=idx, dnsfunc=dns_txt)
    except dkim.DKIMException:
        return False


# ---------------------------------------------------------------- Mail::DKIM

PERL_VERIFY = r'''
use strict; use warnings;
use Net::DNS::Resolver; use Mail::DKIM::Verifier; use Mail::DKIM::DNS;
my $port = shift;
my $res = Net::DNS::Resolver->new(nameservers => ['127.0.0.1'], port => $port,
                                  recurse => 1, tcp_timeout => 5, udp_timeout => 5);
Mail::DKIM::DNS::resolver($res);
binmode STDIN; local $/; my $msg = <STDIN>;
$msg =~ s/(?<!\r)\n/\r\n/g;
my $v = Mail::DKIM::Verifier->new();
$v->PRINT($msg); $v->CLOSE;
foreach my $s ($v->signatures) {
    printf "%s %s %s %s\n", $s->result, $s->algorithm, $s->selector,
        ($s->result_detail // '');
}
'''


def mail_dkim(msg):
    """Mail::DKIM's result per signature: [(result, algorithm, selector, detail)]."""
    p = os.path.join(work(), "verify.pl")
    if not os.path.exists(p):
        with open(p, "w") as f:
            f.write(PERL_VERIFY)
    rc, out, err = run(["perl", p, str(zones().port)], input=msg)
    eq(rc, 0, "perl verifier exit status (%s)" % err[-800:])
    rows = []
    for line in out.decode().splitlines():
        parts = line.split(" ", 3)
        rows.append(tuple(parts) + ("",) * (4 - len(parts)))
    return rows


# ---------------------------------------------------------------- opendkim-testmsg

NS_HELPER = r'''
import os, subprocess, sys, json
sys.path.insert(0, %(dir)r)
from dnsrig import FaultDNS
recs = [tuple(r) for r in json.load(open(sys.argv[1]))]
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
subprocess.run(["mount", "--bind", sys.argv[2], "/etc/resolv.conf"], check=True)
out = []
with FaultDNS(recs, port=53):
    for m in sys.argv[3:]:
        with open(m, "rb") as f:
            r = subprocess.run(["opendkim-testmsg"], stdin=f, capture_output=True)
        out.append([m, r.returncode, r.stderr.decode("utf-8", "replace")])
print(json.dumps(out))
'''


def opendkim_verify(msgs):
    """Runs opendkim-testmsg on each message (bytes) in a private network
    and mount namespace whose resolver is a dnslib server with this
    file's records. Returns [(exit status, stderr)]."""
    import json
    if os.geteuid() != 0:
        fail("opendkim-testmsg needs root for unshare -m -n (run as root)")
    zones()
    d = tempfile.mkdtemp(dir=work())
    helper = os.path.join(d, "ns.py")
    with open(helper, "w") as f:
        f.write(NS_HELPER % {"dir": os.path.dirname(os.path.abspath(__file__))})
    with open(os.path.join(d, "recs.json"), "w") as f:
        json.dump([list(r) for r in _records], f)
    with open(os.path.join(d, "resolv.conf"), "w") as f:
        f.write("nameserver 127.0.0.1\noptions attempts:1 timeout:2\n")
    paths = []
    for i, m in enumerate(msgs):
        p = os.path.join(d, "m%d.eml" % i)
        with open(p, "wb") as f:
            f.write(m)
        paths.append(p)
    rc, out, err = run(["unshare", "-m", "-n", "/usr/bin/python3", helper,
                        os.path.join(d, "recs.json"), os.path.join(d, "resolv.conf")] + paths)
    eq(rc, 0, "namespace helper exit status (%s)" % err[-1500:])
    return [(r[1], r[2]) for r in json.loads(out)]


# ---------------------------------------------------------------- keycheck

_conf = None


def conf():
    global _conf
    if _conf is None:
        _conf = os.path.join(work(), "moat.conf")
        with open(_conf, "w") as f:
            f.write('listener in {\n    listen = "127.0.0.1:2525"\n'
                    '    upstream = "127.0.0.1:10025"\n}\n')
    return _conf


def keycheck(sel, keyfile=None, nameserver=None, timeout=None):
    args = ["-c", conf(), "-o", "resolver.nameservers=" + (nameserver or zones().address)]
    if timeout:
        args += ["-o", "resolver.timeout=%d" % timeout]
    args += ["keycheck", "-d", DOMAIN, "-s", sel]
    if keyfile:
        args += ["-k", keyfile]
    rc, out, err = moat(*args)
    return rc, out.decode(), err


def words(out):
    return [l.split(":", 1)[0] for l in out.splitlines() if l.strip()]


# ================================================================ tests

def test_keygen_files():
    k = key("rsa")
    txt = k[:-len(".private")] + ".txt"
    eq(stat.S_IMODE(os.stat(k).st_mode), 0o600, "mode of the .private file")
    with open(k) as f:
        pem = f.read()
    check(pem.startswith("-----BEGIN PRIVATE KEY-----\n"), "PKCS#8 PEM: %r" % pem[:40])
    rc, out, err = run(["openssl", "pkey", "-in", k, "-noout", "-text"])
    eq(rc, 0, "openssl reads the key (%s)" % err)
    check(b"2048 bit" in out, "a 2048-bit key: %r" % out[:80])
    strs = txt_strings(txt)
    eq(strs[0], "v=DKIM1; h=sha256; k=rsa; ", "first string of the record")
    p = "".join(strs)[len(strs[0]):]
    check(p.startswith("p="), "p= follows: %r" % p[:20])
    # the same public key as openssl derives, SPKI DER in base64
    rc, der, err = run(["openssl", "pkey", "-in", k, "-pubout", "-outform", "DER"])
    eq(p[2:], base64.b64encode(der).decode(), "p= is the SubjectPublicKeyInfo")
    check(all(len(s) <= 255 for s in strs), "strings of at most 255 octets")


def test_keygen_layout_like_opendkim_genkey():
    """Same text as opendkim-genkey's stub, once the key data is masked."""
    d = tempfile.mkdtemp(dir=work())
    rc, out, err = run(["opendkim-genkey", "-D", d, "-d", DOMAIN, "-s", "cmp"])
    eq(rc, 0, "opendkim-genkey exit status (%s)" % err)
    os.makedirs(os.path.join(d, "m"))
    rc, out, err = moat("keygen", "-d", DOMAIN, "-s", "cmp", "-D", os.path.join(d, "m"))
    eq(rc, 0, "moat keygen exit status (%s)" % err)

    def masked(path):
        with open(path) as f:
            t = f.read()
        return re.sub(r"[A-Za-z0-9+/=]{40,}", lambda m: "<%d>" % len(m.group(0)), t)
    eq(masked(os.path.join(d, "m", "cmp.txt")), masked(os.path.join(d, "cmp.txt")),
       "moat keygen's .txt vs opendkim-genkey's")
    # -t, -r, -S, -a as opendkim-genkey composes them
    for opts in (["-t"], ["-r"], ["-t", "-S"], ["-t", "-r"], ["-a"]):
        o = os.path.join(d, "o" + "".join(opts).replace("-", ""))
        os.makedirs(os.path.join(o, "m"))
        rc, _, err = run(["opendkim-genkey", "-D", o, "-d", DOMAIN, "-s", "x"] + opts)
        eq(rc, 0, "opendkim-genkey %s (%s)" % (opts, err))
        rc, _, err = moat("keygen", "-d", DOMAIN, "-s", "x", "-D", os.path.join(o, "m"), *opts)
        eq(rc, 0, "moat keygen %s (%s)" % (opts, err))
        eq(masked(os.path.join(o, "m", "x.txt")), masked(os.path.join(o, "x.txt")),
           "keygen %s .txt vs opendkim-genkey's" % opts)


def test_keygen_ed25519_and_testing():
    k = key("tst", "-k", "ed25519", "-t")
    strs = txt_strings(k[:-len(".private")] + ".txt")
    eq(strs[0], "v=DKIM1; h=sha256; k=ed25519; t=y; ", "first string")
    p = strs[1]
    check(p.startswith("p=") and len(p) == 2 + 44, "p= of 44 characters: %r" % p)
    raw = base64.b64decode(p[2:])
    eq(len(raw), 32, "octets of the Ed25519 public key (raw, not SPKI)")
    rc, der, err = run(["openssl", "pkey", "-in", k, "-pubout", "-outform", "DER"])
    eq(der[-32:], raw, "p= is the raw public key")
    eq(stat.S_IMODE(os.stat(k).st_mode), 0o600, "mode of the .private file")


def test_keygen_refuses_and_checks():
    d = tempfile.mkdtemp(dir=work())
    rc, out, err = moat("keygen", "-d", DOMAIN, "-s", "once", "-D", d, "-k", "ed25519")
    eq(rc, 0, "first keygen (%s)" % err)
    with open(os.path.join(d, "once.private"), "rb") as f:
        before = f.read()
    rc, out, err = moat("keygen", "-d", DOMAIN, "-s", "once", "-D", d, "-k", "ed25519")
    eq(rc, 1, "second keygen exit status")
    check("exists already" in err, "reason: %r" % err)
    with open(os.path.join(d, "once.private"), "rb") as f:
        eq(f.read(), before, "the existing key is untouched")
    # an existing .txt alone also stops it, and leaves no .private behind
    open(os.path.join(d, "lone.txt"), "w").close()
    rc, out, err = moat("keygen", "-d", DOMAIN, "-s", "lone", "-D", d)
    eq(rc, 1, "keygen over an existing .txt")
    check(not os.path.exists(os.path.join(d, "lone.private")), "no .private left behind")
    # a umask of 0 still gives 0600
    rc, out, err = moat("keygen", "-d", DOMAIN, "-s", "um", "-D", d, "-k", "ed25519", umask=0)
    eq(rc, 0, "keygen under umask 0 (%s)" % err)
    eq(stat.S_IMODE(os.stat(os.path.join(d, "um.private")).st_mode), 0o600, "mode")
    for bad in (["-b", "512"], ["-b", "9000"], ["-k", "dsa"], ["-k", "ed25519", "-b", "2048"],
                ["-s", "../x"], ["-s", "a/b"]):
        args = ["keygen", "-d", DOMAIN, "-s", "bad", "-D", d] + bad
        rc, out, err = moat(*args)
        eq(rc, 64, "exit status of %s" % bad)
    rc, out, err = moat("keygen", "-d", DOMAIN, "-s", "x", "-D", os.path.join(d, "nonexistent"))
    eq(rc, 1, "keygen into a missing directory")


def test_sign_dkimpy():
    zones()
    for sel in ("rsa", "ed"):
        for c in CANONS:
            out = sign(sel, canon=c)
            check(dkimpy_ok(out), "dkimpy verifies %s %s:\n%s" % (sel, c, out[:700].decode()))
            bad = out.replace(b"Hello Bob", b"Hello Rob")
            check(not dkimpy_ok(bad), "dkimpy rejects a changed body (%s %s)" % (sel, c))
            bad = out.replace(b"Cc: dave", b"Cc: evil")
            check(not dkimpy_ok(bad), "dkimpy rejects a changed Cc (%s %s)" % (sel, c))
            # an added From (oversigned) breaks it too
            bad = out.replace(b"From: Alice", b"From: mallory@example.net\nFrom: Alice", 1)
            check(not dkimpy_ok(bad), "dkimpy rejects an added From (%s %s)" % (sel, c))


def test_sign_crlf_and_lf_input():
    zones()
    out = sign("ed", msg=crlf(MESSAGE))
    check(b"\r\n" in out.split(b"\r\n\r\n")[0], "CRLF in, CRLF out")
    check(not re.search(rb"(?<!\r)\n", out), "no bare LF in the output of CRLF input")
    check(dkimpy_ok(out), "dkimpy verifies a CRLF message")
    out = sign("rsa", msg=MESSAGE)
    check(b"\r" not in out, "LF in, LF out")
    check(dkimpy_ok(out), "dkimpy verifies an LF message (as sent with CRLF)")
    # field lines: at most 78 characters
    field = re.match(rb"DKIM-Signature:.*?\n(?=\S)", out, re.S).group(0)
    for line in field.split(b"\n")[:-1]:
        check(len(line) <= 78, "line of %d characters: %r" % (len(line), line))
    # an x= expiry and an i= identity
    out = sign("ed", extra=("-x", "3600", "-i", "alice@mail.example.org"))
    check(re.search(rb"x=\d+;", out) and b"i=alice@mail.example.org;" in out, "x= and i=")
    check(dkimpy_ok(out), "dkimpy verifies with x= and i=")


def test_sign_mail_dkim():
    """RSA only: Debian 12's Mail::DKIM (1.20230212) has no ed25519-sha256
    (it reports such a signature "invalid (unsupported algorithm)")."""
    zones()
    for sel in ("rsa",):
        for c in CANONS:
            out = sign(sel, canon=c)
            res = mail_dkim(out)
            eq(len(res), 1, "signatures seen")
            eq(res[0][0], "pass", "Mail::DKIM result for %s %s (%r)" % (sel, c, res))
            res = mail_dkim(out.replace(b"caf\xc3\xa9", b"cafe"))
            eq(res[0][0], "fail", "Mail::DKIM on a changed body, %s %s" % (sel, c))
    # two signatures (Ed25519 then RSA over it, as a filter with two keys
    # would): both verify with dkimpy; Mail::DKIM passes the RSA one
    out = sign("rsa", msg=sign("ed"))
    res = mail_dkim(out)
    eq(sorted(r[1] for r in res), ["ed25519-sha256", "rsa-sha256"], "two signatures seen")
    eq([r[0] for r in res if r[1] == "rsa-sha256"], ["pass"], "Mail::DKIM on the RSA one")
    check(dkimpy_ok(out, 0) and dkimpy_ok(out, 1), "dkimpy verifies both signatures")


def test_sign_rsa_4096():
    zones()
    k = key("big", "-b", "4096")
    strs = txt_strings(k[:-len(".private")] + ".txt")
    check(len(strs) >= 4 and all(len(s) <= 255 for s in strs),
          "record in strings of at most 255 octets: %r" % [len(s) for s in strs])
    check(len(dns_txt(b"big._domainkey.example.org.")) > 700, "the record is served whole")
    for c in ("relaxed/relaxed", "simple/simple"):
        out = sign("big", canon=c)
        check(dkimpy_ok(out), "dkimpy verifies the 4096-bit signature (%s)" % c)
        res = mail_dkim(out)
        eq(res[0][0], "pass", "Mail::DKIM on the 4096-bit signature (%s): %r" % (c, res))


def test_sign_opendkim_testmsg():
    zones()
    names = [(sel, c) for sel in ("rsa", "ed") for c in CANONS] + [("big", "relaxed/simple")]
    msgs = [sign(sel, canon=c) for sel, c in names]
    bad = [sign(sel).replace(b"Hello Bob", b"Hello Rob") for sel in ("rsa", "ed")]
    res = opendkim_verify(msgs + bad)
    for (sel, c), (rc, err) in zip(names, res):
        eq(rc, 0, "opendkim-testmsg on %s %s: %s" % (sel, c, err))
    for rc, err in res[len(names):]:
        check(rc != 0 and "Bad signature" in err,
              "opendkim-testmsg rejects a changed body: %r" % ((rc, err),))


def test_sign_with_other_tools_keys():
    """Key files written by opendkim-genkey (PKCS#8), openssl -traditional
    (PKCS#1) and dknewkey (dkimpy's raw Ed25519 seed) sign."""
    d = tempfile.mkdtemp(dir=work())
    rc, _, err = run(["opendkim-genkey", "-D", d, "-d", DOMAIN, "-s", "ogk"])
    eq(rc, 0, "opendkim-genkey (%s)" % err)
    rc, _, err = run(["openssl", "genrsa", "-traditional", "-out", os.path.join(d, "trad.pem"),
                      "2048"])
    eq(rc, 0, "openssl genrsa (%s)" % err)
    os.chmod(os.path.join(d, "trad.pem"), 0o600)
    with open(os.path.join(d, "trad.pem")) as f:
        check(f.read().startswith("-----BEGIN RSA PRIVATE KEY-----"), "a PKCS#1 file")
    rc, _, err = run(["dknewkey", "--ktype", "ed25519", os.path.join(d, "dkp")])
    eq(rc, 0, "dknewkey (%s)" % err)
    rc, der, _ = run(["openssl", "pkey", "-in", os.path.join(d, "trad.pem"), "-pubout",
                      "-outform", "DER"])
    with open(os.path.join(d, "dkp.dns")) as f:
        dkp_rec = f.read().strip()
    recs = {
        b"ogk._domainkey.example.org.": "".join(txt_strings(os.path.join(d, "ogk.txt"))).encode(),
        b"trad._domainkey.example.org.": b"v=DKIM1; k=rsa; p=" + base64.b64encode(der),
        b"dkp._domainkey.example.org.": dkp_rec.encode(),
    }

    def dnsfunc(name, timeout=5):
        return recs.get(name if name.endswith(b".") else name + b".")
    for sel, path in (("ogk", "ogk.private"), ("trad", "trad.pem"), ("dkp", "dkp.key")):
        out = sign(sel, keyfile=os.path.join(d, path))
        check(dkim.DKIM(crlf(out)).verify(dnsfunc=dnsfunc), "dkimpy verifies with %s's key"
              % sel)


def test_sign_errors():
    zones()
    k = key("ed", "-k", "ed25519")
    rc, out, err = moat("sign", "-d", DOMAIN, "-s", "ed", "-k", k,
                        input=b"Subject: no from\n\nbody\n")
    eq(rc, 1, "no From: exit status")
    check("no From" in err, "reason: %r" % err)
    d = tempfile.mkdtemp(dir=work())
    open_key = os.path.join(d, "open.private")
    shutil.copy(k, open_key)
    os.chmod(open_key, 0o644)
    rc, out, err = moat("sign", "-d", DOMAIN, "-s", "ed", "-k", open_key, input=MESSAGE)
    eq(rc, 78, "key readable by others: exit status")
    check("is readable by others (mode 0644); chmod 600 or 640" in err, "reason: %r" % err)
    os.chmod(open_key, 0o640)
    rc, out, err = moat("sign", "-d", DOMAIN, "-s", "ed", "-k", open_key, input=MESSAGE)
    eq(rc, 0, "group-readable key: exit status (%s)" % err)
    rc, out, err = moat("sign", "-d", DOMAIN, "-s", "ed", "-k", k, "-a", "rsa-sha256",
                        input=MESSAGE)
    eq(rc, 78, "-a that is not the key's")
    rc, out, err = moat("sign", "-d", DOMAIN, "-s", "ed", "-k", k, "-c", "loose", input=MESSAGE)
    eq(rc, 64, "bad -c")
    rc, out, err = moat("sign", "-d", DOMAIN, "-s", "ed", "-k", k, os.path.join(d, "none"))
    eq(rc, 66, "missing message file")
    rc, out, err = moat("sign", "-d", "bad domain", "-s", "ed", "-k", k, input=MESSAGE)
    eq(rc, 78, "bad domain")


def test_keycheck():
    zones()
    rc, out, err = keycheck("rsa", key("rsa"))
    eq((rc, words(out)), (0, ["match"]), "rsa key (%s %s)" % (out, err))
    rc, out, err = keycheck("ed", key("ed", "-k", "ed25519"))
    eq((rc, words(out)), (0, ["match"]), "ed25519 key (%s %s)" % (out, err))
    rc, out, err = keycheck("tst", key("tst", "-k", "ed25519", "-t"))
    eq((rc, words(out)), (0, ["testing", "match"]), "t=y key (%s)" % out)
    rc, out, err = keycheck("mism", key("rsa"))
    eq((rc, words(out)), (1, ["mismatch"]), "another key (%s)" % out)
    rc, out, err = keycheck("ed", key("rsa"))
    eq((rc, words(out)), (1, ["mismatch"]), "k= differs (%s)" % out)
    check("k=ed25519" in out, "names k=: %r" % out)
    rc, out, err = keycheck("revoked", key("rsa"))
    eq((rc, words(out)), (1, ["revoked"]), "revoked (%s)" % out)
    rc, out, err = keycheck("gone", key("rsa"))
    eq((rc, words(out)), (1, ["missing"]), "no record (%s)" % out)
    rc, out, err = keycheck("two", key("other", "-b", "1024"))
    eq(rc, 1, "two records: exit status (%s)" % out)
    eq(sorted(words(out)), ["match", "mismatch", "several"], "two records (%s)" % out)
    rc, out, err = keycheck("garbage", key("rsa"))
    eq((rc, words(out)), (1, ["mismatch"]), "not a key record (%s)" % out)
    rc, out, err = keycheck("rsa", key("rsa"), nameserver="127.0.0.1:%d" % dead_port(),
                            timeout=2)
    eq((rc, words(out)), (2, ["error"]), "dead nameserver (%s %s)" % (out, err))
    # default key file: ./SELECTOR.private
    p = subprocess.run([MOAT, "-c", conf(), "-o", "resolver.nameservers=" + zones().address,
                        "keycheck", "-d", DOMAIN, "-s", "rsa"], capture_output=True,
                       cwd=os.path.dirname(key("rsa")))
    eq(p.returncode, 0, "default key file (%s)" % p.stdout)
    d = tempfile.mkdtemp(dir=work())
    open_key = os.path.join(d, "k.private")
    shutil.copy(key("rsa"), open_key)
    os.chmod(open_key, 0o604)
    rc, out, err = keycheck("rsa", open_key)
    eq(rc, 78, "key readable by others (%s)" % err)
    rc, out, err = moat("-c", conf(), "keycheck", "-d", DOMAIN)
    eq(rc, 64, "usage")


if __name__ == "__main__":
    try:
        rc = run_tests(globals(), timeout_per_test=240)
    finally:
        if _zones is not None:
            _zones.stop()
        if _work and not os.environ.get("MOAT_TEST_KEEP"):
            shutil.rmtree(_work, ignore_errors=True)
    sys.exit(rc)
