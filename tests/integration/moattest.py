"""moattest.py - shared rig for moat's integration tests.

Python 3 standard library only. Pieces:

  free_port()       a free TCP port on 127.0.0.1
  Upstream          a recording upstream SMTP server with fault modes
  Moatd             starts/stops moatd with a generated config, captures its log;
                    as root it runs moatd with -o user=RUN_USER (nobody)
  Rig               an Upstream and a Moatd wired together (context manager)
  Client            a raw-socket SMTP client (exact bytes, pipelining)
  swaks()           runs swaks
  run_tests()       the per-file test runner: prints "ok NAME" / "not ok NAME: why"

Environment:
  MOATD           moatd binary (default build/san/moatd)
  MOATD_HOOKTEST  hook test binary (default build/san/moatd-hooktest)
  MOAT_TEST_KEEP  keep temp directories (printed on failure)
  MOAT_TEST_VERBOSE print moatd's log for passing tests too
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MOATD = os.environ.get("MOATD") or os.path.join(ROOT, "build", "san", "moatd")
MOATD_HOOKTEST = (os.environ.get("MOATD_HOOKTEST")
                  or os.path.join(ROOT, "build", "san", "moatd-hooktest"))
SMTP_SINK = "/usr/sbin/smtp-sink"
if not os.path.exists(SMTP_SINK):
    SMTP_SINK = "/usr/lib/postfix/sbin/smtp-sink"

# ASan/UBSan settings for every moatd we start (run.sh exports the same).
os.environ.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
os.environ.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")

SAN_PATTERNS = [
    re.compile(r"ERROR: AddressSanitizer"),
    re.compile(r"ERROR: LeakSanitizer"),
    re.compile(r"SUMMARY: \w+Sanitizer"),
    re.compile(r"runtime error:"),
    re.compile(r"WARNING: AddressSanitizer"),
    re.compile(r"ThreadSanitizer|MemorySanitizer"),
]


class TestFailure(AssertionError):
    pass


def fail(msg):
    raise TestFailure(msg)


def check(cond, msg):
    if not cond:
        raise TestFailure(msg)


def eq(got, want, what="value"):
    if got != want:
        raise TestFailure("%s: got %s, want %s" % (what, short(got), short(want)))


def short(v, n=300):
    r = repr(v)
    if len(r) > n:
        r = r[:n // 2] + "..." + r[-n // 2:] + " (%d chars)" % len(r)
    return r


def free_port():
    """A TCP port on 127.0.0.1 that is free right now (not reserved)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def port_listening(port):
    """True if something LISTENs on TCP port (any address), via /proc."""
    want = ":%04X" % port
    for f in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(f) as fh:
                next(fh)
                for line in fh:
                    parts = line.split()
                    if parts[1].endswith(want) and parts[3] == "0A":
                        return True
        except OSError:
            pass
    return False


def wait_for(pred, timeout=5.0, interval=0.02, what=None):
    end = time.time() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.time() >= end:
            if what:
                fail("timed out after %.1fs waiting for %s" % (timeout, what))
            return v
        time.sleep(interval)


def dot_unstuff(raw):
    """raw: DATA bytes as on the wire after 354, ending with CRLF.CRLF
    (only CRLF "." CRLF terminates). Returns the content."""
    lines = raw.split(b"\r\n")
    out = []
    for ln in lines:
        if ln.startswith(b"."):
            ln = ln[1:]
        out.append(ln)
    return b"\r\n".join(out)


def dot_stuff(body):
    """body: canonical content; returns the wire form incl. terminator."""
    if body and not body.endswith(b"\r\n"):
        body += b"\r\n"
    lines = body.split(b"\r\n")
    stuffed = b"\r\n".join((b"." + ln if ln.startswith(b".") else ln) for ln in lines)
    return stuffed + b".\r\n"


def xtext_encode(b):
    if isinstance(b, str):
        b = b.encode()
    out = []
    for c in b:
        if c < 0x21 or c > 0x7e or c in (0x2b, 0x3d):
            out.append("+%02X" % c)
        else:
            out.append(chr(c))
    return "".join(out)


def xtext_decode(s):
    out = bytearray()
    i = 0
    while i < len(s):
        if s[i] == "+":
            out.append(int(s[i + 1:i + 3], 16))
            i += 3
        else:
            out.append(ord(s[i]))
            i += 1
    return bytes(out)


# ---------------------------------------------------------------- upstream

DEFAULT_CAPS = ["PIPELINING", "SIZE 20480000", "8BITMIME", "SMTPUTF8",
                "ENHANCEDSTATUSCODES", "DSN",
                "XCLIENT NAME ADDR PORT PROTO HELO LOGIN"]


class _Closed(Exception):
    pass


class UpMessage:
    """One message as the upstream received it."""

    def __init__(self, session, mail_line, rcpt_lines, xclient):
        self.session = session
        self.mail_line = mail_line          # bytes, "MAIL FROM:<a> ..." (no CRLF)
        self.rcpt_lines = list(rcpt_lines)  # accepted RCPT lines
        self.xclient = xclient
        self.data_raw = b""                 # exact bytes after 354 incl. ".\r\n"
        self.body = b""                     # unstuffed content (ends in CRLF)
        self.reply = None

    @property
    def mail_from(self):
        m = re.match(rb"(?i)MAIL FROM:\s?<([^>]*)>", self.mail_line)
        return m.group(1).decode("utf-8", "replace") if m else None

    @property
    def rcpts(self):
        out = []
        for ln in self.rcpt_lines:
            m = re.match(rb"(?i)RCPT TO:\s?<([^>]*)>", ln)
            out.append(m.group(1).decode("utf-8", "replace") if m else None)
        return out

    def __repr__(self):
        return "<UpMessage from=%r rcpts=%r %d bytes>" % (self.mail_from, self.rcpts, len(self.body))


class UpSession:
    def __init__(self, idx, peer):
        self.idx = idx
        self.peer = peer
        self.raw = bytearray()     # every byte received
        self.sent = bytearray()    # every byte sent
        self.commands = []         # command lines (bytes, no CRLF)
        self.xclient = []          # list of dicts: attr -> raw value
        self.messages = []
        self.closed = False
        self.ehlo_count = 0
        self.proxy_header = None   # bytes, with Upstream(proxy_protocol=True)

    def verbs(self):
        return [c.split(b" ", 1)[0].upper().decode("latin-1") for c in self.commands]


class Upstream:
    """A recording upstream SMTP server (threads).

    Behaviour knobs (attributes, may be changed while running; each new
    connection takes a snapshot of them):
      caps           list of EHLO keywords (DEFAULT_CAPS)
      caps_seq       optional list of caps lists; connection i uses
                     caps_seq[min(i, len-1)] (i counts every connection,
                     the probe included)
      caps_after_xclient  caps for EHLO after a successful XCLIENT
      replies        {stage: "451 4.3.0 text"} reply instead of the default.
                     stages: greeting ehlo helo xclient mail rcpt data eod rset noop quit
                     A value may be a multi-line string ("250-a\\r\\n250 b").
      rcpt_replies   {address: reply} for RCPT TO:<address> only
      close_at       set of stages: close the connection instead of replying
      hang_at        set of stages: never reply (until the client closes)
      close_mid_data N: close the connection after N bytes of DATA content
      delay          seconds to sleep before every reply
      eod_delay      extra seconds to sleep before the end-of-data reply
      hostname       name in the greeting
      queue_prefix   queue id prefix ("queued as PREFIXn")
      fault_from     faults apply only to connections with index >= this
      proxy_protocol read a PROXY protocol header (v1 or v2) before the
                     greeting; each session keeps it in proxy_header
    """

    def __init__(self, port=None, caps=None, **kw):
        self.sock = None
        if port is None:
            # bind now, so no other test process can take the port before start()
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", 0))
            self.sock = s
            port = s.getsockname()[1]
        self.port = port
        self.caps = list(DEFAULT_CAPS if caps is None else caps)
        self.caps_seq = None
        self.caps_after_xclient = None
        self.replies = {}
        self.rcpt_replies = {}
        self.close_at = set()
        self.hang_at = set()
        self.close_mid_data = None
        self.delay = 0.0
        self.eod_delay = 0.0
        self.hostname = "upstream.test"
        self.queue_prefix = "QID"
        self.fault_from = 0
        self.proxy_protocol = False
        for k, v in kw.items():
            if not hasattr(self, k):
                raise TypeError("Upstream: unknown option %s" % k)
            setattr(self, k, v)
        self.sessions = []
        self.lock = threading.Lock()
        self.stop_ev = threading.Event()
        self.thread = None
        self.conns = []
        self.nqueued = 0

    # -- lifecycle
    def start(self):
        s = self.sock
        self.sock = None
        if s is None:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", self.port))
        s.listen(64)
        s.settimeout(0.2)
        self.sock = s
        self.stop_ev.clear()
        self.thread = threading.Thread(target=self._accept_loop, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        self.stop_ev.set()
        if self.thread:
            self.thread.join(3)
        if self.sock:
            self.sock.close()
            self.sock = None
        with self.lock:
            for c in self.conns:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                try:
                    c.close()
                except OSError:
                    pass
            self.conns = []

    def __enter__(self):
        return self.start()

    def __exit__(self, *a):
        self.stop()

    # -- queries
    @property
    def messages(self):
        with self.lock:
            return [m for s in self.sessions for m in s.messages]

    def delivered(self):
        """Messages the upstream accepted (250 at end of data)."""
        return [m for m in self.messages if m.accepted]

    def data_commands(self):
        return [c for c in self.all_commands() if c.upper().startswith(b"DATA")]

    def all_commands(self):
        with self.lock:
            return [c for s in self.sessions for c in s.commands]

    def mail_sessions(self):
        """Sessions that got at least one MAIL command."""
        with self.lock:
            return [s for s in self.sessions if any(v == "MAIL" for v in s.verbs())]

    def wait_messages(self, n, timeout=5.0):
        wait_for(lambda: len(self.messages) >= n, timeout,
                 what="%d message(s) at the upstream (have %d)" % (n, len(self.messages)))
        return self.messages

    def transcript(self, limit=4000):
        out = []
        with self.lock:
            for s in self.sessions:
                out.append("-- upstream session %d from %s" % (s.idx, s.peer))
                out.append("   recv: " + short(bytes(s.raw), limit))
                out.append("   sent: " + short(bytes(s.sent), limit // 2))
        return "\n".join(out)

    # -- server
    def _accept_loop(self):
        idx = 0
        while not self.stop_ev.is_set():
            try:
                c, peer = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            sess = UpSession(idx, peer)
            with self.lock:
                self.sessions.append(sess)
                self.conns.append(c)
            t = threading.Thread(target=self._serve, args=(c, sess, idx), daemon=True)
            t.start()
            idx += 1

    class _Live:
        """Reads the server's knobs at the moment of use (so a test can
        change them while moatd keeps its upstream connection open);
        faults only apply to connections with index >= fault_from."""

        def __init__(self, up, idx):
            self.up = up
            self.idx = idx

        def __getitem__(self, k):
            up = self.up
            faults = self.idx >= up.fault_from
            if k == "caps":
                if up.caps_seq:
                    return list(up.caps_seq[min(self.idx, len(up.caps_seq) - 1)])
                return list(up.caps)
            if k in ("replies", "rcpt_replies"):
                return dict(getattr(up, k)) if faults else {}
            if k in ("close_at", "hang_at"):
                return set(getattr(up, k)) if faults else set()
            if k == "close_mid_data":
                return up.close_mid_data if faults else None
            return getattr(up, k)

    def _snapshot(self, idx):
        return Upstream._Live(self, idx)

    def _serve(self, c, sess, idx):
        cfg = self._snapshot(idx)
        c.settimeout(0.2)
        st = {"buf": b""}

        def recv_more():
            while True:
                if self.stop_ev.is_set():
                    raise _Closed()
                try:
                    d = c.recv(65536)
                except socket.timeout:
                    continue
                except OSError:
                    raise _Closed()
                if not d:
                    raise _Closed()
                with self.lock:
                    sess.raw += d
                st["buf"] += d
                return

        def readline():
            while b"\r\n" not in st["buf"]:
                if len(st["buf"]) > 100000:
                    raise _Closed()
                recv_more()
            line, st["buf"] = st["buf"].split(b"\r\n", 1)
            return line

        def send(text):
            if isinstance(text, str):
                text = text.encode()
            if not text.endswith(b"\r\n"):
                text += b"\r\n"
            with self.lock:
                sess.sent += text
            c.sendall(text)

        def respond(stage, default, extra=None):
            if stage in cfg["close_at"]:
                raise _Closed()
            if stage in cfg["hang_at"]:
                while True:
                    recv_more()  # discard; until the peer closes
            if cfg["delay"]:
                time.sleep(cfg["delay"])
            r = None
            if extra is not None:
                r = extra
            elif stage in cfg["replies"]:
                r = cfg["replies"][stage]
            send(r if r is not None else default)
            code = (r if r is not None else default)[:1]
            return code == "2" or code == "3"

        mail = None
        rcpts = []
        xcl = None
        try:
            if cfg["proxy_protocol"]:
                sig = b"\r\n\r\n\x00\r\nQUIT\n"
                while len(st["buf"]) < 16 and not (st["buf"][:1] == b"P" and b"\r\n" in st["buf"]):
                    recv_more()
                if st["buf"].startswith(sig):
                    n = 16 + int.from_bytes(st["buf"][14:16], "big")
                    while len(st["buf"]) < n:
                        recv_more()
                    sess.proxy_header, st["buf"] = st["buf"][:n], st["buf"][n:]
                else:
                    sess.proxy_header = readline() + b"\r\n"
            ok = respond("greeting", "220 %s ESMTP recorder" % self.hostname)
            while True:
                line = readline()
                with self.lock:
                    sess.commands.append(line)
                verb = line.split(b" ", 1)[0].upper()
                if verb == b"EHLO":
                    caps = cfg["caps"]
                    if xcl is not None and cfg["caps_after_xclient"] is not None:
                        caps = cfg["caps_after_xclient"]
                    lines = [self.hostname] + caps
                    text = "\r\n".join(
                        "250%s%s" % ("-" if i < len(lines) - 1 else " ", l)
                        for i, l in enumerate(lines))
                    sess.ehlo_count += 1
                    respond("ehlo", text)
                elif verb == b"HELO":
                    respond("helo", "250 %s" % self.hostname)
                elif verb == b"XCLIENT":
                    attrs = {}
                    for tok in line.split(b" ")[1:]:
                        if not tok:
                            continue
                        k, _, v = tok.partition(b"=")
                        attrs[k.decode().upper()] = v.decode("latin-1")
                    with self.lock:
                        sess.xclient.append(attrs)
                    if respond("xclient", "220 %s ESMTP recorder (xclient)" % self.hostname):
                        xcl = attrs
                        mail = None
                        rcpts = []
                elif verb == b"MAIL":
                    if respond("mail", "250 2.1.0 Ok"):
                        mail = line
                        rcpts = []
                elif verb == b"RCPT":
                    m = re.match(rb"(?i)RCPT TO:\s?<([^>]*)>", line)
                    addr = m.group(1).decode("utf-8", "replace") if m else ""
                    extra = cfg["rcpt_replies"].get(addr)
                    if mail is None:
                        send("503 5.5.1 Error: need MAIL command")
                    elif respond("rcpt", "250 2.1.5 Ok", extra):
                        rcpts.append(line)
                elif verb == b"DATA":
                    if mail is None or not rcpts:
                        send("503 5.5.1 Error: need RCPT command")
                        continue
                    if not respond("data", "354 End data with <CR><LF>.<CR><LF>"):
                        continue
                    msg = UpMessage(sess, mail, rcpts, xcl)
                    # read until CRLF.CRLF; the CRLF of "DATA" counts as the first CRLF
                    data = b"\r\n"
                    raw_start = 2
                    limit = cfg["close_mid_data"]
                    while True:
                        idx_end = data.find(b"\r\n.\r\n")
                        if idx_end >= 0:
                            break
                        if limit is not None and len(data) - 2 + len(st["buf"]) >= limit:
                            # take exactly `limit` bytes, then drop the connection
                            need = limit - (len(data) - 2)
                            data += st["buf"][:max(need, 0)]
                            raise _Closed()
                        if st["buf"]:
                            data += st["buf"]
                            st["buf"] = b""
                            continue
                        recv_more()
                    end = idx_end + 5
                    st["buf"] = data[end:] + st["buf"]
                    msg.data_raw = data[raw_start:end]
                    # content: strip the terminating ".\r\n", unstuff
                    content = data[raw_start:idx_end + 2] if idx_end + 2 >= raw_start else b""
                    msg.body = dot_unstuff(content[:-2]) + b"\r\n" if content else b""
                    size_limit = 0
                    for cap in cfg["caps"]:
                        if cap.upper().startswith("SIZE "):
                            size_limit = int(cap.split()[1])
                    if size_limit and len(msg.body) > size_limit and "eod" not in cfg["replies"]:
                        msg.reply = "552 5.3.4 Message size exceeds fixed limit"
                        msg.accepted = False
                        with self.lock:
                            sess.messages.append(msg)
                        send(msg.reply)
                        mail = None
                        rcpts = []
                        continue
                    self.nqueued += 1
                    qid = "%s%05d" % (self.queue_prefix, self.nqueued)
                    msg.reply = cfg["replies"].get("eod") or ("250 2.0.0 Ok: queued as %s" % qid)
                    msg.queue_id = qid
                    # decided before replying: a client seeing 250 must find it accepted
                    msg.accepted = (msg.reply[:1] == "2" and "eod" not in cfg["close_at"]
                                    and "eod" not in cfg["hang_at"])
                    with self.lock:
                        sess.messages.append(msg)
                    if cfg["eod_delay"]:
                        time.sleep(cfg["eod_delay"])
                    respond("eod", "250 2.0.0 Ok: queued as %s" % qid)
                    mail = None
                    rcpts = []
                elif verb == b"RSET":
                    mail = None
                    rcpts = []
                    respond("rset", "250 2.0.0 Ok")
                elif verb == b"NOOP":
                    respond("noop", "250 2.0.0 Ok")
                elif verb == b"QUIT":
                    respond("quit", "221 2.0.0 Bye")
                    break
                else:
                    send("502 5.5.2 Error: command not recognized")
        except _Closed:
            pass
        except Exception:
            traceback.print_exc()
        finally:
            sess.closed = True
            try:
                c.close()
            except OSError:
                pass


# ---------------------------------------------------------------- client

class Reply:
    def __init__(self, lines):
        self.lines = lines                 # str, without CRLF
        self.code = int(lines[0][:3])
        m = re.match(r"\d{3}[ -](\d\.\d{1,3}\.\d{1,3})\b", lines[0])
        self.enhanced = m.group(1) if m else ""
        self.text = "\n".join(lines)

    def __str__(self):
        return " | ".join(self.lines)

    __repr__ = __str__

    def last_text(self):
        return self.lines[-1][4:]


class ConnClosed(Exception):
    pass


class Client:
    """Raw SMTP client. Every method takes/returns exact bytes where it
    matters; reply() parses one (multi-line) reply."""

    def __init__(self, port, host="127.0.0.1", source=None, timeout=10.0, greet=True):
        self.timeout = timeout
        self.s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.s.settimeout(timeout)
        if source:
            self.s.bind((source, 0))
        self.s.connect((host, port))
        self.local_port = self.s.getsockname()[1]
        self.buf = b""
        self.received = bytearray()
        self.greeting = self.reply() if greet else None

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.s.sendall(data)

    def _fill(self, timeout):
        self.s.settimeout(timeout)
        try:
            d = self.s.recv(65536)
        except socket.timeout:
            raise TestFailure("no reply from moatd within %.1fs (got so far: %s)"
                              % (timeout, short(self.buf)))
        except ConnectionResetError:
            d = b""
        if not d:
            raise ConnClosed("connection closed by moatd (pending: %s)" % short(self.buf))
        self.received += d
        self.buf += d

    def reply(self, timeout=None):
        timeout = self.timeout if timeout is None else timeout
        lines = []
        end = time.time() + timeout
        while True:
            while b"\r\n" not in self.buf:
                left = end - time.time()
                if left <= 0:
                    raise TestFailure("no complete reply within %.1fs (got %s)" % (timeout, short(self.buf)))
                self._fill(left)
            line, self.buf = self.buf.split(b"\r\n", 1)
            s = line.decode("utf-8", "replace")
            if not re.match(r"^[2-5]\d\d([ -]|$)", s):
                raise TestFailure("malformed reply line from moatd: %r" % line)
            if lines and s[:3] != lines[0][:3]:
                raise TestFailure("inconsistent codes in multi-line reply: %r then %r" % (lines, s))
            lines.append(s)
            if len(s) == 3 or s[3] == " ":
                return Reply(lines)

    def cmd(self, line, timeout=None):
        if isinstance(line, str):
            line = line.encode()
        self.send(line + b"\r\n")
        return self.reply(timeout)

    def expect(self, line, code, enhanced=None, timeout=None):
        r = self.cmd(line, timeout) if line is not None else self.reply(timeout)
        expect_reply(r, code, enhanced, "reply to %s" % (short(line, 80) if line is not None else "(greeting/pending)"))
        return r

    def ehlo(self, name="client.test"):
        return self.expect("EHLO " + name, 250)

    def send_message(self, body, mail_from="sender@example.org", rcpts=("rcpt@example.net",),
                     stuffed=None):
        """Sends one transaction the plain way; returns the final reply."""
        self.expect("MAIL FROM:<%s>" % mail_from, 250)
        for r in rcpts:
            self.expect("RCPT TO:<%s>" % r, 250)
        self.expect("DATA", 354)
        self.send(stuffed if stuffed is not None else dot_stuff(body))
        return self.reply()

    def wait_closed(self, timeout=5.0):
        """True if moatd closes the connection within timeout (data read
        meanwhile is kept in self.buf)."""
        end = time.time() + timeout
        while time.time() < end:
            try:
                self._fill(max(0.01, end - time.time()))
            except ConnClosed:
                return True
            except TestFailure:
                return False
        return False

    def quit(self):
        try:
            r = self.cmd("QUIT")
            expect_reply(r, 221, None, "reply to QUIT")
        finally:
            self.close()

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


def expect_reply(r, code, enhanced=None, what="reply"):
    if isinstance(code, int):
        ok = r.code == code if code >= 100 else r.code // 100 == code
    elif isinstance(code, (tuple, list, set)):
        ok = r.code in code
    else:
        ok = str(r.code).startswith(str(code))
    if not ok:
        fail("%s: got %s, want %s" % (what, r, code))
    if enhanced is not None:
        encs = [enhanced] if isinstance(enhanced, str) else list(enhanced)
        if r.enhanced not in encs:
            fail("%s: got %s, want enhanced code %s" % (what, r, enhanced))


# ---------------------------------------------------------------- moatd

# The unprivileged user moatd drops to when the tests run as root.
RUN_USER = "nobody"


def readable_by_run_user(*paths):
    """As a site makes files moatd re-reads on reload after the drop
    (certificates, keys, lists): owner root, group RUN_USER's, mode 0750
    for directories and 0640 for files."""
    if os.geteuid() != 0:
        return
    import pwd
    gid = pwd.getpwnam(RUN_USER).pw_gid
    for p in paths:
        os.chown(p, 0, gid)
        os.chmod(p, 0o750 if os.path.isdir(p) else 0o640)


def give_to_run_user(*dirs):
    """Lets RUN_USER reach moatd's files after the privilege drop: the
    directories become searchable and readable, and the last one (the
    spool) its own. Nothing to do when the tests do not run as root."""
    if os.geteuid() != 0:
        return
    import pwd
    pw = pwd.getpwnam(RUN_USER)
    for d in dirs[:-1] + (os.path.dirname(dirs[-1]),):
        os.chmod(d, 0o755)
    os.chown(dirs[-1], pw.pw_uid, pw.pw_gid)
    os.chmod(dirs[-1], 0o700)


_current_rigs = []
_all_moatds = []     # every Moatd of the current test (the runner cleans up)


class Moatd:
    """One moatd process.

    listeners: list of dicts {name, listen, role, upstream, xclient, proxy_address_untrusted}
    options:   dict of global options written into the config file
    overrides: list of "name=value" passed as -o
    """

    DEFAULTS = {
        "hostname": "moat.test",
        "max_connections": 100,
        "max_connections_per_client": 50,
        "client_timeout": 30,
        "data_timeout": 30,
        "upstream_connect_timeout": 5,
        "upstream_timeout": 10,
        "upstream_data_timeout": 10,
        "shutdown_timeout": 5,
    }

    def __init__(self, listeners, options=None, overrides=(), binary=None, tmp=None,
                 wrapper=None, extra_conf=""):
        self.binary = os.path.abspath(binary or MOATD)
        self.tmp = tmp or tempfile.mkdtemp(prefix="moattest.")
        self.spool = os.path.join(self.tmp, "spool")
        os.makedirs(self.spool, exist_ok=True)
        self.options = dict(self.DEFAULTS)
        self.options["spool_directory"] = self.spool
        self.options["pid_file"] = os.path.join(self.tmp, "moatd.pid")
        if options:
            self.options.update(options)
        self.listeners = listeners
        self.overrides = list(overrides)
        self.wrapper = wrapper
        self.extra_conf = extra_conf
        self.conf = os.path.join(self.tmp, "moat.conf")
        self.logfile = os.path.join(self.tmp, "moatd.log")
        self.proc = None
        self.exit_code = None
        self.log_fh = None
        self.own_tmp = tmp is None
        _all_moatds.append(self)
        self.write_config()

    @staticmethod
    def fmt(v):
        if isinstance(v, bool):
            return "yes" if v else "no"
        if isinstance(v, int):
            return str(v)
        return '"%s"' % str(v).replace("\\", "\\\\").replace('"', '\\"')

    def config_text(self):
        out = ["# generated by moattest.py"]
        for k, v in self.options.items():
            if v is None:
                continue
            out.append("%s = %s" % (k, self.fmt(v)))
        for l in self.listeners:
            out.append("listener %s {" % l["name"])
            for k in ("listen", "role", "upstream", "xclient", "proxy_address_untrusted"):
                if k in l and l[k] is not None:
                    out.append("    %s = %s" % (k, self.fmt(l[k])))
            out.append("}")
        out.append(self.extra_conf)
        return "\n".join(out) + "\n"

    def write_config(self, text=None):
        with open(self.conf + ".new", "w") as f:
            f.write(text if text is not None else self.config_text())
        os.rename(self.conf + ".new", self.conf)

    def argv(self, extra=()):
        a = [self.binary, "-f", "-c", self.conf]
        if os.geteuid() == 0 and not any(o.startswith("user=") for o in self.overrides) \
                and "user" not in self.options:
            # moatd refuses to stay root: the tests run it as RUN_USER
            a += ["-o", "user=" + RUN_USER]
        for o in self.overrides:
            a += ["-o", o]
        a += list(extra)
        return a

    def start(self, wait=True, timeout=10.0):
        if not os.access(self.binary, os.X_OK):
            fail("moatd binary %s not built" % self.binary)
        self.log_fh = open(self.logfile, "wb")
        give_to_run_user(self.tmp, self.spool)
        argv = self.argv()
        if self.wrapper:
            argv = self.wrapper(argv)
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.log_fh,
                                     stderr=subprocess.STDOUT, cwd=self.tmp)
        if wait:
            ports = [int(l["listen"].rsplit(":", 1)[1]) for l in self.listeners]
            end = time.time() + timeout
            while not all(port_listening(p) for p in ports):
                if self.proc.poll() is not None:
                    fail("moatd exited with %s at start; log: %s" % (self.proc.returncode, short(self.log(), 1500)))
                if time.time() > end:
                    fail("moatd not listening on %s after %.0fs; log: %s" % (ports, timeout, short(self.log(), 1500)))
                time.sleep(0.02)
        return self

    def log(self):
        try:
            with open(self.logfile, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_lines(self):
        return self.log().splitlines()

    def grep(self, pattern, flags=0):
        rx = re.compile(pattern, flags)
        return [l for l in self.log_lines() if rx.search(l)]

    def wait_log(self, pattern, timeout=5.0, count=1, flags=0):
        rx = re.compile(pattern, flags)
        def pred():
            m = [l for l in self.log_lines() if rx.search(l)]
            return m if len(m) >= count else None
        r = wait_for(pred, timeout)
        if not r:
            fail("log line /%s/ not seen within %.1fs; log tail: %s"
                 % (pattern, timeout, short("\n".join(self.log_lines()[-15:]), 1500)))
        return r

    def msg_lines(self):
        return [parse_kv(l[l.index("msg "):]) for l in self.log_lines() if re.search(r"(^|\s|:)msg ", l)]

    def sanitizer_report(self):
        text = self.log()
        for rx in SAN_PATTERNS:
            m = rx.search(text)
            if m:
                start = max(0, m.start() - 200)
                return text[start:start + 3000]
        return None

    def check_sanitizers(self):
        rep = self.sanitizer_report()
        if rep:
            fail("sanitizer report in moatd log: " + rep)

    def signal(self, sig):
        self.proc.send_signal(sig)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=8.0, check_exit=True):
        """SIGTERM; checks exit status 0 within timeout and no sanitizer report."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            self.exit_code = "killed"
            if self.log_fh:
                self.log_fh.close()
            if check_exit:
                fail("moatd did not exit within %.0fs of SIGTERM" % timeout)
            return None
        self.exit_code = rc
        if self.log_fh:
            self.log_fh.close()
            self.log_fh = None
        if check_exit:
            self.check_sanitizers()
            if rc != 0:
                fail("moatd exited with status %s after SIGTERM (want 0); log tail: %s"
                     % (rc, short("\n".join(self.log_lines()[-10:]), 1500)))
        return rc


def parse_kv(line):
    """Parses 'msg key=value key="quoted value" key=<a@b>' into a dict
    (key '_' holds the line)."""
    d = {"_": line}
    for m in re.finditer(r'(\w[\w.-]*)=("(?:[^"\\]|\\.)*"|\S*)', line):
        v = m.group(2)
        if v.startswith('"') and v.endswith('"') and len(v) >= 2:
            v = re.sub(r'\\(.)', r'\1', v[1:-1])
        d[m.group(1)] = v
    return d


class Rig:
    """A recording upstream plus a moatd with one listener relaying to it.

    with Rig(options={...}, overrides=[...], up=dict(caps=...)) as r:
        c = r.client(); ...
    On exit moatd gets SIGTERM and must exit 0 with a clean sanitizer log.
    """

    def __init__(self, options=None, overrides=(), up=None, xclient=True,
                 proxy_address_untrusted=None, binary=None, listener_name="test",
                 role="inbound", wait_probe=True, start_upstream=True, wrapper=None,
                 upstream_port=None):
        self.up = Upstream(port=upstream_port, **(up or {}))
        self.port = free_port()
        self.listener = dict(name=listener_name, listen="127.0.0.1:%d" % self.port,
                             role=role, upstream="127.0.0.1:%d" % self.up.port,
                             xclient=xclient, proxy_address_untrusted=proxy_address_untrusted)
        self.moatd = Moatd([self.listener], options=options, overrides=overrides,
                           binary=binary, wrapper=wrapper)
        self.wait_probe = wait_probe
        self.start_upstream = start_upstream
        self.clients = []

    def start(self):
        _current_rigs.append(self)
        if self.start_upstream:
            self.up.start()
        for attempt in range(3):
            try:
                self.moatd.start()
                break
            except TestFailure:
                # the port picked for moatd may have been taken meanwhile
                if attempt == 2 or not re.search(r"(?i)address already in use|bind", self.moatd.log()):
                    raise
                self.port = free_port()
                self.listener["listen"] = "127.0.0.1:%d" % self.port
                self.moatd.write_config()
        if self.wait_probe and self.start_upstream:
            # moatd probes the upstream's capabilities at start; wait for
            # that EHLO so later faults don't hit the probe.
            wait_for(lambda: any(s.ehlo_count for s in self.up.sessions), timeout=5.0)
            # Probe connections in flight should be over before tests set faults.
            wait_for(lambda: all(s.closed for s in self.up.sessions), timeout=2.0)
        self.probe_sessions = len(self.up.sessions)
        return self

    def client(self, **kw):
        c = Client(self.port, **kw)
        self.clients.append(c)
        return c

    def ehlo_client(self, name="client.test", **kw):
        c = self.client(**kw)
        expect_reply(c.greeting, 220, None, "greeting")
        c.ehlo(name)
        return c

    @property
    def log(self):
        return self.moatd

    def stop(self, check=True):
        for c in self.clients:
            c.close()
        try:
            return self.moatd.stop(check_exit=check)
        finally:
            self.up.stop()

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.moatd.stop(check_exit=False)
            self.up.stop()
            raise

    def __exit__(self, et, ev, tb):
        if et is None:
            self.stop(check=True)
        else:
            try:
                self.stop(check=False)
            except Exception:
                pass
        return False


# ---------------------------------------------------------------- tools

def swaks(args, timeout=30):
    """Runs swaks with args (list); returns (exit status, output)."""
    p = subprocess.run(["swaks"] + list(args),
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace")


def make_body(headers=None, body_lines=None, subject="test"):
    h = headers if headers is not None else [
        "From: <sender@example.org>", "To: <rcpt@example.net>",
        "Subject: %s" % subject, "Message-ID: <%d.%f@test>" % (os.getpid(), time.time())]
    b = body_lines if body_lines is not None else ["Hello.", "", "-- ", "moat tests"]
    lines = [x if isinstance(x, bytes) else x.encode() for x in list(h) + [""] + list(b)]
    return b"\r\n".join(lines) + b"\r\n"


# ---------------------------------------------------------------- runner

def header_values(body, name):
    """The unfolded values of every field `name` in the header block of a
    message (bytes, CRLF), in order."""
    head = body.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    return [re.sub(r"\r\n[ \t]+", " ", v).strip() for v in re.findall(
        r"(?im)^%s:[ \t]*([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)" % re.escape(name), head)]


def header_value(body, name):
    """The unfolded value of the first field `name`, or None."""
    v = header_values(body, name)
    return v[0] if v else None


def run_tests(module_globals, timeout_per_test=60):
    """Runs every test_* function of the calling module in definition
    order (or those named on the command line); prints 'ok NAME' or
    'not ok NAME: why' and, for failures, '# ' detail lines. Exit status
    1 if any failed."""
    tests = [(n, f) for n, f in module_globals.items()
             if n.startswith("test_") and callable(f)]
    tests.sort(key=lambda nf: nf[1].__code__.co_firstlineno)
    sel = sys.argv[1:]
    if sel:
        tests = [(n, f) for n, f in tests if any(s in n for s in sel)]
    prog = os.path.splitext(os.path.basename(module_globals.get("__file__", "test")))[0]
    failed = 0

    class _Timeout(Exception):
        pass

    def on_alarm(signum, frame):
        raise _Timeout()

    signal.signal(signal.SIGALRM, on_alarm)
    for name, fn in tests:
        del _current_rigs[:]
        del _all_moatds[:]
        t0 = time.time()
        why = None
        tb = ""
        try:
            signal.alarm(getattr(fn, "timeout", timeout_per_test))
            try:
                fn()
            finally:
                signal.alarm(0)
        except _Timeout:
            why = "timed out after %ds" % getattr(fn, "timeout", timeout_per_test)
            tb = traceback.format_exc()
        except TestFailure as e:
            why = str(e)
            tb = traceback.format_exc()
        except Exception as e:
            why = "%s: %s" % (type(e).__name__, e)
            tb = traceback.format_exc()
        # leftovers: make sure no moatd of this test keeps running
        for r in _current_rigs:
            try:
                if r.moatd.running():
                    r.moatd.stop(check_exit=False)
                r.up.stop()
            except Exception:
                pass
            if why is None:
                rep = r.moatd.sanitizer_report()
                if rep:
                    why = "sanitizer report in moatd log: " + rep
        dt = time.time() - t0
        for md in _all_moatds:
            try:
                if md.running():
                    md.stop(check_exit=False)
            except Exception:
                pass
        if why is None and not os.environ.get("MOAT_TEST_KEEP"):
            for md in _all_moatds:
                if md.own_tmp:
                    shutil.rmtree(md.tmp, ignore_errors=True)
        full = "%s.%s" % (prog, name[5:])
        if why is None:
            print("ok %s" % full, flush=True)
            if os.environ.get("MOAT_TEST_VERBOSE"):
                for r in _current_rigs:
                    for l in r.moatd.log_lines():
                        print("#   " + l)
        else:
            failed += 1
            one = " ".join(why.split())
            print("not ok %s: %s" % (full, one[:2000]), flush=True)
            for l in tb.strip().splitlines()[-6:]:
                print("#   " + l)
            for r in _current_rigs:
                print("# moatd log (%s, exit %s), last lines:" % (r.moatd.logfile, r.moatd.exit_code))
                for l in r.moatd.log_lines()[-25:]:
                    print("#   " + l[:400])
                tr = r.up.transcript(1500).splitlines()[-12:]
                if tr:
                    print("# upstream transcript:")
                    for l in tr:
                        print("#   " + l[:800])
            sys.stdout.flush()
    return 1 if failed else 0
