"""Facts about a target host, probed read-only (pyinfra style): the plan decides from them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from relocate.targets import nolinks, shell
from relocate.ssh.connection import Connection

REQUIRED_TOOLS = ("tar", "sha256sum", "find", "xargs", "cp", "df", "mkdir", "mv", "rm")

_PROBE = nolinks.NOLINKS_FN + r"""
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
r=$2 a=$3; shift 3
for p in "$@"; do relocate_nolinks "$r" "$a" "$p" 2>&1 >/dev/null | sed -n 's/^relocate: symlink: /link=/p'; done
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


def probe(conn: Connection, root: str, paths: list[str] | None = None, allow: tuple[str, ...] = ()) -> TargetFacts:
    """`paths`: where the move will write (directories), checked for symlinked components."""
    cmd, stdin = shell.script(_PROBE, root, nolinks.root_arg(root), nolinks.allow_arg(allow), *(paths or []))
    out = conn.run(cmd, stdin, timeout=60).text()
    facts = TargetFacts()
    for raw in out.splitlines():
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
