#!/usr/bin/python3
"""`moat check --trace`: each filter says what it looked up and what it
got. Against real DNS (unbound with static zones): the DNS list
lookup and its answer, the SPF result with the mechanism that matched,
each DKIM signature with its key lookup and why it passed or failed.
Without --trace none of it is printed."""

import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from moattest import *  # noqa
from dnsrig import TestZones, dnsbl_records  # noqa
from dkimrig import DkimKeys  # noqa

MOAT = os.environ.get("MOAT") or os.path.join(ROOT, "build", "san", "moat")


def conf(ns, tmp):
    return "\n".join([
        'hostname = "moat.test"',
        'spool_directory = "%s"' % tmp,
        'filters = {"dnsbl", "spf", "dkim", "dmarc"}',
        "listener in {",
        '    listen = "127.0.0.1:%d"' % free_port(),
        '    upstream = "127.0.0.1:%d"' % free_port(),
        "}",
        "resolver {",
        '    nameservers = {"%s"}' % ns,
        "    timeout = 3",
        "}",
        "dnsbl {",
        "    zone bl.example {",
        "        action = \"score\"",
        "    }",
        "}",
    ]) + "\n"


def test_check_trace_shows_lookups_and_answers():
    keys = DkimKeys()
    tmp = tempfile.mkdtemp(prefix="moattest.trace.")
    recs = dnsbl_records("bl.example", {"127.0.0.5": ("127.0.0.2", "listed for tests")}) + [
        ("example.org", "TXT", "v=spf1 ip4:127.0.0.5 -all"),
        ("_dmarc.example.org", "TXT", "v=DMARC1; p=reject; adkim=s"),
        keys.publish("rsa1._domainkey.example.org", "rsa"),
    ]
    try:
        with TestZones(recs, zones=["bl.example", "example.org"]) as z:
            path = os.path.join(tmp, "moat.conf")
            with open(path, "w") as f:
                f.write(conf(z.address, tmp))
            raw = make_body(headers=["From: <alice@example.org>", "To: <bob@example.net>",
                                     "Subject: trace", "Message-ID: <t1@example.org>"])
            signed = keys.sign(raw, "rsa1", "example.org")
            signed = keys.sign(signed, "gone", "example.org")     # no key published
            msg = os.path.join(tmp, "msg.eml")
            with open(msg, "wb") as f:
                f.write(signed)
            argv = [MOAT, "-c", path, "check", "--ip", "127.0.0.5", "--helo", "mx.example.org",
                    "--from", "alice@example.org", "--rcpt", "bob@example.net"]
            p = subprocess.run(argv + ["--trace", msg], capture_output=True, text=True,
                               timeout=60)
            out = p.stdout
            check(p.returncode in (0, 1), "moat check exit %d: %s %s" % (p.returncode, out,
                                                                         p.stderr))
            traces = [l for l in out.splitlines() if l.startswith("  trace ")]
            for rx, what in [
                (r"trace connect\s+dnsbl\s+zone bl\.example: 5\.0\.0\.127\.bl\.example A -> "
                 r"listed \(ok 127\.0\.0\.2\), TXT \"listed for tests\"", "DNS list answer"),
                (r"trace mail\s+spf\s+smtp\.mailfrom=example\.org for client 127\.0\.0\.5: "
                 r"pass, mechanism ip4:127\.0\.0\.5", "SPF result and mechanism"),
                (r"trace eom\s+dkim\s+verifying", "DKIM: verifying"),
                (r"trace eom\s+dkim\s+key of signature \d: rsa1\._domainkey\.example\.org TXT "
                 r"-> ok \(1 record", "DKIM key lookup"),
                (r"trace eom\s+dkim\s+key of signature \d: gone\._domainkey\.example\.org TXT "
                 r"-> nxdomain", "DKIM missing key lookup"),
                (r"trace eom\s+dkim\s+signature \d: header\.d=example\.org header\.s=rsa1 .*: "
                 r"pass \(rsa-sha256, 2048-bit key\)", "DKIM pass and why"),
                (r"trace eom\s+dkim\s+signature \d: header\.d=example\.org header\.s=gone .*: "
                 r"permerror \(.+\)", "DKIM failure and why"),
                (r"trace eom\s+dmarc\s+record of example\.org: p=reject .*adkim=s aspf=r",
                 "DMARC record"),
                (r"trace eom\s+dmarc\s+spf: pass for example\.org: aligned with From "
                 r"example\.org \(relaxed\)", "DMARC SPF alignment"),
                (r"trace eom\s+dmarc\s+dkim: pass for d=example\.org: aligned with From "
                 r"example\.org \(strict\)", "DMARC DKIM alignment"),
                (r"trace eom\s+dmarc\s+result: dmarc=pass", "DMARC result"),
            ]:
                check(any(re.search(rx, l) for l in traces),
                      "%s not traced; trace lines:\n%s" % (what, "\n".join(traces)))
            # the trace comes before the stage it belongs to
            lines = out.splitlines()
            first_conn = next(i for i, l in enumerate(lines) if "trace connect" in l)
            stage_conn = next(i for i, l in enumerate(lines) if l.startswith("stage connect"))
            check(first_conn < stage_conn, "connect trace after its stage line:\n" + out)
            p = subprocess.run(argv + [msg], capture_output=True, text=True, timeout=60)
            check("trace" not in p.stdout, "trace lines without --trace:\n" + p.stdout)
    finally:
        keys.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


test_check_trace_shows_lookups_and_answers.timeout = 120


if __name__ == "__main__":
    sys.exit(run_tests(globals()))
