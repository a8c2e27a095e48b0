"""A throwaway redis-server on a loopback port, for the tests of the
store and of the filters that keep their state in it (reputation,
ratelimit, greylist)."""

import subprocess

from moattest import check, free_port, port_listening, wait_for


class Redis:
    """A throwaway redis-server on 127.0.0.1:port (no persistence)."""

    def __init__(self, port=None):
        self.port = port or free_port()
        self.proc = None

    def argv(self):
        return ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                # never a file in the working directory (a replica's full
                # sync would write dump.rdb there)
                "--dir", "/tmp", "--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0",
                "--save", "", "--appendonly", "no"]

    def start(self):
        self.proc = subprocess.Popen(self.argv(), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        check(wait_for(lambda: port_listening(self.port), timeout=5), "redis-server did not start")
        return self

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def cli(self, *args):
        r = subprocess.run(["redis-cli", "-p", str(self.port)] + list(args),
                           capture_output=True, text=True, timeout=10)
        return r.stdout.strip()

    def __enter__(self):
        return self.start()

    def __exit__(self, *a):
        self.kill()
