#!/usr/bin/python3
"""The Debian package: built from this tree with `dpkg-buildpackage -us -uc
-b` (debian/), installed with dpkg on this machine, checked, and purged.

  - the package holds moatd, moat, the man pages, /etc/moat with one file
    per filter (as conffiles), and the systemd unit with /usr/sbin paths,
    installed but neither enabled nor started;
  - installing creates the system user moat and its spool directory (0700)
    and /etc/moat/keys (root:moat 0750); the installed configuration
    passes `moatd -t`; nothing is started;
  - purging removes the files, the spool and the empty keys directory
    (the system user stays, as Debian packages leave theirs; the test
    removes it when it made it).

Needs root, dpkg-dev and debhelper (in the Makefile's CHECK_PKGS).
"""

import glob
import grp
import os
import pwd
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from moattest import *  # noqa

ENV = dict(os.environ, DEBIAN_FRONTEND="noninteractive")


def sh(args, **kw):
    return subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          env=ENV, **kw)


def build_package(tmp):
    src = os.path.join(tmp, "moat-src")
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".git", "build", "__pycache__"))
    p = sh(["dpkg-buildpackage", "-us", "-uc", "-b"], cwd=src, timeout=600)
    check(p.returncode == 0, "dpkg-buildpackage failed: %s" % (p.stdout + p.stderr)[-2000:])
    debs = [d for d in glob.glob(os.path.join(tmp, "moat_*.deb"))]
    eq(len(debs), 1, "built packages %r" % os.listdir(tmp))
    return debs[0]


def test_package_builds_installs_and_purges():
    if os.geteuid() != 0:
        print("# not root: skipped")
        return
    if sh(["dpkg-query", "-W", "moat"]).returncode == 0:
        fail("a moat package is already installed on this machine; not touching it")
    user_before = True
    try:
        pwd.getpwnam("moat")
    except KeyError:
        user_before = False
    tmp = tempfile.mkdtemp(prefix="moattest.pkg.")
    try:
        deb = build_package(tmp)
        listing = sh(["dpkg-deb", "-c", deb]).stdout
        for path in ("./usr/sbin/moatd", "./usr/bin/moat", "./etc/moat/moat.conf",
                     "./etc/moat/dkim.conf", "./lib/systemd/system/moatd.service",
                     "./usr/share/man/man8/moatd.8.gz", "./usr/share/man/man5/moat.conf.5.gz",
                     "./usr/share/man/man1/moat.1.gz"):
            check(path in listing, "%s not in the package:\n%s" % (path, listing))
        conffiles = sh(["dpkg-deb", "-I", deb, "conffiles"]).stdout.split()
        check("/etc/moat/moat.conf" in conffiles and "/etc/moat/spf.conf" in conffiles,
              "configuration files are conffiles: %r" % conffiles)

        p = sh(["dpkg", "-i", "--force-confdef", "--force-confold", deb], timeout=300)
        check(p.returncode == 0, "dpkg -i: %s" % (p.stdout + p.stderr)[-2000:])
        try:
            eq(sh(["dpkg-query", "-W", "-f", "${Status}", "moat"]).stdout,
               "install ok installed", "package status")
            pw = pwd.getpwnam("moat")
            check(pw.pw_uid < 1000 and pw.pw_uid != 0, "moat is a system user: %r" % (pw,))
            st = os.stat("/var/spool/moat")
            eq((st.st_uid, oct(st.st_mode & 0o777)), (pw.pw_uid, "0o700"), "spool owner, mode")
            st = os.stat("/etc/moat/keys")
            eq((st.st_uid, st.st_gid, oct(st.st_mode & 0o777)),
               (0, grp.getgrnam("moat").gr_gid, "0o750"), "keys directory")
            with open("/lib/systemd/system/moatd.service") as f:
                unit = f.read()
            check("ExecStart=/usr/sbin/moatd -f -c /etc/moat/moat.conf" in unit,
                  "unit paths: %r" % unit[:600])
            check("/usr/local/sbin" not in unit, "no /usr/local/sbin in the packaged unit")
            wants = glob.glob("/etc/systemd/system/*.wants/moatd.service")
            eq(wants, [], "the unit is not enabled")
            started = sh(["pgrep", "-f", "moatd .*-c /etc/moat/moat.conf"]).stdout.split()
            eq(started, [], "nothing started by the installation")
            t = sh(["/usr/sbin/moatd", "-t", "-c", "/etc/moat/moat.conf"])
            eq(t.returncode, 0, "moatd -t on the installed configuration: %s" % t.stderr)
            v = sh(["/usr/bin/moat", "version"])
            check(v.returncode == 0 and v.stdout.startswith("moat "), "moat version: %r" % v.stdout)
        finally:
            p = sh(["dpkg", "--purge", "moat"], timeout=300)
        check(p.returncode == 0, "dpkg --purge: %s" % (p.stdout + p.stderr)[-2000:])
        check(not os.path.exists("/usr/sbin/moatd"), "moatd left after purge")
        check(not os.path.exists("/etc/moat/moat.conf"), "conffiles left after purge")
        check(not os.path.exists("/var/spool/moat"), "spool left after purge")
        check(not os.path.exists("/etc/moat/keys"), "empty keys directory left after purge")
    finally:
        if not user_before:
            # the package leaves its system user on purge, as Debian's do
            sh(["deluser", "--system", "moat"])
        shutil.rmtree(tmp, ignore_errors=True)


test_package_builds_installs_and_purges.timeout = 600

if __name__ == "__main__":
    sys.exit(run_tests(globals()))
