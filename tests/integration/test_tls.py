#!/usr/bin/python3
"""TLS and AUTH in the proxy: STARTTLS towards clients (advertised only
when configured, the session starting over after the handshake, 530
before it on a tls = encrypt listener), implicit TLS, SNI, client
certificates; STARTTLS command injection on both sides (CVE-2011-0411
class); STARTTLS towards the upstream (may, encrypt, verification, the
order EHLO STARTTLS EHLO XCLIENT EHLO); AUTH offered only over TLS and
relayed, the user in the log line, credentials nowhere in the log,
failures limited per session and per address; certificates reloaded on
SIGHUP; and swaks --tls through moatd to a real Postfix that itself
requires TLS.

A throwaway CA and certificates are made with openssl(1) in a temporary
directory. The fake upstream here speaks STARTTLS (Python's ssl module)
and AUTH PLAIN/LOGIN, and records every line moat sent."""

import base64
import hashlib
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from moattest import *  # noqa

# ---------------------------------------------------------------- certificates

PKI = None


class Pki:
    """A CA, and certificates it signed, in a temporary directory."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="moat-tls.")
        os.chmod(self.dir, 0o755)
        self.ca = self.path("ca.pem")
        self._run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                   "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", self.path("ca.key"),
                   "-out", self.ca, "-days", "2", "-subj", "/CN=moat test CA",
                   "-addext", "basicConstraints=critical,CA:TRUE",
                   "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
        self.serial = 1

    def path(self, name):
        return os.path.join(self.dir, name)

    @staticmethod
    def _run(argv):
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
        if r.returncode != 0:
            fail("%s: %s" % (" ".join(argv[:3]), r.stderr.decode("utf-8", "replace")[-500:]))

    def issue(self, name, cn, dns=(), ip=("127.0.0.1",), client=False):
        """Writes NAME.pem (certificate), NAME.key and NAME.chain (key and
        certificate); returns (cert, key, chain)."""
        key, csr, pem = self.path(name + ".key"), self.path(name + ".csr"), self.path(name + ".pem")
        self._run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                   "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=%s" % cn])
        ext = self.path(name + ".ext")
        sans = ["DNS:%s" % d for d in dns] + ["IP:%s" % i for i in ip]
        with open(ext, "w") as f:
            if sans:
                f.write("subjectAltName=%s\n" % ",".join(sans))
            f.write("extendedKeyUsage=%s\n" % ("clientAuth" if client else "serverAuth"))
        self.serial += 1
        self._run(["openssl", "x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey",
                   self.path("ca.key"), "-set_serial", str(self.serial), "-out", pem,
                   "-days", "2", "-extfile", ext])
        os.chmod(key, 0o644)
        chain = self.path(name + ".chain")
        with open(chain, "w") as out:
            out.write(open(key).read() + open(pem).read())
        return pem, key, chain


def pki():
    global PKI
    if PKI is None:
        PKI = Pki()
        PKI.moat = PKI.issue("moat", "moat.test", dns=("moat.test", "localhost"))
        PKI.moat2 = PKI.issue("moat2", "moat.test", dns=("moat.test",))
        PKI.other = PKI.issue("other", "other.test", dns=("other.test",), ip=())
        PKI.up = PKI.issue("upstream", "upstream.test", dns=("upstream.test",))
        PKI.client = PKI.issue("client", "client.test", dns=(), ip=(), client=True)
    return PKI


def fingerprint_of_file(pem):
    with open(pem) as f:
        der = ssl.PEM_cert_to_DER_cert(f.read())
    return hashlib.sha256(der).hexdigest()


def client_ctx(cert=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if cert:
        ctx.load_cert_chain(cert[0], cert[1])
    return ctx


def starttls(c, sni="moat.test", cert=None):
    """STARTTLS on a moattest.Client: 220, then the handshake."""
    c.expect("STARTTLS", 220, "2.0.0")
    check(c.buf == b"", "bytes after 220 to STARTTLS: %r" % c.buf)
    c.s = client_ctx(cert).wrap_socket(c.s, server_hostname=sni)
    return c


def peer_fingerprint(c):
    return hashlib.sha256(c.s.getpeercert(binary_form=True)).hexdigest()


def tls_client(port, sni="moat.test", source=None):
    """A client on an implicit TLS port: the handshake, then the greeting."""
    c = Client(port, greet=False, source=source)
    c.s = client_ctx().wrap_socket(c.s, server_hostname=sni)
    c.greeting = c.reply()
    return c


def ehlo_keywords(rep):
    return [l[4:].split(" ")[0].upper() for l in rep.lines[1:]]


def b64(s):
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


# ---------------------------------------------------------------- fake upstream

class TlsUpstream:
    """A recording upstream that speaks STARTTLS and AUTH PLAIN/LOGIN.

    caps             EHLO keywords besides STARTTLS and AUTH
    starttls         offer STARTTLS (with cert)
    inject           bytes sent right after "220 Ready" to STARTTLS
    auth             AUTH mechanisms offered ("" none)
    auth_tls_only    AUTH only after STARTTLS (Postfix smtpd_tls_auth_only)
    users            {user: password}
    Each session records: lines (every line received, plain or in TLS,
    with a marker when TLS started), xclient (attribute dicts), auth
    (the AUTH command and response lines), messages, tls (bool)."""

    def __init__(self, starttls=True, inject=b"", auth="PLAIN LOGIN", auth_tls_only=False,
                 users=None, caps=None, cert=None):
        self.caps = caps if caps is not None else ["PIPELINING", "SIZE 20480000", "8BITMIME",
                                                   "ENHANCEDSTATUSCODES",
                                                   "XCLIENT NAME ADDR PORT PROTO HELO LOGIN"]
        self.starttls = starttls
        self.inject = inject
        self.auth = auth
        self.auth_tls_only = auth_tls_only
        self.users = users if users is not None else {"alice": "s3cret-pw"}
        self.cert = cert or pki().up
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.sessions = []
        self.lock = threading.Lock()
        self.stop_ev = threading.Event()

    def start(self):
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        self.stop_ev.set()
        self.thread.join(3)
        self.sock.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *a):
        self.stop()

    def _accept(self):
        while not self.stop_ev.is_set():
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            sess = {"lines": [], "xclient": [], "auth": [], "messages": [], "tls": False,
                    "closed": False}
            with self.lock:
                self.sessions.append(sess)
            threading.Thread(target=self._serve, args=(c, sess), daemon=True).start()

    def real_sessions(self):
        """Sessions that went beyond EHLO (not capability probes)."""
        with self.lock:
            return [s for s in self.sessions
                    if any(l.split(b" ")[0].upper() in (b"MAIL", b"AUTH") for l in s["lines"])]

    def _serve(self, c, sess):
        c.settimeout(10)
        st = {"sock": c, "buf": b""}

        def send(text):
            if isinstance(text, str):
                text = text.encode()
            st["sock"].sendall(text + b"\r\n")

        def readline():
            while b"\r\n" not in st["buf"]:
                if self.stop_ev.is_set():
                    raise EOFError()
                try:
                    d = st["sock"].recv(65536)
                except socket.timeout:
                    continue
                if not d:
                    raise EOFError()
                st["buf"] += d
            line, st["buf"] = st["buf"].split(b"\r\n", 1)
            with self.lock:
                sess["lines"].append(line)
            return line

        def ehlo_caps():
            caps = list(self.caps)
            if self.starttls and not sess["tls"]:
                caps.append("STARTTLS")
            if self.auth and (sess["tls"] or not self.auth_tls_only):
                caps.append("AUTH " + self.auth)
            return caps

        def check_plain(resp):
            try:
                parts = base64.b64decode(resp, validate=True).split(b"\0")
                return len(parts) == 3 and self.users.get(parts[1].decode()) == parts[2].decode()
            except Exception:
                return False

        def auth_reply(ok):
            send("235 2.7.0 Authentication successful" if ok
                 else "535 5.7.8 Error: authentication failed")

        try:
            send("220 upstream.test ESMTP fake")
            while True:
                line = readline()
                verb = line.split(b" ", 1)[0].upper()
                if verb == b"EHLO":
                    caps = ["upstream.test"] + ehlo_caps()
                    send("\r\n".join("250%s%s" % ("-" if i < len(caps) - 1 else " ", k)
                                     for i, k in enumerate(caps)))
                elif verb == b"STARTTLS" and self.starttls and not sess["tls"]:
                    st["sock"].sendall(b"220 2.0.0 Ready to start TLS\r\n" + self.inject)
                    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                    ctx.load_cert_chain(self.cert[0], self.cert[1])
                    st["sock"] = ctx.wrap_socket(st["sock"], server_side=True)
                    st["buf"] = b""
                    sess["tls"] = True
                    with self.lock:
                        sess["lines"].append(b"--- TLS ---")
                elif verb == b"XCLIENT":
                    attrs = {}
                    for tok in line.split(b" ")[1:]:
                        k, _, v = tok.partition(b"=")
                        attrs[k.decode().upper()] = xtext_decode(v.decode()).decode("latin-1")
                    sess["xclient"].append(attrs)
                    send("220 upstream.test ESMTP fake (xclient)")
                elif verb == b"AUTH":
                    sess["auth"].append(line)
                    args = line.split(b" ")[1:]
                    mech = args[0].upper() if args else b""
                    if mech == b"PLAIN":
                        resp = args[1] if len(args) > 1 else None
                        if resp is None:
                            send("334 ")
                            resp = readline()
                            sess["auth"].append(resp)
                        if resp == b"*":
                            send("501 5.7.0 Authentication aborted")
                        else:
                            auth_reply(check_plain(resp))
                    elif mech == b"LOGIN":
                        user = args[1] if len(args) > 1 else None
                        if user is None:
                            send("334 VXNlcm5hbWU6")
                            user = readline()
                            sess["auth"].append(user)
                        if user == b"*":
                            send("501 5.7.0 Authentication aborted")
                            continue
                        send("334 UGFzc3dvcmQ6")
                        pw = readline()
                        sess["auth"].append(pw)
                        if pw == b"*":
                            send("501 5.7.0 Authentication aborted")
                            continue
                        try:
                            u = base64.b64decode(user).decode()
                            p = base64.b64decode(pw).decode()
                        except Exception:
                            u, p = None, None
                        auth_reply(u is not None and self.users.get(u) == p)
                    else:
                        send("504 5.5.4 Unsupported")
                elif verb in (b"MAIL", b"RCPT", b"RSET", b"NOOP"):
                    send("250 2.0.0 Ok")
                elif verb == b"DATA":
                    send("354 End data with <CR><LF>.<CR><LF>")
                    data = b""
                    while True:
                        ln = readline()
                        if ln == b".":
                            break
                        data += ln + b"\r\n"
                    sess["messages"].append(data)
                    send("250 2.0.0 Ok: queued as TLSQ%d" % len(sess["messages"]))
                elif verb == b"QUIT":
                    send("221 2.0.0 Bye")
                    break
                else:
                    send("502 5.5.2 Error: command not recognized")
        except (EOFError, OSError, ssl.SSLError):
            pass
        finally:
            sess["closed"] = True
            try:
                st["sock"].close()
            except OSError:
                pass


def moatd_with(up_port, listener=None, options=None, extra=(), xclient=True):
    """A moatd with listener "test" relaying to up_port."""
    port = free_port()
    l = dict(name="test", listen="127.0.0.1:%d" % port, role="inbound",
             upstream="127.0.0.1:%d" % up_port, xclient=xclient,
             proxy_address_untrusted=None if xclient else True)
    overrides = ["listener.test.%s=%s" % kv for kv in (listener or {}).items()] + list(extra)
    m = Moatd([l], options=options, overrides=overrides)
    m.port = port
    return m


def tls_opts(level="may", **kw):
    p = pki()
    d = {"tls": level, "tls_cert_file": p.moat[0], "tls_key_file": p.moat[1]}
    d.update(kw)
    return d


def wait_probe(up):
    wait_for(lambda: up.sessions and all(s["closed"] for s in up.sessions), 5)


def send_mail(c, body=None, rcpt="rcpt@example.net"):
    c.expect("MAIL FROM:<sender@example.org>", 250)
    c.expect("RCPT TO:<%s>" % rcpt, 250)
    c.expect("DATA", 354)
    c.send(dot_stuff(body or make_body()))
    return c.reply()


# ---------------------------------------------------------------- client side

def test_starttls_advertised_only_when_configured():
    with Rig() as r:
        c = r.client()
        kws = ehlo_keywords(c.ehlo())
        check("STARTTLS" not in kws, "STARTTLS advertised without tls: %s" % kws)
        c.expect("STARTTLS", 502, "5.5.1")
        c.quit()
    with Rig(overrides=["listener.test.%s=%s" % kv for kv in tls_opts().items()]) as r:
        c = r.client()
        kws = ehlo_keywords(c.ehlo())
        check("STARTTLS" in kws, "STARTTLS not advertised with tls = may: %s" % kws)
        c.quit()


def test_starttls_resets_session_and_logs_tls():
    with Rig(overrides=["listener.test.%s=%s" % kv for kv in tls_opts().items()]) as r:
        c = r.client()
        c.ehlo()
        starttls(c)
        eq(peer_fingerprint(c), fingerprint_of_file(pki().moat[0]), "certificate presented")
        # RFC 3207 4.2: the HELO before TLS is forgotten
        c.expect("MAIL FROM:<a@example.org>", 503, "5.5.1")
        rep = c.ehlo()
        kws = ehlo_keywords(rep)
        check("STARTTLS" not in kws, "STARTTLS advertised again inside TLS: %s" % kws)
        c.expect("STARTTLS", 554, "5.5.1")
        expect_reply(send_mail(c), 250)
        c.quit()
        r.up.wait_messages(1)
        lines = r.moatd.msg_lines()
        eq(len(lines), 1, "msg lines")
        check(lines[0].get("tls", "").startswith("TLSv1."), "tls= in the log line: %s" % lines[0]["_"])
        check(lines[0].get("cipher") and int(lines[0].get("bits", "0")) >= 128,
              "cipher and bits in the log line: %s" % lines[0]["_"])
        check("auth" not in lines[0], "no auth= without AUTH: %s" % lines[0]["_"])


def test_starttls_client_injection_discarded():
    """STARTTLS and RSET in one packet: RSET was sent in plain text, so it
    must not be executed or answered inside TLS."""
    with Rig(overrides=["listener.test.%s=%s" % kv for kv in tls_opts().items()]) as r:
        c = r.client()
        c.ehlo()
        c.send(b"STARTTLS\r\nRSET\r\n")
        expect_reply(c.reply(), 220, "2.0.0")
        time.sleep(0.3)   # anything moatd answered in plain text would be here
        c.s.setblocking(False)
        try:
            extra = c.s.recv(4096)
        except (BlockingIOError, ssl.SSLWantReadError):
            extra = b""
        c.s.setblocking(True)
        eq(extra, b"", "plain-text bytes after 220 to STARTTLS")
        c.s = client_ctx().wrap_socket(c.s, server_hostname="moat.test")
        # the first reply inside TLS is HELP's: nothing answered the RSET
        rep = c.cmd("HELP")
        expect_reply(rep, 214, None, "first reply inside TLS (RSET must not be answered)")
        c.ehlo()
        c.quit()
        r.moatd.wait_log(r"6 octets pipelined after STARTTLS, before the TLS handshake; discarded")
        # EHLO STARTTLS HELP EHLO QUIT: the RSET was never a command
        r.moatd.wait_log(r"disconnect session=\S+ client=\S+ commands=5 errors=0")


def test_starttls_injected_command_not_executed():
    """A MAIL FROM injected after STARTTLS would show up at the upstream."""
    with Rig(overrides=["listener.test.%s=%s" % kv for kv in tls_opts().items()]) as r:
        c = r.client()
        c.ehlo()
        c.send(b"STARTTLS\r\nEHLO evil.example\r\nMAIL FROM:<injected@example.org>\r\n")
        expect_reply(c.reply(), 220, "2.0.0")
        c.s = client_ctx().wrap_socket(c.s, server_hostname="moat.test")
        c.expect("NOOP", 250)
        c.expect("MAIL FROM:<x@example.org>", 503, "5.5.1")  # no HELO inside TLS yet
        c.quit()
        time.sleep(0.2)
        check(not any(b"injected" in l for l in r.up.all_commands()),
              "injected MAIL reached the upstream: %r" % r.up.all_commands())


def test_tls_encrypt_listener_refuses_mail_before_starttls():
    with Rig(overrides=["listener.test.%s=%s" % kv for kv in tls_opts("encrypt").items()]) as r:
        c = r.client()
        c.ehlo()
        c.expect("MAIL FROM:<a@example.org>", 530, "5.7.0")
        c.expect("RCPT TO:<b@example.net>", 530, "5.7.0")
        c.expect("DATA", 530, "5.7.0")
        c.expect("NOOP", 250)
        starttls(c)
        c.ehlo()
        expect_reply(send_mail(c), 250)
        c.quit()
        eq(len(r.up.wait_messages(1)), 1, "messages at the upstream")


def test_tls_needs_certificate_and_bad_files_name_the_file():
    up = Upstream().start()
    try:
        m = moatd_with(up.port, {"tls": "may"})
        r = subprocess.run(m.argv(["-t"]), capture_output=True, text=True, timeout=30)
        check(r.returncode != 0 and "needs tls_cert_file" in r.stderr,
              "tls without tls_cert_file: %r" % r.stderr)
        missing = os.path.join(pki().dir, "missing.pem")
        m = moatd_with(up.port, {"tls": "may", "tls_cert_file": missing})
        r = subprocess.run(m.argv(), capture_output=True, text=True, timeout=30)
        check(r.returncode == 1, "moatd started with a missing certificate: %r" % r.stderr)
        check(missing in r.stderr, "the error names the file: %r" % r.stderr)
        r = subprocess.run(m.argv(["-t"]), capture_output=True, text=True, timeout=30)
        check(r.returncode == 1 and missing in r.stderr, "moatd -t names the file: %r" % r.stderr)
    finally:
        up.stop()


def test_implicit_tls_listener():
    over = ["listener.test.%s=%s" % kv for kv in
            tls_opts("none", tls_wrappermode="yes").items()]
    with Rig(overrides=over) as r:
        c = tls_client(r.port)
        expect_reply(c.greeting, 220, None, "greeting inside TLS")
        kws = ehlo_keywords(c.ehlo())
        check("STARTTLS" not in kws, "STARTTLS on an implicit TLS port: %s" % kws)
        expect_reply(send_mail(c), 250)
        c.quit()
        r.up.wait_messages(1)
        check(r.moatd.msg_lines()[0].get("tls", "").startswith("TLSv1."), "tls= in the log line")
        # a plain-text client gets no greeting, and the session ends
        p = Client(r.port, greet=False)
        p.send(b"EHLO plain.example\r\n")
        check(p.wait_closed(5), "plain text on an implicit TLS port must end the session")
        r.moatd.wait_log(r"TLS handshake failed")


def test_sni_chooses_certificate():
    p = pki()
    over = ["listener.test.%s=%s" % kv for kv in tls_opts().items()]
    over.append("listener.test.tls_sni_chain_files=%s" % p.other[2])
    with Rig(overrides=over) as r:
        for sni, want in (("other.test", p.other[0]), ("moat.test", p.moat[0]),
                          ("unknown.example", p.moat[0])):
            c = r.client()
            c.ehlo()
            starttls(c, sni=sni)
            eq(peer_fingerprint(c), fingerprint_of_file(want), "certificate for SNI %s" % sni)
            c.quit()


def test_client_certificate_subject_logged():
    over = ["listener.test.%s=%s" % kv for kv in tls_opts(tls_ask_ccert="yes").items()]
    with Rig(overrides=over) as r:
        c = r.client()
        c.ehlo()
        starttls(c, cert=pki().client)
        c.ehlo()
        expect_reply(send_mail(c), 250)
        c.quit()
        r.up.wait_messages(1)
        eq(r.moatd.msg_lines()[0].get("tls_peer"), "CN=client.test", "tls_peer in the log line")


def test_sighup_reloads_certificate():
    p = pki()
    d = tempfile.mkdtemp(prefix="moat-tls-reload.")
    readable_by_run_user(d)     # moatd reads it again after its privilege drop
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    shutil.copy(p.moat[0], cert)
    shutil.copy(p.moat[1], key)
    over = ["listener.test.%s=%s" % kv for kv in
            tls_opts(tls_cert_file=cert, tls_key_file=key).items()]
    try:
        with Rig(overrides=over) as r:
            def fp():
                c = r.client()
                c.ehlo()
                starttls(c)
                f = peer_fingerprint(c)
                c.quit()
                return f
            eq(fp(), fingerprint_of_file(p.moat[0]), "certificate at start")
            held = r.client()   # a session open across the reload
            held.ehlo()
            shutil.copy(p.moat2[0], cert + ".new")
            shutil.copy(p.moat2[1], key + ".new")
            os.rename(key + ".new", key)
            os.rename(cert + ".new", cert)
            r.moatd.signal(signal.SIGHUP)
            r.moatd.wait_log(r"reloaded: 1 listener", count=1)
            eq(fp(), fingerprint_of_file(p.moat2[0]), "certificate after SIGHUP")
            starttls(held)      # the old session still works
            held.ehlo()
            held.quit()
            with open(cert, "w") as f:
                f.write("-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n")
            r.moatd.signal(signal.SIGHUP)
            r.moatd.wait_log(r"reloaded: 1 listener", count=2)
            lines = r.moatd.grep(r"TLS certificate not reloaded")
            check(lines and cert in lines[-1], "the log names the broken file: %r" % lines)
            eq(fp(), fingerprint_of_file(p.moat2[0]), "certificate after a broken reload")
    finally:
        shutil.rmtree(d, ignore_errors=True)


# ---------------------------------------------------------------- upstream side

def test_upstream_starttls_order_and_injection_discarded():
    """The upstream appends a line after its 220 to STARTTLS; read as a
    reply, it would fail the EHLO that follows the handshake."""
    with TlsUpstream(inject=b"554 5.0.0 injected after 220\r\n") as up:
        m = moatd_with(up.port, {"upstream_tls": "may"}).start()
        try:
            wait_probe(up)
            c = Client(m.port)
            c.ehlo()
            expect_reply(send_mail(c), 250)
            c.quit()
            s = up.real_sessions()[0]
            verbs = [l.split(b" ")[0].upper().decode() for l in s["lines"]]
            eq(verbs[:7], ["EHLO", "STARTTLS", "---", "EHLO", "XCLIENT", "EHLO", "MAIL"],
               "commands at the upstream")
            eq(s["xclient"][0].get("ADDR"), "127.0.0.1", "XCLIENT ADDR inside TLS")
            m.wait_log(r"upstream sent 30 octets after its 220 to STARTTLS, before the TLS "
                       r"handshake; discarded")
            m.wait_log(r"upstream TLS TLSv1\.")
        finally:
            m.stop()


def test_upstream_tls_encrypt_without_starttls_tempfails():
    with TlsUpstream(starttls=False) as up:
        m = moatd_with(up.port, {"upstream_tls": "encrypt"}).start()
        try:
            c = Client(m.port)
            c.ehlo()
            c.expect("MAIL FROM:<a@example.org>", 451, "4.7.5")
            c.quit()
            m.wait_log(r"upstream_tls = encrypt but the upstream 127\.0\.0\.1:\d+ does not offer "
                       r"STARTTLS")
            check(not any(l.upper().startswith(b"MAIL") for s in up.sessions for l in s["lines"]),
                  "MAIL went up in plain text")
        finally:
            m.stop()


def test_upstream_tls_verify():
    p = pki()
    with TlsUpstream() as up:
        good = moatd_with(up.port, {"upstream_tls": "encrypt", "upstream_tls_verify": "hostname",
                                    "upstream_tls_ca_file": p.ca,
                                    "upstream_tls_name": "upstream.test"}).start()
        try:
            c = Client(good.port)
            c.ehlo()
            expect_reply(send_mail(c), 250)
            c.quit()
        finally:
            good.stop()
        bad = moatd_with(up.port, {"upstream_tls": "encrypt", "upstream_tls_verify": "hostname",
                                   "upstream_tls_ca_file": p.ca,
                                   "upstream_tls_name": "wrong.example"}).start()
        try:
            c = Client(bad.port)
            c.ehlo()
            c.expect("MAIL FROM:<a@example.org>", 451, "4.7.5")
            c.quit()
            bad.wait_log(r"TLS handshake failed: certificate verification failed")
        finally:
            bad.stop()


# ---------------------------------------------------------------- AUTH

def auth_moatd(up, **kw):
    opts = dict(tls_opts(), upstream_tls="may")
    opts.update(kw.pop("listener", {}))
    m = moatd_with(up.port, opts, **kw).start()
    m.wait_log(r"listener=test: listening")
    wait_probe(up)
    return m


def test_auth_only_over_tls_and_relayed():
    pw = "s3cret-pw"
    with TlsUpstream() as up:
        m = auth_moatd(up)
        try:
            c = Client(m.port)
            kws = ehlo_keywords(c.ehlo())
            check("AUTH" not in kws, "AUTH offered on a plain connection: %s" % kws)
            c.expect("AUTH PLAIN " + b64("\0alice\0" + pw), 530, "5.7.0")
            starttls(c)
            rep = c.ehlo()
            check("250-AUTH PLAIN LOGIN" in rep.lines, "AUTH after STARTTLS: %s" % rep)
            c.expect("AUTH PLAIN " + b64("\0alice\0" + pw), 235)
            c.expect("AUTH PLAIN " + b64("\0alice\0" + pw), 503, "5.5.1")
            expect_reply(send_mail(c), 250)
            c.quit()
            s = up.real_sessions()[0]
            eq(s["auth"], [b"AUTH PLAIN " + b64("\0alice\0" + pw).encode()], "AUTH at the upstream")
            check(s["tls"], "AUTH went up over TLS")
            lines = m.msg_lines()
            eq(lines[-1].get("auth"), "alice", "auth= in the log line")
            m.wait_log(r"authenticated mechanism=PLAIN user=alice")
        finally:
            m.stop()
        log = m.log()
        for secret in (pw, b64("\0alice\0" + pw), b64(pw)):
            check(secret not in log, "a credential in moatd's log: %r" % secret)


def test_auth_login_continuations_are_not_commands():
    with TlsUpstream() as up:
        m = auth_moatd(up)
        try:
            c = Client(m.port)
            c.ehlo()
            starttls(c)
            c.ehlo()
            # "QUIT" is valid base64: inside the exchange it is data
            c.expect("AUTH LOGIN", 334)
            c.expect("QUIT", 334)
            c.expect("*", 501)
            c.expect("NOOP", 250)
            # then a real LOGIN exchange
            c.expect("AUTH LOGIN", 334)
            c.expect(b64("alice"), 334)
            c.expect(b64("s3cret-pw"), 235)
            expect_reply(send_mail(c), 250)
            c.quit()
            s = up.real_sessions()[0]
            eq(s["auth"][:3], [b"AUTH LOGIN", b"QUIT", b"*"], "first exchange at the upstream")
            # the one QUIT before the message is the exchange's data (a
            # QUIT after it is moat's own, ending the upstream session)
            lines = s["lines"]
            upto = lines.index(b"MAIL FROM:<sender@example.org>") if \
                b"MAIL FROM:<sender@example.org>" in lines else len(lines)
            eq(lines[:upto].count(b"QUIT"), 1, "QUIT lines before the message (the "
               "exchange's data only; a second would be the client's QUIT relayed as a "
               "command): %r" % lines)
            eq(m.msg_lines()[-1].get("auth"), "alice", "auth= in the log line")
        finally:
            m.stop()
        check(b64("s3cret-pw") not in m.log() and "s3cret-pw" not in m.log(),
              "the password in moatd's log")


def test_auth_failures_limited():
    with TlsUpstream() as up:
        m = auth_moatd(up, options={"auth_max_failures": 2, "auth_max_failures_per_client": 3})
        try:
            c = Client(m.port)
            c.ehlo()
            starttls(c)
            c.ehlo()
            c.expect("AUTH PLAIN " + b64("\0alice\0wrong1"), 535)
            c.expect("AUTH PLAIN " + b64("\0alice\0wrong2"), 535)
            expect_reply(c.reply(), 421, "4.7.0", "after auth_max_failures")
            check(c.wait_closed(5), "session closed after auth_max_failures")
            c = Client(m.port)
            c.ehlo()
            starttls(c)
            c.ehlo()
            c.expect("AUTH PLAIN " + b64("\0alice\0wrong3"), 535)
            # the address has 3 failures now: even the right password is refused
            c.expect("AUTH PLAIN " + b64("\0alice\0s3cret-pw"), 421, "4.7.0")
            check(c.wait_closed(5), "closed after auth_max_failures_per_client")
            m.wait_log(r"auth_max_failures_per_client \(3 in 600s\) reached")
            # another address is not affected
            c = Client(m.port, source="127.0.0.9")
            c.ehlo()
            starttls(c)
            c.ehlo()
            c.expect("AUTH PLAIN " + b64("\0alice\0s3cret-pw"), 235)
            c.quit()
        finally:
            m.stop()
        check("wrong1" not in m.log() and b64("\0alice\0wrong1") not in m.log(),
              "a failed credential in moatd's log")


def test_auth_carried_by_xclient_login_on_new_upstream_connection():
    with TlsUpstream() as up:
        m = auth_moatd(up)
        try:
            c = Client(m.port)
            c.ehlo()
            starttls(c)
            c.ehlo()
            c.expect("AUTH PLAIN " + b64("\0alice\0s3cret-pw"), 235)
            c.expect("MAIL FROM:<a@example.org>", 250)
            c.expect("RSET", 250)          # drops the upstream connection
            expect_reply(send_mail(c), 250)
            c.quit()
            ss = up.real_sessions()
            eq(len(ss), 2, "upstream sessions")
            eq(ss[1]["auth"], [], "no AUTH on the second connection")
            eq(ss[1]["xclient"][0].get("LOGIN"), "alice", "XCLIENT LOGIN on the second connection")
            check("LOGIN" not in ss[0]["xclient"][0], "no LOGIN before AUTH")
        finally:
            m.stop()


# ---------------------------------------------------------------- a real Postfix

def test_swaks_tls_through_moatd_to_postfix_requiring_tls():
    import test_postfix as tp
    p = pki()
    pf = tp.Postfix()
    cert, key = os.path.join(pf.dir, "pf.pem"), os.path.join(pf.dir, "pf.key")
    shutil.copy(p.up[0], cert)
    shutil.copy(p.up[1], key)
    os.chmod(key, 0o600)
    with open(os.path.join(pf.dir, "main.cf"), "a") as f:
        f.write("smtpd_tls_security_level = encrypt\nsmtpd_tls_cert_file = %s\n"
                "smtpd_tls_key_file = %s\nsmtpd_tls_loglevel = 1\n" % (cert, key))
    with open(os.path.join(pf.dir, "master.cf"), "a") as f:
        f.write("tlsmgr    unix  - - n 1000? 1 tlsmgr\n")
    m = None
    try:
        pf.start()
        m = moatd_with(pf.smtpd, dict(tls_opts(), upstream_tls="encrypt",
                                      upstream_tls_verify="hostname", upstream_tls_ca_file=p.ca,
                                      upstream_tls_name="upstream.test")).start()
        rc, out = swaks(["--server", "127.0.0.1:%d" % m.port, "--tls", "--local-interface",
                         "127.0.0.5", "--ehlo", "client.example", "--from", "alice@example.net",
                         "--to", "bob@example.org", "--body", "Hello over TLS twice."], timeout=60)
        eq(rc, 0, "swaks exit status (output: %s)" % out[-1500:])
        check(re.search(r"<~\s+250 .*queued as", out), "swaks saw the queue id: %s" % out[-800:])
        got = wait_for(lambda: [d for d in pf.delivered() if b"Hello over TLS twice." in d], 15)
        check(got, "message not at the sink; Postfix log: %s" % pf.log()[-1500:])
        check(re.search(r"TLS connection established from \S*\[127\.0\.0\.1\]", pf.log()),
              "Postfix logs moat's TLS connection: %s" % pf.log()[-1500:])
        check(re.search(r"client=\S*\[127\.0\.0\.5\]", pf.log()),
              "Postfix sees the real client through XCLIENT: %s" % pf.log()[-1500:])
        line = m.msg_lines()[-1]
        check(line.get("tls", "").startswith("TLSv1."), "client TLS in moat's log line: %s" % line["_"])
        m.wait_log(r"upstream TLS TLSv1\.")
    finally:
        if m:
            m.stop()
        pf.stop()


test_swaks_tls_through_moatd_to_postfix_requiring_tls.timeout = 120


if __name__ == "__main__":
    try:
        rc = run_tests(globals())
    finally:
        if PKI and not os.environ.get("MOAT_TEST_KEEP"):
            shutil.rmtree(PKI.dir, ignore_errors=True)
    sys.exit(rc)
