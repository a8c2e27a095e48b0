#!/usr/bin/python3
"""`make demo`'s script (tests/demo.sh) with the release build: three
messages relayed through moatd with the shipped configuration into
smtp-sink, each arriving once. Keeps the README's first command working."""

import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from moattest import *  # noqa


def test_demo_relays_three_messages():
    p = subprocess.run(["sh", os.path.join(ROOT, "tests", "demo.sh")], cwd=ROOT,
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    out = p.stdout + p.stderr
    eq(p.returncode, 0, "demo.sh exit status; output:\n%s" % out[-3000:])
    check("Demo passed: 3 messages relayed through moatd" in out, "demo output:\n%s" % out[-3000:])
    for n in ("message 1: arrived once", "message 2: arrived once, with its 3 recipients",
              "message 3: arrived once, its dot lines intact"):
        check(n in out, "%r not in the demo's output:\n%s" % (n, out[-3000:]))


test_demo_relays_three_messages.timeout = 150

if __name__ == "__main__":
    sys.exit(run_tests(globals()))
