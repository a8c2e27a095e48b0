#!/bin/sh
# demo.sh - relay three messages through moatd into Postfix's smtp-sink and
# show what moat logged and what arrived upstream.
#
# Run by `make demo` after the build (build/moatd, build/moat). Needs
# smtp-sink (Debian package postfix), swaks and perl (swaks needs it).
# Starts everything on free loopback ports, in a temporary directory, and
# stops what it started on exit. Exits 1 if a message did not arrive
# intact.
set -eu

cd "$(dirname "$0")/.."
ROOT=$(pwd)
MOATD=$ROOT/build/moatd

say() { printf '\n== %s\n' "$*"; }
die() { echo "demo: $*" >&2; exit 1; }

[ -x "$MOATD" ] || die "$MOATD is missing: run make first"
SINK=/usr/sbin/smtp-sink
[ -x "$SINK" ] || SINK=/usr/lib/postfix/sbin/smtp-sink
[ -x "$SINK" ] || die "smtp-sink not found (Debian package postfix)"
command -v swaks >/dev/null 2>&1 || die "swaks not found (Debian package swaks)"
command -v perl >/dev/null 2>&1 || die "perl not found"

TMP=$(mktemp -d /tmp/moat-demo.XXXXXX)
SINK_PID=
MOATD_PID=
cleanup() {
	status=$?
	trap - EXIT INT TERM HUP
	if [ -n "$MOATD_PID" ] && kill -0 "$MOATD_PID" 2>/dev/null; then
		kill -TERM "$MOATD_PID" 2>/dev/null || :
		wait "$MOATD_PID" 2>/dev/null || :
	fi
	if [ -n "$SINK_PID" ] && kill -0 "$SINK_PID" 2>/dev/null; then
		kill -TERM "$SINK_PID" 2>/dev/null || :
		wait "$SINK_PID" 2>/dev/null || :
	fi
	if [ "$status" != 0 ] && [ -d "$TMP" ]; then
		echo "demo: failed; moatd's log:" >&2
		sed 's/^/    /' "$TMP/moatd.log" >&2 2>/dev/null || :
	fi
	rm -rf "$TMP"
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# A TCP port on 127.0.0.1 that is free now (the kernel picks it).
free_port() {
	perl -MIO::Socket::INET -e '
		my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => "127.0.0.1",
			LocalPort => 0, Proto => "tcp", ReuseAddr => 1) or exit 1;
		print $s->sockport, "\n";'
}

# Waits up to 10 s until something accepts on 127.0.0.1:$1.
wait_port() {
	perl -MIO::Socket::INET -e '
		for (1 .. 100) {
			my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$ARGV[0]",
				Proto => "tcp", Timeout => 1);
			if ($s) { close $s; exit 0 }
			select(undef, undef, undef, 0.1);
		}
		exit 1;' "$1"
}

# The client plays 127.0.0.2 (Linux answers on all of 127/8), so that its
# address differs from moat's own 127.0.0.1 in what arrives upstream.
CLIENT_IP=127.0.0.2
perl -MIO::Socket::INET -e 'IO::Socket::INET->new(Listen => 1,
	LocalAddr => "127.0.0.2", LocalPort => 0) or exit 1' 2>/dev/null || CLIENT_IP=127.0.0.1

SINK_PORT=$(free_port) || die "cannot find a free port"
MOAT_PORT=$(free_port) || die "cannot find a free port"
[ "$SINK_PORT" != "$MOAT_PORT" ] || MOAT_PORT=$(free_port)
RUN=$(date +%H%M%S)-$$

# ---------------------------------------------------------------------------
say "Starting smtp-sink (Postfix's test SMTP server) on 127.0.0.1:$SINK_PORT as the upstream MTA"
mkdir "$TMP/arrived" "$TMP/spool"
chmod 755 "$TMP"
SINK_USER=
RUN_USER=
if [ "$(id -u)" = 0 ]; then
	# smtp-sink refuses to run as root; it writes its dumps as nobody.
	chown nobody "$TMP/arrived"
	SINK_USER="-u nobody"
	# moatd binds as root, then runs as an unprivileged user (the
	# shipped config says "moat", which a fresh machine does not have
	# until the package creates it): nobody, owning the spool
	chown nobody "$TMP/spool"
	RUN_USER="-o user=nobody"
fi
# -d: one file per message received, named arrived/msg.<random>.
# shellcheck disable=SC2086
"$SINK" $SINK_USER -h sink.demo.example -d "$TMP/arrived/msg." \
	"127.0.0.1:$SINK_PORT" 64 </dev/null >"$TMP/sink.log" 2>&1 &
SINK_PID=$!
wait_port "$SINK_PORT" || { cat "$TMP/sink.log" >&2; die "smtp-sink did not start"; }
echo "   smtp-sink accepts every message and writes it to a file (pid $SINK_PID)"

# ---------------------------------------------------------------------------
say "Starting moatd on 127.0.0.1:$MOAT_PORT in front of it"
cp conf/*.conf "$TMP/"
cat <<EOF
   Configuration: the shipped conf/moat.conf, with these -o overrides:
     listener.inbound.listen=127.0.0.1:$MOAT_PORT
     listener.inbound.upstream=127.0.0.1:$SINK_PORT
     spool_directory=$TMP/spool  hostname=moat.demo.example
     pid_file=$TMP/moatd.pid
     listener.inbound.xclient=no  listener.inbound.proxy_address_untrusted=yes
     control_socket=$TMP/control${RUN_USER:+  user=nobody (moatd drops to it after binding)}
   Why xclient=no: the shipped config tells the upstream who the client is
   with XCLIENT (Postfix: smtpd_authorized_xclient_hosts). smtp-sink is a
   test server: it offers XCLIENT without the ADDR attribute and ignores
   what it is told, so it cannot show XCLIENT at work (moat would tempfail
   with 451 4.3.5 rather than pass mail without the client's address).
   Without XCLIENT moat adds a Received: header naming the client instead. A real upstream must then
   not trust moat's address (Postfix mynetworks), or it is an open relay;
   moat refuses xclient=no unless proxy_address_untrusted=yes says so.
   In production, keep xclient = yes (README.md).
EOF
# shellcheck disable=SC2086
"$MOATD" -f -c "$TMP/moat.conf" \
	-o "listener.inbound.listen=127.0.0.1:$MOAT_PORT" \
	-o "listener.inbound.upstream=127.0.0.1:$SINK_PORT" \
	-o "spool_directory=$TMP/spool" \
	-o "hostname=moat.demo.example" \
	-o "pid_file=$TMP/moatd.pid" \
	-o "listener.inbound.xclient=no" \
	-o "listener.inbound.proxy_address_untrusted=yes" \
	-o "control_socket=$TMP/control" $RUN_USER \
	</dev/null 2>"$TMP/moatd.log" &
MOATD_PID=$!
i=0
until grep -q ' started: ' "$TMP/moatd.log" 2>/dev/null; do
	kill -0 "$MOATD_PID" 2>/dev/null || die "moatd exited at start"
	i=$((i + 1))
	[ "$i" -le 100 ] || die "moatd did not start within 10 s"
	sleep 0.1
done
wait_port "$MOAT_PORT" || die "moatd does not accept connections"
sleep 0.3	# let its first probe of the upstream's EHLO finish
echo "   moatd runs in the foreground (pid $MOATD_PID), logging to a file"

# ---------------------------------------------------------------------------
say "Sending 3 messages with swaks from $CLIENT_IP to moatd"
FAILED=0
send() {	# send N "to,to" body
	n=$1 to=$2 body=$3
	if swaks --server "127.0.0.1:$MOAT_PORT" --local-interface "$CLIENT_IP" \
		--helo client.demo.example --from alice@example.org --to "$to" \
		--header "Subject: moat demo $n/3 $RUN" --body "$body" \
		--timeout 30 >"$TMP/swaks.$n" 2>&1; then
		echo "   message $n to $to: accepted"
	else
		echo "   message $n to $to: FAILED, swaks said:"
		grep -E '^ *(<-|<\*\*|\*\*\*)' "$TMP/swaks.$n" | sed 's/^/      /'
		FAILED=1
	fi
}
BODY3='This body has lines that start with a dot.
.A line that starts with one dot
.
..
The client sends them dot-stuffed (doubled), moat removes the
stuffing, holds the message, and stuffs it again towards the upstream.'
send 1 bob@example.net "A plain message, relayed through moat."
send 2 bob@example.net,carol@example.net,dave@example.com \
	"One message, three recipients: one MAIL, three RCPT, one DATA upstream."
send 3 bob@example.net "$BODY3"

# ---------------------------------------------------------------------------
say "What moatd logged, one line per message"
if grep -q ': msg ' "$TMP/moatd.log"; then
	grep ': msg ' "$TMP/moatd.log" | sed 's/^[^:]*: [a-z]*: /   /'
else
	echo "   (none)"
fi

# ---------------------------------------------------------------------------
say "What arrived at smtp-sink"
echo "   (smtp-sink's X-* lines: the envelope it saw; without XCLIENT it sees"
echo "   moat's 127.0.0.1, and moat's Received: line names the real client)"
# Files holding message $1 of this run.
arrived() { grep -l "^Subject: moat demo $1/3 $RUN\$" "$TMP"/arrived/msg.* 2>/dev/null || :; }
for n in 1 2 3; do
	echo "   --- message $n"
	for f in $(arrived "$n"); do
		# without the headers swaks varies, and without trailing blank lines
		grep -v -e '^Date:' -e '^Message-Id:' -e '^X-Mailer:' "$f" |
			awk '/^[[:space:]]*$/ { blank++; next }
			     { while (blank) { print "   |"; blank-- } print "   | " $0 }'
	done
done
if grep -q -E '^ -> \.\.' "$TMP/swaks.3"; then
	echo "   (swaks sent the dot lines of message 3 stuffed, as SMTP requires:"
	grep -E '^ -> \.\.' "$TMP/swaks.3" | sed 's/^ -> /      /'
	echo "   moat unstuffed and stuffed them again; smtp-sink unstuffed them.)"
fi

# ---------------------------------------------------------------------------
say "Checking"
for n in 1 2 3; do
	f=$(arrived "$n")
	if [ -z "$f" ]; then
		echo "   message $n: did NOT arrive"
		FAILED=1
		continue
	fi
	if [ "$(echo "$f" | wc -l)" != 1 ]; then
		echo "   message $n: arrived more than once"
		FAILED=1
		continue
	fi
	case $n in
	2)	r=$(grep -c '^X-Rcpt-Args:' "$f")
		if [ "$r" = 3 ]; then echo "   message 2: arrived once, with its 3 recipients"
		else echo "   message 2: arrived with $r recipients, not 3"; FAILED=1; fi ;;
	3)	# the body as written, dots and all, after the headers
		want=$(printf '%s\n' "$BODY3")
		got=$(sed '1,/^$/d' "$f" | sed -n "1,$(printf '%s\n' "$BODY3" | wc -l)p")
		if [ "$got" = "$want" ]; then echo "   message 3: arrived once, its dot lines intact"
		else echo "   message 3: body changed on the way"; FAILED=1; fi ;;
	*)	echo "   message $n: arrived once" ;;
	esac
done
n=$(grep -c ': msg .* result=accepted ' "$TMP/moatd.log" || :)
[ "$n" = 3 ] || { echo "   moatd logged $n accepted messages, not 3"; FAILED=1; }

if [ "$FAILED" != 0 ]; then
	say "Demo FAILED"
	exit 1
fi
say "Demo passed: 3 messages relayed through moatd. Stopping moatd and smtp-sink."
