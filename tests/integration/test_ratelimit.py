#!/usr/bin/python3
"""The ratelimit filter: messages per client address (tempfail 451
4.7.28 over the limit), recipients (reject 550 5.7.28), senders (a
score), fixed windows that end, two moatd sharing their counts through
one Redis (the keys as docs/redis-keys.md describes them), a store that
does not answer (no limit, mail flows), access allow entries, dry-run,
an authenticated user's own count (and no greylisting for it), and
limits the configuration refuses."""

import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from moattest import *  # noqa
from redisrig import Redis  # noqa


def rl_rig(limits, redis=None, extra=(), access_client=()):
    ov = ["scoring.add_header=6"]
    if redis:
        ov += ["store.backend=redis", "store.redis_server=127.0.0.1:%d" % redis.port,
               "store.timeout_ms=300"]
    r = Rig(overrides=ov + list(extra))
    r.moatd.extra_conf = "\n".join([
        'filters = {"access", "ratelimit"}',
        "access {",
        "    client = {%s}" % ", ".join('"%s"' % c for c in access_client),
        "}",
        "ratelimit {",
        "    limits = {%s}" % ", ".join('"%s"' % l for l in limits),
        "}",
    ])
    r.moatd.write_config()
    return r


def mail(c, sender="alice@example.org", code=250, enhanced=None):
    return c.expect("MAIL FROM:<%s>" % sender, code, enhanced)


def message(c, sender="alice@example.org", rcpts=("bob@example.net",)):
    rep = c.send_message(make_body(), mail_from=sender, rcpts=rcpts)
    expect_reply(rep, 250, None, "message from %s" % sender)


def test_client_limit_tempfails_with_4_7_28():
    with rl_rig(["client 3/1h"]) as r:
        c = r.ehlo_client()
        for _ in range(3):
            message(c)
        rep = mail(c, code=451, enhanced="4.7.28")
        check(re.search(r"Rate limit exceeded: client 127\.0\.0\.1 over 3 messages in 3600s",
                        str(rep)), "reply: %s" % rep)
        c.quit()
        # another client address has its own count
        c = r.ehlo_client(source="127.0.0.5")
        message(c)
        c.quit()
        eq(len(r.up.messages), 4, "messages delivered")
        r.moatd.wait_log(r"tempfailed.*ratelimit")


def test_rcpt_limit_rejects_and_sender_limit_scores():
    with rl_rig(["rcpt 5/1h reject", "sender 1/1h score 7"]) as r:
        c = r.ehlo_client()
        mail(c)
        for i in range(5):
            c.expect("RCPT TO:<%d@example.net>" % i, 250)
        rep = c.expect("RCPT TO:<c@example.net>", 550, "5.7.28")
        check("rcpt 127.0.0.1 over 5 recipients in 3600s" in str(rep), "reply: %s" % rep)
        c.expect("RSET", 250)
        # the sender's second message is over its limit: scored, not refused
        c2 = r.ehlo_client(source="127.0.0.6")
        message(c2, sender="Alice@Example.org")
        m = r.moatd.msg_lines()[-1]
        check("RATELIMIT_SENDER(7)" in m["_"], "scored over the sender limit: %s" % m["_"])
        message(c2, sender="carol@example.org")
        check("RATELIMIT" not in r.moatd.msg_lines()[-1]["_"], "another sender")
        # the null sender is not counted
        message(c2, sender="")
        message(c2, sender="")
        check("RATELIMIT" not in r.moatd.msg_lines()[-1]["_"], "null sender")
        c2.quit()


def test_fixed_window_ends():
    with rl_rig(["client 2/2s"]) as r:
        c = r.ehlo_client()
        # start at the beginning of a window, so the test does not straddle two
        wait_for(lambda: int(time.time()) % 2 == 0 and time.time() % 1 < 0.3, timeout=3)
        message(c)
        message(c)
        mail(c, code=451, enhanced="4.7.28")
        time.sleep(2.1)
        message(c)
        c.quit()


def test_two_instances_share_counts_through_redis():
    with Redis() as red:
        with rl_rig(["client 4/1h", "net 100/1d"], red) as a, \
                rl_rig(["client 4/1h", "net 100/1d"], red) as b:
            for rig in (a, b, a, b):
                c = rig.ehlo_client()
                message(c)
                c.quit()
            c = a.ehlo_client()
            mail(c, code=451, enhanced="4.7.28")
            c.quit()
            c = b.ehlo_client()
            mail(c, code=451, enhanced="4.7.28")
            c.quit()
            # the keys, as docs/redis-keys.md describes them
            keys = red.cli("--scan", "--pattern", "moat:rl:*").split()
            ck = [k for k in keys if re.match(r"moat:rl:client:127\.0\.0\.1:3600:\d+$", k)]
            eq(len(ck), 1, "client key among %r" % keys)
            eq(red.cli("GET", ck[0]), "6", "count (each attempt counts)")
            ttl = int(red.cli("TTL", ck[0]))
            check(0 < ttl <= 3600, "TTL %d" % ttl)
            check(any(re.match(r"moat:rl:net:127\.0\.0\.0/24:86400:\d+$", k) for k in keys),
                  "net key among %r" % keys)


def test_store_down_no_limit():
    with Redis() as red:
        with rl_rig(["client 1/1h"], red) as r:
            red.kill()
            c = r.ehlo_client()
            for _ in range(3):
                message(c)
            c.quit()
            eq(len(r.up.messages), 3, "messages delivered with the store down")
            r.moatd.wait_log(r"redis .* unavailable")
            eq(len(r.moatd.grep(r"redis .* unavailable")), 1, "outage log lines")


def test_access_allow_exempts():
    with rl_rig(["client 1/1h"], access_client=["127.0.0.7 allow"]) as r:
        c = r.ehlo_client(source="127.0.0.7")
        for _ in range(3):
            message(c)
        c.quit()


def test_dry_run_only_logs():
    with rl_rig(["client 1/1h"], extra=["ratelimit.dry_run=yes"]) as r:
        c = r.ehlo_client()
        message(c)
        message(c)
        c.quit()
        r.moatd.wait_log(r"dry-run: filter ratelimit would tempfail at stage mail")


def test_bad_limits_refused():
    tmp = tempfile.mkdtemp(prefix="moattest.rl.")
    for bad, why in [("client 0/1h", "LIMIT/WINDOW"), ("client 10/1y", "LIMIT/WINDOW"),
                     ("clients 10/1h", "is not client, net"), ("client 10/1h drop", "action"),
                     ("client 10/31d", "LIMIT/WINDOW"), ("sender 5/1m score", "action")]:
        m = Moatd([dict(name="t", listen="127.0.0.1:%d" % free_port(),
                        upstream="127.0.0.1:1")], tmp=tmp,
                  extra_conf='ratelimit {\n    limits = {"%s"}\n}\n' % bad)
        m.write_config()
        p = subprocess.run([MOATD, "-t", "-c", m.conf], capture_output=True, text=True,
                           timeout=30)
        check(p.returncode != 0, "moatd -t accepted %r" % bad)
        check(re.search(r"ratelimit: limits: entry 1 .*%s" % re.escape(why), p.stderr),
              "%r: %r" % (bad, p.stderr))


def test_auth_user_limits_and_greylist_skips_authenticated():
    """An authenticated user (AUTH over STARTTLS, relayed to an upstream
    that checks it) has its own message count, and is not greylisted."""
    from test_tls import TlsUpstream, auth_moatd, b64, starttls
    with TlsUpstream() as up:
        m = auth_moatd(up, extra=["filters=ratelimit,greylist",
                                  "ratelimit.limits=auth 2/1h,rcpt 3/1h reject"])
        try:
            c = Client(m.port)
            c.ehlo()
            starttls(c)
            c.ehlo()
            c.expect("AUTH PLAIN " + b64("\0alice\0s3cret-pw"), 235)
            for i in range(2):
                c.expect("MAIL FROM:<alice@example.org>", 250)
                c.expect("RCPT TO:<r%d@example.net>" % i, 250)   # not greylisted
                c.expect("RSET", 250)
            c.expect("MAIL FROM:<alice@example.org>", 451, "4.7.28")
            c.quit()
            m.wait_log(r"Rate limit exceeded: auth alice over 2 messages")
            # a session that did not authenticate is greylisted
            c = Client(m.port, source="127.0.0.12")
            c.ehlo()
            c.expect("MAIL FROM:<x@example.org>", 250)
            c.expect("RCPT TO:<y@example.net>", 451, "4.7.1")  # greylisted: not authenticated
            c.quit()
        finally:
            m.stop()
test_auth_user_limits_and_greylist_skips_authenticated.timeout = 90


if __name__ == "__main__":
    sys.exit(run_tests(globals()))
