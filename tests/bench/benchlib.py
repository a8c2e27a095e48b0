"""benchlib.py - the pieces every benchmark of tests/bench/ shares.

Python 3 standard library only.

  Procs        every process a benchmark starts, each in its own process
               group; stop_all() ends them (also at exit, on SIGINT and
               SIGTERM), so nothing is left behind on failure or Ctrl-C
  free_port()  a free TCP port on 127.0.0.1, chosen here
  cpu_ticks()  utime+stime of a process and its children, in seconds
  rss_kb()     VmRSS / VmHWM of a process
  Sink         Postfix's smtp-sink on a loopback port (optionally counting)
  source()     runs Postfix's smtp-source once; returns seconds
  stats()      median, min, max of a list
  machine()    nproc, CPU model, kernel, date, load
"""

import atexit
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.path.join(ROOT, "build")
SMTP_SINK = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
SMTP_SOURCE = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    pass


# ---------------------------------------------------------------- processes

class Procs:
    """Registry of started processes and clean-up actions."""
    procs = []
    cleanups = []

    @classmethod
    def start(cls, argv, log=None, **kw):
        out = open(log, "ab") if log else subprocess.DEVNULL
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                             stderr=subprocess.STDOUT, start_new_session=True, **kw)
        if log:
            out.close()
        cls.procs.append(p)
        return p

    @classmethod
    def stop(cls, p, timeout=5):
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except OSError:
                pass
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except OSError:
                    pass
                p.wait(5)
        if p in cls.procs:
            cls.procs.remove(p)

    @classmethod
    def on_exit(cls, fn):
        """fn() runs at stop_all (last registered first)."""
        cls.cleanups.append(fn)
        return fn

    @classmethod
    def stop_all(cls):
        while cls.cleanups:
            fn = cls.cleanups.pop()
            try:
                fn()
            except Exception as e:  # keep cleaning up
                sys.stderr.write("bench: clean-up: %s\n" % e)
        for p in list(cls.procs):
            cls.stop(p)


def _on_signal(signum, frame):
    raise KeyboardInterrupt("signal %d" % signum)


atexit.register(Procs.stop_all)
signal.signal(signal.SIGTERM, _on_signal)
signal.signal(signal.SIGINT, _on_signal)  # also when started in the background
signal.signal(signal.SIGHUP, _on_signal)


def tmpdir(prefix, parent=None):
    """A directory removed at exit (parent /srv for daemons that refuse
    world-writable parents)."""
    if parent:
        os.makedirs(parent, exist_ok=True)
    d = tempfile.mkdtemp(prefix=prefix, dir=parent)
    os.chmod(d, 0o755)
    Procs.on_exit(lambda: shutil.rmtree(d, ignore_errors=True))
    return d


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def listening(port):
    want = ":%04X" % port
    with open("/proc/net/tcp") as fh:
        next(fh)
        for line in fh:
            f = line.split()
            if f[1].endswith(want) and f[3] == "0A":
                return True
    return False


def wait_for(pred, timeout, what):
    end = time.time() + timeout
    while not pred():
        if time.time() > end:
            raise BenchError("timed out waiting for " + what)
        time.sleep(0.02)


# ---------------------------------------------------------------- measuring

def _children(pid):
    out = []
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
                out += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return out


def cpu_ticks(pid, tree=True, reaped=False):
    """CPU seconds (user + system, all threads) of pid and, with tree,
    of its live descendants; with reaped, also of the children pid has
    waited for (cutime + cstime: Postfix's master and its daemons)."""
    total = 0
    if reaped:
        with open("/proc/%d/stat" % pid) as f:
            st = f.read()
        fields = st[st.rindex(")") + 2:].split()
        total += int(fields[13]) + int(fields[14])
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            with open("/proc/%d/stat" % p) as f:
                st = f.read()
        except OSError:
            continue
        fields = st[st.rindex(")") + 2:].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
        if tree:
            todo += _children(p)
    return total / CLK_TCK


def rss_kb(pid):
    """(VmRSS, VmHWM) in KB."""
    rss = hwm = 0
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    return rss, hwm


def stats(xs):
    xs = list(xs)
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "n": len(xs)}


# ---------------------------------------------------------------- smtp-sink / smtp-source

class Sink:
    """smtp-sink on 127.0.0.1:port. counting=True: -c, and count() reads
    the messages received so far (for end-to-end runs through Postfix)."""

    def __init__(self, workdir, name="sink", counting=False, port=None):
        self.port = port or free_port()
        self.out = os.path.join(workdir, name + ".out")
        argv = [SMTP_SINK]
        if os.geteuid() == 0:
            argv += ["-u", "nobody"]
        if counting:
            argv.append("-c")
        argv += ["-h", "sink.example", "127.0.0.1:%d" % self.port, "256"]
        self.proc = Procs.start(argv, log=self.out)
        wait_for(lambda: listening(self.port), 5, "smtp-sink")

    def count(self):
        with open(self.out, "rb") as f:
            f.seek(max(0, os.path.getsize(self.out) - 200))
            tail = f.read().decode("ascii", "replace")
        i = tail.rfind("mesg=")
        if i < 0:
            return 0
        digits = ""
        for ch in tail[i + 5:]:
            if not ch.isdigit():
                break
            digits += ch
        return int(digits or 0)

    def stop(self):
        Procs.stop(self.proc)


def source_argv(port, count, sessions=20, size=None, msgfile=None, rcpts=1):
    argv = [SMTP_SOURCE, "-s", str(sessions), "-m", str(count), "-M", "client.example",
            "-f", "alice@example.net", "-t", "bob@example.org"]
    if rcpts > 1:
        argv += ["-r", str(rcpts)]
    if msgfile:
        argv += ["-F", msgfile]
    elif size:
        argv += ["-l", str(size)]
    return argv + ["127.0.0.1:%d" % port]


def source(port, count, sessions=20, size=None, msgfile=None, timeout=600, rcpts=1):
    """Sends count messages with smtp-source (one message per session, the
    default: a new SMTP session per message, as an MX sees); returns the
    wall-clock seconds until the last reply. Fails on any refusal."""
    argv = source_argv(port, count, sessions, size, msgfile, rcpts)
    t0 = time.monotonic()
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    dt = time.monotonic() - t0
    if r.returncode != 0:
        raise BenchError("smtp-source failed (%d): %s" % (r.returncode, r.stderr.decode()[-500:]))
    return dt


# ---------------------------------------------------------------- facts

def machine():
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    with open("/proc/meminfo") as f:
        mem = f.readline().split()[1]
    def ver(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
        except OSError:
            return "?"
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "kernel": os.uname().release,
        "mem_gb": "%.1f" % (int(mem) / 1024 / 1024),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "load": load,
        "postfix": ver(["postconf", "-dh", "mail_version"]),
        "openssl": ver(["openssl", "version"]),
    }
