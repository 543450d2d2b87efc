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

import posixpath

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


def releases_dir(root: str) -> str:
    return posixpath.join(root, "releases")


def list_releases(conn: Connection, root: str) -> list[str]:
    cmd, stdin = shell.script(_LIST, root)
    return sorted(r.decode() for r in conn.run(cmd, stdin).stdout.split(b"\0") if r)


def current_release(conn: Connection, root: str) -> str | None:
    res = conn.run(shell.line(["readlink", "--", posixpath.join(root, "current")]), check=False)
    target = res.text().strip()
    return posixpath.basename(target) if res.status == 0 and target else None


def switch(conn: Connection, root: str, release: str) -> None:
    """`current` is replaced (never followed); what it will point at, releases/<id>, must
    be a real directory under the root (nolinks.py), not a link leading elsewhere."""
    cmd, stdin = shell.script(_SWITCH, root, release)
    conn.run(nolinks.guarded(root, [posixpath.join(releases_dir(root), release)], cmd), stdin)


def mark_failed(conn: Connection, root: str, release: str) -> str:
    """Set a release that failed its health check aside as `<id>.failed` (kept for a
    look, never a rollback candidate again)."""
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
    """Drop all but the newest `keep` releases; never one in `protect` (current, previous)."""
    have = list_releases(conn, root)
    drop = [r for r in have[:-keep] if r not in protect] if len(have) > keep else []
    if drop:
        conn.run(shell.line(["rm", "-rf", "--", *(posixpath.join(releases_dir(root), r) for r in drop)]))
    return drop
