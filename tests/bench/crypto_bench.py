#!/usr/bin/python3
"""crypto_bench.py - DKIM signs and verifies per second through moat's code
(build/bench/dkim_speed, linked with build/libmoat.a) next to the raw
crypto (`openssl speed rsa2048 ed25519`), alternated round by round on one
core: openssl, dkim_speed 10 KB, dkim_speed 1 KB, openssl, ...

Keys: RSA-2048 and Ed25519 made by `moat keygen`.

Run alone (prints JSON): /usr/bin/python3 tests/bench/crypto_bench.py [--quick]
"""

import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import BUILD, BenchError, stats, tmpdir  # noqa: E402

DKIM_SPEED = os.path.join(BUILD, "bench", "dkim_speed")
MOAT = os.path.join(BUILD, "moat")
ALGS = {"rsa-sha256": "rsa2048", "ed25519-sha256": "ed25519"}


def openssl_speed(seconds):
    """{("rsa2048"|"ed25519", "sign"|"verify"): per second}"""
    r = subprocess.run(["openssl", "speed", "-seconds", str(seconds), "rsa2048", "ed25519"],
                       capture_output=True, text=True, check=True)
    out = {}
    m = re.search(r"^rsa 2048 bits\s+\S+\s+\S+\s+([0-9.]+)\s+([0-9.]+)", r.stdout, re.M)
    e = re.search(r"^\s*253 bits EdDSA \(Ed25519\)\s+\S+\s+\S+\s+([0-9.]+)\s+([0-9.]+)",
                  r.stdout, re.M)
    if not m or not e:
        raise BenchError("cannot read openssl speed's output: %s" % r.stdout[-600:])
    out["rsa2048", "sign"], out["rsa2048", "verify"] = float(m.group(1)), float(m.group(2))
    out["ed25519", "sign"], out["ed25519", "verify"] = float(e.group(1)), float(e.group(2))
    return out


def dkim_speed(keys, seconds, size):
    """{(alg, op): per second} for a message body of size octets."""
    r = subprocess.run([DKIM_SPEED, "-t", str(seconds), "-s", str(size)] + keys,
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise BenchError("dkim_speed failed: %s" % r.stderr[-500:])
    out = {}
    for line in r.stdout.splitlines():
        f = dict(kv.split("=", 1) for kv in line.split()[1:])
        out[ALGS[f["alg"]], f["op"]] = float(f["per_s"])
    return out


def run(runs=5, seconds=1, sizes=(10240, 1024)):
    if not os.access(DKIM_SPEED, os.X_OK):
        raise BenchError("%s not built (make %s)" % (DKIM_SPEED, "build/bench/dkim_speed"))
    work = tmpdir("moat-bench.")
    subprocess.run([MOAT, "keygen", "-d", "example.net", "-s", "rsa1", "-D", work],
                   check=True, capture_output=True)
    subprocess.run([MOAT, "keygen", "-d", "example.net", "-s", "ed1", "-k", "ed25519",
                    "-D", work], check=True, capture_output=True)
    keys = [os.path.join(work, "rsa1.private"), os.path.join(work, "ed1.private")]
    raw = []
    for rnd in range(runs + 1):
        o = openssl_speed(seconds)
        d = {size: dkim_speed(keys, seconds, size) for size in sizes}
        sys.stderr.write("  crypto round %d: openssl rsa sign %.0f/s, moat 10 KB rsa sign %.0f/s\n"
                         % (rnd, o["rsa2048", "sign"], d[sizes[0]]["rsa2048", "sign"]))
        if rnd > 0:
            raw.append((o, d))
    rows = []
    for alg in ("rsa2048", "ed25519"):
        for op in ("sign", "verify"):
            rows.append({"name": "openssl speed %s %s" % (alg, op),
                         "rate": stats(o[alg, op] for o, _ in raw)})
            for size in sizes:
                rows.append({"name": "moat %s %s, %d KB message" % (alg, op, size // 1024),
                             "rate": stats(d[size][alg, op] for _, d in raw),
                             "ratio": stats(d[size][alg, op] / o[alg, op] for o, d in raw)})
    return {"seconds": seconds, "rows": rows, "commands": [
        "openssl speed -seconds %d rsa2048 ed25519" % seconds,
        "build/bench/dkim_speed -t %d -s SIZE rsa1.private ed1.private   # SIZE %s"
        % (seconds, " and ".join(str(s) for s in sizes))]}


if __name__ == "__main__":
    print(json.dumps(run(runs=2 if "--quick" in sys.argv else 5), indent=1))
