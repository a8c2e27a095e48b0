#!/usr/bin/python3
"""milter_bench.py - DKIM as a Postfix milter, in both roles.

sign(): Postfix alone versus Postfix + moatd's milter versus Postfix +
OpenDKIM (Debian's opendkim) versus Postfix + rspamd (Debian's rspamd: its
rspamd_proxy worker in milter mode), all signing rsa-sha256 with the same
2048-bit key, relaxed/relaxed; and, as a control, Postfix + moatd's milter
with no filter (the cost of the milter protocol alone).

verify(): the same message signed once by `moat sign` (rsa-sha256, 2048
bits, relaxed/relaxed), the public key served by a local unbound
(tests/integration/dnsrig.py TestZones, as in proxy_bench.py's case 2);
Postfix alone versus Postfix + moatd's milter verifying (the client is
not in sign_networks and not authenticated), Postfix + OpenDKIM (Mode v)
and Postfix + rspamd (the dkim module, milter_headers with only its
authentication-results routine); every verifier asks the local unbound.

rspamd is left out (and the reason recorded) when it is not installed or
does not start.

Throwaway Postfix instances (tests/integration/test_postfix.py's Postfix,
each relaying to its own counting smtp-sink) run side by side; smtp-source
sends the same 10 KB message through each in turn, round by round (A B C
D A B C D ...) after a warm-up round, whose delivered messages are checked
with Postfix's smtp_header_checks (turned off again before the timed
rounds): signing, a DKIM-Signature d=example.net on every message of a
signing set-up and on no other; verifying, an Authentication-Results with
dkim=pass from the set-up's own verifier on every message of a verifying
set-up, and no Authentication-Results at all through Postfix alone. Per
run: end-to-end msg/s (smtp-source's start until smtp-sink counted every
message), CPU per message of the filter process (moatd and its milter
child; opendkim; rspamd's main process and its workers) and of Postfix
(its master and every daemon, reaped ones included).

Run alone (prints JSON):
    /usr/bin/python3 tests/bench/milter_bench.py [--quick] [--role sign|verify]
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from benchlib import (BenchError, Procs, Sink, cpu_ticks, free_port, listening,  # noqa: E402
                      source_argv, stats, tmpdir, wait_for)
from moatd_rig import Moatd, share_key  # noqa: E402
from proxy_bench import MOAT, keys, message, signed_message  # noqa: E402
from test_postfix import Postfix  # noqa: E402

MILTER_CF = """
smtpd_milters = inet:127.0.0.1:{port}
non_smtpd_milters =
milter_default_action = tempfail
milter_protocol = 6
"""
CHECKS_CF = "smtp_header_checks = regexp:{dir}/header_checks\n"

# smtp_header_checks of the warm-up round. Signing: a WARN log line for
# each DKIM-Signature of example.net. Verifying: one for each
# Authentication-Results of the set-up's own verifier (its authserv-id)
# with dkim=pass for example.net, another for any other
# Authentication-Results (first match wins). Postfix regexp tables match
# the whole (folded) header; "." matches the newlines too.
SIGN_CHECKS = "/^DKIM-Signature:.* d=example\\.net;/ WARN dkim-signed\n"
VERIFY_CHECKS = ("/^Authentication-Results: *{authserv} *;.*dkim=pass.*header\\.d=example\\.net/"
                 " WARN dkim-pass\n"
                 "/^Authentication-Results:/ WARN other-auth-results\n")

# The authserv-id of each verifier's Authentication-Results: moatd's is its
# hostname (moatd_rig), OpenDKIM's AuthservID below; rspamd's is the MTA's
# name, which its proxy takes from the milter macro j (Postfix's
# myhostname in test_postfix.py).
AUTHSERV = {"moatd": "moat.example", "opendkim": "opendkim.example", "rspamd": "pf.example"}

MOAT_MILTER_CONF = """
filters = {{"dkim"}}
milter {{
    socket = "inet:{port}@127.0.0.1"
}}
dkim {{
    key k1 {{
        domain = "example.net"
        selector = "rsa1"
        file = "{key}"
    }}
    signing_table = {{"example.net k1"}}
    sign_networks = {{"127.0.0.0/8"}}
    canonicalization = "relaxed/relaxed"
}}
"""

NULL_MILTER_CONF = """
filters = {{}}
milter {{
    socket = "inet:{port}@127.0.0.1"
}}
"""

# Verifying: no keys, no sign_networks; Postfix's client (127.0.0.1) is
# not authenticated, so every message is verified.
MOAT_VERIFY_CONF = """
filters = {{"dkim"}}
resolver {{
    nameservers = {{"{dns}"}}
    timeout = 3
}}
milter {{
    socket = "inet:{port}@127.0.0.1"
}}
dkim {{
    verify = yes
}}
"""

OPENDKIM_CONF = """Syslog no
Mode s
Domain example.net
Selector rsa1
KeyFile {key}
Canonicalization relaxed/relaxed
OversignHeaders From,To,Cc,Subject,Date,Reply-To,Message-ID,MIME-Version,Content-Type,Content-Transfer-Encoding
Socket inet:{port}@127.0.0.1
UserID opendkim
UMask 002
"""

# Nameservers, not ResolverConfiguration: the latter races in Debian 12's
# opendkim at 20 sessions (/work/shared/TESTRIG.md 8).
OPENDKIM_VERIFY_CONF = """Syslog no
Mode v
AuthservID {authserv}
Nameservers {dns}
Socket inet:{port}@127.0.0.1
UserID opendkim
UMask 002
"""

# rspamd in its own directory, on loopback ports, with nothing but what
# signing needs: no rules (no $RULESDIR/rspamd.lua), no statistics, no
# Redis; of the modules only dkim (the C module dkim_signing calls) and
# dkim_signing; milter_headers off. The layout is Debian's default: the
# rspamd_proxy worker speaks the milter protocol and hands each message
# to the normal workers (one per core) over HTTP.
RSPAMD_COMMON = """options {{
    pidfile = "$RUNDIR/rspamd.pid";
    filters = "dkim";
    dns {{ nameserver = ["{dns}"]; timeout = 1s; retransmits = 1; }}
    control_socket = "$DBDIR/rspamd.sock mode=0600";
    cache_file = "$DBDIR/symbols.cache";
    tempdir = "$DBDIR";
    hs_cache_dir = "$DBDIR/";
    local_addrs = [127.0.0.0/8];
}}
logging {{ type = "file"; filename = "$LOGDIR/rspamd.log"; level = "info"; }}
modules {{ path = "${{PLUGINSDIR}}"; }}
worker "normal" {{ bind_socket = "127.0.0.1:{normal}"; mime = true; }}
worker "rspamd_proxy" {{
    bind_socket = "127.0.0.1:{port}";
    milter = yes;
    timeout = 120s;
    count = 1;
    upstream "local" {{ default = yes; hosts = "127.0.0.1:{normal}"; }}
}}
"""
RSPAMD_CONF = RSPAMD_COMMON + """dkim {{ }}
dkim_signing {{
    sign_local = true;
    use_domain = "header";
    allow_hdrfrom_mismatch = false;
    domain {{
        example.net {{ path = "{key}"; selector = "rsa1"; }}
    }}
}}
milter_headers {{ enabled = false; }}
"""
# Verifying: the dkim module (checking local mail too: Postfix's client is
# 127.0.0.1), its DNS the local unbound; of milter_headers only the
# authentication-results routine, so the result reaches the message.
RSPAMD_VERIFY_CONF = RSPAMD_COMMON + """dkim {{ check_local = true; check_authed = true; }}
milter_headers {{
    use = ["authentication-results"];
    skip_local = false;
    skip_authenticated = false;
}}
"""


class Rspamd:
    """Debian's rspamd with a configuration of its own in a directory of its
    own (its database, run and log directories through --var), as user
    _rspamd."""

    def __init__(self, work, conf, port, name="rspamd", **kw):
        self.dir = os.path.join(work, name)
        os.makedirs(self.dir)
        self.key = os.path.join(self.dir, "rsa1.private")
        if kw.get("key"):
            shutil.copy(kw["key"], self.key)
        self.port, self.normal = port, free_port()
        self.conf = os.path.join(self.dir, "rspamd.conf")
        kw.setdefault("dns", "127.0.0.1:9")
        kw["key"] = self.key
        with open(self.conf, "w") as f:
            f.write(conf.format(port=port, normal=self.normal, **kw))
        self.log = os.path.join(self.dir, "rspamd.log")
        self.proc = None
        if os.geteuid() == 0:
            subprocess.run(["chown", "-R", "_rspamd:_rspamd", self.dir], check=True)
        if os.path.exists(self.key):
            os.chmod(self.key, 0o600)

    def start(self):
        argv = ["rspamd", "-f", "-c", self.conf]
        if os.geteuid() == 0:
            argv += ["-u", "_rspamd", "-g", "_rspamd"]
        for v in ("DBDIR", "RUNDIR", "LOGDIR"):
            argv += ["--var", "%s=%s" % (v, self.dir)]
        self.proc = Procs.start(argv, log=os.path.join(self.dir, "stdout.log"))

        def up():
            if self.proc.poll() is not None:
                raise BenchError("rspamd exited at start: %s" % self.read_log()[-800:])
            return listening(self.port) and listening(self.normal)
        # loading the language models and the TLD list takes 10 s or more
        wait_for(up, 120, "rspamd to listen")
        return self

    def read_log(self):
        try:
            with open(self.log, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def cpu(self):
        """CPU seconds of the main process and its workers."""
        return cpu_ticks(self.proc.pid, tree=True)

    def stop(self):
        if self.proc:
            Procs.stop(self.proc, timeout=20)
            self.proc = None


def start_rspamd(work, conf, port, **kw):
    """(Rspamd or None, why it was left out)."""
    if not shutil.which("rspamd"):
        return None, "rspamd is not installed (apt-get install rspamd)"
    rsp = Rspamd(work, conf, port, **kw)
    try:
        rsp.start()
    except BenchError as e:
        rsp.stop()
        sys.stderr.write("  rspamd left out: %s\n" % e)
        return None, str(e)
    return rsp, ""


def rspamd_version():
    try:
        v = subprocess.run(["rspamd", "--version"], capture_output=True, text=True,
                           timeout=30).stdout
        return v.strip().split()[-1]
    except (OSError, subprocess.SubprocessError, IndexError):
        return ""


def start_opendkim(work, name, conf):
    """opendkim -f with conf (text) in work/name; returns the process. Its
    files below /srv (OpenDKIM refuses world-writable parents)."""
    if not shutil.which("opendkim"):
        raise BenchError("opendkim is not installed (apt-get install opendkim)")
    d = os.path.join(work, name)
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "opendkim.conf")
    with open(path, "w") as f:
        f.write(conf)
    port = int(re.search(r"Socket inet:(\d+)@", conf).group(1))
    log = os.path.join(d, "opendkim.log")
    od = Procs.start(["opendkim", "-f", "-x", path], log=log)
    wait_for(lambda: listening(port) or od.poll() is not None, 10, "opendkim")
    if od.poll() is not None:
        with open(log) as f:
            raise BenchError("opendkim exited: %s" % f.read()[-800:])
    return od


class BenchPostfix(Postfix):
    """A throwaway Postfix with an optional milter, relaying to a counting
    smtp-sink; smtp_header_checks (checks: the table's text) log what it
    relays while checks are on."""

    def __init__(self, milter_port=None, checks=SIGN_CHECKS):
        super().__init__()
        Procs.on_exit(self.stop)
        with open(os.path.join(self.dir, "header_checks"), "w") as f:
            f.write(checks)
        with open(os.path.join(self.dir, "main.cf"), "a") as f:
            if milter_port:
                f.write(MILTER_CF.format(port=milter_port))
            f.write(CHECKS_CF.format(dir=self.dir))

    def postfix(self, *args):
        return subprocess.run(["script", "-qec", "postfix -c %s %s" % (self.dir, " ".join(args)),
                               "/dev/null"], stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=60)

    def start(self):
        self.bsink = Sink(self.dir, counting=True, port=self.sink_port)
        r = self.postfix("start")
        if not wait_for_ok(lambda: listening(self.smtpd), 20):
            raise BenchError("Postfix did not start: %s %s" % (r.stdout[-800:], self.log()[-800:]))

    def warned(self, text):
        """How many header_checks WARN lines with text the log has."""
        return len(re.findall(r"warning: header .*: %s$" % re.escape(text), self.log(), re.M))

    def checks_off(self, settle=True):
        with open(os.path.join(self.dir, "header_checks"), "w"):
            pass
        self.postfix("reload")
        if settle:
            time.sleep(1)

    def master_pid(self):
        with open(os.path.join(self.dir, "queue", "pid", "master.pid")) as f:
            return int(f.read().split()[0])

    def cpu(self):
        return cpu_ticks(self.master_pid(), tree=True, reaped=True)

    def stop(self):
        if getattr(self, "stopped", False):
            return
        self.stopped = True
        self.postfix("abort")
        if getattr(self, "bsink", None):
            self.bsink.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def wait_for_ok(pred, timeout):
    try:
        wait_for(pred, timeout, "")
        return True
    except BenchError:
        return False


def end_to_end(pf, count, msgfile, sessions, filt_cpu, other_cpu=None):
    """One run through pf; returns {rate, accept_rate, cpu_ms, postfix_cpu_ms}
    (and other_cpu_ms with other_cpu, e.g. the DNS server's)."""
    base = pf.bsink.count()
    c0, p0 = filt_cpu(), pf.cpu()
    o0 = other_cpu() if other_cpu else 0.0
    t0 = time.monotonic()
    r = subprocess.run(source_argv(pf.smtpd, count, sessions, msgfile=msgfile),
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=600)
    t_acc = time.monotonic() - t0
    if r.returncode != 0:
        raise BenchError("smtp-source failed: %s" % r.stderr.decode()[-500:])
    end = time.monotonic() + 300
    while pf.bsink.count() < base + count:
        if time.monotonic() > end:
            raise BenchError("only %d of %d messages reached smtp-sink; Postfix log: %s"
                             % (pf.bsink.count() - base, count, pf.log()[-1000:]))
        time.sleep(0.01)
    dt = time.monotonic() - t0
    out = {"rate": count / dt, "accept_rate": count / t_acc,
           "cpu_ms": (filt_cpu() - c0) * 1000.0 / count,
           "postfix_cpu_ms": (pf.cpu() - p0) * 1000.0 / count}
    if other_cpu:
        out["other_cpu_ms"] = (other_cpu() - o0) * 1000.0 / count
    return out


def rounds(setups, runs, count, msgfile, sessions, check, other_cpu=None):
    """setups: [(name, BenchPostfix, filter cpu function)], started. A
    warm-up round, check(), every Postfix's checks off, then runs timed
    rounds of every set-up in turn. Returns {name: [result per round]}."""
    res = {name: [] for name, _, _ in setups}
    for rnd in range(runs + 1):
        for name, pf, cpu in setups:
            r = end_to_end(pf, count, msgfile, sessions, cpu, other_cpu)
            sys.stderr.write("  %s round %d: %.0f msg/s\n" % (name, rnd, r["rate"]))
            if rnd > 0:
                res[name].append(r)
        if rnd == 0:
            check()
            for _, pf, _ in setups:
                pf.checks_off(settle=False)
            time.sleep(1)  # the reloads take hold
    return res


def summarize(res):
    """Rows: per set-up msg/s, ratio to Postfix alone (per round), filter
    and Postfix CPU per message; then moatd / OpenDKIM and moatd / rspamd
    (throughput ratio and filter CPU ratio, per round)."""
    base = res["Postfix alone"]
    rows = []
    for name, runs_ in res.items():
        row = {"name": name, "rate": stats(r["rate"] for r in runs_),
               "postfix_cpu_ms": stats(r["postfix_cpu_ms"] for r in runs_)}
        if name != "Postfix alone":
            row["ratio"] = stats(r["rate"] / b["rate"] for r, b in zip(runs_, base))
            row["cpu_ms"] = stats(r["cpu_ms"] for r in runs_)
        if "other_cpu_ms" in runs_[0]:
            row["dns_cpu_ms"] = stats(r["other_cpu_ms"] for r in runs_)
        rows.append(row)
    m = res["Postfix + moatd milter"]
    for other, label in (("Postfix + OpenDKIM", "moatd / OpenDKIM"),
                         ("Postfix + rspamd", "moatd / rspamd")):
        if other in res:
            o = res[other]
            rows.append({"name": label,
                         "ratio": stats(x["rate"] / y["rate"] for x, y in zip(m, o)),
                         "cpu_ratio": stats(x["cpu_ms"] / y["cpu_ms"] for x, y in zip(m, o))})
    return rows


def stop_all(setups, others):
    for _, pf, _ in setups:
        pf.stop()
    for x in others:
        if x is None:
            continue
        if hasattr(x, "poll"):
            Procs.stop(x)
        else:
            x.stop()


def sign(runs=5, count=2000, sessions=20):
    """Case 4, signing: Postfix alone, + moatd's milter without filters,
    + moatd signing, + OpenDKIM signing, + rspamd signing."""
    if not shutil.which("opendkim"):
        raise BenchError("opendkim is not installed (apt-get install opendkim)")
    work = tmpdir("moat-bench.", parent="/srv")
    subprocess.run([MOAT, "keygen", "-d", "example.net", "-s", "rsa1", "-D", work],
                   check=True, capture_output=True)
    key = os.path.join(work, "rsa1.private")
    share_key(key)
    # OpenDKIM's copy of the same key: owned by opendkim, 0600, in a
    # directory nobody else may write (it refuses anything less)
    od_dir = os.path.join(work, "opendkim")
    os.makedirs(od_dir)
    od_key = os.path.join(od_dir, "rsa1.private")
    shutil.copy(key, od_key)
    subprocess.run(["chown", "opendkim:opendkim", od_key], check=True)
    os.chmod(od_key, 0o600)
    msgfile = os.path.join(work, "plain.eml")
    with open(msgfile, "w") as f:
        f.write(message())

    mport, nport, oport, rport = free_port(), free_port(), free_port(), free_port()
    moat = null = od = rsp = None
    setups = []
    try:
        moat = Moatd(work, "milter", extra=MOAT_MILTER_CONF.format(port=mport, key=key),
                     wait_port=mport).start()
        # the control: the same milter with no filter, for the cost of the
        # milter protocol itself
        null = Moatd(work, "nullmilter", extra=NULL_MILTER_CONF.format(port=nport),
                     wait_port=nport).start()
        od = start_opendkim(work, "opendkim", OPENDKIM_CONF.format(key=od_key, port=oport))
        rsp, rspamd_note = start_rspamd(work, RSPAMD_CONF, rport, key=key)
        odpid = od.pid
        setups = [("Postfix alone", BenchPostfix(), lambda: 0.0),
                  ("Postfix + moatd milter, no filters", BenchPostfix(nport), null.cpu),
                  ("Postfix + moatd milter", BenchPostfix(mport), moat.cpu),
                  ("Postfix + OpenDKIM", BenchPostfix(oport), lambda: cpu_ticks(odpid))]
        if rsp:
            setups.append(("Postfix + rspamd", BenchPostfix(rport), rsp.cpu))
        signers = ("Postfix + moatd milter", "Postfix + OpenDKIM", "Postfix + rspamd")
        for _, pf, _ in setups:
            pf.start()

        def check():  # the warm-up: were the messages signed, and only those?
            for name, pf, _ in setups:
                n = pf.warned("dkim-signed")
                want = count if name in signers else 0
                if n != want:
                    raise BenchError("%s: %d of %d messages relayed with a signature"
                                     % (name, n, want))
        res = rounds(setups, runs, count, msgfile, sessions, check)
    finally:
        stop_all(setups, (moat, null, od, rsp))
    rows = summarize(res)
    cmds = [
        "postfix -c DIR start   # x%d: smtpd on 127.0.0.1, relayhost = smtp-sink -c; "
        "smtpd_milters = none | moatd (no filters) | moatd | opendkim%s"
        % (len(setups), " | rspamd" if rsp else ""),
        "moatd -f -c moat.conf  # config:" + MOAT_MILTER_CONF.format(
            port="MPORT", key="rsa1.private"),
        "opendkim -f -x opendkim.conf  # config:\n" + OPENDKIM_CONF.format(
            key="rsa1.private", port="OPORT")]
    if rsp:
        cmds.append("rspamd -f -c rspamd.conf -u _rspamd -g _rspamd --var DBDIR=DIR "
                    "--var RUNDIR=DIR --var LOGDIR=DIR  # config:\n" + RSPAMD_CONF.format(
                        port="RPORT", normal="NPORT", key="DIR/rsa1.private",
                        dns="127.0.0.1:9"))
    return {"count": count, "sessions": sessions, "size": os.path.getsize(msgfile), "rows": rows,
            "rspamd_version": rspamd_version() if rsp else "", "rspamd_note": rspamd_note,
            "commands": cmds + [
                "smtp-source -s %d -m %d -F plain.eml -M client.example -f alice@example.net "
                "-t bob@example.org 127.0.0.1:SMTPD" % (sessions, count)]}


run = sign  # the name run.py used before the verifying role


def verify(runs=5, count=2000, sessions=20):
    """Case 4, verifying: the message signed once by `moat sign`, its key
    served by a local unbound; Postfix alone, + moatd verifying, +
    OpenDKIM verifying, + rspamd verifying."""
    from dnsrig import TestZones
    if not shutil.which("opendkim"):
        raise BenchError("opendkim is not installed (apt-get install opendkim)")
    work = tmpdir("moat-bench.", parent="/srv")
    keyfile, txt = keys(work)
    _, msgfile = signed_message(work, keyfile)
    # the key, and nothing else: every other name gets REFUSED
    z = TestZones([("rsa1._domainkey.example.net", "TXT", txt)]).start()
    Procs.on_exit(z.stop)
    mport, oport, rport = free_port(), free_port(), free_port()
    moat = od = rsp = None
    setups = []
    try:
        moat = Moatd(work, "milter", extra=MOAT_VERIFY_CONF.format(port=mport, dns=z.address),
                     wait_port=mport).start()
        od = start_opendkim(work, "opendkim", OPENDKIM_VERIFY_CONF.format(
            port=oport, dns=z.unbound_addr, authserv=AUTHSERV["opendkim"]))
        rsp, rspamd_note = start_rspamd(work, RSPAMD_VERIFY_CONF, rport, dns=z.address)
        odpid = od.pid

        def checks(who):
            return VERIFY_CHECKS.format(authserv=re.escape(AUTHSERV[who]))
        setups = [("Postfix alone", BenchPostfix(checks=checks("moatd")), lambda: 0.0),
                  ("Postfix + moatd milter", BenchPostfix(mport, checks("moatd")), moat.cpu),
                  ("Postfix + OpenDKIM", BenchPostfix(oport, checks("opendkim")),
                   lambda: cpu_ticks(odpid))]
        if rsp:
            setups.append(("Postfix + rspamd", BenchPostfix(rport, checks("rspamd")), rsp.cpu))
        for _, pf, _ in setups:
            pf.start()

        def check():  # the warm-up: did each verifier pass every message?
            for name, pf, _ in setups:
                n, other = pf.warned("dkim-pass"), pf.warned("other-auth-results")
                want = 0 if name == "Postfix alone" else count
                if n != want or other:
                    raise BenchError(
                        "%s: %d of %d messages relayed with a dkim=pass Authentication-Results "
                        "of its verifier, %d with another Authentication-Results; Postfix log: %s"
                        % (name, n, want, other, pf.log()[-1200:]))
        zpid = z.proc.pid
        res = rounds(setups, runs, count, msgfile, sessions, check,
                     other_cpu=lambda: cpu_ticks(zpid))
    finally:
        stop_all(setups, (moat, od, rsp))
        z.stop()
    rows = summarize(res)
    cmds = [
        "unbound (TestZones) serving rsa1._domainkey.example.net TXT on 127.0.0.1:DNS",
        "moat keygen -d example.net -s rsa1; moat sign -d example.net -s rsa1 -k rsa1.private "
        "plain.eml > signed.eml",
        "postfix -c DIR start   # x%d: smtpd on 127.0.0.1, relayhost = smtp-sink -c; "
        "smtpd_milters = none | moatd | opendkim%s" % (len(setups), " | rspamd" if rsp else ""),
        "moatd -f -c moat.conf  # config:" + MOAT_VERIFY_CONF.format(
            port="MPORT", dns="127.0.0.1:DNS"),
        "opendkim -f -x opendkim.conf  # config:\n" + OPENDKIM_VERIFY_CONF.format(
            port="OPORT", dns="127.0.0.1@DNS", authserv=AUTHSERV["opendkim"])]
    if rsp:
        cmds.append("rspamd -f -c rspamd.conf -u _rspamd -g _rspamd --var DBDIR=DIR "
                    "--var RUNDIR=DIR --var LOGDIR=DIR  # config:\n" + RSPAMD_VERIFY_CONF.format(
                        port="RPORT", normal="NPORT", dns="127.0.0.1:DNS"))
    return {"count": count, "sessions": sessions, "size": os.path.getsize(msgfile), "rows": rows,
            "rspamd_version": rspamd_version() if rsp else "", "rspamd_note": rspamd_note,
            "commands": cmds + [
                "smtp-source -s %d -m %d -F signed.eml -M client.example -f alice@example.net "
                "-t bob@example.org 127.0.0.1:SMTPD" % (sessions, count)]}


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    roles = ("sign", "verify")
    if "--role" in sys.argv:
        roles = (sys.argv[sys.argv.index("--role") + 1],)
    kw = {"runs": 2, "count": 300} if quick else {}
    out = {}
    for role in roles:
        out[role] = {"sign": sign, "verify": verify}[role](**kw)
        Procs.stop_all()
    print(json.dumps(out, indent=1))
