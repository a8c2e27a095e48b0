#!/usr/bin/python3
"""scale_bench.py - moatd with many connections, and how its cost grows.

Case 5 (many connections): N idle client connections (each socket bound
to its own loopback source address in 127.0.0.0/8, so no per-client limit
is involved) are opened against moatd (proxy, no filters), each reads the
greeting and stays silent. Reported: moatd's VmRSS before and after
opening them, divided by N (KB per idle connection), moatd's open file
descriptors with them (one per client shows that no upstream session was
opened), and the throughput of a normal smtp-source load without and with
the idle connections held, alternated round by round (A B A B ...): each
round runs the load, opens the N connections, runs the load again and
closes them.

Case 6 (growth): moatd's CPU per message (utime + stime from /proc) for
message sizes 1 KB, 10 KB, 100 KB and 1 MB (one recipient) and for 1, 10
and 50 recipients per message (10 KB, smtp-source -r), proxy with no
filters, in front of smtp-sink; the variants alternate round by round.

Run alone for a quick look (prints JSON):
    /usr/bin/python3 tests/bench/scale_bench.py [--quick] [idle|growth]
tests/bench/run.py calls idle() and growth() and writes the report.
"""

import errno
import json
import os
import resource
import select
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import BenchError, Procs, Sink, free_port, rss_kb, stats, tmpdir  # noqa: E402
from moatd_rig import Moatd  # noqa: E402
from proxy_bench import timed_run  # noqa: E402


# ---------------------------------------------------------------- case 5

def src_addr(i):
    """The i-th client source address: 127.10.0.1, 127.10.0.2, ...
    (250 per /24, so never .0 or .255)."""
    return "127.%d.%d.%d" % (10 + i // 62500, (i // 250) % 250, 1 + i % 250)


def raise_nofile(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= want:
        return
    if hard != resource.RLIM_INFINITY and hard < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))  # root may raise hard
            return
        except (ValueError, OSError):
            raise BenchError("RLIMIT_NOFILE hard limit %d is below the %d needed" % (hard, want))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


class IdleClients:
    """n connections to 127.0.0.1:port, each from its own source address,
    opened batch by batch (so the listen backlog never overflows) until
    each has read its 220 greeting."""

    def __init__(self, port, n, batch=200, timeout=60):
        self.port, self.n, self.batch, self.timeout = port, n, batch, timeout
        self.socks = []
        Procs.on_exit(self.close)

    def open(self):
        ep = select.epoll()
        end = time.time() + self.timeout
        try:
            i = 0
            while i < self.n:
                pending = {}
                for j in range(i, min(self.n, i + self.batch)):
                    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    self.socks.append(s)
                    s.bind((src_addr(j), 0))
                    s.setblocking(False)
                    e = s.connect_ex(("127.0.0.1", self.port))
                    if e not in (0, errno.EINPROGRESS):
                        raise BenchError("idle connection %d: connect: %s" % (j, os.strerror(e)))
                    pending[s.fileno()] = [s, b""]
                    ep.register(s.fileno(), select.EPOLLIN)
                while pending:
                    if time.time() > end:
                        raise BenchError("idle connections: %d of %d greeted in %d s"
                                         % (i + self.batch - len(pending), self.n, self.timeout))
                    for fd, ev in ep.poll(1.0):
                        s, buf = pending[fd]
                        try:
                            data = s.recv(4096)
                        except BlockingIOError:
                            continue
                        except OSError as e:
                            raise BenchError("idle connection: %s" % e)
                        if not data:
                            raise BenchError("idle connection closed before the greeting: %r"
                                             % buf)
                        buf += data
                        pending[fd][1] = buf
                        if b"\n" in buf:
                            if not buf.startswith(b"220"):
                                raise BenchError("idle connection refused: %r" % buf[:200])
                            ep.unregister(fd)
                            del pending[fd]
                i += self.batch
        finally:
            ep.close()

    def alive(self):
        """How many of the connections moatd has not closed."""
        gone = 0
        for s in self.socks:
            try:
                if s.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"":
                    gone += 1
            except BlockingIOError:
                pass
            except OSError:
                gone += 1
        return len(self.socks) - gone

    def close(self):
        for s in self.socks:
            try:
                s.close()
            except OSError:
                pass
        self.socks = []


def fd_count(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return -1


def idle(runs=5, n=10000, count=5000, size=10240, sessions=20):
    raise_nofile(n + 1024)
    work = tmpdir("moat-bench.")
    sink = Sink(work)
    mport = free_port()
    overrides = ["filters=", "max_connections=%d" % max(12000, n + 2000),
                 "max_connections_per_client=0", "max_connection_rate=0",
                 "stress_threshold=0", "client_timeout=3600"]
    m = Moatd(work, listen_port=mport, upstream_port=sink.port, overrides=overrides).start()
    out = {"n": n, "count": count, "size": size, "sessions": sessions, "mem": []}
    without, with_ = [], []
    try:
        for rnd in range(runs + 1):
            a = timed_run(mport, count, m, sessions=sessions, size=size)
            before = m.rss()[0]
            fds0 = fd_count(m.pid)
            t0 = time.monotonic()
            idle_c = IdleClients(mport, n)
            idle_c.open()
            opened = time.monotonic() - t0
            time.sleep(0.5)
            after = m.rss()[0]
            fds = fd_count(m.pid)
            b = timed_run(mport, count, m, sessions=sessions, size=size)
            alive = idle_c.alive()
            idle_c.close()
            if alive != n:
                raise BenchError("only %d of %d idle connections survived the load" % (alive, n))
            out["mem"].append({"before_kb": before, "after_kb": after,
                               "per_conn_kb": (after - before) / float(n),
                               "fds_before": fds0, "fds_with": fds, "open_s": opened})
            sys.stderr.write("  round %d: %.0f msg/s without, %.0f with %d idle; RSS %d -> %d KB "
                             "(%.1f KB/conn), fds %d -> %d, opened in %.1f s\n"
                             % (rnd, a["rate"], b["rate"], n, before, after,
                                (after - before) / float(n), fds0, fds, opened))
            if rnd > 0:
                without.append(a)
                with_.append(b)
            # let moatd see the closes before the next load
            wait_end = time.time() + 30
            while fd_count(m.pid) > fds0 + 50 and time.time() < wait_end:
                time.sleep(0.2)
        first = out["mem"][0]
        out["rows"] = [
            {"name": "without idle connections", "rate": stats(r["rate"] for r in without),
             "cpu_ms": stats(r["cpu_ms"] for r in without)},
            {"name": "with %d idle connections" % n, "rate": stats(r["rate"] for r in with_),
             "ratio": stats(b["rate"] / a["rate"] for a, b in zip(without, with_)),
             "cpu_ms": stats(r["cpu_ms"] for r in with_)},
        ]
        out["first_per_conn_kb"] = first["per_conn_kb"]
        out["per_conn_kb"] = stats(x["per_conn_kb"] for x in out["mem"])
        out["hwm_kb"] = m.rss()[1]
        out["commands"] = [
            "smtp-sink -u nobody -h sink.example 127.0.0.1:SINK 256",
            "moatd -f -c moat.conf " + " ".join("-o " + o for o in overrides) +
            "    # listener 127.0.0.1:MOAT -> SINK",
            "%d × socket(); bind(127.10.x.y); connect(MOAT); read the 220 greeting; stay silent"
            "    # 200 at a time, each from its own address" % n,
            "smtp-source -s %d -m %d -l %d -M client.example -f alice@example.net "
            "-t bob@example.org 127.0.0.1:MOAT    # without, then with the idle connections"
            % (sessions, count, size),
        ]
    finally:
        m.stop()
        sink.stop()
    return out


# ---------------------------------------------------------------- case 6

def growth(runs=5, counts=None, sessions=20):
    """counts: {size: count} for the size series; the recipient series
    uses the 10 KB count (divided by the recipients' weight, at least a
    fifth of it)."""
    counts = counts or {1024: 5000, 10240: 5000, 102400: 1000, 1048576: 200}
    work = tmpdir("moat-bench.")
    sink = Sink(work)
    mport = free_port()
    m = Moatd(work, listen_port=mport, upstream_port=sink.port,
              overrides=["filters=", "max_connections_per_client=0"]).start()
    variants = [("%d KB, 1 recipient" % (s // 1024) if s < 1048576 else "1 MB, 1 recipient",
                 s, 1, c) for s, c in sorted(counts.items())]
    c10 = counts[10240]
    variants += [("10 KB, %d recipients" % r, 10240, r, max(c10 // 5, c10 // (1 + r // 10)))
                 for r in (10, 50)]
    res = {v[0]: [] for v in variants}
    try:
        for rnd in range(runs + 1):
            for name, size, rcpts, count in variants:
                r = timed_run(mport, count, m, sessions=sessions, size=size, rcpts=rcpts)
                sys.stderr.write("  %s round %d: %.0f msg/s, %.3f ms CPU/msg\n"
                                 % (name, rnd, r["rate"], r["cpu_ms"]))
                if rnd > 0:
                    res[name].append(r)
        base = res[variants[0][0]]
        rows = []
        for name, size, rcpts, count in variants:
            rr = res[name]
            rows.append({"name": name, "size": size, "rcpts": rcpts, "count": count,
                         "rate": stats(r["rate"] for r in rr),
                         "cpu_ms": stats(r["cpu_ms"] for r in rr),
                         "cpu_rel": stats(r["cpu_ms"] / b["cpu_ms"] for r, b in zip(rr, base)
                                          if b["cpu_ms"] > 0),
                         "cpu_us_per_kb": stats(r["cpu_ms"] * 1000.0 / (size / 1024.0)
                                                for r in rr),
                         "rss_peak_kb": max(r["rss_peak_kb"] for r in rr)})
        out = {"rows": rows, "sessions": sessions, "hwm_kb": m.rss()[1],
               "commands": [
                   "smtp-sink -u nobody -h sink.example 127.0.0.1:SINK 256",
                   "moatd -f -c moat.conf -o filters= -o max_connections_per_client=0"
                   "    # listener 127.0.0.1:MOAT -> SINK",
                   "smtp-source -s %d -m COUNT -l SIZE -r RCPTS -M client.example "
                   "-f alice@example.net -t bob@example.org 127.0.0.1:MOAT" % sessions,
                   "moatd CPU: utime + stime of /proc/PID/stat before and after each run",
               ]}
    finally:
        m.stop()
        sink.stop()
    return out


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    which = [a for a in sys.argv[1:] if not a.startswith("-")] or ["idle", "growth"]
    r = {}
    if "idle" in which:
        r["idle"] = idle(runs=2, n=1000, count=1000) if quick else idle()
    if "growth" in which:
        r["growth"] = growth(runs=2, counts={1024: 1000, 10240: 1000, 102400: 200,
                                             1048576: 40}) if quick else growth()
    print(json.dumps(r, indent=1))
