#!/usr/bin/python3
"""run.py - runs every benchmark of tests/bench/ and writes the report.

    /usr/bin/python3 tests/bench/run.py            # make bench: docs/PERFORMANCE.md
    /usr/bin/python3 tests/bench/run.py --quick    # make bench-quick: smaller loads,
                                                   # fewer runs, build/bench/PERFORMANCE.quick.md
    ... [--out FILE] [--only proxy,pipeline,reputation,crypto,milter,idle,growth]
                                                   # milter: both roles; milter-sign or
                                                   # milter-verify: one

Expects the release build (build/moatd, build/moat, build/bench/dkim_speed)
and the packages of BENCH_PKGS (the Makefile's bench targets see to both).
The report holds the machine facts, the exact commands, and per case a
table of medians and ranges over the timed runs (a warm-up round comes
first and is not counted); ratios are taken pairwise within a round.
"""

import argparse
import os
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # no __pycache__ in the tree
import benchlib  # noqa: E402
import crypto_bench  # noqa: E402
import milter_bench  # noqa: E402
import proxy_bench  # noqa: E402
import scale_bench  # noqa: E402

FULL = {"runs": 5, "ceiling": ((10000, 10240), (2000, 102400)), "pipeline": 5000,
        "milter": 2000, "milter_verify": 2000, "crypto_runs": 5, "idle": 10000, "idle_load": 5000,
        "growth": {1024: 5000, 10240: 5000, 102400: 1000, 1048576: 200}}
QUICK = {"runs": 2, "ceiling": ((2000, 10240), (400, 102400)), "pipeline": 1000,
         "milter": 300, "milter_verify": 200, "crypto_runs": 1, "idle": 1000, "idle_load": 1000,
         "growth": {1024: 1000, 10240: 1000, 102400: 200, 1048576: 40}}
ALL = "proxy,pipeline,reputation,crypto,milter,idle,growth"
# --only names that stand for several steps
ALIASES = {"milter": ("milter-sign", "milter-verify")}


def f(st, digits=0, key=None):
    """'median (min–max)' of a stats dict."""
    if st is None:
        return ""
    fmt = "%%.%df" % digits
    if st["n"] == 1 or st["min"] == st["max"]:
        return fmt % st["median"]
    return (fmt + " (" + fmt + "–" + fmt + ")") % (st["median"], st["min"], st["max"])


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def commands(cmds):
    return "```\n" + "\n".join(cmds) + "\n```"


def target(ok, text):
    return "- %s %s" % ("**met**:" if ok else "**missed**:", text)


def section_ceiling(r, targets):
    out = ["## 1. Proxy ceiling: moatd without filters", "",
           "smtp-source → smtp-sink directly, against smtp-source → moatd (`-o filters=`) → "
           "smtp-sink, %d concurrent sessions, one message per SMTP session (smtp-source's "
           "default: every message is a new client session and, through moatd, a new "
           "upstream session). smtp-sink offers XCLIENT without ADDR, so this listener relays "
           "with `xclient = no` (one round trip fewer than in front of Postfix)." % r["sessions"],
           ""]
    for load in r["loads"]:
        rows = []
        for row in load["rows"]:
            rows.append([row["name"], f(row["rate"]), f(row.get("ratio"), 2),
                         f(row.get("cpu_ms"), 3),
                         "%d" % (row["rss_peak_kb"] // 1) if "rss_peak_kb" in row else "",
                         "%.0f / %.0f" % (row["lat_p50_ms"], row["lat_p99_ms"])
                         if "lat_p50_ms" in row else ""])
            if "ratio" in row and load["size"] == 10240:
                targets.append(target(row["ratio"]["median"] >= 0.6,
                                      "proxy pass-through at 10 KB is %.2f of direct (target "
                                      "at least 0.6)" % row["ratio"]["median"]))
        out += ["### %d messages × %d KB" % (load["count"], load["size"] // 1024), "",
                table(["path", "msg/s", "ratio to direct", "moatd CPU ms/msg",
                       "moatd peak RSS KB", "moatd time/msg p50 / p99 ms"], rows), ""]
    out += ["moatd's memory: %d KB resident idle, %d KB peak (VmHWM) over every run of this "
            "case." % (r["idle_rss_kb"], r["hwm_kb"]), "", commands(r["commands"]), ""]
    return out


def section_pipeline(r, targets):
    out = ["## 2. Proxy with the full inbound pipeline", "",
           "The same %d-octet message, DKIM-signed (rsa-sha256, 2048 bits) by `moat sign`, "
           "sent %d times at %d sessions directly, through moatd without filters, and "
           "through moatd with `filters = {\"dnsbl\", \"spf\", \"dkim\"}`: two IP lists and "
           "one domain list, SPF of MAIL FROM and HELO (libspf2 workers), DKIM verification. "
           "DNS comes from a local unbound serving the test zones; moat's resolver caches, "
           "so after the first message the lists, SPF records and the key are cache hits, as "
           "for a repeated sender. Symbols each message got: `%s`. The CPU figure includes "
           "moatd's SPF worker processes." % (r["size"], r["count"], r["sessions"],
                                              r["symbols"]), ""]
    rows = []
    for row in r["rows"]:
        rows.append([row["name"], f(row.get("rate")), f(row.get("ratio"), 2),
                     f(row.get("cpu_ms"), 3) if "cpu_ms" in row else f(row.get("cpu_ratio"), 2),
                     "%.0f / %.0f" % (row["lat_p50_ms"], row["lat_p99_ms"])
                     if "lat_p50_ms" in row else ""])
        if row["name"] == "moatd, full pipeline":
            targets.append(target(row["ratio"]["median"] >= 0.45,
                                  "full inbound pipeline is %.2f of direct (target at least "
                                  "0.45); moatd's time per message p99 %.0f ms against %.0f ms "
                                  "without filters in the same run"
                                  % (row["ratio"]["median"], row["lat_p99_ms"],
                                     [x for x in r["rows"] if x["name"] == "moatd, no filters"]
                                     [0]["lat_p99_ms"])))
    out += [table(["path", "msg/s", "ratio", "moatd CPU ms/msg (last row: ratio)",
                   "moatd time/msg p50 / p99 ms"], rows), "",
            "The last row compares the two moatd variants round by round (throughput ratio; "
            "CPU per message ratio). *time/msg* is the `time=` of moatd's `msg` log lines "
            "(MAIL to the final reply, millisecond resolution), all messages of all timed "
            "runs.", "", commands(r["commands"]), ""]
    return out


def section_reputation(r, targets):
    out = ["## 2b. Full pipeline plus reputation: embedded store and Redis", "",
           "Case 2's signed message (%d octets), %d times at %d sessions: directly; through "
           "moatd with case 2's pipeline; and through moatd with the same pipeline plus the "
           "`reputation` filter, once with the embedded store (`backend = \"memory\"`) and "
           "once with a Redis %s this case starts on a loopback port (no persistence). "
           "A B C D in each round. Each moatd first takes 8 messages, so the reputation "
           "filter has counts and an opinion (symbols of the last: memory `%s`; Redis "
           "`%s`); every message then reads and updates the counts of the client address, "
           "its /24 and the DKIM/SPF domain. Redis held %s keys at the end. Redis's own CPU: "
           "%.3f ms per message of the Redis variant (not in moatd's column)."
           % (r["size"], r["count"], r["sessions"], r.get("redis_version", ""),
              r["symbols"]["memory"], r["symbols"]["redis"], r.get("redis_keys", "?"),
              r.get("redis_cpu_ms", float("nan"))), ""]
    rows = []
    for row in r["rows"]:
        if "added_p50_ms" in row:
            rows.append([row["name"], "", f(row["ratio"], 2), f(row["cpu_ratio"], 2),
                         "%+.0f / %+.0f" % (row["added_p50_ms"], row["added_p99_ms"])])
        else:
            rows.append([row["name"], f(row.get("rate")), f(row.get("ratio"), 2),
                         f(row.get("cpu_ms"), 3),
                         "%.0f / %.0f" % (row["lat_p50_ms"], row["lat_p99_ms"])
                         if "lat_p50_ms" in row else ""])
    out += [table(["path", "msg/s", "ratio (to direct; last rows: to the pipeline)",
                   "moatd CPU ms/msg (last rows: ratio)",
                   "moatd time/msg p50 / p99 ms (last rows: added)"], rows), "",
            "The last two rows compare each reputation variant with the pipeline without it, "
            "round by round (throughput ratio, CPU per message ratio) and the added time per "
            "message (difference of the p50 and p99 of moatd's `time=` over all timed "
            "messages; millisecond resolution).", "", commands(r["commands"]), ""]
    return out


def section_idle(r, targets):
    first = r["mem"][0]
    ratio = [x for x in r["rows"] if "ratio" in x][0]["ratio"]
    out = ["## 5. Many connections: idle clients held open", "",
           "moatd as a proxy without filters (`max_connections` raised, no per-client limits, "
           "stress mode off so idle clients keep the normal `client_timeout`). In each round: "
           "smtp-source sends %d × %d octets at %d sessions; then %d idle connections are "
           "opened, each from its own loopback source address (127.10.0.1, 127.10.0.2, ... "
           "in 127.0.0.0/8), each reads the greeting and says nothing; the same load runs "
           "again with them held; they are closed. Every idle connection was still open "
           "after the load."
           % (r["count"], r["size"], r["sessions"], r["n"]), "",
           "**Memory.** moatd's VmRSS was %d KB before the first opening and %d KB with the "
           "%d idle connections: **%.1f KB per idle connection** (RSS ÷ connections). moatd "
           "held %d file descriptors with them against %d without: one per client, no "
           "upstream session for a client that has not sent MAIL. Later rounds reuse the "
           "memory freed when the previous round's connections closed (RSS grew by "
           "%s KB per connection there), so the first opening is the figure. Peak RSS over "
           "the case: %d KB."
           % (first["before_kb"], first["after_kb"], r["n"], first["per_conn_kb"],
              first["fds_with"], first["fds_before"],
              ", ".join("%.1f" % x["per_conn_kb"] for x in r["mem"][1:]) or "-",
              r["hwm_kb"]), ""]
    targets.append(target(first["per_conn_kb"] < 20,
                          "%.1f KB of moatd memory per idle connection with %d of them "
                          "(target under 20 KB)" % (first["per_conn_kb"], r["n"])))
    targets.append(target(ratio["median"] >= 0.9,
                          "normal throughput with %d idle connections is %.2f of without "
                          "(target at least 0.9)" % (r["n"], ratio["median"])))
    rows = [[x["name"], f(x["rate"]), f(x.get("ratio"), 2), f(x["cpu_ms"], 3)]
            for x in r["rows"]]
    out += [table(["load through moatd", "msg/s", "ratio to without", "moatd CPU ms/msg"],
                  rows), "", commands(r["commands"]), ""]
    return out


def section_growth(r, targets):
    out = ["## 6. Growth: moatd's CPU per message by size and recipients", "",
           "moatd as a proxy without filters in front of smtp-sink, %d sessions, one message "
           "per session; the variants alternate within each round. CPU is moatd's utime + "
           "stime (/proc/PID/stat) over a run ÷ its messages (tick resolution 10 ms over the "
           "whole run). *relative* is the CPU per message against the 1 KB one-recipient "
           "variant of the same round." % r["sessions"], ""]
    rows = [[x["name"], "%d" % x["count"], f(x["rate"]), f(x["cpu_ms"], 3),
             f(x["cpu_rel"], 2), f(x["cpu_us_per_kb"], 1), "%d" % x["rss_peak_kb"]]
            for x in r["rows"]]
    out += [table(["message", "messages per run", "msg/s", "moatd CPU ms/msg", "relative",
                   "moatd CPU µs per KB", "moatd peak RSS KB"], rows), "",
            commands(r["commands"]), ""]
    return out


def section_crypto(r, targets):
    out = ["## 3. DKIM signing and verification against the raw crypto", "",
           "`build/bench/dkim_speed` (tests/bench/dkim_speed.c, linked with build/libmoat.a) "
           "runs moat's own code on one core with the key parsed once: *sign* is the body hash "
           "(relaxed) plus `dkim_sign()` (header selection, canonicalization, the signature), "
           "as the daemon does per message; *verify* is a whole `dkim_verifier` run over the "
           "signed message (parse the signature, parse the key record as DNS returns it, hash "
           "the body, check). `openssl speed` (%d s per figure) runs in the same round. Both "
           "count operations per CPU second of their process (openssl speed's default, user "
           "time; dkim_speed, user + system), so load from elsewhere on the machine does not "
           "count against either." %
           r["seconds"], ""]
    rows = []
    for row in r["rows"]:
        rows.append([row["name"], f(row["rate"]), f(row.get("ratio"), 2)])
        n = row["name"]
        if n == "moat rsa2048 sign, 1 KB message":
            targets.append(target(row["ratio"]["median"] >= 0.8,
                                  "rsa-sha256 signing of 1 KB messages is %.2f of `openssl "
                                  "speed` rsa2048 sign (target at least 0.8)"
                                  % row["ratio"]["median"]))
        if n == "moat ed25519 sign, 1 KB message":
            targets.append(target(row["ratio"]["median"] >= 0.5,
                                  "ed25519-sha256 signing of 1 KB messages is %.2f of `openssl "
                                  "speed` ed25519 sign (target at least 0.5)"
                                  % row["ratio"]["median"]))
    out += [table(["operation", "per second", "ratio to openssl speed"], rows), "",
            commands(r["commands"]), ""]
    return out


def milter_table(r):
    rows = []
    for row in r["rows"]:
        rows.append([row["name"], f(row.get("rate")), f(row.get("ratio"), 2),
                     f(row.get("cpu_ms"), 2) if "cpu_ms" in row else f(row.get("cpu_ratio"), 2),
                     f(row.get("postfix_cpu_ms"), 2)])
    return table(["set-up", "msg/s end to end", "ratio to Postfix alone",
                  "filter CPU ms/msg (last rows: ratio)", "Postfix CPU ms/msg"], rows)


def section_milter(sig, ver, targets, opendkim=""):
    """Case 4: sig (signing) and ver (verifying), either may be None."""
    out = ["## 4. Milter: DKIM signing and verifying in front of Postfix", "",
           "Throwaway Postfix instances (smtpd on loopback, relaying to their own "
           "`smtp-sink -c`) side by side, each with one milter or none, in two groups: the "
           "signing role and the verifying role. smtp-source sends the same message through "
           "each Postfix of a group in turn (A B C ... in every round). msg/s is end to end: "
           "from smtp-source's start until smtp-sink has counted every message (Postfix "
           "queues, then relays). Filter CPU: moatd with its milter process; opendkim; "
           "rspamd: its main process and all its workers. Postfix CPU: its master and every "
           "daemon it ran, exited ones included. The last rows compare moatd with OpenDKIM "
           "and with rspamd round by round (throughput ratio; filter CPU per message "
           "ratio). OpenDKIM: Debian's opendkim %s. rspamd: Debian's rspamd %s, its "
           "rspamd_proxy worker in milter mode handing each message to the normal workers "
           "(one per core; Debian's layout), with no rules, no statistics, no Redis."
           % (opendkim, (sig or ver or {}).get("rspamd_version", "")), ""]
    if sig:
        out += section_milter_sign(sig, targets)
    if ver:
        out += section_milter_verify(ver, targets)
    return out


def section_milter_sign(r, targets):
    rsp = any(x["name"] == "Postfix + rspamd" for x in r["rows"])
    out = ["### Signing", "",
           "%s set-ups: Postfix alone; moatd's milter with no filter (the control: what the "
           "milter protocol alone costs); moatd's milter signing; OpenDKIM signing%s. All "
           "sign rsa-sha256 (2048 bits, the same key) relaxed/relaxed. %d × %d octets at %d "
           "sessions per run. The warm-up round checks that every relayed message of the "
           "signing set-ups (and no other) carries a DKIM-Signature (Postfix "
           "smtp_header_checks, off in the timed rounds)."
           % ("Five" if rsp else "Four",
              "; rspamd signing (only the dkim and dkim_signing modules, milter_headers off)"
              if rsp else "", r["count"], r["size"], r["sessions"]), ""]
    if r.get("rspamd_note"):
        out += ["rspamd was left out of this run: %s" % r["rspamd_note"], ""]
    m = [x for x in r["rows"] if x["name"] == "Postfix + moatd milter"][0]
    o = [x for x in r["rows"] if x["name"] == "moatd / OpenDKIM"][0]
    od = [x for x in r["rows"] if x["name"] == "Postfix + OpenDKIM"][0]
    nf = [x for x in r["rows"] if x["name"] == "Postfix + moatd milter, no filters"][0]
    targets.append(target(m["ratio"]["median"] >= 0.9,
                          "Postfix + moatd signing keeps %.2f of Postfix-alone throughput "
                          "(target at least 0.9; OpenDKIM keeps %.2f in the same run, and "
                          "moatd's milter with no filter at all %.2f)"
                          % (m["ratio"]["median"], od["ratio"]["median"],
                             nf["ratio"]["median"])))
    rs = [x for x in r["rows"] if x["name"] == "Postfix + rspamd"]
    targets.append(target(o["cpu_ratio"]["median"] <= 0.2,
                          "moatd's CPU per signed message is %.2f of OpenDKIM's (target at "
                          "most 0.2): %.2f ms against %.2f ms%s"
                          % (o["cpu_ratio"]["median"], m["cpu_ms"]["median"],
                             od["cpu_ms"]["median"],
                             "; rspamd spends %.2f ms and keeps %.2f of Postfix-alone "
                             "throughput" % (rs[0]["cpu_ms"]["median"],
                                             rs[0]["ratio"]["median"]) if rs else "")))
    out += [milter_table(r), "", commands(r["commands"]), ""]
    return out


def section_milter_verify(r, targets):
    rows = {x["name"]: x for x in r["rows"]}
    rsp = "Postfix + rspamd" in rows
    dns = [(n, rows[k]["dns_cpu_ms"]["median"])
           for n, k in (("moatd", "Postfix + moatd milter"), ("OpenDKIM", "Postfix + OpenDKIM"),
                        ("rspamd", "Postfix + rspamd")) if k in rows and "dns_cpu_ms" in rows[k]]
    if any(x for _, x in dns):
        dns = ("unbound's own CPU per message, not in the filter column: %s"
               % ", ".join("%s %.3f ms" % d for d in dns))
    else:  # under one clock tick (10 ms) over every run
        dns = "unbound used no measurable CPU in any timed run"
    out = ["### Verifying", "",
           "The same kind of message, DKIM-signed once by `moat sign` (rsa-sha256, 2048 bits, "
           "relaxed/relaxed), %d × %d octets at %d sessions per run. The public key comes "
           "from a local unbound serving it (case 2's test zones), which every verifier asks "
           "directly (moatd's `resolver`, OpenDKIM's `Nameservers`, rspamd's "
           "`dns.nameserver`). Each caches it (moatd's resolver, OpenDKIM's libunbound, "
           "rspamd's DKIM key cache), so after the first message the key is a cache hit, as "
           "for a repeated sender. %s set-ups: Postfix alone; moatd's milter "
           "verifying (`filters = {\"dkim\"}`, no keys, no `sign_networks`: Postfix's client "
           "is not authenticated, so every message is verified); OpenDKIM verifying (`Mode "
           "v`)%s. The warm-up round checks that every message relayed through a verifier "
           "carries an Authentication-Results with dkim=pass for example.net from that "
           "verifier (its authserv-id) and no other Authentication-Results, and that none "
           "relayed by Postfix alone carries any (Postfix smtp_header_checks, off in the "
           "timed rounds). %s."
           % (r["count"], r["size"], r["sessions"], "Four" if rsp else "Three",
              "; rspamd verifying (only the dkim module, checking local mail too; of "
              "milter_headers only the authentication-results routine, since rspamd adds no "
              "header without it)" if rsp else "", dns), ""]
    if r.get("rspamd_note"):
        out += ["rspamd was left out of this run: %s" % r["rspamd_note"], ""]
    m, od = rows["Postfix + moatd milter"], rows["Postfix + OpenDKIM"]
    o = rows["moatd / OpenDKIM"]
    text = ("**no target** (verifying; the issue's targets are for signing): Postfix + "
            "moatd verifying keeps %.2f of Postfix-alone throughput, OpenDKIM %.2f"
            % (m["ratio"]["median"], od["ratio"]["median"]))
    if rsp:
        text += ", rspamd %.2f" % rows["Postfix + rspamd"]["ratio"]["median"]
    text += ("; moatd's CPU per verified message is %.2f ms, %.2f of OpenDKIM's (%.2f ms)"
             % (m["cpu_ms"]["median"], o["cpu_ratio"]["median"], od["cpu_ms"]["median"]))
    if rsp:
        text += " and %.2f of rspamd's (%.2f ms)" % (
            rows["moatd / rspamd"]["cpu_ratio"]["median"],
            rows["Postfix + rspamd"]["cpu_ms"]["median"])
    targets.append("- " + text)
    out += [milter_table(r), "", commands(r["commands"]), ""]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out")
    ap.add_argument("--only", default=ALL)
    a = ap.parse_args()
    p = QUICK if a.quick else FULL
    if a.out:
        out_path = a.out
    elif a.quick:
        out_path = os.path.join(benchlib.ROOT, "build", "bench", "PERFORMANCE.quick.md")
    else:
        out_path = os.path.join(benchlib.ROOT, "docs", "PERFORMANCE.md")
    only = set()
    for x in a.only.split(","):
        only.update(ALIASES.get(x, (x,)))
    facts = benchlib.machine()
    t0 = time.time()
    results, failures = {}, []
    steps = [("proxy", lambda: proxy_bench.ceiling(runs=p["runs"], loads=p["ceiling"])),
             ("pipeline", lambda: proxy_bench.pipeline(runs=p["runs"], count=p["pipeline"])),
             ("reputation", lambda: proxy_bench.reputation(runs=p["runs"], count=p["pipeline"])),
             ("crypto", lambda: crypto_bench.run(runs=p["crypto_runs"])),
             ("milter-sign", lambda: milter_bench.sign(runs=p["runs"], count=p["milter"])),
             ("milter-verify", lambda: milter_bench.verify(runs=p["runs"],
                                                           count=p["milter_verify"])),
             ("idle", lambda: scale_bench.idle(runs=p["runs"], n=p["idle"],
                                               count=p["idle_load"])),
             ("growth", lambda: scale_bench.growth(runs=p["runs"], counts=p["growth"]))]
    unknown = only - set(name for name, _ in steps)
    if unknown:
        ap.error("--only: unknown case(s) %s; known: %s, milter-sign, milter-verify"
                 % (",".join(sorted(unknown)), ALL))
    for name, fn in steps:
        if name not in only:
            continue
        sys.stderr.write("== %s\n" % name)
        try:
            results[name] = fn()
        except benchlib.BenchError as e:
            failures.append("%s: %s" % (name, e))
            traceback.print_exc()
        finally:
            benchlib.Procs.stop_all()
    od_version = opendkim_version() if "milter-sign" in only or "milter-verify" in only else ""
    elapsed = time.time() - t0

    targets = []
    body = []
    for name, sec in (("proxy", section_ceiling), ("pipeline", section_pipeline),
                      ("reputation", section_reputation),
                      ("crypto", section_crypto), ("milter", None),
                      ("idle", section_idle), ("growth", section_growth)):
        if name == "milter":
            if "milter-sign" in results or "milter-verify" in results:
                body += section_milter(results.get("milter-sign"), results.get("milter-verify"),
                                       targets, od_version)
        elif name in results:
            body += sec(results[name], targets)
    doc = [
        "# moat performance", "",
        "Written by `make %s` (tests/bench/run.py) on %s; it took %.1f minutes. "
        "Re-run it to refresh this file." % ("bench-quick" if a.quick else "bench",
                                              facts["date"], elapsed / 60), "",
        "Every case runs on loopback against real parts (Postfix's smtp-source and "
        "smtp-sink, Postfix, unbound, OpenDKIM, rspamd, the release build of moatd). Loads are "
        "fixed "
        "in size. Each case starts with a warm-up round that is not counted, then %d timed "
        "rounds; within a round the variants run one after the other (A B A B ...). "
        "Tables give the **median (min–max)** over the rounds; a ratio is taken within each "
        "round, then summarised." % p["runs"], "",
        "**Noise.** The machine is shared: other builds and tests ran while this was "
        "measured (load average %s at the start). Absolute msg/s move with that load from run "
        "to run; the side-by-side ratios are the figures to compare." % facts["load"], "",
        "## Machine", "",
        table(["", ""], [["CPUs (nproc)", str(facts["nproc"])], ["CPU", facts["cpu"]],
                         ["memory", facts["mem_gb"] + " GB"], ["kernel", facts["kernel"]],
                         ["Postfix", facts["postfix"]], ["OpenSSL", facts["openssl"]],
                         ["date", facts["date"]]]), "",
        "## Targets (issue #12)", ""] + (targets or ["- none measured"]) + [""]
    if failures:
        doc += ["## Failed cases", ""] + ["- " + x for x in failures] + [""]
    doc += body
    notes = os.path.join(HERE, "NOTES.md")
    if os.path.exists(notes) and not a.quick:
        with open(notes) as fh:
            doc += [fh.read().rstrip(), ""]
    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    with open(out_path, "w") as fh:
        fh.write("\n".join(doc))
    sys.stderr.write("wrote %s (%.1f min)\n" % (out_path, elapsed / 60))
    return 1 if failures else 0


def opendkim_version():
    import subprocess
    try:
        v = subprocess.run(["opendkim", "-V"], capture_output=True, text=True).stdout
        return v.split("\n")[0].replace("opendkim: OpenDKIM Filter ", "")
    except OSError:
        return ""


if __name__ == "__main__":
    sys.exit(main())
