#!/usr/bin/python3
"""The Redis store with Redis Sentinel, a replica for reads, and several
servers on a hash ring, with real redis-server and redis-sentinel
processes on loopback ports: moatd finds the primary through the
sentinel; the primary is killed, the sentinel promotes the replica, mail
keeps flowing during the switch (the store answers "unknown"), and
moatd's writes land on the new primary; two moatd on a ring of two
servers share their counts; a bad list is refused with file:line."""

import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from moattest import *  # noqa
from test_reputation import Redis, send, moat  # noqa

MASTER = "mymaster"


class Replica(Redis):
    """A redis-server replicating from primary_port."""

    def __init__(self, primary_port):
        Redis.__init__(self)
        self.primary_port = primary_port

    def start(self):
        self.proc = subprocess.Popen(
            self.argv() + ["--replicaof", "127.0.0.1", str(self.primary_port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        check(wait_for(lambda: port_listening(self.port), timeout=5), "replica did not start")
        check(wait_for(lambda: "master_link_status:up" in self.cli("INFO", "replication"),
                       timeout=10), "replica did not sync")
        return self


class Sentinel(Redis):
    """One redis-sentinel (quorum 1, down after 1 s) watching primary_port."""

    def __init__(self, primary_port):
        Redis.__init__(self)
        self.primary_port = primary_port
        self.dir = tempfile.mkdtemp(prefix="moattest.sentinel.")

    def start(self):
        conf = os.path.join(self.dir, "sentinel.conf")
        with open(conf, "w") as f:
            f.write("port %d\nbind 127.0.0.1\ndaemonize no\ndir %s\n"
                    "sentinel monitor %s 127.0.0.1 %d 1\n"
                    "sentinel down-after-milliseconds %s 1000\n"
                    "sentinel failover-timeout %s 3000\n"
                    "sentinel parallel-syncs %s 1\n"
                    % (self.port, self.dir, MASTER, self.primary_port, MASTER, MASTER, MASTER))
        self.proc = subprocess.Popen(["redis-sentinel", conf], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        check(wait_for(lambda: port_listening(self.port), timeout=5), "sentinel did not start")
        return self

    def master(self):
        return self.cli("SENTINEL", "get-master-addr-by-name", MASTER).split()

    def knows_replica(self, port):
        return ("\n%d\n" % port) in ("\n" + self.cli("SENTINEL", "replicas", MASTER) + "\n")


def store_rig(store_lines, filters=("access", "reputation")):
    """A Rig with the reputation filter, a control socket and the store
    section given (lines inside store { })."""
    tmp = tempfile.mkdtemp(prefix="moattest.sent.")
    r = Rig(options={"control_socket": os.path.join(tmp, "control")},
            overrides=["reputation.min_messages=3", "scoring.add_header=6"])
    r.moatd.extra_conf = "\n".join(
        ["filters = {%s}" % ", ".join('"%s"' % f for f in filters),
         "access {", '    sender = {"spam@bad.example score 10"}', "}",
         "store {", '    backend = "redis"', "    timeout_ms = 300"]
        + ["    " + l for l in store_lines] + ["}"])
    r.moatd.write_config()
    return r


def ham_keys(red):
    return red.cli("--scan", "--pattern", "moat:rep:ip:127.0.0.1:ham:*").split()


def ham_count(red):
    ks = ham_keys(red)
    return int(red.cli("GET", ks[0]) or 0) if ks else 0


def test_sentinel_failover_mail_flows_writes_follow():
    with Redis() as prim:
        rep = Replica(prim.port).start()
        sen = Sentinel(prim.port).start()
        try:
            check(wait_for(lambda: sen.knows_replica(rep.port), timeout=15),
                  "sentinel did not see the replica")
            with store_rig(['sentinels = {"127.0.0.1:%d"}' % sen.port,
                            'sentinel_master = "%s"' % MASTER,
                            "sentinel_replica_reads = yes"]) as r:
                r.moatd.wait_log(r"redis sentinel 127\.0\.0\.1:%d: master %s is at 127\.0\.0\.1:%d"
                                 % (sen.port, MASTER, prim.port), timeout=10)
                r.moatd.wait_log(r"master %s has 1 healthy replica" % MASTER, timeout=10)
                time.sleep(0.3)
                send(r, n=2)
                check(re.search(r"cmdstat_get:calls=\d+", rep.cli("INFO", "commandstats")),
                      "reads on the replica")
                check(wait_for(lambda: ham_count(prim) == 2, timeout=5),
                      "counts on the first primary: %r" % ham_count(prim))
                rc, out, err = moat(r, "status")
                check(re.search(r'store="redis sentinel master mymaster \(1 sentinels\) db 0" '
                                r'state=up', out), "status: %r" % out)
                check(wait_for(lambda: ham_count(rep) == 2, timeout=5), "replicated counts")
                prim.kill()
                t0 = time.time()
                sent = 0
                # mail during the failover: every message is accepted
                while time.time() - t0 < 25:
                    send(r)
                    sent += 1
                    if r.moatd.grep(r"master %s is at 127\.0\.0\.1:%d" % (MASTER, rep.port)):
                        break
                    time.sleep(0.2)
                r.moatd.wait_log(r"master %s is at 127\.0\.0\.1:%d" % (MASTER, rep.port),
                                 timeout=5)
                eq(sen.master(), ["127.0.0.1", str(rep.port)], "sentinel's master")
                check(sent >= 3, "only %d messages during the failover" % sent)
                r.up.wait_messages(2 + sent)
                eq(len(r.up.messages), 2 + sent, "messages delivered across the failover")
                before = ham_count(rep)
                r.moatd.wait_log(r"redis 127\.0\.0\.1:%d is back|master %s is at" %
                                 (rep.port, MASTER), timeout=5)
                time.sleep(0.5)
                send(r, n=3)
                check(wait_for(lambda: ham_count(rep) == before + 3, timeout=5),
                      "writes on the new primary: %d, want %d" % (ham_count(rep), before + 3))
                eq(rep.cli("ROLE").split()[0], "master", "role of the promoted replica")
        finally:
            sen.kill()
            rep.kill()
test_sentinel_failover_mail_flows_writes_follow.timeout = 120


def test_replica_reads_see_the_primarys_counts():
    with Redis() as prim:
        rep = Replica(prim.port).start()
        try:
            with store_rig(['redis_server = "127.0.0.1:%d"' % prim.port,
                            'redis_replicas = {"127.0.0.1:%d"}' % rep.port]) as r:
                send(r, n=3)
                check(wait_for(lambda: len(ham_keys(prim)) == 1, timeout=5), "writes on the primary")
                # the reads (the filter's GETs) went to the replica, before
                # this test's own GETs below
                calls = prim.cli("INFO", "commandstats")
                check(not re.search(r"cmdstat_get:calls=\d+", calls),
                      "GETs on the primary: %r" % calls)
                calls = rep.cli("INFO", "commandstats")
                check(re.search(r"cmdstat_get:calls=\d+", calls), "GETs on the replica: %r" % calls)
                check(wait_for(lambda: ham_count(prim) == 3, timeout=5), "counts on the primary")
                check(wait_for(lambda: ham_count(rep) == 3, timeout=5), "the replica's copy")
                send(r)
                check("REP_IP_GOOD" in r.moatd.msg_lines()[-1]["_"],
                      "scored from the replica's counts: %s" % r.moatd.msg_lines()[-1]["_"])
        finally:
            rep.kill()


def test_two_instances_on_a_hash_ring_share_counts():
    with Redis() as a_srv, Redis() as b_srv:
        lines = ['redis_servers = {"127.0.0.1:%d", "127.0.0.1:%d"}' % (a_srv.port, b_srv.port)]
        with store_rig(lines) as a, store_rig(lines) as b:
            send(a, n=4)
            send(b, n=4)
            # more names, so that both servers hold some (the ring places
            # by name, and the servers' ports are random)
            for i in range(1, 9):
                c = a.ehlo_client(source="127.0.%d.1" % i)
                expect_reply(c.send_message(make_body(), mail_from="alice@good.example"), 250)
                c.quit()
            # each key lives on exactly one server; together both moatd counted 8
            keys_a = set(a_srv.cli("--scan", "--pattern", "moat:rep:*").split())
            keys_b = set(b_srv.cli("--scan", "--pattern", "moat:rep:*").split())
            check(keys_a and keys_b, "keys on both servers: %r %r" % (keys_a, keys_b))
            eq(keys_a & keys_b, set(), "keys on both")
            hk = [k for k in keys_a | keys_b if k.startswith("moat:rep:ip:127.0.0.1:ham:")][0]
            srv = a_srv if hk in keys_a else b_srv
            check(wait_for(lambda: srv.cli("GET", hk) == "8", timeout=5),
                  "count of %s: %r" % (hk, srv.cli("GET", hk)))
            # one server down: mail flows, one outage logged
            other = b_srv if srv is a_srv else a_srv
            other.kill()
            send(a, n=2)
            a.up.wait_messages(14)
            check(wait_for(lambda: srv.cli("GET", hk) == "10", timeout=5),
                  "the live server still counts: %r" % srv.cli("GET", hk))
            rc, out, err = moat(a, "status")
            check(re.search(r'store="redis 2 servers \(hash ring\) db 0" state=down', out),
                  "status: %r" % out)


def test_bad_store_lists_refused():
    with Rig() as r:
        for extra, want in [
                ('store {\n    sentinels = {"127.0.0.1:1"}\n}', r"sentinels.*needs sentinel_master"),
                ('store {\n    redis_servers = {"nohost"}\n}', r"redis_servers.*not host:port"),
                ('store {\n    sentinels = {"127.0.0.1:1"}\n    sentinel_master = "m"\n'
                 '    redis_servers = {"127.0.0.1:2"}\n}', r"cannot be combined"),
                ('store {\n    redis_replicas = {"127.0.0.1:3"}\n    sentinels = {"127.0.0.1:1"}\n'
                 '    sentinel_master = "m"\n}', r"redis_replicas.*only with one server")]:
            path = os.path.join(tempfile.mkdtemp(prefix="moattest.badstore."), "moat.conf")
            with open(path, "w") as f:
                f.write(open(r.moatd.conf).read() + "\n" + extra + "\n")
            p = subprocess.run([MOATD, "-t", "-c", path], capture_output=True, text=True,
                               timeout=30)
            check(p.returncode != 0, "moatd -t accepted %r" % extra)
            check(re.search(r"moat\.conf:\d+: .*" + want, p.stderr),
                  "errors for %r: %r" % (extra, p.stderr))


if __name__ == "__main__":
    sys.exit(run_tests(globals()))
