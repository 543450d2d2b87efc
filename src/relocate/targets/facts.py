"""Facts about a target host, probed read-only (pyinfra style): the plan decides from them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from relocate.targets import files, nolinks
from relocate.ssh.connection import Connection

REQUIRED_TOOLS = ("tar", "sha256sum", "find", "xargs", "cp", "df", "mkdir", "mv", "rm")

# relocate_place ROOT DIR: what stands in the way of writing into DIR (below ROOT): its
# nearest existing component (DIR itself, or the deepest parent that exists) is a file
# (`notdir=PATH`), or a directory the login cannot write (`unwritable=OWNER<TAB>PATH`).
# ROOT itself is the `writable` fact's; a dangling link is nolinks' to name.
PLACE_FN = r"""
relocate_place() {
  _c=$2
  while [ "$_c" != "$1" ] && [ ! -e "$_c" ] && [ ! -L "$_c" ]; do
    _n=${_c%/*}; [ "$_n" != "$_c" ] || return 0; _c=$_n
  done
  case $_c in "$1"/*) ;; *) return 0 ;; esac
  [ -e "$_c" ] || return 0
  if [ ! -d "$_c" ]; then printf 'notdir=%s\n' "$_c"
  elif [ ! -w "$_c" ] || [ ! -x "$_c" ]; then
    printf 'unwritable=%s\t%s\n' "$(stat -L -c %U -- "$_c" 2>/dev/null || echo '?')" "$_c"
  fi
}
"""

# The facts, then (after a NUL) one answer per path, in the order given (files.over_items:
# the paths come on stdin behind a one-letter tag, never on the command line). Arguments:
# ROOT, nolinks' ROOT and ALLOW.
#   s DIR   the size of every file below it (files.SIZES_FN; each listing ended by an
#           empty record, a `!` record when it failed: an unreadable subdirectory say)
#   r DIR   its receipts (snapshot/receipts.py: each `*.r` file, a newline after each to
#           end a line a kill tore, then a NUL; the receipts' lines hold none)
#   w DIR   a directory the move writes into: a symlinked component (`link=LINK -> WHERE`,
#           nolinks.py), what stands in the way (relocate_place); then a NUL
#   f FILE  a file the move writes: `isdir=FILE` when a directory is there; then a NUL
# One remote command: a rerun asks the target for its facts and for what it holds in one
# round trip (issue 18).
_FACTS = r"""
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
printf '\0'
"""
_ITEMS = nolinks.NOLINKS_FN + files.SIZES_FN + PLACE_FN + r"""
r=$2 a=$3; shift 3
for x in "$@"; do
  p=${x#?}
  case $x in
    s*) relocate_sizes "$p" 2>/dev/null || printf '!\0'; printf '\0' ;;
    r*) for f in "$p"/*.r; do if [ -f "$f" ]; then cat -- "$f"; echo; fi; done; printf '\0' ;;
    w*) relocate_nolinks "$r" "$a" "$p" 2>&1 >/dev/null | sed -n 's/^relocate: symlink: /link=/p'
        relocate_place "$r" "$p"; printf '\0' ;;
    f*) if [ -d "$p" ] && [ ! -L "$p" ]; then printf 'isdir=%s\n' "$p"; fi; printf '\0' ;;
  esac
done
exit 0
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
    # below the root, on the way to where the move writes: a file where a directory must
    # go, a directory where a file must go, and {directory: owner} the login cannot write
    not_dirs: list[str] = field(default_factory=list)
    dirs: list[str] = field(default_factory=list)
    unwritable: dict[str, str] = field(default_factory=dict)

    @property
    def missing_tools(self) -> list[str]:
        return [t for t, ok in self.tools.items() if not ok]

    def to_dict(self) -> dict[str, Any]:
        return {
            "os": self.os, "distro": self.distro, "user": self.user, "existing": self.existing,
            "writable": self.writable, "free_bytes": self.free_bytes, "missing_tools": self.missing_tools,
            "symlinks": self.links, "files_in_the_way": self.not_dirs, "dirs_in_the_way": self.dirs,
            "unwritable": [{"path": p, "owner": o} for p, o in self.unwritable.items()],
        }


def _command(root: str, paths: Sequence[str] | None, allow: tuple[str, ...], sizes: Sequence[str],
             receipts: Sequence[str] = (), write_files: Sequence[str] = ()) -> tuple[str, bytes]:
    items = [*("s" + p for p in sizes), *("r" + p for p in receipts), *("w" + p for p in paths or ()),
             *("f" + p for p in write_files)]
    return files.over_items(_FACTS, _ITEMS, [root, nolinks.root_arg(root), nolinks.allow_arg(allow)], items)


def probe(conn: Connection, root: str, paths: list[str] | None = None, allow: tuple[str, ...] = (),
          write_files: Sequence[str] = ()) -> TargetFacts:
    """`paths`: where the move will write (directories), checked for symlinked components
    and for what stands in the way; `write_files`: the files it writes (a directory there?)."""
    cmd, stdin = _command(root, paths, allow, (), (), write_files)
    text, _, rest = conn.run(cmd, stdin, timeout=60).stdout.partition(b"\0")
    return _facts(text, rest)


class Probing:
    """`probe` under way (the caller works while the target answers), and with it the
    sizes of the files under each of `sizes` (files.list_sizes, in the same command) and
    the receipts in each of `receipts`."""

    def __init__(self, conn: Connection, root: str, paths: list[str] | None = None, allow: tuple[str, ...] = (),
                 sizes: Sequence[str] = (), receipts: Sequence[str] = (), write_files: Sequence[str] = ()) -> None:
        self.conn, self.count, self.receipts = conn, len(sizes), len(receipts)
        self.proc = conn.begin(*_command(root, paths, allow, sizes, receipts, write_files))

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
        return _facts(text, b"\n".join(records[start + self.receipts:])), listings, taken


def _facts(out: bytes, paths: bytes = b"") -> TargetFacts:
    """The facts' lines, and the answers about the paths (`link=`, `notdir=`, `isdir=`,
    `unwritable=`: one a line)."""
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
    for raw in paths.decode("utf-8", "replace").splitlines():
        key, _, value = raw.partition("=")
        if key == "link" and value not in facts.links:
            facts.links.append(value)
        elif key == "notdir" and value not in facts.not_dirs:
            facts.not_dirs.append(value)
        elif key == "isdir" and value not in facts.dirs:
            facts.dirs.append(value)
        elif key == "unwritable" and "\t" in value:
            owner, _, where = value.partition("\t")
            facts.unwritable.setdefault(where, owner)
    return facts
