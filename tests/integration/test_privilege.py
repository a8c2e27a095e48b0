#!/usr/bin/python3
"""Privileges: started as root, moatd binds its ports and then runs as
the configured user (the milter process too); it refuses to run as root
or as a user that does not exist; the spool must be writable by that
user; a DKIM key of mode 0640, owner root and moat's group, is read
again on reload after the drop, a 0600 root key is not (the reload is
refused and the running configuration stays); the systemd unit runs moatd
as its own user with CAP_NET_BIND_SERVICE.

As root, the rig runs moatd with -o user=nobody (moattest.RUN_USER)."""

import grp
import os
import pwd
import re
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from moattest import *  # noqa

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def need_root():
    if os.geteuid() != 0:
        print("# not root: nothing to drop; skipped")
        return False
    return True


def ids(pid):
    """(real, effective, saved uid) and the same for gid, from /proc."""
    st = open("/proc/%d/status" % pid).read()
    uid = [int(x) for x in re.search(r"^Uid:\s+(.*)$", st, re.M).group(1).split()[:3]]
    gid = [int(x) for x in re.search(r"^Gid:\s+(.*)$", st, re.M).group(1).split()[:3]]
    return uid, gid


def children(pid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                st = open("/proc/%s/status" % d).read()
            except OSError:
                continue
            if re.search(r"^PPid:\s+%d$" % pid, st, re.M):
                out.append(int(d))
    return out


def start_fails(m, timeout=10):
    """Starts m without waiting for its port; returns (exit status, log)."""
    m.start(wait=False)
    try:
        rc = m.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        fail("moatd still running; log: %s" % m.log()[-800:])
    return rc, m.log()


def test_runs_as_the_configured_user():
    if not need_root():
        return
    nobody = pwd.getpwnam(RUN_USER)
    with Rig() as r:
        r.moatd.wait_log(r"running as user %s \(uid %d" % (RUN_USER, nobody.pw_uid))
        uid, gid = ids(r.moatd.proc.pid)
        eq(uid, [nobody.pw_uid] * 3, "real, effective and saved uid")
        eq(gid, [nobody.pw_gid] * 3, "real, effective and saved gid")
        c = r.ehlo_client()
        expect_reply(c.send_message(make_body()), 250)
        c.quit()
        eq(len(r.up.delivered()), 1, "messages delivered as %s" % RUN_USER)


def test_large_message_spooled_after_the_drop():
    if not need_root():
        return
    with Rig(options={"message_memory_limit": 1024}) as r:
        c = r.ehlo_client()
        body = make_body(body_lines=["x" * 900] * 50)
        expect_reply(c.send_message(body), 250)
        c.quit()
        eq(r.up.delivered()[0].body, body, "the spooled message as relayed")


def test_refuses_root():
    if not need_root():
        return
    m = Moatd([dict(name="a", listen="127.0.0.1:%d" % free_port(),
                    upstream="127.0.0.1:%d" % free_port())], overrides=["user=root"])
    rc, log = start_fails(m)
    eq(rc, 1, "exit status with user = root")
    check('user "root" is root (uid 0): moatd does not run as root' in log, "log: %s" % log[-600:])


def test_refuses_unknown_user():
    if not need_root():
        return
    m = Moatd([dict(name="a", listen="127.0.0.1:%d" % free_port(),
                    upstream="127.0.0.1:%d" % free_port())], overrides=["user=moat-no-such-user"])
    rc, log = start_fails(m)
    eq(rc, 1, "exit status with an unknown user")
    check('user "moat-no-such-user" does not exist' in log, "log: %s" % log[-600:])
    check(not re.search(r"listening on", log), "nothing bound before the check: %s" % log[-600:])


def test_spool_not_writable_by_the_user():
    if not need_root():
        return
    spool = tempfile.mkdtemp(prefix="moattest.rootspool.")     # root, 0700
    try:
        m = Moatd([dict(name="a", listen="127.0.0.1:%d" % free_port(),
                        upstream="127.0.0.1:%d" % free_port())],
                  options={"spool_directory": spool})
        rc, log = start_fails(m)
        eq(rc, 1, "exit status with a root-owned spool")
        check(re.search(r"spool_directory %s is not writable by uid \d+" % re.escape(spool), log),
              "log: %s" % log[-600:])
    finally:
        os.rmdir(spool)


def write_key(dirpath, name, mode, group):
    key = os.path.join(dirpath, name)
    subprocess.run(["openssl", "genpkey", "-algorithm", "ED25519", "-out", key], check=True,
                   capture_output=True)
    os.chown(key, 0, group)
    os.chmod(key, mode)
    return key


def test_dkim_key_0640_readable_on_reload():
    if not need_root():
        return
    gid = pwd.getpwnam(RUN_USER).pw_gid
    d = tempfile.mkdtemp(prefix="moattest.keys.")
    try:
        os.chown(d, 0, gid)
        os.chmod(d, 0o750)
        good = write_key(d, "good.private", 0o640, gid)
        conf = ('dkim {\n  verify = no\n  signing_table = {"example.org k1"}\n'
                '  key k1 { domain = "example.org" selector = "s1" file = "%s" }\n}\n' % good)
        r = Rig(overrides=["filters=dkim"])
        r.moatd.extra_conf = conf
        r.moatd.write_config()
        with r:
            r.moatd.signal(signal.SIGHUP)
            r.moatd.wait_log(r"reloaded: 1 listener")
            check(not r.moatd.grep(r"reload failed"), "no failed reload: %s" % r.moatd.log()[-800:])
            # a key only root can read: the reload is refused, the old key stays
            os.chmod(good, 0o600)
            r.moatd.signal(signal.SIGHUP)
            r.moatd.wait_log(r"reload failed")
            check(r.moatd.grep(r"good\.private"), "the log names the key: %s"
                  % r.moatd.log()[-800:])
            os.chmod(good, 0o640)
            r.moatd.signal(signal.SIGHUP)
            r.moatd.wait_log(r"reloaded: 1 listener", count=2)
            c = r.ehlo_client()
            expect_reply(c.send_message(make_body()), 250)
            c.quit()
    finally:
        for f in os.listdir(d):
            os.unlink(os.path.join(d, f))
        os.rmdir(d)


def test_milter_process_runs_as_the_user():
    if not need_root():
        return
    nobody = pwd.getpwnam(RUN_USER)
    port = free_port()
    m = Moatd([], extra_conf='milter {\n  socket = "inet:%d@127.0.0.1"\n}\n' % port)
    m.start(wait=False)
    wait_for(lambda: port_listening(port), 10, what="the milter socket")
    kids = children(m.proc.pid)
    check(kids, "moatd has a milter process")
    uids = [ids(k)[0] for k in kids]
    check(all(u == [nobody.pw_uid] * 3 for u in uids), "milter process uids: %r" % uids)
    m.stop()


def test_chroot_with_milter_is_a_config_error():
    c = Moatd([], extra_conf='milter {\n  socket = "inet:%d@127.0.0.1"\n}\n' % free_port())
    c.options["chroot"] = "/var/empty"
    c.write_config()
    p = subprocess.run(c.argv(["-t"]), capture_output=True, text=True, timeout=30)
    eq(p.returncode, 1, "moatd -t exit status")
    check(re.search(r"moat\.conf:\d+: chroot: expected no chroot with a milter socket", p.stderr),
          "stderr: %r" % p.stderr)


def test_systemd_unit_runs_as_moat():
    text = open(os.path.join(ROOT, "dist", "moatd.service")).read()
    for line in ("User=moat", "Group=moat", "AmbientCapabilities=CAP_NET_BIND_SERVICE",
                 "CapabilityBoundingSet=CAP_NET_BIND_SERVICE", "NoNewPrivileges=yes"):
        check(re.search(r"^%s$" % re.escape(line), text, re.M), "unit lacks %s" % line)


if __name__ == "__main__":
    run_tests(globals())
