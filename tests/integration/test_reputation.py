#!/usr/bin/python3
"""The reputation filter and the store, against a real redis-server on a
loopback port: two moatd sharing one Redis see each other's counts; a
Redis killed mid-run holds no mail, is logged once, and its return is
logged; `moat rep show|clear`, `moat status` and `moat reload` through
the control socket; mail with a forged sender domain (SPF fail) does not
count for that domain; the embedded store answers `moat rep` too;
marks set by hand (`moat rep set`: their keys, TTLs, symbols, neutral,
clear), and `moat rep` on Redis directly when moatd is not reached."""

import os
import re
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from moattest import *  # noqa
from dnsrig import FaultDNS  # noqa
from redisrig import Redis  # noqa

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MOAT = os.environ.get("MOAT", os.path.join(ROOT, "build/san/moat"))


def rep_rig(redis=None, filters=("access", "reputation"), extra=(), access_sender=()):
    """A Rig with the reputation filter, a control socket, and (with
    redis) the Redis store. Mail from spam@bad.example scores 10
    (add_header: counted as spam); other mail is ham."""
    tmp = tempfile.mkdtemp(prefix="moattest.rep.")
    ov = ["reputation.min_messages=3", "scoring.add_header=6"]
    if redis:
        ov += ["store.backend=redis", "store.redis_server=127.0.0.1:%d" % redis.port,
               "store.timeout_ms=300"]
    r = Rig(options={"control_socket": os.path.join(tmp, "control")}, overrides=ov + list(extra))
    r.moatd.extra_conf = "\n".join([
        "filters = {%s}" % ", ".join('"%s"' % f for f in filters),
        "access {",
        "    sender = {%s}" % ", ".join('"%s"' % s for s in
                                       ["spam@bad.example score 10"] + list(access_sender)),
        "}",
    ])
    r.moatd.write_config()
    r.ctl_tmp = tmp
    return r


def moat(r, *args):
    """moat -c (the rig's config) ARGS; returns (status, stdout, stderr)."""
    p = subprocess.run([MOAT, "-c", r.moatd.conf] + [a for o in r.moatd.overrides for a in ("-o", o)]
                       + list(args), capture_output=True, text=True, timeout=30)
    return p.returncode, p.stdout, p.stderr


def send(r, mail_from="alice@good.example", n=1):
    c = r.ehlo_client()
    for _ in range(n):
        rep = c.send_message(make_body(), mail_from=mail_from)
        expect_reply(rep, 250, None, "message from %s" % mail_from)
    c.quit()


def show(r, what):
    rc, out, err = moat(r, "rep", "show", what)
    eq(rc, 0, "moat rep show %s exit status (stderr %r)" % (what, err))
    return {l.split()[0] + " " + l.split()[1]: parse_kv(l) for l in out.splitlines() if l.strip()}


def wait_counts(r, what, key, ham=None, spam=None, timeout=5.0):
    def ok():
        e = show(r, what).get(key)
        if not e:
            return None
        if ham is not None and float(e["ham"]) != ham:
            return None
        if spam is not None and float(e["spam"]) != spam:
            return None
        return e
    e = wait_for(ok, timeout)
    check(e, "%s: want ham=%s spam=%s, have %r" % (key, ham, spam, show(r, what).get(key)))
    return e


def test_two_instances_share_reputation_through_redis():
    with Redis() as red:
        with rep_rig(red) as a, rep_rig(red) as b:
            send(a, n=3)                                   # ham, learned by a
            send(a, mail_from="spam@bad.example")          # spam
            e = wait_counts(b, "127.0.0.1", "ip 127.0.0.1", ham=3, spam=1)   # b sees a's
            eq(e["verdict"], "neutral", "3 ham 1 spam with bad_ratio 0.5, good_ratio 0.05")
            wait_counts(b, "127.0.0.1", "net 127.0.0.0/24", ham=3, spam=1)
            # the keys as docs/redis-keys.md describes them
            keys = red.cli("--scan", "--pattern", "moat:rep:ip:127.0.0.1:*").split()
            check(any(re.match(r"moat:rep:ip:127\.0\.0\.1:ham:\d+$", k) for k in keys),
                  "keys: %r" % keys)
            hk = [k for k in keys if ":ham:" in k][0]
            eq(red.cli("GET", hk), "3", "value of " + hk)
            ttl = int(red.cli("TTL", hk))
            check(1209600 - 60 < ttl <= 1209600, "TTL of %s: %d" % (hk, ttl))
            # b's filter uses what a learned: mostly ham after more of it
            send(b, n=20)
            wait_counts(a, "127.0.0.1", "ip 127.0.0.1", ham=23, spam=1)
            send(b)
            m = b.moatd.msg_lines()[-1]
            check("REP_IP_GOOD" in m["_"], "b scored the address good: %s" % m["_"])


def test_redis_killed_mid_run_mail_flows_one_log_line_recovery_logged():
    with Redis() as red:
        with rep_rig(red) as r:
            send(r)
            wait_counts(r, "127.0.0.1", "ip 127.0.0.1", ham=1)
            red.kill()
            t0 = time.time()
            for _ in range(4):
                send(r, n=2)
            check(time.time() - t0 < 8, "8 messages took %.1fs with Redis down" % (time.time() - t0))
            r.up.wait_messages(9)
            eq(len(r.up.messages), 9, "messages delivered")
            lines = r.moatd.wait_log(r"redis 127\.0\.0\.1:%d unavailable" % red.port)
            time.sleep(0.5)
            eq(len(r.moatd.grep(r"redis .* unavailable")), 1, "outage log lines")
            rc, out, err = moat(r, "rep", "show", "127.0.0.1")
            eq(rc, 0, "rep show with Redis down (stderr %r)" % err)
            check("verdict=unknown" in out, "rep show with Redis down: %r" % out)
            rc, out, err = moat(r, "status")
            check(re.search(r"state=down .*outages=1", out), "status while down: %r" % out)
            red.start()                                    # same port
            r.moatd.wait_log(r"redis 127\.0\.0\.1:%d is back" % red.port, timeout=15)
            send(r)
            wait_counts(r, "127.0.0.1", "ip 127.0.0.1", ham=1)   # a fresh server: only the last one
            eq(len(r.moatd.grep(r"redis .* unavailable")), 1, "outage log lines after recovery")
            rc, out, err = moat(r, "status")
            check(re.search(r"state=up ", out), "status after recovery: %r" % out)
test_redis_killed_mid_run_mail_flows_one_log_line_recovery_logged.timeout = 90


def test_stalled_redis_deadline_mail_flows():
    with Redis() as red:
        with rep_rig(red) as r:
            send(r)
            red.proc.send_signal(signal.SIGSTOP)
            try:
                t0 = time.time()
                send(r, n=3)
                check(time.time() - t0 < 6, "3 messages took %.1fs with Redis stalled"
                      % (time.time() - t0))
                r.moatd.wait_log(r"redis .* unavailable: no answer within 300 ms")
            finally:
                red.proc.send_signal(signal.SIGCONT)
            send(r)
            r.moatd.wait_log(r"redis .* is back")
            eq(len(r.moatd.grep(r"redis .* unavailable")), 1, "outage log lines")


def test_rep_show_and_clear_with_redis():
    with Redis() as red:
        with rep_rig(red) as r:
            send(r, n=2)
            send(r, mail_from="spam@bad.example")
            wait_counts(r, "127.0.0.1", "ip 127.0.0.1", ham=2, spam=1)
            rc, out, err = moat(r, "rep", "clear", "127.0.0.1")
            eq((rc, out.strip()), (0, "ip 127.0.0.1 cleared"), "rep clear (stderr %r)" % err)
            e = show(r, "127.0.0.1")
            eq((float(e["ip 127.0.0.1"]["ham"]), e["ip 127.0.0.1"]["verdict"]), (0.0, "few"),
               "after clear")
            eq(float(e["net 127.0.0.0/24"]["ham"]), 2.0, "the network stays")
            eq(red.cli("--scan", "--pattern", "moat:rep:ip:127.0.0.1:*"), "", "keys left")
            rc, out, err = moat(r, "rep", "clear", "127.0.0.0/24")
            eq((rc, out.strip()), (0, "net 127.0.0.0/24 cleared"), "rep clear NET")
            rc, out, err = moat(r, "rep", "show", "not a name")
            eq(rc, 64, "rep show with a space")
            rc, out, err = moat(r, "rep", "show", "bad!name")
            eq(rc, 1, "rep show bad!name: %r" % err)


def test_forged_sender_domain_does_not_change_its_reputation():
    records = [("good.example", "TXT", "v=spf1 ip4:127.0.0.1 -all"),
               ("bank.example", "TXT", "v=spf1 ip4:192.0.2.1 -all")]
    with FaultDNS(records) as dns, Redis() as red:
        with rep_rig(red, filters=("access", "spf", "reputation"),
                     extra=["resolver.nameservers=" + dns.address, "resolver.timeout=2"]) as r:
            send(r, mail_from="alice@good.example", n=2)
            wait_counts(r, "good.example", "dom good.example", ham=2)
            send(r, mail_from="ceo@bank.example", n=3)     # SPF fail: 8 points, spam
            wait_counts(r, "127.0.0.1", "ip 127.0.0.1", ham=2, spam=3)
            e = show(r, "bank.example")["dom bank.example"]
            eq((float(e["ham"]), float(e["spam"])), (0.0, 0.0), "forged domain counts")
            eq(red.cli("--scan", "--pattern", "moat:rep:dom:bank.example:*"), "", "forged keys")
            e = show(r, "good.example")["dom good.example"]
            eq((float(e["ham"]), float(e["spam"])), (2.0, 0.0), "real domain counts")


def test_embedded_store_status_and_reload():
    with rep_rig(None) as r:
        send(r, n=3)
        e = wait_counts(r, "127.0.0.1", "ip 127.0.0.1", ham=3)
        eq(e["verdict"], "good", "3 ham, min_messages 3")
        send(r)
        check("REP_IP_GOOD" in r.moatd.msg_lines()[-1]["_"], "scored good: %s"
              % r.moatd.msg_lines()[-1]["_"])
        rc, out, err = moat(r, "status")
        eq(rc, 0, "moat status (stderr %r)" % err)
        check(re.search(r'store="memory \(max_keys 100000\)" state=up', out), "status: %r" % out)
        check("filters=access,reputation" in out, "status: %r" % out)
        rc, out, err = moat(r, "reload")
        eq((rc, out.strip()), (0, "reloaded"), "moat reload (stderr %r)" % err)
        r.moatd.wait_log(r"reloaded: 1 listener")
        # the embedded store keeps what it learned across a reload
        wait_counts(r, "127.0.0.1", "ip 127.0.0.1", ham=4)
        # a bad configuration: the errors, and the running one stays
        good = open(r.moatd.conf).read()
        r.moatd.write_config(good + "\nreputation {\n    window = 1\n}\n")
        p = subprocess.run([MOAT, "-c", r.moatd.conf, "reload", "-s",
                            os.path.join(r.ctl_tmp, "control")],
                           capture_output=True, text=True, timeout=30)
        eq(p.returncode, 1, "moat reload of a bad file: %r %r" % (p.stdout, p.stderr))
        check(re.search(r"moat\.conf:\d+: .*window", p.stderr), "errors: %r" % p.stderr)
        r.moatd.wait_log(r"reload failed")
        p = subprocess.run([MOAT, "-c", r.moatd.conf, "status"], capture_output=True, text=True,
                           timeout=30)
        eq(p.returncode, 2, "moat status, bad file and no -s: %r" % p.stderr)
        r.moatd.write_config(good)
        send(r)
        wait_counts(r, "127.0.0.1", "ip 127.0.0.1", ham=5)


def test_no_control_socket():
    with rep_rig(None) as r:
        p = subprocess.run([MOAT, "-c", r.moatd.conf, "-o", "control_socket=", "status"],
                           capture_output=True, text=True, timeout=30)
        eq(p.returncode, 2, "moat status without control_socket: %r" % p.stderr)
        p = subprocess.run([MOAT, "-c", r.moatd.conf, "-o",
                            "control_socket=" + os.path.join(r.ctl_tmp, "nothing"), "status"],
                           capture_output=True, text=True, timeout=30)
        eq(p.returncode, 2, "moat status with nobody listening: %r" % p.stderr)


def test_rep_set_get_marks_with_redis():
    with Redis() as red:
        with rep_rig(red) as r:
            rc, out, err = moat(r, "rep", "set", "127.0.0.1", "bad", "--ttl", "2")
            eq(rc, 0, "rep set bad (stderr %r)" % err)
            check(re.match(r"ip 127\.0\.0\.1 marked bad for 2 days \(until \d+\)$", out.strip()),
                  "rep set answer: %r" % out)
            # its own key, as docs/redis-keys.md says
            v = red.cli("GET", "moat:rep:ip:127.0.0.1:manual")
            check(re.match(r"bad \d+$", v), "value of the mark: %r" % v)
            ttl = int(red.cli("TTL", "moat:rep:ip:127.0.0.1:manual"))
            check(2 * 86400 - 60 < ttl <= 2 * 86400, "TTL of the mark: %d" % ttl)
            e = show(r, "127.0.0.1")["ip 127.0.0.1"]
            eq((e["manual"], e["verdict"]), ("bad", "bad"), "rep get after set")
            check(int(e["manual_expires"]) > time.time(), "manual_expires: %r" % e)
            rc, out2, err = moat(r, "rep", "get", "127.0.0.1")
            eq(rc, 0, "rep get is rep show")
            send(r)
            m = r.moatd.msg_lines()[-1]
            check("REP_IP_MANUAL_BAD(5)" in m["_"], "scored by the mark: %s" % m["_"])
            # a network, no expiry; a domain
            rc, out, err = moat(r, "rep", "set", "127.0.0.0/24", "good")
            eq((rc, out.strip()), (0, "net 127.0.0.0/24 marked good (no expiry)"), "set NET")
            eq(red.cli("TTL", "moat:rep:net:127.0.0.0/24:manual"), "-1", "TTL of a mark for ever")
            rc, out, err = moat(r, "rep", "set", "Example.ORG", "neutral")
            eq((rc, out.strip()), (0, "dom example.org marked neutral (no expiry)"), "set DOMAIN")
            eq(red.cli("GET", "moat:rep:dom:example.org:manual"), "neutral", "domain mark")
            send(r)
            m = r.moatd.msg_lines()[-1]
            check("REP_IP_MANUAL_BAD" in m["_"] and "REP_NET_MANUAL_GOOD(-5)" in m["_"],
                  "both marks scored: %s" % m["_"])
            # clear takes the mark with the counts
            rc, out, err = moat(r, "rep", "clear", "127.0.0.1")
            eq((rc, out.strip()), (0, "ip 127.0.0.1 cleared"), "rep clear")
            eq(red.cli("EXISTS", "moat:rep:ip:127.0.0.1:manual"), "0", "mark after clear")
            eq(show(r, "127.0.0.1")["ip 127.0.0.1"]["manual"], "none", "rep get after clear")
            # usage
            for args in (["set", "127.0.0.1"], ["set", "127.0.0.1", "ugly"],
                         ["set", "127.0.0.1", "good", "--ttl", "0"],
                         ["set", "127.0.0.1", "good", "--ttl"], ["get", "127.0.0.1", "x"]):
                rc, out, err = moat(r, "rep", *args)
                eq(rc, 64, "moat rep %s (stderr %r)" % (" ".join(args), err))
            rc, out, err = moat(r, "rep", "set", "bad!name", "good")
            eq(rc, 1, "rep set bad!name: %r" % err)


def test_rep_marks_on_the_embedded_store():
    with rep_rig(None) as r:
        send(r, n=3)
        wait_counts(r, "127.0.0.1", "ip 127.0.0.1", ham=3)
        send(r)
        check("REP_IP_GOOD" in r.moatd.msg_lines()[-1]["_"], "learned good")
        # neutral: what was learned does not count while the mark holds
        rc, out, err = moat(r, "rep", "set", "127.0.0.1", "neutral")
        eq(rc, 0, "rep set neutral (stderr %r)" % err)
        e = show(r, "127.0.0.1")["ip 127.0.0.1"]
        eq((e["manual"], e["verdict"], float(e["ham"])), ("neutral", "neutral", 4.0), "get")
        send(r)
        m = r.moatd.msg_lines()[-1]["_"]
        check("REP_IP_" not in m, "no symbol of the address while neutral: %s" % m)
        rc, out, err = moat(r, "rep", "set", "127.0.0.1", "good", "--ttl", "1")
        eq(rc, 0, "rep set good")
        send(r)
        check("REP_IP_MANUAL_GOOD(-5)" in r.moatd.msg_lines()[-1]["_"], "manual good")


def test_rep_on_redis_directly_without_moatd():
    with Redis() as red:
        with rep_rig(red) as r:
            send(r, n=2)
            wait_counts(r, "127.0.0.1", "ip 127.0.0.1", ham=2)
            base = [MOAT, "-c", r.moatd.conf] + [a for o in r.moatd.overrides for a in ("-o", o)]
            for sock in ("control_socket=" + os.path.join(r.ctl_tmp, "nobody"), "control_socket="):
                p = subprocess.run(base + ["-o", sock, "rep", "set", "192.0.2.9", "bad"],
                                   capture_output=True, text=True, timeout=30)
                eq((p.returncode, p.stdout.strip()), (0, "ip 192.0.2.9 marked bad (no expiry)"),
                   "rep set on Redis with %s (stderr %r)" % (sock, p.stderr))
                p = subprocess.run(base + ["-o", sock, "rep", "show", "127.0.0.1"],
                                   capture_output=True, text=True, timeout=30)
                eq(p.returncode, 0, "rep show on Redis (stderr %r)" % p.stderr)
                check(re.search(r"^ip 127\.0\.0\.1 ham=2\.0 .*manual=none", p.stdout, re.M),
                      "counts read on Redis: %r" % p.stdout)
            eq(red.cli("GET", "moat:rep:ip:192.0.2.9:manual"), "bad", "the mark in Redis")
            # moatd sees what was written beside it
            e = show(r, "192.0.2.9")["ip 192.0.2.9"]
            eq(e["manual"], "bad", "moatd reads the mark")
            p = subprocess.run(base + ["-o", sock, "rep", "clear", "192.0.2.9"],
                               capture_output=True, text=True, timeout=30)
            eq((p.returncode, p.stdout.strip()), (0, "ip 192.0.2.9 cleared"), "clear on Redis")
    # the embedded store is only inside moatd
    with rep_rig(None) as r:
        p = subprocess.run([MOAT, "-c", r.moatd.conf, "-o", "control_socket=" +
                            os.path.join(r.ctl_tmp, "nobody"), "rep", "get", "127.0.0.1"],
                           capture_output=True, text=True, timeout=30)
        eq(p.returncode, 2, "rep get, embedded store, moatd not reached: %r" % p.stderr)
        check("embedded" in p.stderr, "why: %r" % p.stderr)


if __name__ == "__main__":
    sys.exit(run_tests(globals()))
