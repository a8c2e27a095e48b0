#!/bin/sh
# install-deps.sh - install the Debian packages named in $MOAT_PKGS.
# Called by `make demo` and `make check`; does nothing when all are there.
set -eu
missing=""
for p in $MOAT_PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "moat: these Debian packages are missing:$missing" >&2
	echo "moat: run this command as root (it calls apt-get), or install them first:" >&2
	echo "      apt-get install$missing" >&2
	exit 1
fi
echo "moat: installing Debian packages:$missing"
export DEBIAN_FRONTEND=noninteractive
# Postfix provides smtp-sink; keep it from configuring or starting a system MTA.
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
if [ ! -e /usr/sbin/policy-rc.d ]; then
	printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
	chmod 755 /usr/sbin/policy-rc.d
	trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
# On a fresh machine the package lists may be missing or stale: then
# update them once and try again.
# shellcheck disable=SC2086 # $missing is a list of words
apt_install() { apt-get install -y -q --no-install-recommends $missing </dev/null; }
if ! apt_install; then
	echo "moat: apt-get install failed; updating the package lists and trying again"
	apt-get update -q </dev/null
	apt_install
fi
