"""Facts about a target host, probed read-only (pyinfra style): the plan decides from them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from relocate.targets import files, nolinks, shell
from relocate.ssh.connection import Connection

REQUIRED_TOOLS = ("tar", "sha256sum", "find", "xargs", "cp", "df", "mkdir", "mv", "rm")

# Arguments: ROOT, nolinks' ROOT and ALLOW, N, M, then N directories whose file sizes follow
# the facts (after a NUL, each listing ended by an empty record: files.SIZES_FN; a `!`
# record when it failed, an unreadable subdirectory say), then M receipts directories
# whose receipts follow (snapshot/receipts.py: each directory's `*.r` files, a newline
# after each to end a line a kill tore, then a NUL; the receipts' lines hold none), then
# the directories the move will write into. One remote command: a rerun asks the target
# for its facts and for what it holds in one round trip (issue 18).
_PROBE = nolinks.NOLINKS_FN + files.SIZES_FN + r"""
root="$1"
echo "os=$(uname -s) $(uname -m)"
if [ -r /etc/os-release ]; then ( . /etc/os-release; echo "distro=${PRETTY_NAME:-$ID}" ); fi
echo "user=$(id -un)"
p="$root"
while [ ! -e "$p" ]; do p=$(dirname "$p"); done
echo "existing=$p"
if [ -d "$p" ] && [ -w "$p" ] && [ -x "$p" ]; then echo writable=1; else echo writable=0; fi
df -Pk "$p" 2>/dev/null | awk 'NR==2 {print "avail_kb=" $4}'
for t in """ + " ".join(REQUIRED_TOOLS) + r"""; do
  if command -v "$t" >/dev/null 2>&1; then echo "tool.$t=1"; else echo "tool.$t=0"; fi
done
# symlinked directories on the way to where the move will write (nolinks.py refuses them)
r=$2 a=$3 n=$4 m=$5; shift 5
i=0
for p in "$@"; do
  i=$((i + 1)); [ "$i" -gt $((n + m)) ] || continue
  relocate_nolinks "$r" "$a" "$p" 2>&1 >/dev/null | sed -n 's/^relocate: symlink: /link=/p'
done
printf '\0'
i=0
for d in "$@"; do
  i=$((i + 1)); [ "$i" -le "$n" ] || break
  relocate_sizes "$d" 2>/dev/null || printf '!\0'
  printf '\0'
done
i=0
for d in "$@"; do
  i=$((i + 1)); [ "$i" -gt "$n" ] || continue; [ "$i" -le $((n + m)) ] || break
  for f in "$d"/*.r; do
    if [ -f "$f" ]; then cat -- "$f"; echo; fi
  done
  printf '\0'
done
"""


@dataclass
class TargetFacts:
    os: str = ""
    distro: str = ""
    user: str = ""
    existing: str = ""  # target.root, or its nearest existing parent
    writable: bool = False
    free_bytes: int | None = None
    tools: dict[str, bool] = field(default_factory=dict)
    links: list[str] = field(default_factory=list)  # "LINK -> WHERE": symlinked dirs a write would meet

    @property
    def missing_tools(self) -> list[str]:
        return [t for t, ok in self.tools.items() if not ok]

    def to_dict(self) -> dict[str, Any]:
        return {
            "os": self.os, "distro": self.distro, "user": self.user, "existing": self.existing,
            "writable": self.writable, "free_bytes": self.free_bytes, "missing_tools": self.missing_tools,
            "symlinks": self.links,
        }


def _command(root: str, paths: list[str] | None, allow: tuple[str, ...], sizes: Sequence[str],
             receipts: Sequence[str] = ()) -> tuple[str, bytes]:
    return shell.script(_PROBE, root, nolinks.root_arg(root), nolinks.allow_arg(allow), str(len(sizes)),
                        str(len(receipts)), *sizes, *receipts, *(paths or []))


def probe(conn: Connection, root: str, paths: list[str] | None = None, allow: tuple[str, ...] = ()) -> TargetFacts:
    """`paths`: where the move will write (directories), checked for symlinked components."""
    cmd, stdin = _command(root, paths, allow, ())
    return _facts(conn.run(cmd, stdin, timeout=60).stdout.partition(b"\0")[0])


class Probing:
    """`probe` under way (the caller works while the target answers), and with it the
    sizes of the files under each of `sizes` (files.list_sizes, in the same command) and
    the receipts in each of `receipts`."""

    def __init__(self, conn: Connection, root: str, paths: list[str] | None = None, allow: tuple[str, ...] = (),
                 sizes: Sequence[str] = (), receipts: Sequence[str] = ()) -> None:
        self.conn, self.count, self.receipts = conn, len(sizes), len(receipts)
        self.proc = conn.begin(*_command(root, paths, allow, sizes, receipts))

    def result(self) -> tuple[TargetFacts, list[dict[str, int] | None], list[bytes]]:
        """(the facts, {path: size} under each of `sizes`, in order, None where the listing
        failed: files.list_sizes, asked again by whoever needs it, says why; the receipts
        read from each of `receipts`, in order, b"" where there are none)."""
        out = self.conn.finish(self.proc, timeout=3600).stdout
        text, _, rest = out.partition(b"\0")
        records = rest.split(b"\0")
        listings: list[dict[str, int] | None] = []
        start = 0
        for _ in range(self.count):  # each listing ends with an empty record
            end = records.index(b"", start)
            listing = records[start:end]
            listings.append(None if listing[-1:] == [b"!"] else files.parse_sizes(listing))
            start = end + 1
        taken = [raw if raw.strip() else b"" for raw in records[start:start + self.receipts]]
        return _facts(text), listings, taken


def _facts(out: bytes) -> TargetFacts:
    facts = TargetFacts()
    for raw in out.decode("utf-8", "replace").splitlines():
        key, _, value = raw.partition("=")
        if key == "os":
            facts.os = value
        elif key == "distro":
            facts.distro = value
        elif key == "user":
            facts.user = value
        elif key == "existing":
            facts.existing = value
        elif key == "writable":
            facts.writable = value == "1"
        elif key == "avail_kb" and value.isdigit():
            facts.free_bytes = int(value) * 1024
        elif key.startswith("tool."):
            facts.tools[key[5:]] = value == "1"
        elif key == "link" and value not in facts.links:
            facts.links.append(value)
    return facts
