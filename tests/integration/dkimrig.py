"""DKIM keys for the tests: RSA and Ed25519 private keys made with openssl
in a temporary directory (mode 0600; as root 0640, group of the user
moatd runs as, as keys it reads after its privilege drop), their DNS records, and a dnsfunc
for dkimpy that answers from those records.

    keys = DkimKeys()                    # makes rsa1 and ed1
    keys.rsa_path, keys.ed_path          # private key files
    keys.records({"rsa1._domainkey.example.org": "rsa"})  # (name, TXT, value)
    keys.dnsfunc                         # for dkim.verify(..., dnsfunc=)
    keys.results(raw)                    # [(d, s, verified)] by dkimpy
    keys.cleanup()
"""

import base64
import os
import re
import shutil
import subprocess
import tempfile

import dkim  # dkimpy (python3-dkim; python3-nacl for ed25519)

from moattest import readable_by_run_user


def _run(args):
    return subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, check=True)


class DkimKeys:
    def __init__(self, rsa_bits=2048):
        self.dir = tempfile.mkdtemp(prefix="moattest.dkimkeys.")
        self.rsa_path = os.path.join(self.dir, "rsa1.private")
        _run(["openssl", "genrsa", "-traditional", "-out", self.rsa_path, str(rsa_bits)])
        os.chmod(self.rsa_path, 0o600)
        der = _run(["openssl", "pkey", "-in", self.rsa_path, "-pubout", "-outform", "DER"]).stdout
        self.rsa_txt = "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()
        with open(self.rsa_path, "rb") as f:
            self.rsa_pem = f.read()
        self.ed_path = os.path.join(self.dir, "ed1.private")
        _run(["openssl", "genpkey", "-algorithm", "ED25519", "-out", self.ed_path])
        os.chmod(self.ed_path, 0o600)
        der = _run(["openssl", "pkey", "-in", self.ed_path, "-pubout", "-outform", "DER"]).stdout
        priv = _run(["openssl", "pkey", "-in", self.ed_path, "-outform", "DER"]).stdout
        # RFC 8463: p= is the raw 32-octet public key (the SPKI's last 32
        # octets); dkimpy signs with the base64 of the raw 32-octet seed
        self.ed_txt = "v=DKIM1; k=ed25519; p=" + base64.b64encode(der[-32:]).decode()
        self.ed_seed = base64.b64encode(priv[-32:])
        self.published = {}
        # as a site installs them: moatd's milter process reads them as moat's user
        readable_by_run_user(self.dir, self.rsa_path, self.ed_path)

    def publish(self, name, kind):
        """Publishes the rsa or ed25519 key at name for dnsfunc; returns
        the (name, "TXT", value) record for a DNS server."""
        txt = self.rsa_txt if kind == "rsa" else self.ed_txt
        self.published[name.rstrip(".").lower()] = txt
        return (name, "TXT", txt)

    def dnsfunc(self, name, timeout=5):
        n = name.decode() if isinstance(name, bytes) else name
        return self.published.get(n.rstrip(".").lower(), "").encode()

    def results(self, raw):
        """[(d, s, verified)] for every DKIM-Signature of raw, by dkimpy."""
        raw = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        d = dkim.DKIM(raw)
        out = []
        sigs = [h for h in d.headers if h[0].lower() == b"dkim-signature"]
        for i, (_, v) in enumerate(sigs):
            tags = dict((k.strip(), val.strip()) for k, _, val in
                        (t.partition(b"=") for t in re.sub(rb"\s+", b"", v).split(b";") if t))
            try:
                ok = dkim.DKIM(raw).verify(idx=i, dnsfunc=self.dnsfunc)
            except dkim.ValidationError:
                ok = False  # dkimpy raises on a body hash mismatch
            out.append((tags[b"d"].decode(), tags[b"s"].decode(), ok))
        return out

    def sign(self, raw, selector, domain, kind="rsa", canon=(b"relaxed", b"relaxed"),
             include=None, length=False):
        """raw signed by dkimpy (the signature field prepended, CRLF)."""
        key = self.rsa_pem if kind == "rsa" else self.ed_seed
        alg = b"rsa-sha256" if kind == "rsa" else b"ed25519-sha256"
        sig = dkim.sign(raw, selector.encode(), domain.encode(), key, canonicalize=canon,
                        signature_algorithm=alg, include_headers=include, length=length)
        return sig.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n") + raw

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)
