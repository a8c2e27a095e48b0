#!/usr/bin/python3
"""proxy_bench.py - moatd as an SMTP proxy against the physical limit.

Case 1 (ceiling): smtp-source -> smtp-sink directly, versus smtp-source ->
moatd (no filters, -o filters=) -> smtp-sink, alternated run by run
(A B A B ...) after a warm-up pair. Per run: msg/s, the ratio of the pair,
moatd's CPU per message (/proc/PID/stat utime+stime before/after) and its
memory (VmRSS sampled during the run).

Case 2 (full inbound pipeline): the same signed 10 KB message (smtp-source
-F) sent directly, through moatd without filters, and through moatd with
three DNS lists (two IP lists, one domain list), SPF and DKIM
verification, all resolving against a local unbound serving test zones
(tests/integration/dnsrig.py TestZones); A B C A B C ...

Run alone for a quick look (prints JSON):
    /usr/bin/python3 tests/bench/proxy_bench.py [--quick]
tests/bench/run.py calls ceiling() and pipeline() and writes the report.
"""

import json
import os
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from benchlib import (BUILD, BenchError, Procs, Sink, free_port, source, stats,  # noqa: E402
                      tmpdir)
from moatd_rig import Moatd, msg_times, percentile  # noqa: E402

MOAT = os.path.join(BUILD, "moat")


class RssSampler:
    """Samples a process's VmRSS every 50 ms while running."""

    def __init__(self, pid):
        self.pid = pid
        self.peak = 0
        self.stop_ev = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)

    def run(self):
        from benchlib import rss_kb
        while not self.stop_ev.is_set():
            try:
                self.peak = max(self.peak, rss_kb(self.pid)[0])
            except OSError:
                return
            self.stop_ev.wait(0.05)

    def __enter__(self):
        self.t.start()
        return self

    def __exit__(self, *a):
        self.stop_ev.set()
        self.t.join(2)


def timed_run(port, count, moatd=None, **kw):
    """One smtp-source run; returns {rate, cpu_ms (per msg), rss_peak_kb}."""
    c0 = moatd.cpu() if moatd else 0
    if moatd:
        with RssSampler(moatd.pid) as s:
            dt = source(port, count, **kw)
        peak = s.peak
    else:
        dt = source(port, count, **kw)
        peak = 0
    r = {"rate": count / dt, "seconds": dt}
    if moatd:
        r["cpu_ms"] = (moatd.cpu() - c0) * 1000.0 / count
        r["rss_peak_kb"] = peak
    return r


def alternate(variants, runs, count, **kw):
    """variants: [(name, port, moatd or None)]. A warm-up round, then runs
    rounds of every variant in turn. Returns {name: [result per run]}."""
    out = {name: [] for name, _, _ in variants}
    for rnd in range(runs + 1):
        for name, port, m in variants:
            r = timed_run(port, count, m, **kw)
            if m:
                r["latency"] = msg_times(m.new_log_lines())[0]
            if rnd > 0:
                out[name].append(r)
            sys.stderr.write("  %s round %d: %.0f msg/s\n" % (name, rnd, r["rate"]))
    return out


def summarize(res, base):
    """Per variant: msg/s, ratio to base (pairwise, per round), CPU/msg."""
    rows = []
    for name, runs in res.items():
        row = {"name": name, "rate": stats(r["rate"] for r in runs)}
        if name != base:
            row["ratio"] = stats(r["rate"] / b["rate"] for r, b in zip(runs, res[base]))
        if "cpu_ms" in runs[0]:
            row["cpu_ms"] = stats(r["cpu_ms"] for r in runs)
            row["rss_peak_kb"] = max(r["rss_peak_kb"] for r in runs)
            lat = [x for r in runs for x in r.get("latency", [])]
            if lat:
                row["lat_p50_ms"] = percentile(lat, 50) * 1000
                row["lat_p99_ms"] = percentile(lat, 99) * 1000
        rows.append(row)
    return rows


# ---------------------------------------------------------------- case 1

def ceiling(runs=5, loads=((10000, 10240), (2000, 102400)), sessions=20):
    work = tmpdir("moat-bench.")
    sink = Sink(work)
    mport = free_port()
    m = Moatd(work, listen_port=mport, upstream_port=sink.port, overrides=["filters="]).start()
    idle_rss = m.rss()[0]
    out = {"sessions": sessions, "idle_rss_kb": idle_rss, "loads": []}
    try:
        for count, size in loads:
            sys.stderr.write("case 1: %d x %d bytes\n" % (count, size))
            res = alternate([("direct", sink.port, None), ("moatd", mport, m)], runs, count,
                            sessions=sessions, size=size)
            out["loads"].append({"count": count, "size": size, "rows": summarize(res, "direct")})
        out["hwm_kb"] = m.rss()[1]
        out["commands"] = [
            "smtp-sink -u nobody -h sink.example 127.0.0.1:SINK 256",
            "moatd -f -c moat.conf -o filters=    # listener 127.0.0.1:MOAT -> SINK, xclient = no",
            "smtp-source -s %d -m COUNT -l SIZE -M client.example -f alice@example.net "
            "-t bob@example.org 127.0.0.1:SINK|MOAT" % sessions,
        ]
    finally:
        m.stop()
        sink.stop()
    return out


# ---------------------------------------------------------------- case 2

def keys(work):
    """An RSA-2048 key made by `moat keygen`; returns (path, TXT value)."""
    subprocess.run([MOAT, "keygen", "-d", "example.net", "-s", "rsa1", "-D", work],
                   check=True, capture_output=True)
    with open(os.path.join(work, "rsa1.txt")) as f:
        txt = "".join(p for p in __import__("re").findall(r'"([^"]*)"', f.read()))
    return os.path.join(work, "rsa1.private"), txt


def message(size=10240):
    """An ordinary 10 KB message from alice@example.net (LF line ends)."""
    head = ["From: Alice <alice@example.net>", "To: Bob <bob@example.org>",
            "Subject: benchmark", "Date: Fri, 27 Nov 2026 12:00:00 +0000",
            "Message-ID: <bench.1@example.net>", "MIME-Version: 1.0",
            "Content-Type: text/plain; charset=us-ascii", ""]
    body, n = [], 0
    while n < size:
        line = "%05d The quick brown fox jumps over the lazy dog, again and again." % len(body)
        body.append(line)
        n += len(line) + 2
    return "\n".join(head + body) + "\n"


def signed_message(work, keyfile, size=10240):
    plain = os.path.join(work, "plain.eml")
    with open(plain, "w") as f:
        f.write(message(size))
    r = subprocess.run([MOAT, "sign", "-d", "example.net", "-s", "rsa1", "-k", keyfile, plain],
                       check=True, capture_output=True)
    path = os.path.join(work, "signed.eml")
    with open(path, "wb") as f:
        f.write(r.stdout)
    return plain, path


PIPELINE_CONF = """
filters = {{"dnsbl", "spf", "dkim"}}
resolver {{
    nameservers = {{"{dns}"}}
    timeout = 3
}}
dnsbl {{
    wait = 1500
    zone bl1.example {{ lookup = "client" }}
    zone bl2.example {{ lookup = "client" }}
    zone dbl.example {{ lookup = "sender" }}
}}
spf {{
    workers = 2
    check_helo = yes
}}
dkim {{
    verify = yes
}}
"""


def zones_records(dkim_txt):
    from dnsrig import dnsbl_records
    recs = []
    recs += dnsbl_records("bl1.example", {"192.0.2.99": "127.0.0.2"})
    recs += dnsbl_records("bl2.example", {"192.0.2.98": "127.0.0.2"})
    recs += dnsbl_records("dbl.example", listed_names={"spam.example": "127.0.0.2"})
    recs += [("example.net", "TXT", "v=spf1 ip4:127.0.0.0/8 -all"),
             ("rsa1._domainkey.example.net", "TXT", dkim_txt),
             ("client.example", "TXT", "v=spf1 ip4:127.0.0.0/8 -all")]
    return recs


def pipeline(runs=5, count=10000, sessions=20):
    from dnsrig import TestZones
    work = tmpdir("moat-bench.")
    keyfile, txt = keys(work)
    _, signed = signed_message(work, keyfile)
    z = TestZones(zones_records(txt)).start()
    Procs.on_exit(z.stop)
    sink = Sink(work)
    bare_port, full_port = free_port(), free_port()
    bare = Moatd(work, "bare", listen_port=bare_port, upstream_port=sink.port,
                 overrides=["filters="]).start()
    full = Moatd(work, "full", listen_port=full_port, upstream_port=sink.port,
                 extra=PIPELINE_CONF.format(dns=z.address)).start()
    out = {"sessions": sessions, "count": count, "size": os.path.getsize(signed)}
    try:
        for zone in ("bl1", "bl2", "dbl"):
            full.wait_log(r"dnsbl: zone %s\.example passes its test points" % zone)
        # the pipeline really runs: one message, and its symbols
        source(full_port, 1, sessions=1, msgfile=signed)
        _, syms = msg_times(full.new_log_lines())
        if not syms or not all(s in syms[0] for s in ("SPF_PASS", "DKIM_PASS")) \
                or "DNSBL" in syms[0]:
            raise BenchError("full pipeline: unexpected symbols %r; log: %s"
                             % (syms, full.read_log()[-1500:]))
        out["symbols"] = syms[0]
        bare.new_log_lines()
        sys.stderr.write("case 2: %d x %d bytes (symbols %s)\n" % (count, out["size"], syms[0]))
        res = alternate([("direct", sink.port, None), ("moatd, no filters", bare_port, bare),
                         ("moatd, full pipeline", full_port, full)],
                        runs, count, sessions=sessions, msgfile=signed)
        rows = summarize(res, "direct")
        b, f = res["moatd, no filters"], res["moatd, full pipeline"]
        rows.append({"name": "full pipeline / no filters",
                     "ratio": stats(x["rate"] / y["rate"] for x, y in zip(f, b)),
                     "cpu_ratio": stats(x["cpu_ms"] / y["cpu_ms"] for x, y in zip(f, b))})
        out["rows"] = rows
        out["commands"] = [
            "unbound (TestZones) serving bl1.example, bl2.example, dbl.example, example.net "
            "(SPF, DKIM key), client.example (HELO SPF) on 127.0.0.1:DNS",
            "moat keygen -d example.net -s rsa1; moat sign -d example.net -s rsa1 -k rsa1.private "
            "plain.eml > signed.eml",
            "smtp-source -s %d -m %d -F signed.eml -M client.example -f alice@example.net "
            "-t bob@example.org 127.0.0.1:SINK|BARE|FULL" % (sessions, count),
            "moatd config of FULL:" + PIPELINE_CONF.format(dns="127.0.0.1:DNS"),
        ]
    finally:
        full.stop()
        bare.stop()
        sink.stop()
    return out


# ---------------------------------------------------------------- case 2, reputation

class Redis:
    """A throwaway redis-server on a loopback port chosen here: no
    persistence, its files in its own directory."""

    def __init__(self, work):
        import shutil
        exe = shutil.which("redis-server")
        if not exe:
            raise BenchError("redis-server is not installed (apt-get install redis-server)")
        self.port = free_port()
        d = os.path.join(work, "redis")
        os.makedirs(d, exist_ok=True)
        self.proc = Procs.start([exe, "--bind", "127.0.0.1", "--port", str(self.port),
                                 "--save", "", "--appendonly", "no", "--dir", d,
                                 "--daemonize", "no", "--protected-mode", "yes",
                                 "--unixsocket", ""],
                                log=os.path.join(d, "redis.log"), cwd=d)
        from benchlib import listening, wait_for
        wait_for(lambda: self.proc.poll() is not None or listening(self.port), 10,
                 "redis-server")
        if self.proc.poll() is not None:
            raise BenchError("redis-server exited at start")

    def command(self, *args):
        import socket
        req = "*%d\r\n" % len(args) + "".join("$%d\r\n%s\r\n" % (len(a), a) for a in args)
        with socket.create_connection(("127.0.0.1", self.port), 5) as c:
            c.sendall(req.encode())
            return c.recv(4096).decode("ascii", "replace").strip()

    def version(self):
        info = self.command("INFO", "server")
        for line in info.splitlines():
            if line.startswith("redis_version:"):
                return line.split(":", 1)[1].strip()
        return ""

    def stop(self):
        Procs.stop(self.proc)


REPUTATION_CONF = """
store {{
    backend = "{backend}"{redis}
}}
"""


def reputation(runs=5, count=10000, sessions=20):
    """Case 2 with the reputation filter: the full pipeline, the pipeline
    plus reputation with the embedded (memory) store, and plus reputation
    with a Redis the bench starts; direct for reference. A B C D ..."""
    from dnsrig import TestZones
    work = tmpdir("moat-bench.")
    keyfile, txt = keys(work)
    _, signed = signed_message(work, keyfile)
    z = TestZones(zones_records(txt)).start()
    Procs.on_exit(z.stop)
    redis = Redis(work)
    Procs.on_exit(redis.stop)
    sink = Sink(work)
    conf = PIPELINE_CONF.format(dns=z.address)
    rep_conf = conf.replace('"dkim"}', '"dkim", "reputation"}')
    ports = {k: free_port() for k in ("full", "mem", "redis")}
    full = Moatd(work, "full", listen_port=ports["full"], upstream_port=sink.port, extra=conf)
    mem = Moatd(work, "mem", listen_port=ports["mem"], upstream_port=sink.port,
                extra=rep_conf + REPUTATION_CONF.format(backend="memory", redis=""))
    red = Moatd(work, "redis", listen_port=ports["redis"], upstream_port=sink.port,
                extra=rep_conf + REPUTATION_CONF.format(
                    backend="redis", redis='\n    redis_server = "127.0.0.1:%d"' % redis.port))
    ms = (full, mem, red)
    out = {"sessions": sessions, "count": count, "size": os.path.getsize(signed),
           "redis_version": redis.version()}
    try:
        for m in ms:
            m.start()
        for m in ms:
            for zone in ("bl1", "bl2", "dbl"):
                m.wait_log(r"dnsbl: zone %s\.example passes its test points" % zone)
        # the filters really run: a few messages each (reputation needs
        # min_messages before it has an opinion), then their symbols
        syms = {}
        for name, m in (("full", full), ("memory", mem), ("redis", red)):
            source(ports[name if name != "memory" else "mem"], 8, sessions=1, msgfile=signed)
            _, s = msg_times(m.new_log_lines())
            if not s or not all(x in s[-1] for x in ("SPF_PASS", "DKIM_PASS")):
                raise BenchError("reputation case, %s: unexpected symbols %r; log: %s"
                                 % (name, s, m.read_log()[-1500:]))
            syms[name] = s[-1]
        for name in ("memory", "redis"):
            if "REP_" not in syms[name]:
                raise BenchError("reputation case, %s: no REP_ symbol after 8 messages: %s"
                                 % (name, syms[name]))
        keys_n = redis.command("DBSIZE")
        if not keys_n.startswith(":") or int(keys_n[1:]) == 0:
            raise BenchError("reputation case: Redis holds no keys (%r); log: %s"
                             % (keys_n, red.read_log()[-1500:]))
        out["symbols"] = syms
        sys.stderr.write("case 2r: %d x %d bytes (symbols %s)\n" % (count, out["size"], syms))
        names = ("moatd, full pipeline", "moatd, + reputation (memory)",
                 "moatd, + reputation (Redis)")
        from benchlib import cpu_ticks
        rc0 = cpu_ticks(redis.proc.pid)
        res = alternate([("direct", sink.port, None)] +
                        [(n, ports[k], m) for n, k, m in zip(names, ("full", "mem", "redis"), ms)],
                        runs, count, sessions=sessions, msgfile=signed)
        # every message of the Redis variant, the warm-up round's included
        out["redis_cpu_ms"] = (cpu_ticks(redis.proc.pid) - rc0) * 1000.0 / ((runs + 1) * count)
        rows = summarize(res, "direct")
        base = [r for r in rows if r["name"] == names[0]][0]
        b = res[names[0]]
        for n in names[1:]:
            v = res[n]
            row = [r for r in rows if r["name"] == n][0]
            rows.append({"name": n.replace("moatd, + ", "") + " / pipeline",
                         "ratio": stats(x["rate"] / y["rate"] for x, y in zip(v, b)),
                         "cpu_ratio": stats(x["cpu_ms"] / y["cpu_ms"] for x, y in zip(v, b)),
                         "added_p50_ms": row["lat_p50_ms"] - base["lat_p50_ms"],
                         "added_p99_ms": row["lat_p99_ms"] - base["lat_p99_ms"]})
        out["rows"] = rows
        out["redis_keys"] = redis.command("DBSIZE").lstrip(":")
        out["commands"] = [
            "unbound (TestZones) as in case 2; the same signed.eml",
            "redis-server --bind 127.0.0.1 --port REDIS --save '' --appendonly no",
            "smtp-source -s %d -m %d -F signed.eml -M client.example -f alice@example.net "
            "-t bob@example.org 127.0.0.1:SINK|FULL|MEM|REDIS" % (sessions, count),
            "moatd config of FULL: as in case 2",
            "moatd config of MEM and REDIS: FULL's, with filters = {\"dnsbl\", \"spf\", "
            "\"dkim\", \"reputation\"} and" +
            REPUTATION_CONF.format(backend="memory", redis="").rstrip() + "    # MEM" +
            REPUTATION_CONF.format(backend="redis",
                                   redis='\n    redis_server = "127.0.0.1:REDIS"').rstrip() +
            "    # REDIS",
        ]
    finally:
        for m in ms:
            m.stop()
        sink.stop()
        redis.stop()
    return out


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    if quick:
        r1 = ceiling(runs=3, loads=((2000, 10240), (400, 102400)))
        r2 = pipeline(runs=3, count=2000)
    else:
        r1 = ceiling()
        r2 = pipeline()
    print(json.dumps({"ceiling": r1, "pipeline": r2}, indent=1))
