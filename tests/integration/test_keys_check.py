#!/usr/bin/python3
"""`moatd -t` checks the DKIM keys and reports every problem at once:

  - as root, that the user moatd runs as (-o user=nobody here) can read
    each key file, which it reads again at every reload: a 0600 key owned
    by root is an error naming the key's file:line, the user and the
    file's owner and mode; a 0640 key of the user's group is fine;
  - every bad key is reported, not only the first (a key readable by
    others and a key the user cannot read: two errors);
  - with -D, each key against its DNS record (unbound serving the test
    zone): a record publishing the key is a match (exit 0), another key
    or no record at all is an error (exit 1), one line per key;
  - -D without -t is a usage error.

Uses /usr/bin/python3, openssl, unbound (dnsrig), build/san/moatd."""

import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from moattest import *  # noqa
from dnsrig import TestZones  # noqa
from dkimrig import DkimKeys  # noqa

KEYS = DkimKeys()
OTHER = DkimKeys(rsa_bits=1024)     # a second RSA key, published where KEYS' should be


def key_conf(keys, ns=None):
    """A moat.conf with one `key NAME { }` per (name, selector, file)."""
    lines = ['hostname = "mx.example.net"',
             'listener a { listen = "127.0.0.1:%d" upstream = "127.0.0.1:%d" }'
             % (free_port(), free_port()),
             'filters = {"dkim"}']
    if ns:
        lines += ["resolver {", '    nameservers = {"%s"}' % ns, "    timeout = 3", "}"]
    lines.append("dkim {")
    for name, sel, path in keys:
        lines.append('    key %s {' % name)
        lines.append('        domain = "example.org"')
        lines.append('        selector = "%s"' % sel)
        lines.append('        file = "%s"' % path)
        lines.append("    }")
    lines.append('    signing_table = {"example.org %s"}' % " ".join(k[0] for k in keys))
    lines.append("}")
    return "\n".join(lines) + "\n"


def moatd_t(text, *extra):
    d = tempfile.mkdtemp(prefix="moattest.keyscheck.")
    try:
        path = os.path.join(d, "moat.conf")
        with open(path, "w") as f:
            f.write(text)
        argv = [MOATD, "-t", "-c", path]
        if os.geteuid() == 0:
            argv += ["-o", "user=" + RUN_USER]
        p = subprocess.run(argv + list(extra), capture_output=True, text=True, timeout=60,
                           stdin=subprocess.DEVNULL)
        check(not re.search(r"AddressSanitizer|runtime error:", p.stderr),
              "sanitizer report: %s" % p.stderr[-2000:])
        return p.returncode, p.stdout, p.stderr
    finally:
        shutil.rmtree(d, ignore_errors=True)


def key_file(name, mode, owner_group=None):
    """A copy of KEYS' RSA key in KEYS' directory (searchable by the run
    user), with this mode; owner_group None: root:root."""
    path = os.path.join(KEYS.dir, name)
    with open(path, "wb") as f:
        f.write(KEYS.rsa_pem)
    if os.geteuid() == 0:
        os.chown(path, 0, owner_group if owner_group is not None else 0)
    os.chmod(path, mode)
    return path


def run_user_gid():
    return pwd.getpwnam(RUN_USER).pw_gid


def test_root_only_key_is_not_readable_by_the_run_user():
    if os.geteuid() != 0:
        print("# not root: moatd reads its keys as the user it runs as; skipped")
        return
    path = key_file("rootonly.private", 0o600)
    rc, out, err = moatd_t(key_conf([("k1", "rsa1", path)]))
    eq(rc, 1, "moatd -t exit status (stderr %r)" % err)
    lines = [l for l in err.splitlines() if l.strip()]
    eq(len(lines), 1, "one error: %r" % err)
    check(re.search(r"moat\.conf:\d+: .*k1.*file.*user %s .*cannot read .*rootonly\.private: "
                    r"Permission denied \(owner root, group root, mode 0600\)" % RUN_USER,
                    lines[0]), "the error names file:line, key, user, owner and mode: %r"
          % lines[0])
    # the same key, group of the run user and 0640: fine
    path = key_file("grouped.private", 0o640, run_user_gid())
    rc, out, err = moatd_t(key_conf([("k1", "rsa1", path)]))
    eq((rc, err), (0, ""), "moatd -t with a 0640 key of the run user's group")


def test_every_bad_key_is_reported():
    loose = key_file("loose.private", 0o644)
    missing = os.path.join(KEYS.dir, "nosuch.private")
    keys = [("k1", "rsa1", loose), ("k2", "rsa2", missing), ("k3", "ed1", KEYS.ed_path)]
    if os.geteuid() == 0:
        keys.append(("k4", "rsa4", key_file("rootonly4.private", 0o600)))
    rc, out, err = moatd_t(key_conf(keys))
    eq(rc, 1, "moatd -t exit status (stderr %r)" % err)
    lines = [l for l in err.splitlines() if l.strip()]
    check(any(re.search(r"k1.*loose\.private is readable by others", l) for l in lines),
          "the loose key: %r" % err)
    check(any(re.search(r"k2.*nosuch\.private: No such file", l) for l in lines),
          "the missing key: %r" % err)
    if os.geteuid() == 0:
        check(any(re.search(r"k4.*user %s .*cannot read" % RUN_USER, l) for l in lines),
              "the key the run user cannot read: %r" % err)
    check(not any("k3" in l for l in lines), "the good key k3 reported: %r" % err)
    eq(len(lines), len(keys) - 1, "one error a bad key: %r" % err)


def test_dns_check_matches_and_mismatches():
    recs = [KEYS.publish("rsa1._domainkey.example.org", "rsa"),
            KEYS.publish("ed1._domainkey.example.org", "ed25519"),
            OTHER.publish("wrong._domainkey.example.org", "rsa")]
    with TestZones(recs, zones=["example.org"]) as z:
        good = [("k1", "rsa1", KEYS.rsa_path), ("k2", "ed1", KEYS.ed_path)]
        rc, out, err = moatd_t(key_conf(good, z.address), "-D")
        eq((rc, err), (0, ""), "moatd -t -D with published keys (stdout %r)" % out)
        check(re.search(r"^dkim: key k1: match: rsa1\._domainkey\.example\.org publishes the "
                        r"public key of .*rsa1\.private \(rsa\)$", out, re.M), "k1: %r" % out)
        check(re.search(r"^dkim: key k2: match: .*\(ed25519\)$", out, re.M), "k2: %r" % out)
        # without -D nothing is looked up or printed
        rc, out, err = moatd_t(key_conf(good, z.address))
        eq((rc, out, err), (0, "", ""), "moatd -t without -D")

        bad = good + [("k3", "wrong", KEYS.rsa_path), ("k4", "gone", KEYS.rsa_path)]
        rc, out, err = moatd_t(key_conf(bad, z.address), "-D")
        eq(rc, 1, "moatd -t -D with a wrong and a missing record (stderr %r)" % err)
        check(re.search(r"^dkim: key k3: mismatch: wrong\._domainkey\.example\.org publishes "
                        r"another key than .*rsa1\.private$", err, re.M), "k3: %r" % err)
        check(re.search(r"^dkim: key k4: missing: no TXT record at gone\._domainkey\."
                        r"example\.org", err, re.M), "k4: %r" % err)
        eq(len(err.splitlines()), 2, "two problems: %r" % err)
        eq(len(out.splitlines()), 2, "two matches: %r" % out)


test_dns_check_matches_and_mismatches.timeout = 120


def test_dns_flag_needs_t():
    p = subprocess.run([MOATD, "-D"], capture_output=True, text=True, timeout=30,
                       stdin=subprocess.DEVNULL)
    eq(p.returncode, 2, "moatd -D alone (stderr %r)" % p.stderr)
    check("-D" in p.stderr and "usage" in p.stderr, "usage names -D: %r" % p.stderr)


if __name__ == "__main__":
    try:
        sys.exit(run_tests(globals()))
    finally:
        KEYS.cleanup()
        OTHER.cleanup()
