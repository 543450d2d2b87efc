"""Never write through a symlinked directory under target.root (issue 13).

Anyone who can write under the root (the login user, a compromised app, a careless
`ln -s`) could point `<root>/data/media`, `<root>/shared` or `<root>/.relocate` at a
directory elsewhere; relocate would then write the bucket, the env file with the
secrets or its own audit log outside the root. Every writer therefore checks, right
before it writes and in the same remote command (or SFTP session), that no path
component between the root and the directory it writes into is a symlink, unless
relocate.yaml names that exact link in `target.allow_symlinks`. The root itself may
be a link (the user chose it). A symlink to a single *file* at the path being
written is not followed: the file is renamed over it, replacing the link.

Three forms of the one rule:
- `guard(...)`: a shell command run before the writer's own (`&&`), for tar, mkdir, mv;
- `NOLINKS_FN`: the same check as a sh function, for scripts that write a tree;
- `check_sftp(...)`: `lstat` of every component over SFTP, before an SFTP write;
and the receiver agent (targets/receiver_agent.py) does it itself, per directory.

A refusal is exit status 86 with `relocate: symlink: LINK -> WHERE` on stderr;
`refusal()` turns it into SafetyError (exit 6) naming the link.
"""

from __future__ import annotations

import stat as statmod
from typing import TYPE_CHECKING, Iterable

from relocate.errors import ItemError, SafetyError
from relocate.targets import shell

if TYPE_CHECKING:  # paramiko costs an import; only the SFTP path uses it
    from relocate.ssh.sftp import SFTPClient

STATUS = 86  # a remote check's exit status for "refused: symlink"
MARK = "relocate: symlink: "
HINT = "remove the link (or list it under target.allow_symlinks in relocate.yaml to write through it)"

# relocate_nolinks ROOT ALLOW PATH...: return 86 at the first component of a PATH below
# ROOT that is a symlink not listed in ALLOW (newline-separated absolute paths).
# Pure POSIX sh (dash): no IFS or glob games, a name may hold any byte but NUL.
NOLINKS_FN = r"""
relocate_nolinks() {
  _r=$1 _a=$2; shift 2
  for _p in "$@"; do
    case $_p in "$_r"/*) ;; *) continue ;; esac
    _c=$_r _rest=${_p#"$_r"/}
    while [ -n "$_rest" ]; do
      _seg=${_rest%%/*}
      case $_rest in */*) _rest=${_rest#*/} ;; *) _rest= ;; esac
      [ -n "$_seg" ] || continue
      _c=$_c/$_seg
      if [ -L "$_c" ]; then
        case "
$_a
" in *"
$_c
"*) ;; *) printf 'relocate: symlink: %s -> %s\n' "$_c" "$(readlink -- "$_c")" >&2; return 86 ;; esac
      fi
    done
  done
  return 0
}
"""

_GUARD = NOLINKS_FN + 'r=$1 a=$2; shift 2; relocate_nolinks "$r" "$a" "$@" || exit 86\n'


def root_arg(root: str) -> str:
    """The ROOT argument: without its trailing slash ("" for "/")."""
    return root.rstrip("/")


def allow_arg(allow: Iterable[str]) -> str:
    return "\n".join(allow)


def guard(root: str, paths: Iterable[str], allow: Iterable[str] = ()) -> list[str]:
    """A command (tokens) that fails with STATUS when a component of a path is a symlink."""
    return ["sh", "-c", _GUARD, "sh", root_arg(root), allow_arg(allow), *paths]


def guarded(root: str, paths: Iterable[str], command: str, allow: Iterable[str] = ()) -> str:
    """`command` run only after the check passed, in the same remote command line."""
    return shell.line(guard(root, paths, allow)) + " && " + command


def refusal(status: int | None, stderr: bytes | str) -> SafetyError | None:
    """SafetyError naming the link when a remote command was refused by the check."""
    text = stderr.decode("utf-8", "replace") if isinstance(stderr, bytes) else stderr
    for line in text.splitlines():
        if line.startswith(MARK) or line.startswith("relocate receiver: " + MARK):
            link = line.split(MARK, 1)[1].strip()
            return SafetyError(f"refusing to write through the symlink {link} under target.root", hint=HINT)
    if status == STATUS:
        return SafetyError("refusing to write through a symlink under target.root", hint=HINT)
    return None


def components(root: str, directory: str) -> list[str]:
    """The absolute paths from the root (excluded) down to `directory`: what is checked."""
    base = root_arg(root)
    if not directory.startswith(base + "/"):
        return []
    out, cur = [], base
    for seg in directory[len(base) + 1:].split("/"):
        if seg and seg != ".":
            cur = f"{cur}/{seg}"
            out.append(cur)
    return out


def check_sftp(sftp: SFTPClient, root: str, directory: str, allow: Iterable[str] = ()) -> None:
    """lstat every component of `directory` below `root` over SFTP (paramiko): refuse a
    symlink not in `allow`. Components that do not exist yet are fine (made later)."""
    allowed = set(allow)
    for cur in components(root, directory):
        try:
            st = sftp.lstat(cur)
        except FileNotFoundError:
            return
        if st.st_mode is not None and not statmod.S_ISLNK(st.st_mode) and not statmod.S_ISDIR(st.st_mode):
            raise ItemError(f"cannot write under {cur} on the target: it is a file, not a directory",
                            hint="retrying will not help: fix the `to:` in relocate.yaml or remove the file")
        if st.st_mode is not None and statmod.S_ISLNK(st.st_mode) and cur not in allowed:
            try:
                where = sftp.readlink(cur)
            except OSError:
                where = "?"
            raise SafetyError(f"refusing to write through the symlink {cur} -> {where} under target.root", hint=HINT)

