#!/usr/bin/python3
"""The PROXY protocol, both ways.

In front of moat: a listener with proxy_protocol = yes takes a v1 or v2
header from the networks in proxy_protocol_from only and uses the client
it names everywhere (log, limits, XCLIENT); anything else (another
address, a bad or missing header) is closed with one log line. Behind
moat: upstream_proxy_protocol = v1|v2 starts every upstream connection
with a header naming the client, and a real Postfix with
smtpd_upstream_proxy_protocol = haproxy logs the real client."""

import os
import re
import socket
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from moattest import *  # noqa

V2SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def v2_tcp4(src, sport, dst, dport):
    addrs = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
    return V2SIG + b"\x21\x11" + struct.pack("!H", len(addrs)) + addrs


def v2_tcp6(src, sport, dst, dport, tlv=b""):
    addrs = (socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst)
             + struct.pack("!HH", sport, dport) + tlv)
    return V2SIG + b"\x21\x21" + struct.pack("!H", len(addrs)) + addrs


def lb_rig(frm="127.0.0.1", **kw):
    over = ["listener.test.proxy_protocol=yes", "listener.test.proxy_protocol_from=%s" % frm]
    over += kw.pop("overrides", [])
    return Rig(overrides=over, **kw)


def through_lb(r, header, source=None, split=False):
    """A client behind the load balancer: the header, then the greeting."""
    c = r.client(greet=False, source=source)
    if split:
        for i in range(len(header)):
            c.send(header[i:i + 1])
            time.sleep(0.01)
    else:
        c.send(header)
    c.greeting = c.reply(5)
    return c


def mail_xclient(r):
    s = [s for s in r.up.mail_sessions()][-1]
    return s.xclient[0]


def test_v1_names_the_client():
    with lb_rig() as r:
        c = through_lb(r, b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 25\r\n")
        expect_reply(c.greeting, 220)
        c.ehlo()
        expect_reply(c.send_message(make_body()), 250)
        c.quit()
        r.moatd.wait_log(r"listener=test proxy=127\.0\.0\.1: PROXY v1: client 192\.0\.2\.7:40000")
        r.moatd.wait_log(r"connect session=\S+ listener=test client=192\.0\.2\.7:40000")
        x = mail_xclient(r)
        eq((x["ADDR"], x["PORT"]), ("192.0.2.7", "40000"), "XCLIENT ADDR, PORT")


def test_v2_ipv6_with_tlvs_and_split():
    with lb_rig() as r:
        hdr = v2_tcp6("2001:db8::7", 1234, "2001:db8::1", 25, tlv=b"\x04\x00\x03abc")
        c = through_lb(r, hdr, split=True)
        expect_reply(c.greeting, 220)
        c.ehlo()
        expect_reply(c.send_message(make_body()), 250)
        c.quit()
        x = mail_xclient(r)
        eq((x["ADDR"], x["PORT"]), ("IPV6:2001:db8::7", "1234"), "XCLIENT ADDR, PORT")


def test_v2_local_keeps_the_connection_address():
    with lb_rig() as r:
        c = through_lb(r, V2SIG + b"\x20\x00\x00\x00")
        expect_reply(c.greeting, 220)
        c.quit()
        r.moatd.wait_log(r"PROXY v2: client \(the connection's own\)")
        r.moatd.wait_log(r"connect session=\S+ listener=test client=127\.0\.0\.1:")


def test_only_from_configured_networks():
    with lb_rig(frm="127.0.0.5, 192.0.2.0/24") as r:
        c = r.client(greet=False, source="127.0.0.6")
        c.send(b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 25\r\n")
        check(c.wait_closed(), "connection closed")
        eq(bytes(c.received), b"", "no greeting")
        r.moatd.wait_log(r"listener=test client=127\.0\.0\.6: refused: not in proxy_protocol_from")
        c = through_lb(r, b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 25\r\n", source="127.0.0.5")
        expect_reply(c.greeting, 220, None, "from the load balancer")
        c.quit()


def test_bad_header_closed_and_logged():
    with lb_rig() as r:
        for hdr, why in ((b"EHLO client.example\r\n", "not a PROXY protocol header"),
                         (b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 25\n", "bare LF"),
                         (b"PROXY TCP4 192.0.2.999 198.51.100.1 1 25\r\n", "bad address"),
                         (V2SIG + b"\x21\x12\x00\x0c" + b"\x00" * 12, "not TCP")):
            c = r.client(greet=False)
            c.send(hdr)
            check(c.wait_closed(), "closed after %r" % hdr)
            eq(bytes(c.received), b"", "no greeting after %r" % hdr)
            r.moatd.wait_log(r"proxy=127\.0\.0\.1: connection closed: bad PROXY protocol header: "
                             r".*%s" % re.escape(why))


def test_missing_header_times_out():
    with lb_rig() as r:
        c = r.client(greet=False)
        c.send(b"PROXY TCP4 192.0.2.7")
        check(c.wait_closed(15), "closed without a complete header")
        r.moatd.wait_log(r"connection closed: no complete PROXY protocol header within 10 seconds")
test_missing_header_times_out.timeout = 40


def test_what_follows_the_header_stays_for_the_session():
    # a client that talks at once after the header is a pregreet client
    with lb_rig(options={"pregreet_action": "reject"}) as r:
        c = through_lb(r, b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 25\r\nEHLO x\r\n")
        expect_reply(c.greeting, 554, "5.5.1")
        r.moatd.wait_log(r"client=192\.0\.2\.7: pregreet: 8 octet")


def test_limits_apply_to_the_real_client():
    with lb_rig(options={"max_connections_per_client": 1}) as r:
        a = through_lb(r, b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 25\r\n")
        b = through_lb(r, b"PROXY TCP4 192.0.2.8 198.51.100.1 40000 25\r\n")
        expect_reply(a.greeting, 220)
        expect_reply(b.greeting, 220)
        c = through_lb(r, b"PROXY TCP4 192.0.2.7 198.51.100.1 40001 25\r\n")
        expect_reply(c.greeting, 421, "4.7.0", "a second session of 192.0.2.7")
        r.moatd.wait_log(r"client=192\.0\.2\.7: refused: max_connections_per_client \(1\)")
        a.quit()
        b.quit()


def upstream_rig(version):
    return Rig(xclient=False, up=dict(proxy_protocol=True),
               overrides=["listener.test.upstream_proxy_protocol=%s" % version])


def test_upstream_v1():
    with upstream_rig("v1") as r:
        probe = r.up.sessions[0].proxy_header
        check(re.fullmatch(rb"PROXY TCP4 127\.0\.0\.1 127\.0\.0\.1 \d+ %d\r\n" % r.up.port, probe),
              "the probe names moat's own connection: %r" % probe)
        c = r.ehlo_client(source="127.0.0.5")
        expect_reply(c.send_message(make_body()), 250)
        c.quit()
        s = r.up.mail_sessions()[0]
        eq(s.proxy_header, b"PROXY TCP4 127.0.0.5 127.0.0.1 %d %d\r\n" % (c.local_port, r.port),
           "the header before the greeting")
        eq(s.xclient, [], "no XCLIENT")
        eq(s.verbs()[:2], ["EHLO", "MAIL"], "then SMTP as usual")


def test_upstream_v2():
    with upstream_rig("v2") as r:
        c = r.ehlo_client(source="127.0.0.5")
        expect_reply(c.send_message(make_body()), 250)
        c.quit()
        s = r.up.mail_sessions()[0]
        eq(s.proxy_header, v2_tcp4("127.0.0.5", c.local_port, "127.0.0.1", r.port), "v2 header")


def test_config_errors():
    m = Moatd([dict(name="a", listen="127.0.0.1:%d" % free_port(),
                    upstream="127.0.0.1:%d" % free_port())],
              overrides=["listener.a.proxy_protocol=yes",
                         "listener.a.upstream_proxy_protocol=v1"])
    p = subprocess.run(m.argv(["-t"]), capture_output=True, text=True, timeout=30)
    eq(p.returncode, 1, "moatd -t exit status")
    check("listener a: proxy_protocol = yes needs proxy_protocol_from" in p.stderr, p.stderr)
    check("listener a: upstream_proxy_protocol = v1 is for upstreams without XCLIENT" in p.stderr,
          p.stderr)
    m.overrides = ["listener.a.proxy_protocol_from=192.0.2.1/8", "listener.a.upstream_proxy_protocol=v3"]
    p = subprocess.run(m.argv(["-t"]), capture_output=True, text=True, timeout=30)
    eq(p.returncode, 1, "moatd -t exit status")
    check("listener a: proxy_protocol_from:" in p.stderr, p.stderr)
    check(re.search(r'upstream_proxy_protocol: expected one of "none", "v1", "v2"; got "v3"',
                    p.stderr), p.stderr)


def test_postfix_behind_moat_logs_the_real_client():
    import test_postfix as tp
    pf = tp.Postfix()
    with open(os.path.join(pf.dir, "main.cf"), "a") as f:
        f.write("smtpd_upstream_proxy_protocol = haproxy\n")
    try:
        pf.start()
        r = lb_rig(xclient=False, start_upstream=False, wait_probe=False,
                   upstream_port=pf.smtpd,
                   overrides=["listener.test.upstream_proxy_protocol=v1"])
        with r:
            # a client behind a load balancer, behind moat, behind Postfix
            c = through_lb(r, b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 25\r\n")
            expect_reply(c.greeting, 220)
            c.ehlo("client.example")
            expect_reply(c.send_message(make_body(subject="via proxy"),
                                        rcpts=("bob@example.org",)), 250)
            c.quit()
            got = wait_for(lambda: [d for d in pf.delivered() if b"via proxy" in d], 15)
            check(got, "message at the sink; Postfix log: %s" % pf.log()[-1500:])
            check(re.search(r"connect from unknown\[192\.0\.2\.7\]", pf.log()),
                  "Postfix logs the real client: %s" % pf.log()[-1500:])
            check(re.search(r"client=unknown\[192\.0\.2\.7\]", pf.log()),
                  "Postfix's queue file names the real client: %s" % pf.log()[-1500:])
    finally:
        pf.stop()
test_postfix_behind_moat_logs_the_real_client.timeout = 120


if __name__ == "__main__":
    run_tests(globals())
