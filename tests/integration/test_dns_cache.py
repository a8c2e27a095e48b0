#!/usr/bin/python3
"""The resolver's shared cache (resolver { shared_cache = yes }) against a
real redis-server and a DNS server that counts the queries it gets
(dnsrig.FaultDNS), through two real moatd with the DNS list filter:

  - what one instance looked up (a listing, and a "not listed" NXDOMAIN)
    the other takes from Redis without asking DNS, and rejects / passes
    the same; the keys, values and TTLs are those docs/redis-keys.md
    describes;
  - without shared_cache each instance asks DNS itself (the control);
  - a value in Redis that is not an entry of moat's is ignored, the
    lookup goes to DNS, and the fresh answer replaces it;
  - with Redis stopped (SIGSTOP: it holds connections and never answers)
    lookups go to DNS after the store's deadline and mail flows;
  - the metrics count the hits and the stores;
  - answers live no longer than their TTL, in the resolver's table of hot
    answers and in Redis: a listing removed from DNS stops counting;
  - the whole inbound pipeline (DNS list, SPF in its worker processes,
    DKIM key, DMARC record): a second instance verifies the same signed
    message to the same results with no DNS query of its own.

Clients play hosts by binding 127.0.0.x source addresses (TESTRIG trap
15). Names are under .example (libunbound answers test. itself).
"""

import os
import re
import signal
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from moattest import *  # noqa
from dnsrig import FaultDNS, dnsbl_records, dnsbl_name  # noqa
from redisrig import Redis  # noqa
from dkimrig import DkimKeys  # noqa

LISTED = "127.0.0.5"
CLEAN = "127.0.0.20"
RECORDS = dnsbl_records("bl.example", {LISTED: ("127.0.0.2", "listed for tests")})


def crig(dns, red, shared=True, extra=()):
    ov = ["store.backend=redis", "store.redis_server=127.0.0.1:%d" % red.port,
          "store.timeout_ms=300", "metrics_listen=127.0.0.1:%d" % free_port()] + list(extra)
    r = Rig(overrides=ov)
    r.mport = int(ov[3].rsplit(":", 1)[1])
    r.moatd.extra_conf = "\n".join([
        'filters = {"dnsbl"}',
        "resolver {",
        '    nameservers = {"%s"}' % dns.address,
        "    timeout = 3",
        "    shared_cache = %s" % ("yes" if shared else "no"),
        "}",
        "dnsbl {",
        "    zone bl.example { }",
        "}",
    ])
    r.moatd.write_config()
    return r


def metric(r, name):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % r.mport, timeout=10) as f:
        text = f.read().decode()
    m = re.search(r"(?m)^%s(?:\{[^}]*\})? (\S+)$" % re.escape(name), text)
    check(m, "metric %s in %r" % (name, text[:2000]))
    return float(m.group(1))


def healthy(r):
    r.moatd.wait_log(r"dnsbl: zone bl\.example passes its test points", timeout=10)


def listed(r, source=LISTED):
    c = r.ehlo_client(source=source)
    c.expect("MAIL FROM:<sender@example.org>", 250)
    c.expect("RCPT TO:<rcpt@example.net>", 554, "5.7.1")
    c.quit()


def passes(r, source=CLEAN):
    c = r.ehlo_client(source=source)
    rep = c.send_message(make_body(), mail_from="sender@example.org")
    expect_reply(rep, 250, None, "message from unlisted %s" % source)
    c.quit()


def asked(dns, ip):
    return len(dns.queries_for(dnsbl_name(ip, "bl.example"), "A"))


def key(ip):
    return "moat:dns:A:" + dnsbl_name(ip, "bl.example").rstrip(".")


def test_second_instance_takes_answers_from_redis():
    with Redis() as red, FaultDNS(RECORDS) as dns:
        with crig(dns, red) as a:
            healthy(a)
            listed(a)
            passes(a)
            eq(asked(dns, LISTED), 1, "DNS queries for the listed address after instance a")
            eq(asked(dns, CLEAN), 1, "DNS queries for the clean address after instance a")
            # the entries, as docs/redis-keys.md describes them
            v = red.cli("GET", key(LISTED))
            check(re.match(r"moat-dns 1 ok 0 0 \d+\n4:", v), "value of %s: %r" % (key(LISTED), v))
            ttl = int(red.cli("TTL", key(LISTED)))
            check(250 < ttl <= 300, "TTL of %s: %d (the record's is 300)" % (key(LISTED), ttl))
            v = red.cli("GET", key(CLEAN))
            check(re.match(r"moat-dns 1 nxdomain 3 0 \d+\n?$", v), "value of %s: %r" % (key(CLEAN), v))
            ttl = int(red.cli("TTL", key(CLEAN)))
            check(0 < ttl <= 60, "TTL of %s: %d (the SOA minimum is 60)" % (key(CLEAN), ttl))
            check(metric(a, "moat_dns_shared_cache_stores_total") >= 2, "stores counted")
            # b has an empty resolver cache of its own: what it knows comes from Redis
            with crig(dns, red) as b:
                healthy(b)
                listed(b)
                passes(b)
                eq(asked(dns, LISTED), 1, "DNS queries for the listed address after instance b")
                eq(asked(dns, CLEAN), 1, "DNS queries for the clean address after instance b")
                check(metric(b, "moat_dns_shared_cache_hits_total") >= 2, "hits counted")
                eq(len(b.up.wait_messages(1)), 1, "b relayed the clean message")


def test_without_shared_cache_each_instance_asks_dns():
    with Redis() as red, FaultDNS(RECORDS) as dns:
        with crig(dns, red, shared=False) as a, crig(dns, red, shared=False) as b:
            healthy(a)
            healthy(b)
            listed(a)
            listed(b)
            eq(asked(dns, LISTED), 2, "each instance asked DNS")
            eq(red.cli("--scan", "--pattern", "moat:dns:*").split(), [], "no DNS keys in Redis")


def test_foreign_value_ignored_and_replaced():
    with Redis() as red, FaultDNS(RECORDS) as dns:
        red.cli("SET", key(LISTED), "not an entry", "EX", "300")
        with crig(dns, red) as a:
            healthy(a)
            listed(a)
            eq(asked(dns, LISTED), 1, "the lookup went to DNS")
            v = wait_for(lambda: (lambda x: x if x.startswith("moat-dns 1 ok") else None)(
                red.cli("GET", key(LISTED))), 5, what="the entry rewritten")
            check(v, "value now %r" % red.cli("GET", key(LISTED)))


def test_expired_entry_ignored():
    with Redis() as red, FaultDNS(RECORDS) as dns:
        # an entry for "not listed" whose EXPIRES has passed (its key TTL not yet)
        red.cli("SET", key(LISTED), "moat-dns 1 nxdomain 3 0 %d\n" % (time.time() - 10), "EX", "300")
        with crig(dns, red) as a:
            healthy(a)
            listed(a)
            eq(asked(dns, LISTED), 1, "the lookup went to DNS")


def test_stalled_redis_lookups_go_to_dns_and_mail_flows():
    with Redis() as red, FaultDNS(RECORDS) as dns:
        with crig(dns, red) as a:
            healthy(a)
            os.kill(red.proc.pid, signal.SIGSTOP)
            try:
                t0 = time.time()
                listed(a)
                passes(a)
                took = time.time() - t0
                check(took < 5, "two sessions with Redis stalled took %.1fs" % took)
                eq(asked(dns, LISTED), 1, "the listed address was asked of DNS")
                eq(asked(dns, CLEAN), 1, "the clean address was asked of DNS")
                eq(len(a.up.wait_messages(1)), 1, "the clean message relayed")
            finally:
                os.kill(red.proc.pid, signal.SIGCONT)


def test_answers_expire_with_their_ttl():
    short = dnsbl_records("bl.example", {LISTED: ("127.0.0.2", "listed for tests")}, ttl=2)
    with Redis() as red, FaultDNS(short) as dns:
        with crig(dns, red) as a:
            healthy(a)
            listed(a)
            listed(a)                       # within the TTL: no second query
            eq(asked(dns, LISTED), 1, "DNS queries within the TTL")
            ttl = int(red.cli("TTL", key(LISTED)))
            check(0 < ttl <= 2, "TTL of %s in Redis: %d" % (key(LISTED), ttl))
            dns.records = dnsbl_records("bl.example", {}, ttl=2)   # delisted
            time.sleep(3.2)
            passes(a, source=LISTED)
            eq(asked(dns, LISTED), 2, "DNS asked again once the TTL ran out")


def resp_set(red, k, value, ex):
    """SET with a binary value (redis-cli cannot pass NUL octets)."""
    import socket
    parts = [b"SET", k.encode(), value, b"EX", str(ex).encode()]
    cmd = b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
    with socket.create_connection(("127.0.0.1", red.port), timeout=5) as so:
        so.sendall(cmd)
        eq(so.recv(100), b"+OK\r\n", "SET reply")


def test_far_expiry_from_redis_capped():
    # another host's clock (or a hand-made value) says "valid for ages":
    # this instance keeps it no longer than its shared_cache_max_ttl
    with Redis() as red, FaultDNS(dnsbl_records("bl.example", {})) as dns:
        resp_set(red, key(LISTED), b"moat-dns 1 ok 0 0 99999999999999\n4:\x7f\x00\x00\x02\n", 300)
        with crig(dns, red, extra=["resolver.shared_cache_max_ttl=2"]) as a:
            healthy(a)
            listed(a)                                   # the planted listing
            eq(asked(dns, LISTED), 0, "answered from Redis")
            red.cli("DEL", key(LISTED))
            time.sleep(3.2)
            passes(a, source=LISTED)                    # DNS says: not listed
            eq(asked(dns, LISTED), 1, "DNS asked once the capped entry ran out")


KEYS = DkimKeys()
PIPELINE_NAMES = [("reject.example", "TXT"), ("_dmarc.reject.example", "TXT"),
                  ("s1._domainkey.reject.example", "TXT"),
                  (dnsbl_name(LISTED, "bl.example"), "A")]


def prig(dns, red):
    r = Rig(overrides=["store.backend=redis", "store.redis_server=127.0.0.1:%d" % red.port,
                       "store.timeout_ms=300"])
    r.moatd.extra_conf = "\n".join([
        'filters = {"dnsbl", "spf", "dkim", "dmarc"}',
        "resolver {",
        '    nameservers = {"%s"}' % dns.address,
        "    timeout = 3",
        "    shared_cache = yes",
        "}",
        "dnsbl {",
        "    zone bl.example { action = \"score\" }",
        "}",
    ])
    r.moatd.write_config()
    return r


def ar_of(m):
    return " ".join(header_values(m.body, "Authentication-Results"))


def deliver(r, source):
    body = KEYS.sign(make_body(headers=[
        "From: Alice <alice@reject.example>", "To: Bob <bob@example.net>", "Subject: figures",
        "Date: Fri, 27 Nov 2026 12:00:00 +0000",
        "Message-ID: <%d.%d@reject.example>" % (os.getpid(), time.time_ns())],
        body_lines=["Hello Bob,", "", "the figures."]), "s1", "reject.example", "rsa")
    c = r.ehlo_client("mail.client.example", source=source)
    rep = c.send_message(body, mail_from="alice@reject.example")
    expect_reply(rep, 250, None, "signed message from %s" % source)
    c.quit()
    m = r.up.wait_messages(1, timeout=10)[-1]
    ar = ar_of(m)
    for want in ("spf=pass smtp.mailfrom=reject.example", "dkim=pass header.d=reject.example",
                 "dmarc=pass"):
        check(want in ar, "%r in Authentication-Results %r" % (want, ar))
    return m


def test_whole_pipeline_second_instance_asks_no_dns():
    recs = RECORDS + [("reject.example", "TXT", "v=spf1 ip4:%s -all" % LISTED),
                      ("_dmarc.reject.example", "TXT", "v=DMARC1; p=reject"),
                      KEYS.publish("s1._domainkey.reject.example", "rsa")]
    with Redis() as red, FaultDNS(recs) as dns:
        with prig(dns, red) as a:
            healthy(a)
            deliver(a, LISTED)
            first = {n: len(dns.queries_for(n, t)) for n, t in PIPELINE_NAMES}
            eq(first, {n: 1 for n, _ in PIPELINE_NAMES}, "DNS queries per name after instance a")
            for n, t in PIPELINE_NAMES:
                check(red.cli("EXISTS", "moat:dns:%s:%s" % (t, n.rstrip("."))) == "1",
                      "moat:dns:%s:%s in Redis" % (t, n))
        with prig(dns, red) as b:
            healthy(b)
            m = deliver(b, LISTED)
            check("DNSBL" in m.body.decode("utf-8", "replace"), "the DNS list hit scored by b")
            now = {n: len(dns.queries_for(n, t)) for n, t in PIPELINE_NAMES}
            eq(now, first, "DNS queries per name after instance b (all from Redis)")


if __name__ == "__main__":
    sys.exit(run_tests(globals()))
