"""Capistrano/Kamal-style releases on the target:

    root/releases/<id>/   one directory per deploy, never changed after upload
                          (`<id>.partial` while uploading, `<id>.failed` once rolled back from)
    root/shared/          what outlives releases (data, env files, logs)
    root/current          a symlink to releases/<id>, switched atomically

The switch is `ln -s` to a temporary name then `mv -T` over `current` (rename(2)
replaces a symlink atomically; `ln -sfn` alone unlinks first, leaving a moment with
no `current`).
"""

from __future__ import annotations

import calendar
import posixpath
import re
import time

from relocate.targets import nolinks, shell
from relocate.ssh.connection import Connection

# Newest last: release ids begin with a UTC timestamp.
_LIST = r"""
[ -d "$1/releases" ] || exit 0
cd "$1/releases" && for d in *; do [ -d "$d" ] && case "$d" in *.partial|*.failed) ;; *) printf '%s\0' "$d" ;; esac; done
exit 0
"""

_SWITCH = r"""
set -e
cd -- "$1"
rm -f .current.relocate-tmp
ln -s -- "releases/$2" .current.relocate-tmp
mv -T -- .current.relocate-tmp current
"""


# Every name under releases/ that is a release id, whatever its state (`.partial`,
# `.failed` too): a new id must sort after all of them.
_LIST_ALL = r"""
[ -d "$1/releases" ] || exit 0
cd "$1/releases" && for d in *; do [ -d "$d" ] && printf '%s\0' "$d"; done
exit 0
"""

# Removes `current` only while it still names releases/$2 (a release set aside).
_UNSWITCH = r"""
cd -- "$1" || exit 1
[ "$(readlink -- current 2>/dev/null)" = "releases/$2" ] || exit 0
rm -f -- current
"""

ID_TIME = "%Y%m%dT%H%M%SZ"
_ID = re.compile(r"^(\d{8}T\d{6}Z)-")


def releases_dir(root: str) -> str:
    return posixpath.join(root, "releases")


def list_releases(conn: Connection, root: str) -> list[str]:
    cmd, stdin = shell.script(_LIST, root)
    return sorted(r.decode() for r in conn.run(cmd, stdin).stdout.split(b"\0") if r)


def new_id(existing: list[str], digest: str, now: float | None = None) -> str:
    """`<UTC time>-<12 hex of the content hash>`, sorting after every release in
    `existing` (failed and partial ones included): ids sort in deploy order, so the
    time is bumped a second past the newest one when that is not before now (two
    deploys in one second, or a target that saw a clock ahead of this one)."""
    t = int(time.time() if now is None else now)
    for name in existing:
        m = _ID.match(name)
        if m:
            t = max(t, calendar.timegm(time.strptime(m.group(1), ID_TIME)) + 1)
    return time.strftime(ID_TIME, time.gmtime(t)) + "-" + digest[:12]


def all_ids(conn: Connection, root: str) -> list[str]:
    """Every directory under releases/ (live, `.failed`, `.partial`), in name order."""
    cmd, stdin = shell.script(_LIST_ALL, root)
    return sorted(r.decode("utf-8", "surrogateescape") for r in conn.run(cmd, stdin).stdout.split(b"\0") if r)


def current_release(conn: Connection, root: str) -> str | None:
    res = conn.run(shell.line(["readlink", "--", posixpath.join(root, "current")]), check=False)
    target = res.text().strip()
    return posixpath.basename(target) if res.status == 0 and target else None


def switch(conn: Connection, root: str, release: str) -> None:
    """`current` is replaced (never followed); what it will point at, releases/<id>, must
    be a real directory under the root (nolinks.py), not a link leading elsewhere."""
    cmd, stdin = shell.script(_SWITCH, root, release)
    conn.run(nolinks.guarded(root, [posixpath.join(releases_dir(root), release)], cmd), stdin)


def unswitch(conn: Connection, root: str, release: str) -> None:
    """Remove `current` when it names `release` (a first deploy that failed: there is
    no earlier release to point it back at, and it must not name a failed one)."""
    cmd, stdin = shell.script(_UNSWITCH, root, release)
    conn.run(cmd, stdin)


def mark_failed(conn: Connection, root: str, release: str) -> str:
    """Set a release that failed (any deploy step, its health check included) aside as
    `<id>.failed` (kept for a look, never a rollback candidate again)."""
    base = releases_dir(root)
    conn.run(shell.all_of(["rm", "-rf", "--", posixpath.join(base, release + ".failed")],
                          ["mv", "-T", "--", posixpath.join(base, release), posixpath.join(base, release + ".failed")]))
    return release + ".failed"


def previous_of(releases: list[str], current: str | None) -> str | None:
    """The release deployed before `current` (by id order), if any."""
    if current not in releases:
        return releases[-1] if releases else None
    i = releases.index(current)
    return releases[i - 1] if i > 0 else None


def prune(conn: Connection, root: str, keep: int, protect: tuple[str | None, ...]) -> list[str]:
    """Drop all but the newest `keep` releases (the current one counts: keep 1 leaves no
    earlier release to roll back to); never one in `protect` (current). `.failed` ones
    are not counted and stay."""
    have = list_releases(conn, root)
    drop = [r for r in have[:-keep] if r not in protect] if len(have) > keep else []
    if drop:
        conn.run(shell.line(["rm", "-rf", "--", *(posixpath.join(releases_dir(root), r) for r in drop)]))
    return drop
