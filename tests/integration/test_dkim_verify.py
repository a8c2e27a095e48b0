#!/usr/bin/python3
"""`moat verify` against independent DKIM signers, keys served by a real
DNS server:

    moat -c FILE -o resolver.nameservers=127.0.0.1:PORT verify MSGFILE

Messages are signed by dkimpy (python3-dkim; python3-nacl for Ed25519)
and by Mail::DKIM (libmail-dkim-perl, RSA only: the Debian 12 version,
1.20230212, has no Ed25519), in rsa-sha256 and ed25519-sha256, both
canonicalizations, with and without l=. They must pass; tampered ones
(body, a signed field, a From added above an oversigned From) must
fail. Keys: 1024 bits passes, 512 fails, rsa-sha1 fails (RFC 8301); a
revoked key and a missing one are permerror; a nameserver that never
answers is temperror, never fail; a 4096-bit key (TXT over 512 octets,
EDNS/TCP) passes; the RFC 8463 appendix A message verifies with both
its keys. dkimpy's own verifier is asked too, as a cross-check.

The keys (openssl genrsa, nacl) live under unbound (dnsrig.TestZones)
at names under example.com; long TXT records are cut into 255-octet
strings by dnsrig. Uses /usr/bin/python3, /usr/sbin/unbound, perl,
openssl, and build/san/moat.
"""

import base64
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from moattest import *  # noqa
from dnsrig import TestZones, FaultDNS

import dkim
import nacl.signing

MOAT = os.environ.get("MOAT") or os.path.join(ROOT, "build", "san", "moat")
SAN = re.compile(r"AddressSanitizer|LeakSanitizer|runtime error:")

_tmp = None
_zones = None
_keys = {}      # selector -> (private key bytes for dkimpy, key file path or None, TXT)

PERL_SIGNER = r'''
use strict; use warnings;
use Mail::DKIM::Signer; use Mail::DKIM::Signature; use Mail::DKIM::PrivateKey;
my ($alg, $method, $domain, $sel, $keyfile, $len) = @ARGV;
my $key = Mail::DKIM::PrivateKey->load(File => $keyfile);
my $dkim = Mail::DKIM::Signer->new(Key => $key, Policy => sub {
    my $s = shift;
    my $sig = Mail::DKIM::Signature->new(Algorithm => $alg, Method => $method,
        Domain => $domain, Selector => $sel, Headers => $s->headers, Key => $key);
    $sig->body_count($len) if $len;
    $s->add_signature($sig);
    return;
});
local $/; my $msg = <STDIN>; $msg =~ s/\r?\n/\r\n/g;
$dkim->PRINT($msg); $dkim->CLOSE;
print $dkim->signature->as_string, "\r\n";
'''

BODY = ("Hi Bob,\r\n\r\nThe  report is attached.\t \r\n"
        "-- \r\nAlice\r\n\r\n\r\n")
HEADERS = ("From: Alice <alice@example.com>\r\n"
           "To: Bob <bob@example.org>\r\n"
           "Subject: quarterly figures\r\n"
           "Date: Mon, 02 Jun 2025 10:00:00 +0000\r\n"
           "Message-ID: <q1@example.com>\r\n")
MESSAGE = (HEADERS + "\r\n" + BODY).encode()

# RFC 8463 appendix A (errata-corrected RSA key)
RFC8463_MSG = (
    "DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;\r\n"
    " d=football.example.com; i=@football.example.com;\r\n"
    " q=dns/txt; s=brisbane; t=1528637909; h=from : to :\r\n"
    " subject : date : message-id : from : subject : date;\r\n"
    " bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n"
    " b=/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11Bus\r\n"
    " Fa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw==\r\n"
    "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;\r\n"
    " d=football.example.com; i=@football.example.com;\r\n"
    " q=dns/txt; s=test; t=1528637909; h=from : to : subject :\r\n"
    " date : message-id : from : subject : date;\r\n"
    " bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n"
    " b=F45dVWDfMbQDGHJFlXUNB2HKfbCeLRyhDXgFpEL8GwpsRe0IeIixNTe3\r\n"
    " DhCVlUrSjV4BwcVcOF6+FF3Zo9Rpo1tFOeS9mPYQTnGdaSGsgeefOsk2Jz\r\n"
    " dA+L10TeYt9BgDfQNZtKdN1WO//KgIqXP7OdEFE4LjFYNcUxZQ4FADY+8=\r\n"
    "From: Joe SixPack <joe@football.example.com>\r\n"
    "To: Suzie Q <suzie@shopping.example.net>\r\n"
    "Subject: Is dinner ready?\r\n"
    "Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\r\n"
    "Message-ID: <20030712040037.46341.5F8J@football.example.com>\r\n"
    "\r\n"
    "Hi.\r\n"
    "\r\n"
    "We lost the game.  Are you hungry yet?\r\n"
    "\r\n"
    "Joe.\r\n"
    "\r\n").encode()
RFC8463_KEYS = [
    ("brisbane._domainkey.football.example.com", "TXT",
     "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="),
    ("test._domainkey.football.example.com", "TXT",
     "v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWR"
     "iGs5V6NpP3idY6Wk08a5qhdR6wy5bdOKb2jLQiY/J16JYi0Qvx/byYzCNb3W91y3FutAC"
     "DfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqMKrM3rG4hstT5QjvHO9PzoxZyVYLzBfO2EeC3"
     "Ip3G+2kryOTIKT+l/K4w3QIDAQAB"),
]


def tmp():
    global _tmp
    if _tmp is None:
        _tmp = tempfile.mkdtemp(prefix="moattest.dkimverify.")
        with open(os.path.join(_tmp, "moat.conf"), "w") as f:
            f.write('listener in {\n    listen = "127.0.0.1:2525"\n'
                    '    upstream = "127.0.0.1:10025"\n}\n')
    return _tmp


def rsa_key(sel, bits):
    """A PKCS#1 PEM key file; returns (pem bytes, path, TXT record)."""
    path = os.path.join(tmp(), sel + ".pem")
    subprocess.run(["openssl", "genrsa", "-traditional", "-out", path, str(bits)],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    der = subprocess.run(["openssl", "rsa", "-in", path, "-pubout", "-outform", "DER"],
                         check=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout
    with open(path, "rb") as f:
        pem = f.read()
    return pem, path, "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()


def keys():
    if not _keys:
        for sel, bits in (("r2048", 2048), ("r1024", 1024), ("r512", 512), ("r4096", 4096)):
            _keys[sel] = rsa_key(sel, bits)
        sk = nacl.signing.SigningKey.generate()
        _keys["ed"] = (base64.b64encode(bytes(sk)), None,
                       "v=DKIM1; k=ed25519; p=" + base64.b64encode(bytes(sk.verify_key)).decode())
    return _keys


def records():
    r = [(sel + "._domainkey.example.com", "TXT", k[2]) for sel, k in keys().items()]
    r.append(("revoked._domainkey.example.com", "TXT", "v=DKIM1; k=rsa; p="))
    r.append(("example.com", "A", "192.0.2.1"))
    return r + RFC8463_KEYS


def zones():
    global _zones
    if _zones is None:
        _zones = TestZones(records()).start()
    return _zones


def dnsfunc(name, timeout=5):
    want = name.decode().rstrip(".").lower()
    for n, t, v in records():
        if n == want and t == "TXT":
            return v.encode()
    return None


class Run:
    def __init__(self, p):
        self.rc = p.returncode
        self.out = p.stdout.decode("utf-8", "replace")
        self.err = p.stderr.decode("utf-8", "replace")
        self.lines = self.out.splitlines()

    def __repr__(self):
        return "exit %s, stdout %r, stderr %r" % (self.rc, self.out[-1500:], self.err[-1500:])


def moat_verify(msg, nameserver=None, opts=(), stdin=False, args=None):
    if not os.access(MOAT, os.X_OK):
        fail("moat binary %s not built" % MOAT)
    path = os.path.join(tmp(), "msg.eml")
    with open(path, "wb") as f:
        f.write(msg)
    cmd = [MOAT, "-c", os.path.join(tmp(), "moat.conf"),
           "-o", "resolver.nameservers=" + (nameserver or zones().address)]
    for o in opts:
        cmd += ["-o", o]
    cmd += ["verify"] + (args if args is not None else (["-"] if stdin else [path]))
    with open(path, "rb") as f:
        p = subprocess.run(cmd, stdin=f if stdin else subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    r = Run(p)
    check(not SAN.search(r.err), "sanitizer report: " + r.err[-3000:])
    return r


PASS_RE = re.compile(r"^dkim=pass header\.d=(\S+) header\.s=(\S+) header\.b=(\S{8,}) "
                     r"\(([a-z0-9-]+), (\d+) bits(, l=\d+(, body goes on past l=)?)?\)$")


def expect_pass(msg, alg, bits, what, n=1):
    r = moat_verify(msg)
    check(r.rc == 0 and len(r.lines) == n, "%s: want exit 0 and %d line(s); %r" % (what, n, r))
    for line in r.lines:
        m = PASS_RE.match(line)
        check(m, "%s: not a pass line: %r" % (what, line))
        eq(m.group(4), alg, "%s algorithm" % what)
        eq(int(m.group(5)), bits, "%s key bits" % what)
    check(dkim.verify(msg, dnsfunc=dnsfunc), "%s: dkimpy does not verify it either" % what)
    return r


def expect_result(msg, result, reason, rc, what, nameserver=None, opts=(), dkimpy=None):
    r = moat_verify(msg, nameserver=nameserver, opts=opts)
    check(r.rc == rc and len(r.lines) == 1, "%s: want exit %d, one line; %r" % (what, rc, r))
    line = r.lines[0] if r.lines else ""
    check(line.startswith("dkim=%s " % result) and line.endswith("(%s)" % reason),
          "%s: want dkim=%s (%s); got %r" % (what, result, reason, line))
    if dkimpy is not None:
        eq(bool(dkim.verify(msg, dnsfunc=dnsfunc)), dkimpy, "%s: dkimpy's verdict" % what)
    return r


def dkimpy_sign(msg, sel, canon=(b"relaxed", b"relaxed"), length=False, alg=b"rsa-sha256",
                headers=None):
    key = keys()[sel][0]
    sig = dkim.sign(msg, sel.encode(), b"example.com", key, canonicalize=canon,
                    signature_algorithm=alg, length=length, include_headers=headers)
    return sig + msg


def mail_dkim_sign(msg, sel, method="relaxed", length=None, alg="rsa-sha256"):
    script = os.path.join(tmp(), "sign.pl")
    with open(script, "w") as f:
        f.write(PERL_SIGNER)
    args = ["perl", script, alg, method, "example.com", sel, keys()[sel][1]]
    if length:
        args.append(str(length))
    p = subprocess.run(args, input=msg, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=30)
    check(p.returncode == 0 and p.stdout.startswith(b"DKIM-Signature:"),
          "Mail::DKIM signer failed: %r" % p.stderr[-2000:])
    return p.stdout + msg


CANONS = [(b"simple", b"simple"), (b"relaxed", b"relaxed"), (b"relaxed", b"simple"),
          (b"simple", b"relaxed")]

# ---------------------------------------------------------------- passes


def test_dkimpy_rsa():
    for canon in CANONS:
        for length in (False, True):
            what = "dkimpy rsa %s/%s l=%s" % (canon[0].decode(), canon[1].decode(), length)
            r = expect_pass(dkimpy_sign(MESSAGE, "r2048", canon, length), "rsa-sha256", 2048, what)
            check(("l=" in r.out) == length, "%s: l= shown iff signed with l=; %r" % (what, r))


def test_dkimpy_ed25519():
    for canon in CANONS:
        for length in (False, True):
            what = "dkimpy ed25519 %s/%s l=%s" % (canon[0].decode(), canon[1].decode(), length)
            expect_pass(dkimpy_sign(MESSAGE, "ed", canon, length, alg=b"ed25519-sha256"),
                        "ed25519-sha256", 256, what)


def test_mail_dkim_rsa():
    for method in ("simple", "relaxed", "relaxed/simple", "simple/relaxed"):
        for length in (None, 20):
            what = "Mail::DKIM rsa %s l=%s" % (method, length)
            r = expect_pass(mail_dkim_sign(MESSAGE, "r2048", method, length), "rsa-sha256",
                            2048, what)
            if length:
                check("l=20, body goes on past l=" in r.out, "%s: %r" % (what, r))


def test_lf_line_ends_and_stdin():
    signed = dkimpy_sign(MESSAGE, "r2048", (b"simple", b"simple"))
    lf = signed.replace(b"\r\n", b"\n")
    r = moat_verify(lf)
    check(r.rc == 0 and r.lines[0].startswith("dkim=pass "), "LF file: %r" % r)
    r = moat_verify(lf, stdin=True)
    check(r.rc == 0 and r.lines[0].startswith("dkim=pass "), "stdin: %r" % r)


def test_several_signatures():
    msg = dkimpy_sign(MESSAGE, "r2048")
    msg = dkimpy_sign(msg, "ed", alg=b"ed25519-sha256")
    msg = mail_dkim_sign(msg, "r1024")
    r = moat_verify(msg)
    check(r.rc == 0 and len(r.lines) == 3 and all(PASS_RE.match(x) for x in r.lines),
          "three passes; %r" % r)
    check("header.s=r1024 " in r.lines[0] and "header.s=ed " in r.lines[1]
          and "header.s=r2048 " in r.lines[2], "top to bottom; %r" % r)


def test_rfc8463_example():
    r = moat_verify(RFC8463_MSG)
    check(r.rc == 0 and len(r.lines) == 2, "both pass; %r" % r)
    check(re.match(r"^dkim=pass header\.d=football\.example\.com header\.s=brisbane "
                   r"header\.b=/gCrinpc \(ed25519-sha256, 256 bits\)$", r.lines[0]), "%r" % r)
    check(re.match(r"^dkim=pass header\.d=football\.example\.com header\.s=test "
                   r"header\.b=F45dVWDf \(rsa-sha256, 1024 bits\)$", r.lines[1]), "%r" % r)
    r = moat_verify(RFC8463_MSG.replace(b"\r\n", b"\n"))
    eq(r.rc, 0, "LF version exit (%r)" % r)


def test_large_key():
    eq(len(keys()["r4096"][2]) > 512, True, "4096-bit TXT over 512 octets")
    expect_pass(dkimpy_sign(MESSAGE, "r4096"), "rsa-sha256", 4096, "4096-bit key")
    expect_pass(mail_dkim_sign(MESSAGE, "r1024"), "rsa-sha256", 1024, "1024-bit key")


# ---------------------------------------------------------------- failures


def test_tampered():
    signed = dkimpy_sign(MESSAGE, "r2048", (b"relaxed", b"relaxed"))
    expect_result(signed.replace(b"report is", b"report was"), "fail",
                  "body hash did not verify", 1, "body changed", dkimpy=False)
    expect_result(signed.replace(b"quarterly figures", b"quarterly figure$"), "fail",
                  "signature did not verify", 1, "Subject changed", dkimpy=False)
    # dkimpy oversigns From: one added above the signed one fills the null slot
    check(re.search(rb"h=[^;]*from[^;]*from", signed.split(b"\r\n\r\n")[0].replace(b"\r\n ", b""),
                    re.I), "dkimpy oversigned From")
    added = signed.replace(b"From: Alice", b"From: Mallory <m@example.net>\r\nFrom: Alice")
    expect_result(added, "fail", "signature did not verify", 1, "From added", dkimpy=False)
    # an unsigned field added: still passes
    expect_pass(signed.replace(b"From: Alice", b"X-Added: 1\r\nFrom: Alice"),
                "rsa-sha256", 2048, "unsigned field added")
    # Mail::DKIM, simple: a changed space in a signed field
    signed = mail_dkim_sign(MESSAGE, "r2048", "simple")
    expect_result(signed.replace(b"To: Bob", b"To:  Bob"), "fail",
                  "signature did not verify", 1, "simple To changed", dkimpy=False)
    expect_result(signed.replace(b"Alice\r\n\r\n\r\n", b"Alice \r\n"), "fail",
                  "body hash did not verify", 1, "simple body changed", dkimpy=False)


def test_weak_keys_and_sha1():
    expect_result(dkimpy_sign(MESSAGE, "r512"), "permerror", "RSA key shorter than 1024 bits",
                  1, "512-bit key")
    signed = dkimpy_sign(MESSAGE, "r2048", alg=b"rsa-sha1")
    check(b"a=rsa-sha1" in signed, "dkimpy made an rsa-sha1 signature")
    expect_result(signed, "permerror", "rsa-sha1 is not accepted (RFC 8301)", 1, "rsa-sha1")


def test_key_errors():
    msg = dkimpy_sign(MESSAGE, "r2048")
    expect_result(msg.replace(b"s=r2048", b"s=revoked"), "permerror", "key revoked", 1,
                  "revoked key")
    r = expect_result(msg.replace(b"s=r2048", b"s=missing"), "permerror", "no key for signature",
                      1, "no key")
    check("header.d=example.com header.s=missing " in r.out, "%r" % r)
    # a key of the wrong type
    expect_result(msg.replace(b"s=r2048", b"s=ed"), "permerror", "key type does not match a=", 1,
                  "ed25519 key for rsa-sha256")


def test_dns_timeout_is_temperror():
    msg = dkimpy_sign(MESSAGE, "r2048")
    with FaultDNS(default="timeout") as f:
        r = expect_result(msg, "temperror", "key lookup failed", 2, "DNS timeout",
                          nameserver=f.address, opts=("resolver.timeout=1",))
    with FaultDNS(default="servfail") as f:
        expect_result(msg, "temperror", "key lookup failed", 2, "SERVFAIL", nameserver=f.address)
    # one pass and one temperror: exit 2
    msg2 = dkimpy_sign(msg, "ed", alg=b"ed25519-sha256")
    with FaultDNS(records(), default="answer",
                  rules={"r2048._domainkey.example.com": "timeout"}) as f:
        r = moat_verify(msg2, nameserver=f.address, opts=("resolver.timeout=1",))
    check(r.rc == 2 and len(r.lines) == 2 and r.lines[0].startswith("dkim=pass ") and
          r.lines[1].startswith("dkim=temperror "), "pass + temperror; %r" % r)
    # and with a failure too: exit 1
    msg3 = dkimpy_sign(msg2.replace(b"report is", b"report was"), "r1024")
    with FaultDNS(records(), default="answer",
                  rules={"r2048._domainkey.example.com": "timeout"}) as f:
        r = moat_verify(msg3, nameserver=f.address, opts=("resolver.timeout=1",))
    check(r.rc == 1 and [x.split()[0] for x in r.lines] == ["dkim=pass", "dkim=fail", "dkim=temperror"],
          "pass + fail + temperror; %r" % r)


def test_none_and_usage():
    r = moat_verify(MESSAGE)
    check(r.rc == 3 and r.lines == ["dkim=none (no signatures)"], "%r" % r)
    r = moat_verify(MESSAGE, args=["a", "b"])
    check(r.rc == 64 and "usage" in r.err, "%r" % r)
    r = moat_verify(MESSAGE, args=[os.path.join(tmp(), "no-such-file")])
    check(r.rc == 66 and "no-such-file" in r.err, "%r" % r)


def _cleanup():
    if _zones is not None:
        _zones.stop()
    if _tmp and not os.environ.get("MOAT_TEST_KEEP"):
        shutil.rmtree(_tmp, ignore_errors=True)


if __name__ == "__main__":
    try:
        rc = run_tests(globals(), timeout_per_test=120)
    finally:
        _cleanup()
    sys.exit(rc)
