#!/usr/bin/python3
"""The greylist filter: a new (network, sender, recipient) triple is
tempfailed with 451 4.7.1 at RCPT, a retry before the delay too, a retry
after it passes and the triple is remembered; the /24 counts, not the
address; two moatd on one Redis share the triples (keys as
docs/redis-keys.md describes them); access allow entries and a good
reputation (`moat rep set ... good`) bypass it; a store that does not
answer greylists nothing. The delay is shortened with -o."""

import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from moattest import *  # noqa
from redisrig import Redis  # noqa

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MOAT = os.environ.get("MOAT", os.path.join(ROOT, "build/san/moat"))
DELAY = 2


def gl_rig(redis=None, extra=(), access_client=(), filters=("access", "greylist")):
    tmp = tempfile.mkdtemp(prefix="moattest.gl.")
    ov = ["greylist.delay=%d" % DELAY]
    if redis:
        ov += ["store.backend=redis", "store.redis_server=127.0.0.1:%d" % redis.port,
               "store.timeout_ms=300"]
    r = Rig(options={"control_socket": os.path.join(tmp, "control")}, overrides=ov + list(extra))
    r.moatd.extra_conf = "\n".join([
        "filters = {%s}" % ", ".join('"%s"' % f for f in filters),
        "access {",
        "    client = {%s}" % ", ".join('"%s"' % c for c in access_client),
        "}",
    ])
    r.moatd.write_config()
    return r


def rcpt(r, code, enhanced=None, source=None, sender="alice@example.org",
         to="bob@example.net"):
    c = r.ehlo_client(source=source) if source else r.ehlo_client()
    c.expect("MAIL FROM:<%s>" % sender, 250)
    rep = c.expect("RCPT TO:<%s>" % to, code, enhanced)
    c.quit()
    return rep


def test_first_sight_then_retry_after_delay():
    with gl_rig() as r:
        t0 = time.time()
        rep = rcpt(r, 451, "4.7.1")
        check(re.search(r"Greylisted, please try again in %d seconds" % DELAY, str(rep)),
              "reply: %s" % rep)
        rep = rcpt(r, 451, "4.7.1")                         # too early: still greylisted
        rcpt(r, 451, "4.7.1", to="carol@example.net")       # another triple
        time.sleep(max(0, DELAY + 0.2 - (time.time() - t0)))
        rcpt(r, 250)                                        # after the delay
        rcpt(r, 250, source="127.0.0.9")                    # same /24, remembered
        c = r.ehlo_client()
        rep = c.send_message(make_body(), mail_from="alice@example.org",
                             rcpts=("bob@example.net",))
        expect_reply(rep, 250, None, "the message of a triple that passed")
        c.quit()
        r.moatd.wait_log(r"tempfailed by filter greylist at stage rcpt")
test_first_sight_then_retry_after_delay.timeout = 60


def test_two_instances_share_triples_through_redis():
    with Redis() as red:
        with gl_rig(red) as a, gl_rig(red) as b:
            rcpt(a, 451, "4.7.1")
            k = "moat:gl:127.0.0.0/24:alice@example.org:bob@example.net"
            first = red.cli("GET", k)
            check(re.match(r"\d+$", first) and abs(int(first) - time.time()) < 5,
                  "first sight stored: %r" % first)
            ttl = int(red.cli("TTL", k))
            check(172800 < ttl <= 172800 + DELAY, "TTL of a waiting triple: %d" % ttl)
            rcpt(b, 451, "4.7.1")                           # b sees a's triple: too early
            eq(red.cli("GET", k), first, "a retry too early keeps the first sight")
            time.sleep(DELAY + 0.2)
            rcpt(b, 250)
            eq(red.cli("GET", k), "pass", "value after the retry")
            ttl = int(red.cli("TTL", k))
            check(3024000 - 60 < ttl <= 3024000, "TTL of a triple that passed: %d" % ttl)
            rcpt(a, 250)
test_two_instances_share_triples_through_redis.timeout = 60


def test_access_allow_bypasses():
    with gl_rig(access_client=["127.0.0.8 allow"]) as r:
        rcpt(r, 250, source="127.0.0.8")
        rcpt(r, 451, "4.7.1", source="127.0.0.10")


def test_good_reputation_bypasses():
    with gl_rig(filters=("access", "reputation", "greylist")) as r:
        ctl = r.moatd.options["control_socket"]
        p = subprocess.run([MOAT, "-c", r.moatd.conf, "rep", "-s", ctl, "set", "127.0.0.11",
                            "good"], capture_output=True, text=True, timeout=30)
        eq(p.returncode, 0, "moat rep set good (stderr %r)" % p.stderr)
        rcpt(r, 250, source="127.0.0.11")
        # the network's reputation is the address's too, unless one is bad
        p = subprocess.run([MOAT, "-c", r.moatd.conf, "rep", "-s", ctl, "set", "127.0.0.0/24",
                            "bad"], capture_output=True, text=True, timeout=30)
        eq(p.returncode, 0, "moat rep set NET bad (stderr %r)" % p.stderr)
        rcpt(r, 451, "4.7.1", source="127.0.0.11", to="dave@example.net")
    with gl_rig(extra=["greylist.bypass_good_reputation=no"]) as r:
        ctl = r.moatd.options["control_socket"]
        p = subprocess.run([MOAT, "-c", r.moatd.conf, "rep", "-s", ctl, "set", "127.0.0.11",
                            "good"], capture_output=True, text=True, timeout=30)
        eq(p.returncode, 0, "moat rep set good")
        rcpt(r, 451, "4.7.1", source="127.0.0.11")


def test_store_down_greylists_nothing():
    with Redis() as red:
        with gl_rig(red) as r:
            red.kill()
            rcpt(r, 250)
            r.moatd.wait_log(r"redis .* unavailable")


def test_dry_run_passes():
    with gl_rig(extra=["greylist.dry_run=yes"]) as r:
        rcpt(r, 250)
        r.moatd.wait_log(r"dry-run: filter greylist would tempfail at stage rcpt")


if __name__ == "__main__":
    sys.exit(run_tests(globals()))
