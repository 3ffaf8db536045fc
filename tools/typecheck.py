#!/usr/bin/env python3
"""Type check of the firmware and the ESP32 boards against the ESP32 port's API.

mypy checks firmware/*.py and boards/esp32_*.py with the stubs of micropython-esp32-stubs (the
ESP32_GENERIC build of the MicroPython version we deploy, with its frozen modules such as
umqtt.simple) and micropython-stdlib-stubs as the only standard library: both are laid out
as mypy's typeshed in a temporary folder, so neither CPython's typeshed nor anything installed
in the venv (nor the host stand-ins under boards/esp32port) can answer for machine, network,
esp32, time, micropython or os. Function bodies are checked although nothing is annotated.

Findings that are right on MicroPython but that the checker cannot know are listed, one line
per finding, in tools/typecheck_known.txt:

    path:scope: [code] message  # reason

scope is the enclosing function or class (Class.method, <module> at the top level), so the
list does not depend on line numbers. A finding that is not listed, and a listed entry that no
longer occurs, both fail (host_tests/tools/test_typecheck.py).

    python tools/typecheck.py         # unlisted findings and stale entries; exit 1 if any
    python tools/typecheck.py --all   # every finding, in the list's format
"""
import ast
import json
import os
import subprocess
import sys
import tempfile
from collections import Counter, namedtuple
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KNOWN = REPO / "tools" / "typecheck_known.txt"
STUB_DISTS = ("micropython-stdlib-stubs", "micropython-esp32-stubs")

OPTIONS = [
    "--config-file=",  # no mypy.ini, setup.cfg or user config: these options are all there is
    "--no-site-packages",  # nothing from the venv (pytest, paho, ...)
    "--python-version=3.11",
    "--platform=esp32",  # sys.platform on the ESP32 port
    "--check-untyped-defs",  # the firmware has no annotations: check the bodies all the same
    "--allow-untyped-globals",  # `X = {}` at module or class level is no finding
    "--strict-equality",
    "--enable-error-code=deprecated",  # the stubs mark APIs on their way out (os.mount -> vfs.mount)
    "--cache-dir=/dev/null",  # a cold run takes about a second; no cache in the tree
    "--output=json",
    "--show-traceback",
]

Finding = namedtuple("Finding", "path line scope code message")
Entry = namedtuple("Entry", "path scope code message reason lineno")


class CheckerError(Exception):
    """mypy did not run, or said something other than findings."""


def targets():
    """The checked files, relative to the repository."""
    files = sorted(REPO.glob("firmware/*.py")) + sorted(REPO.glob("boards/esp32_*.py"))
    return [str(p.relative_to(REPO)) for p in files]


def build_typeshed(dest):
    """Lay out the installed stub distributions as a mypy typeshed in `dest`: stdlib/ holds the
    MicroPython standard library and every module of the ESP32 port (machine, network, esp32,
    umqtt, ...), each listed in stdlib/VERSIONS so mypy treats them as the standard library."""
    dest = Path(dest)
    stdlib = dest / "stdlib"
    added = set()
    for name in STUB_DISTS:
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise CheckerError("%s is not installed: make venv (requirements.txt)" % name) from None
        for f in dist.files or ():
            parts = Path(f).parts
            if not parts or not parts[-1].endswith(".pyi") or parts[0].endswith(".dist-info"):
                continue
            if parts[0] in ("stdlib", "stubs"):
                target = dest.joinpath(*parts)
            else:
                target = stdlib.joinpath(*parts)
                added.add(parts[0][:-4] if parts[0].endswith(".pyi") else parts[0])
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                os.symlink(f.locate(), target)
    versions = metadata.distribution("micropython-stdlib-stubs").locate_file("stdlib/VERSIONS").read_text()
    listed = {line.split(":")[0].strip() for line in versions.splitlines() if ":" in line and not line.startswith("#")}
    extra = "".join("%s: 3.0-\n" % m for m in sorted(added - listed))
    (stdlib / "VERSIONS").write_text(versions.rstrip("\n") + "\n" + extra)
    return dest


def _scopes(path, cache={}):
    """(first line, last line, qualified name) of every def and class in the file."""
    if path not in cache:
        tree = ast.parse(Path(path).read_text(), str(path))
        out = []

        def walk(node, prefix):
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    name = prefix + child.name
                    out.append((child.lineno, child.end_lineno, name))
                    walk(child, name + ".")
                else:
                    walk(child, prefix)

        walk(tree, "")
        cache[path] = out
    return cache[path]


def scope_of(path, line):
    """The innermost def or class of the file `path` around `line`; <module> outside any."""
    best = "<module>"
    best_start = -1
    for start, end, name in _scopes(path):
        if start <= line <= end and start > best_start:
            best, best_start = name, start
    return best


def run(files=None, cwd=REPO):
    """Every error mypy reports for `files` (default: targets()), as Findings in mypy's order,
    with paths as mypy gives them (relative to `cwd`)."""
    files = list(files or targets())
    with tempfile.TemporaryDirectory(prefix="typeshed-esp32-") as tmp:
        build_typeshed(tmp)
        env = dict(os.environ, MYPYPATH=os.pathsep.join(str(REPO / d) for d in ("firmware", "boards")))
        env.pop("MYPY_CACHE_DIR", None)
        cmd = [sys.executable, "-m", "mypy", "--custom-typeshed-dir=" + tmp] + OPTIONS + files
        res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    if res.returncode not in (0, 1):
        raise CheckerError("mypy exited %d\n%s%s" % (res.returncode, res.stdout, res.stderr))
    findings = []
    for line in res.stdout.splitlines():
        try:
            d = json.loads(line)
        except ValueError:
            raise CheckerError("unexpected mypy output: %r\n%s" % (line, res.stderr)) from None
        if d["severity"] != "error":
            continue
        path = d["file"]
        scope = scope_of((Path(cwd) / path).resolve(), d["line"])
        findings.append(Finding(path, d["line"], scope, d["code"] or "misc", d["message"]))
    if res.returncode == 1 and not findings:
        raise CheckerError("mypy failed without findings\n%s%s" % (res.stdout, res.stderr))
    return findings


def load_known(path=KNOWN):
    """The entries of the known list: `path:scope: [code] message  # reason`, one per line."""
    entries = []
    for n, raw in enumerate(Path(path).read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            where, reason = line.rsplit("  # ", 1)
            file, scope, rest = where.split(":", 2)
            code, message = rest.strip().split(" ", 1)
            if not (code.startswith("[") and code.endswith("]")) or not reason.strip():
                raise ValueError
        except ValueError:
            raise CheckerError("%s:%d: not `path:scope: [code] message  # reason`: %s" % (path, n, raw)) from None
        entries.append(Entry(file, scope, code[1:-1], message.strip(), reason.strip(), n))
    return entries


def _key(x):
    return (x.path, x.scope, x.code, x.message)


def compare(findings, entries):
    """(findings not in the list, entries that match no finding). Each entry accounts for one
    finding, so a finding that occurs twice in the same scope is listed twice."""
    left = Counter(_key(e) for e in entries)
    unlisted = []
    for f in findings:
        if left[_key(f)] > 0:
            left[_key(f)] -= 1
        else:
            unlisted.append(f)
    stale = []
    for e in entries:
        if left[_key(e)] > 0:
            left[_key(e)] -= 1
            stale.append(e)
    return unlisted, stale


def entry_line(f, reason="WHY IT IS RIGHT ON MICROPYTHON"):
    return "%s:%s: [%s] %s  # %s" % (f.path, f.scope, f.code, f.message, reason)


def report(unlisted, stale, known=KNOWN):
    """Readable text for a failed check: what to fix (or list), and what to remove from the list."""
    out = []
    if unlisted:
        out.append("%d finding(s) not in %s: fix the code, or add the line (with the reason) "
                   "if it is right on MicroPython:" % (len(unlisted), Path(known).name))
        for f in unlisted:
            out.append("  %s:%d  %s" % (f.path, f.line, entry_line(f)))
    if stale:
        out.append("%d entr(y/ies) of %s no longer found: remove them:" % (len(stale), Path(known).name))
        for e in stale:
            out.append("  line %d: %s:%s: [%s] %s" % (e.lineno, e.path, e.scope, e.code, e.message))
    return "\n".join(out)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    try:
        findings = run()
        if "--all" in argv:
            for f in findings:
                print(entry_line(f))
            return 0
        unlisted, stale = compare(findings, load_known())
    except CheckerError as e:
        print("typecheck: %s" % e, file=sys.stderr)
        return 2
    if unlisted or stale:
        print(report(unlisted, stale))
        return 1
    print("typecheck: %d files, %d known findings, nothing new" % (len(targets()), len(findings)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
