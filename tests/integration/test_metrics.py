#!/usr/bin/python3
"""Monitoring through the real proxy: /metrics in the Prometheus text
format (counters that move by exactly what was sent: connections,
messages by action, stage refusals, symbols, per-filter latency
histograms, reloads, build info), access limited to metrics_allow
(403 for others), configuration errors, and the status page as
Debian's headless Chromium renders it (the counts and the last
verdicts with their actions)."""

import http.client
import os
import re
import shutil
import signal
import subprocess
import tempfile
import sys
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from moattest import *  # noqa
from test_pipeline import frig, transaction  # noqa

DENY = {"sender": ['spammer@example.com reject "5.7.1 We do not want your mail"']}
LINE = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*",?)*\})? '
                  r'[-+0-9.eEInfa]+$')


def mrig(access=DENY, extra=()):
    """A rig with the access filter and the metrics listener on a free port."""
    port = free_port()
    r = frig(access=access, overrides=["metrics_listen=127.0.0.1:%d" % port] + list(extra))
    r.mport = port
    return r


def started(r):
    wait_for(lambda: port_listening(r.mport), 5.0, what="metrics listener")
    return r


def fetch(r, path="/metrics", source=None):
    """(status, body) of GET path, from source address if given."""
    c = http.client.HTTPConnection("127.0.0.1", r.mport, timeout=10,
                                   source_address=(source, 0) if source else None)
    try:
        c.request("GET", path)
        resp = c.getresponse()
        return resp.status, resp.read().decode("utf-8", "replace"), resp
    finally:
        c.close()


def scrape(r):
    """{'name{labels}': value} of one /metrics scrape, checking the format."""
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % r.mport, timeout=10) as f:
        eq(f.status, 200, "status of /metrics")
        check(f.headers.get("Content-Type", "").startswith("text/plain; version=0.0.4"),
              "Content-Type of /metrics: %r" % f.headers.get("Content-Type"))
        text = f.read().decode()
    out = {}
    for l in text.splitlines():
        if l.startswith("#"):
            check(re.match(r"^# (HELP|TYPE) \w+ ", l), "comment line %r" % l)
            continue
        check(LINE.match(l), "not a text-format sample line: %r" % l)
        k, v = l.rsplit(" ", 1)
        check(k not in out, "sample %s twice" % k)
        out[k] = float(v)
    return out


def delta(before, after, key):
    return after.get(key, 0.0) - before.get(key, 0.0)


def moved(before, after, want):
    for k, n in want.items():
        eq(delta(before, after, k), n, "change of %s" % k)


def send_two(r):
    """One message accepted, one sender refused at MAIL by an access entry."""
    c = r.ehlo_client()
    expect_reply(transaction(c, mail_from="fine@example.org"), 250, None, "accepted message")
    rep = c.cmd("MAIL FROM:<spammer@example.com>")
    eq(str(rep), "550 5.7.1 We do not want your mail", "MAIL from a denied sender")
    c.quit()
    wait_for(lambda: len(r.moatd.msg_lines()) >= 1, 5.0, what="msg line")
    wait_for(lambda: r.moatd.grep(r"rejected by filter access at stage mail"), 5.0,
             what="the refusal's log line")


# ---------------------------------------------------------------- /metrics

def test_metrics_count_exactly_what_was_sent():
    with mrig() as r:
        started(r)
        before = scrape(r)
        eq(before.get('moat_build_info{version="%s"}' % open(os.path.join(ROOT, "VERSION")).read().strip()),
           1.0, "moat_build_info")
        for a in ("accept", "add_header", "tempfail", "reject", "discard"):
            check('moat_messages_total{action="%s"}' % a in before,
                  "moat_messages_total for %s shown from the start" % a)
        send_two(r)
        after = scrape(r)
        moved(before, after, {
            "moat_connections_total": 1,
            'moat_messages_total{action="accept"}': 1,
            'moat_messages_total{action="reject"}': 0,
            'moat_stage_refusals_total{stage="mail",action="reject"}': 1,
            'moat_symbols_total{symbol="ACCESS_SENDER_DENY"}': 1,
            # access runs at connect, helo, mail (twice), rcpt
            'moat_filter_duration_seconds_count{filter="access",stage="connect"}': 1,
            'moat_filter_duration_seconds_count{filter="access",stage="mail"}': 2,
            'moat_filter_duration_seconds_count{filter="access",stage="rcpt"}': 1,
            'moat_filter_duration_seconds_bucket{filter="access",stage="mail",le="+Inf"}': 2,
        })
        eq(after.get("moat_connections_current"), 0.0, "sessions open after QUIT")
        check("moat_dns_queries_total" in after, "resolver counters missing")
        check(any(k.startswith("moat_upstream_known{") and v == 1 for k, v in after.items()),
              "moat_upstream_known for the listener's upstream")
        b = [after['moat_filter_duration_seconds_bucket{filter="access",stage="mail",le="%s"}' % le]
             for le in ("0.0005", "0.001", "0.01", "0.1", "1", "10")]
        eq(b, sorted(b), "histogram buckets are cumulative")


def test_metrics_reloads_and_dry_run():
    """SIGHUP counts a reload (ok, then failed); a filter in dry-run
    counts what it would have done instead of refusing."""
    with mrig(extra=["access.dry_run=yes"]) as r:
        started(r)
        before = scrape(r)
        c = r.ehlo_client()
        expect_reply(c.cmd("MAIL FROM:<spammer@example.com>"), 250, None, "dry-run sender")
        c.close()
        r.moatd.wait_log(r"dry-run: filter access would reject")
        r.moatd.signal(signal.SIGHUP)
        r.moatd.wait_log(r"reloaded:")
        wait_for(lambda: port_listening(r.mport), 5.0, what="metrics listener after reload")
        good = open(r.moatd.conf).read()
        r.moatd.write_config(good + "\nmax_errors = nonsense\n")
        r.moatd.signal(signal.SIGHUP)
        r.moatd.wait_log(r"reload failed")
        r.moatd.write_config(good)
        after = scrape(r)
        moved(before, after, {
            'moat_reloads_total{result="ok"}': 1,
            'moat_reloads_total{result="failed"}': 1,
            'moat_filter_would_total{filter="access",action="reject"}': 1,
            'moat_stage_refusals_total{stage="mail",action="reject"}': 0,
        })
        # the status page shows the same, per filter
        st, body, _ = fetch(r, "/status")
        eq(st, 200, "status of /status")
        sec = re.search(r'<section id="dryrun">(.*?)</section>', body, re.S)
        check(sec, "no dry-run section on the status page")
        rows = [(re.search(r'class="filter">([^<]*)<', x).group(1),
                 re.search(r'class="action [a-z_]+">([^<]*)<', x).group(1),
                 re.search(r'class="n count">([^<]*)<', x).group(1))
                for x in re.findall(r'<tr class="would">(.*?)</tr>', sec.group(1), re.S)]
        eq(rows, [("access", "reject", "1")], "dry-run rows of the status page")


def test_metrics_allow_refuses_other_addresses():
    with mrig(extra=['metrics_allow={"127.0.0.1/32"}']) as r:
        started(r)
        st, body, _ = fetch(r, "/metrics", source="127.0.0.2")
        eq(st, 403, "status for a client outside metrics_allow (/metrics)")
        check("moat_" not in body, "metrics leaked to a refused client")
        st, body, _ = fetch(r, "/status", source="127.0.0.2")
        eq(st, 403, "status for a client outside metrics_allow (/status)")
        st, body, _ = fetch(r, "/metrics", source="127.0.0.1")
        eq(st, 200, "status for an allowed client")
        st, _, _ = fetch(r, "/nothing-here")
        eq(st, 404, "status of an unknown path")
        c = http.client.HTTPConnection("127.0.0.1", r.mport, timeout=10)
        c.request("POST", "/metrics", body="x")
        st = c.getresponse().status
        c.close()
        check(st >= 400, "POST answered %d" % st)


def test_metrics_config_errors():
    m = Moatd([dict(name="t", listen="127.0.0.1:%d" % free_port(),
                    upstream="127.0.0.1:%d" % free_port())],
              overrides=["metrics_listen=nonsense", 'metrics_allow={"10.0.0.1/8", "::1/128"}'])
    p = subprocess.run(m.argv(["-t"]), capture_output=True, text=True, timeout=30)
    eq(p.returncode, 1, "moatd -t with bad metrics options (stderr %r)" % p.stderr)
    check(re.search(r"metrics_listen: ", p.stderr), "metrics_listen error: %r" % p.stderr)
    check(re.search(r"metrics_allow: ", p.stderr), "metrics_allow error: %r" % p.stderr)
    shutil.rmtree(m.tmp, ignore_errors=True)


# ---------------------------------------------------------------- the status page

def test_status_page_escapes_and_has_no_script():
    with mrig(access={"sender": ['spammer@example.com reject',
                                 '.example.com reject']}) as r:
        started(r)
        c = r.ehlo_client()
        c.cmd('MAIL FROM:<"<b>x"@a.example.com>')
        c.quit()
        wait_for(lambda: r.moatd.grep(r"rejected by filter access"), 5.0)
        st, body, resp = fetch(r, "/status")
        eq(st, 200, "status of /status")
        check(resp.getheader("Content-Type", "").startswith("text/html"), "Content-Type")
        check("default-src 'none'" in resp.getheader("Content-Security-Policy", ""),
              "Content-Security-Policy")
        check("<script" not in body.lower(), "a script in the status page")
        check("<b>x" not in body, "a sender reached the page unescaped")
        check("&lt;b&gt;x" in body, "the escaped sender is not on the page")
        check(not re.search(r'(src|href)="(https?:)?//', body), "an external resource")


def chromium_dom(url):
    exe = shutil.which("chromium")
    check(exe, "chromium is not installed (make deps-check installs it)")
    profile = tempfile.mkdtemp(prefix="moat-chromium.")
    try:
        p = subprocess.run([exe, "--headless", "--disable-gpu", "--no-sandbox",
                            "--user-data-dir=" + profile, "--dump-dom", url],
                           capture_output=True, text=True, timeout=60)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    eq(p.returncode, 0, "chromium exit status (stderr %r)" % p.stderr[-500:])
    return p.stdout


def cell(dom, ident):
    m = re.search(r'id="%s"[^>]*>([^<]*)<' % re.escape(ident), dom)
    check(m, "no element %s in the DOM" % ident)
    return m.group(1)


def test_status_page_in_headless_chromium():
    with mrig() as r:
        started(r)
        send_two(r)
        c = r.ehlo_client()
        expect_reply(transaction(c, mail_from="second@example.org"), 250, None, "second message")
        c.quit()
        wait_for(lambda: len(r.moatd.msg_lines()) >= 2, 5.0, what="2 msg lines")
        dom = chromium_dom("http://127.0.0.1:%d/status" % r.mport)
        check("<svg" in dom and "<rect" in dom, "the chart is not in the DOM")
        eq(cell(dom, "hour-accept"), "2", "accepted in the last hour")
        eq(cell(dom, "hour-reject"), "1", "rejected in the last hour")
        eq(cell(dom, "hour-tempfail"), "0", "tempfailed in the last hour")
        eq(cell(dom, "connections"), "2", "connections")
        rows = re.findall(r'<tr class="verdict">(.*?)</tr>', dom, re.S)
        eq(len(rows), 3, "verdict rows")
        got = [(re.search(r'class="from">([^<]*)<', x).group(1),
                re.search(r'class="stage">([^<]*)<', x).group(1),
                re.search(r'class="action [a-z_]+">([^<]*)<', x).group(1)) for x in rows]
        eq(got, [("second@example.org", "eom", "accept"),
                 ("spammer@example.com", "mail", "reject"),
                 ("fine@example.org", "eom", "accept")], "last verdicts, newest first")
        check("ACCESS_SENDER_DENY" in rows[1], "the refusal's symbol: %r" % rows[1])
        sym = re.search(r'<section id="symbols">.*?</section>', dom, re.S)
        check(sym and "ACCESS_SENDER_DENY" in sym.group(0), "top symbols")
        check(re.search(r'<tr class="upstream">.*?answered', dom, re.S), "upstream health")
        check(re.search(r'<section id="dryrun">.*?Nothing held back', dom, re.S),
              "the dry-run section without a filter in dry-run")


test_status_page_in_headless_chromium.timeout = 120


if __name__ == "__main__":
    sys.exit(run_tests(globals()))
