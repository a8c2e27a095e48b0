#!/usr/bin/python3
"""The per-message debug log (the `debug` section): sessions from a
client in debug.clients, and messages from a sender debug.senders
names, have their trace lines in moatd's log, the lines `moat check
--trace` prints (here the DNS list lookup and its answer, and DKIM's
decision to verify); sessions of other clients and senders have none.
A reload turns it on and off. Against real DNS (unbound serving a test
DNS list)."""

import os
import re
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from moattest import *  # noqa
from dnsrig import TestZones, dnsbl_records  # noqa

CONF = """dnsbl {
    zone bl.example {
        action = "score"
    }
}
"""


def drig(zones, *extra):
    r = Rig(overrides=["filters=dnsbl,dkim", "resolver.nameservers=" + zones.address,
                       "resolver.timeout=3"] + list(extra))
    r.moatd.extra_conf = CONF
    r.moatd.write_config()
    return r


def one_message(r, source, mail_from="alice@example.org"):
    """A message from source; returns its session id (from the msg line)."""
    n = len(r.moatd.msg_lines())
    c = r.ehlo_client(source=source)
    c.expect("MAIL FROM:<%s>" % mail_from, 250)
    c.expect("RCPT TO:<bob@example.net>", 250)
    c.expect("DATA", 354)
    c.send(dot_stuff(make_body()))
    expect_reply(c.reply(), 250, None, "message from %s" % source)
    c.quit()
    wait_for(lambda: len(r.moatd.msg_lines()) > n, 5.0, what="msg line")
    m = r.moatd.msg_lines()[n]
    check(m.get("session"), "msg line without session: %r" % m["_"])
    return m["session"]


def traces(r, session):
    return [l for l in r.moatd.log_lines()
            if re.search(r"session=%s: trace " % re.escape(session), l)]


def zones():
    return TestZones(dnsbl_records("bl.example", {"127.0.0.5": ("127.0.0.2", "listed for tests"),
                                                  "127.0.0.6": ("127.0.0.2", "also listed")}))


def test_debug_clients_traces_only_those_clients():
    with zones() as z, drig(z, 'debug.clients={"127.0.0.5/32"}') as r:
        traced = one_message(r, "127.0.0.5")
        other = one_message(r, "127.0.0.6")
        lines = traces(r, traced)
        for rx, what in [
            (r"trace connect dnsbl: zone bl\.example: 5\.0\.0\.127\.bl\.example A -> listed "
             r"\(ok 127\.0\.0\.2\), TXT \"listed for tests\"", "the DNS list lookup and answer"),
            (r"trace eom dkim: verifying", "DKIM's decision"),
        ]:
            check(any(re.search(rx, l) for l in lines),
                  "%s not in the log; trace lines of %s:\n%s" % (what, traced, "\n".join(lines)))
        eq(traces(r, other), [], "trace lines of a client not in debug.clients")
        check(not r.moatd.grep(r"6\.0\.0\.127\.bl\.example"), "the other client's lookup traced")


test_debug_clients_traces_only_those_clients.timeout = 90


def test_debug_senders_traces_from_mail_on():
    with zones() as z, drig(z, 'debug.senders={"Carol@Example.COM", "example.net"}') as r:
        by_addr = one_message(r, "127.0.0.6", "carol@example.com")
        by_domain = one_message(r, "127.0.0.6", "dave@example.net")
        other = one_message(r, "127.0.0.6", "erin@example.com")
        for s in (by_addr, by_domain):
            lines = traces(r, s)
            check(any(re.search(r"trace eom dkim: verifying", l) for l in lines),
                  "sender's message not traced (%s): %r" % (s, lines))
            check(not any(" trace connect " in l for l in lines),
                  "connect traced before MAIL named the sender: %r" % lines)
        eq(traces(r, other), [], "trace lines of a sender not in debug.senders")


test_debug_senders_traces_from_mail_on.timeout = 90


def test_reload_turns_it_on_and_off():
    with zones() as z, drig(z) as r:
        eq(traces(r, one_message(r, "127.0.0.5")), [], "traced without a debug section")
        r.moatd.write_config(r.moatd.config_text() + 'debug { clients = {"127.0.0.0/8"} }\n')
        r.moatd.signal(signal.SIGHUP)
        r.moatd.wait_log(r"reloaded:")
        check(traces(r, one_message(r, "127.0.0.5")), "not traced after the reload")
        r.moatd.write_config(r.moatd.config_text() + 'debug { clients = {"10.0.0.0/33"} }\n')
        r.moatd.signal(signal.SIGHUP)
        r.moatd.wait_log(r"reload failed")
        check(r.moatd.grep(r"debug: clients: "), "the bad network's error: %s"
              % r.moatd.log()[-800:])


test_reload_turns_it_on_and_off.timeout = 90


if __name__ == "__main__":
    sys.exit(run_tests(globals()))
