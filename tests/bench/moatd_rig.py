"""moatd_rig.py - starts the release moatd (build/moatd) for the benchmarks:
a configuration file from options, a listener and extra text; its log in
a file; its CPU and memory from /proc.

    m = Moatd(workdir, listen_port=P, upstream_port=U, extra="...", overrides=[...])
    m.start(); m.pid; m.cpu(); m.rss(); m.new_log_lines(); m.stop()
"""

import grp
import os
import pwd
import re

from benchlib import BUILD, Procs, BenchError, cpu_ticks, rss_kb, listening, wait_for

MOATD = os.environ.get("MOATD") or os.path.join(BUILD, "moatd")


def run_user():
    """(user, uid, gid) moatd drops root to: "moat" when that system user
    exists, else "nobody" (moatd refuses to run as root)."""
    for name in ("moat", "nobody"):
        try:
            pw = pwd.getpwnam(name)
            return name, pw.pw_uid, pw.pw_gid
        except KeyError:
            pass
    raise BenchError("no user moat or nobody to run moatd as")


def share_key(path):
    """Makes a private key file readable by moatd's user after it drops
    root: owner root, its group, mode 0640."""
    _, _, gid = run_user()
    os.chown(path, 0, gid)
    os.chmod(path, 0o640)


class Moatd:
    def __init__(self, workdir, name="moatd", listen_port=None, upstream_port=None,
                 extra="", overrides=(), wait_port=None):
        self.dir = os.path.join(workdir, name)
        spool = os.path.join(self.dir, "spool")
        os.makedirs(spool, exist_ok=True)
        os.chmod(spool, 0o700)
        user, uid, gid = run_user()
        if os.geteuid() == 0:
            os.chown(spool, uid, gid)
        self.conf = os.path.join(self.dir, "moat.conf")
        self.log = os.path.join(self.dir, "moatd.log")
        self.overrides = list(overrides)
        self.wait_port = wait_port or listen_port
        lines = [
            'hostname = "moat.example"',
            'user = "%s"' % user,
            'spool_directory = "%s"' % os.path.join(self.dir, "spool"),
            'pid_file = "%s"' % os.path.join(self.dir, "moatd.pid"),
            "max_connections = 2000",
            "max_connections_per_client = 2000",
        ]
        if listen_port:
            lines += [
                "listener bench {",
                '    listen = "127.0.0.1:%d"' % listen_port,
                '    role = "inbound"',
                '    upstream = "127.0.0.1:%d"' % upstream_port,
                # smtp-sink offers XCLIENT without ADDR: relay without it
                "    xclient = no",
                "    proxy_address_untrusted = yes",
                "}",
            ]
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n" + extra + "\n")
        self.proc = None
        self.log_pos = 0

    def argv(self):
        a = [MOATD, "-f", "-c", self.conf]
        for o in self.overrides:
            a += ["-o", o]
        return a

    def start(self, timeout=15):
        if not os.access(MOATD, os.X_OK):
            raise BenchError("%s not built" % MOATD)
        self.proc = Procs.start(self.argv(), log=self.log, cwd=self.dir)

        def up():
            if self.proc.poll() is not None:
                raise BenchError("moatd exited at start: %s" % self.read_log()[-1500:])
            return self.wait_port is None or listening(self.wait_port)
        wait_for(up, timeout, "moatd to listen")
        return self

    @property
    def pid(self):
        return self.proc.pid

    def cpu(self):
        """CPU seconds of moatd and its children (SPF workers, milter)."""
        return cpu_ticks(self.proc.pid, tree=True)

    def rss(self):
        return rss_kb(self.proc.pid)

    def read_log(self):
        with open(self.log, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def new_log_lines(self):
        """Log lines written since the last call."""
        with open(self.log, "rb") as f:
            f.seek(self.log_pos)
            data = f.read()
        cut = data.rfind(b"\n") + 1
        self.log_pos += cut
        return data[:cut].decode("utf-8", "replace").splitlines()

    def wait_log(self, pattern, timeout=10):
        rx = re.compile(pattern)
        wait_for(lambda: rx.search(self.read_log()), timeout, "moatd log /%s/" % pattern)

    def stop(self):
        if self.proc:
            Procs.stop(self.proc)
            self.proc = None


def msg_times(lines):
    """(times in seconds, symbols) of the msg log lines among lines."""
    times, syms = [], []
    for l in lines:
        if " msg " not in l and not l.startswith("msg "):
            continue
        m = re.search(r" time=([0-9.]+)", l)
        if m:
            times.append(float(m.group(1)))
        m = re.search(r" symbols=(\S+)", l)
        syms.append(m.group(1) if m else "")
    return times, syms


def percentile(xs, q):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = min(len(xs) - 1, max(0, int(round(q / 100.0 * (len(xs) - 1)))))
    return xs[k]
