#!/usr/bin/python3
"""milter_bench.py - DKIM signing as a Postfix milter: Postfix alone versus
Postfix + moatd's milter versus Postfix + OpenDKIM (Debian's opendkim)
versus Postfix + rspamd (Debian's rspamd: its rspamd_proxy worker in milter
mode), all signing rsa-sha256 with the same 2048-bit key, relaxed/relaxed;
and, as a control, Postfix + moatd's milter with no filter (the cost of the
milter protocol alone). rspamd is left out (and the reason recorded) when
it is not installed or does not start.

Five throwaway Postfix instances (tests/integration/test_postfix.py's
Postfix, each relaying to its own counting smtp-sink) run side by side;
smtp-source sends the same 10 KB message through each in turn, round by
round (A B C D A B C D ...) after a warm-up round, whose delivered messages
are checked for a DKIM-Signature (Postfix's smtp_header_checks, turned off
again before the timed rounds). Per run: end-to-end msg/s (smtp-source's
start until smtp-sink counted every message), CPU per message of the
filter process (moatd and its milter child; opendkim; rspamd's main
process and its workers) and of Postfix (its
master and every daemon, reaped ones included).

Run alone (prints JSON): /usr/bin/python3 tests/bench/milter_bench.py [--quick]
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
from proxy_bench import MOAT, message  # noqa: E402
from test_postfix import Postfix  # noqa: E402

MILTER_CF = """
smtpd_milters = inet:127.0.0.1:{port}
non_smtpd_milters =
milter_default_action = tempfail
milter_protocol = 6
"""
CHECKS_CF = "smtp_header_checks = regexp:{dir}/header_checks\n"

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

# rspamd in its own directory, on loopback ports, with nothing but what
# signing needs: no rules (no $RULESDIR/rspamd.lua), no statistics, no
# Redis; of the modules only dkim (the C module dkim_signing calls) and
# dkim_signing; milter_headers off. The layout is Debian's default: the
# rspamd_proxy worker speaks the milter protocol and hands each message
# to the normal workers (one per core) over HTTP.
RSPAMD_CONF = """options {{
    pidfile = "$RUNDIR/rspamd.pid";
    filters = "dkim";
    dns {{ nameserver = ["127.0.0.1:9"]; timeout = 1s; retransmits = 1; }}
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
dkim {{ }}
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


class Rspamd:
    """Debian's rspamd with RSPAMD_CONF in a directory of its own (its
    database, run and log directories through --var), as user _rspamd."""

    def __init__(self, work, key, port):
        self.dir = os.path.join(work, "rspamd")
        os.makedirs(self.dir)
        self.key = os.path.join(self.dir, "rsa1.private")
        shutil.copy(key, self.key)
        self.port, self.normal = port, free_port()
        self.conf = os.path.join(self.dir, "rspamd.conf")
        with open(self.conf, "w") as f:
            f.write(RSPAMD_CONF.format(port=port, normal=self.normal, key=self.key))
        self.log = os.path.join(self.dir, "rspamd.log")
        self.proc = None
        if os.geteuid() == 0:
            subprocess.run(["chown", "-R", "_rspamd:_rspamd", self.dir], check=True)
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


def rspamd_version():
    try:
        v = subprocess.run(["rspamd", "--version"], capture_output=True, text=True,
                           timeout=30).stdout
        return v.strip().split()[-1]
    except (OSError, subprocess.SubprocessError, IndexError):
        return ""


class BenchPostfix(Postfix):
    """A throwaway Postfix with an optional milter, relaying to a counting
    smtp-sink; a header check logs each DKIM-Signature it relays while
    checks are on."""

    def __init__(self, milter_port=None):
        super().__init__()
        Procs.on_exit(self.stop)
        with open(os.path.join(self.dir, "header_checks"), "w") as f:
            f.write("/^DKIM-Signature:.* d=example\\.net;/ WARN dkim-signed\n")
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

    def checks_off(self):
        with open(os.path.join(self.dir, "header_checks"), "w"):
            pass
        self.postfix("reload")
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


def end_to_end(pf, count, msgfile, sessions, filt_cpu):
    """One run through pf; returns {rate, accept_rate, cpu_ms, postfix_cpu_ms}."""
    base = pf.bsink.count()
    c0, p0 = filt_cpu(), pf.cpu()
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
    return {"rate": count / dt, "accept_rate": count / t_acc,
            "cpu_ms": (filt_cpu() - c0) * 1000.0 / count,
            "postfix_cpu_ms": (pf.cpu() - p0) * 1000.0 / count}


def run(runs=5, count=2000, sessions=20):
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
    moat = Moatd(work, "milter", extra=MOAT_MILTER_CONF.format(port=mport, key=key),
                 wait_port=mport).start()
    # the control: the same milter with no filter, for the cost of the
    # milter protocol itself
    null = Moatd(work, "nullmilter", extra=NULL_MILTER_CONF.format(port=nport),
                 wait_port=nport).start()
    od_conf = os.path.join(od_dir, "opendkim.conf")
    with open(od_conf, "w") as f:
        f.write(OPENDKIM_CONF.format(key=od_key, port=oport))
    od = Procs.start(["opendkim", "-f", "-x", od_conf], log=os.path.join(work, "opendkim.log"))
    wait_for(lambda: listening(oport) or od.poll() is not None, 10, "opendkim")
    if od.poll() is not None:
        with open(os.path.join(work, "opendkim.log")) as f:
            raise BenchError("opendkim exited: %s" % f.read()[-800:])
    rsp, rspamd_note = None, ""
    if not shutil.which("rspamd"):
        rspamd_note = "rspamd is not installed (apt-get install rspamd)"
    else:
        rsp = Rspamd(work, key, rport)
        try:
            rsp.start()
        except BenchError as e:
            rspamd_note = str(e)
            rsp.stop()
            rsp = None
    if rspamd_note:
        sys.stderr.write("  rspamd left out: %s\n" % rspamd_note)

    setups = [("Postfix alone", BenchPostfix(), lambda: 0.0),
              ("Postfix + moatd milter, no filters", BenchPostfix(nport), null.cpu),
              ("Postfix + moatd milter", BenchPostfix(mport), moat.cpu),
              ("Postfix + OpenDKIM", BenchPostfix(oport), lambda: cpu_ticks(od.pid))]
    if rsp:
        setups.append(("Postfix + rspamd", BenchPostfix(rport), rsp.cpu))
    signers = ("Postfix + moatd milter", "Postfix + OpenDKIM", "Postfix + rspamd")
    for _, pf, _ in setups:
        pf.start()
    res = {name: [] for name, _, _ in setups}
    try:
        for rnd in range(runs + 1):
            for name, pf, cpu in setups:
                r = end_to_end(pf, count, msgfile, sessions, cpu)
                sys.stderr.write("  %s round %d: %.0f msg/s\n" % (name, rnd, r["rate"]))
                if rnd > 0:
                    res[name].append(r)
            if rnd == 0:  # the warm-up: were the messages signed?
                for name, pf, _ in setups:
                    n = len(re.findall(r"warning: header DKIM-Signature:.*dkim-signed", pf.log()))
                    want = count if name in signers else 0
                    if n != want:
                        raise BenchError("%s: %d of %d messages relayed with a signature"
                                         % (name, n, want))
                    pf.checks_off()
    finally:
        for _, pf, _ in setups:
            pf.stop()
        moat.stop()
        null.stop()
        Procs.stop(od)
        if rsp:
            rsp.stop()
    base = res["Postfix alone"]
    rows = []
    for name, runs_ in res.items():
        row = {"name": name, "rate": stats(r["rate"] for r in runs_),
               "postfix_cpu_ms": stats(r["postfix_cpu_ms"] for r in runs_)}
        if name != "Postfix alone":
            row["ratio"] = stats(r["rate"] / b["rate"] for r, b in zip(runs_, base))
            row["cpu_ms"] = stats(r["cpu_ms"] for r in runs_)
        rows.append(row)
    m, o = res["Postfix + moatd milter"], res["Postfix + OpenDKIM"]
    rows.append({"name": "moatd / OpenDKIM",
                 "ratio": stats(x["rate"] / y["rate"] for x, y in zip(m, o)),
                 "cpu_ratio": stats(x["cpu_ms"] / y["cpu_ms"] for x, y in zip(m, o))})
    if rsp:
        q = res["Postfix + rspamd"]
        rows.append({"name": "moatd / rspamd",
                     "ratio": stats(x["rate"] / y["rate"] for x, y in zip(m, q)),
                     "cpu_ratio": stats(x["cpu_ms"] / y["cpu_ms"] for x, y in zip(m, q))})
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
                        port="RPORT", normal="NPORT", key="DIR/rsa1.private"))
    return {"count": count, "sessions": sessions, "size": os.path.getsize(msgfile), "rows": rows,
            "rspamd_version": rspamd_version() if rsp else "", "rspamd_note": rspamd_note,
            "commands": cmds + [
                "smtp-source -s %d -m %d -F plain.eml -M client.example -f alice@example.net "
                "-t bob@example.org 127.0.0.1:SMTPD" % (sessions, count)]}


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    print(json.dumps(run(runs=2, count=300) if quick else run(), indent=1))
