#!/usr/bin/python3
"""The documentation matches the code: every option the configuration
table declares is documented in moat.conf(5) (and nothing else is), the
man pages format without warnings, and the shipped moat.conf passes
`moatd -t`."""

import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from moattest import *  # noqa

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MOAT = os.environ.get("MOAT", os.path.join(ROOT, "build/san/moat"))


def table_options():
    out = subprocess.run([MOAT, "options"], capture_output=True, text=True, timeout=30)
    eq(out.returncode, 0, "moat options exit status")
    rows = [l.split("\t") for l in out.stdout.splitlines() if l.strip()]
    check(len(rows) > 10, "moat options lists the table: %r" % out.stdout[:300])
    return rows


def man_documented(path):
    names, prev = [], ""
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            m = re.match(r"^\.B ([a-z][a-z0-9_]*)$", line)
            if prev == ".TP" and m:
                names.append(m.group(1))
            prev = line
    return names


def test_every_option_documented_in_moat_conf_5():
    opts = sorted(r[1] for r in table_options())
    doc = sorted(set(man_documented(os.path.join(ROOT, "man/moat.conf.5"))))
    missing = sorted(set(opts) - set(doc))
    extra = sorted(set(doc) - set(opts))
    eq(missing, [], "options in the table but not in moat.conf(5)")
    eq(extra, [], "options in moat.conf(5) that the table does not declare")


def test_defaults_in_man_page_match_table():
    text = open(os.path.join(ROOT, "man/moat.conf.5")).read()
    for section, name, typ, default in table_options():
        if default in ("(none)", ""):
            continue
        # the default appears in a paragraph that documents the option
        # (names like timeout are documented in several sections)
        paras = re.findall(r"^\.TP\n\.B %s\n(.*?)(?=^\.TP\n|^\.SH|\Z)" % re.escape(name), text, re.S | re.M)
        check(paras, "no paragraph for %s" % name)
        check(any(default in p.replace("\\-", "-").replace("\\(dq", '"') for p in paras),
              "no moat.conf(5) paragraph of %s (section %s) has its default %r: %r"
              % (name, section, default, [p[:120] for p in paras]))


def test_man_pages_format_without_warnings():
    for page in ("man/moatd.8", "man/moat.1", "man/moat.conf.5"):
        r = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", os.path.join(ROOT, page)],
                           capture_output=True, text=True, timeout=30)
        eq(r.returncode, 0, "groff exit status for %s" % page)
        eq(r.stderr.strip(), "", "groff warnings for %s" % page)


def test_shipped_config_checks():
    r = subprocess.run([MOATD, "-t", "-c", os.path.join(ROOT, "conf/moat.conf")],
                       capture_output=True, text=True, timeout=30)
    eq(r.returncode, 0, "moatd -t on conf/moat.conf (stderr %r)" % r.stderr)
    eq(r.stderr, "", "moatd -t prints nothing for a good file")


def test_shipped_config_option_values_are_the_defaults_or_documented():
    """moat config on the shipped file works with -o overrides."""
    r = subprocess.run([MOAT, "-c", os.path.join(ROOT, "conf/moat.conf"),
                        "-o", "listener.inbound.listen=127.0.0.1:2526", "config"],
                       capture_output=True, text=True, timeout=30)
    eq(r.returncode, 0, "moat config exit status (%r)" % r.stderr)
    check('listen = "127.0.0.1:2526"' in r.stdout, "override shown: %r" % r.stdout[-400:])


if __name__ == "__main__":
    sys.exit(run_tests(globals()))
