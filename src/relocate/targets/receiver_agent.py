"""The target's end of a bulk batch: run there as `python3 -I -S -c <this file> STAGE FINAL ROOT [ALLOWED...]`.

Why a program of our own rather than `tar -x` + `openssl dgst` + hard links: tar
writes every file, openssl reads it all back, and the batch is then linked into
place and its staging tree removed, a dozen processes per batch; on a 2-core box
that was most of the gap to a bare `tar | ssh` (issue 6). Here each file is hashed
while it is written, in the one pass, and renamed into place as soon as its own
sha256 equals the one the sender computed while streaming. A target without
python3 keeps the tar path (execute/objects.py).

Standard library only, Python 3.6 syntax: it runs on whatever python3 the target has.

One receiver serves a lane's whole run, batch after batch: starting a process per
batch (a shell, python3, hashlib's libcrypto) cost as much as the batch itself for
small files.

Stream on stdin (big-endian), after the magic b"RLC1", batches of:
  b"F" u32 path-length, u64 size, i64 mtime, path (relative to FINAL), data, 32-byte sha256
  b"E"  end of the batch
and the end of stdin after an "E" ends the session. stdout, per batch: one line per
file, "<index in the batch> <sha256 hex of what landed>", with " !" appended when it
differs from the sender's (that file is not put in place), or " x <why>" when its own
path can never be written (see below), then "end", flushed.

b"K" right after the magic: keep what is written in the page cache (no drop-behind,
targets/dropbehind.py; RELOCATE_PAGE_CACHE=keep).

Receipts (snapshot/receipts.py), when the sender asks for them:
  b"R" u32 length, a directory under ROOT: append receipts to a new file in it
  b"M" u32 length, a record (one line of ASCII, no newline): describes the next "F"
After each file described by an "M" is renamed into place, the line
"<sha256 hex> <record>\n" is appended to the receipt with one write(2) (a kill of
either end leaves whole lines behind); the receipt is fsynced once each "E" is
answered. The next move trusts those files without sending them again, even when the
sender was killed before it could journal them.
Nothing is ever half written in FINAL: a file is written under STAGE (cleared
first; the sender's next run clears a killed one) and only renamed into FINAL whole.

Never through a symlinked directory (issue 13): every directory this receiver writes
into (STAGE's and each file's parent) is checked with lstat, component by component
from ROOT, before its first write, and made with mkdir (never makedirs, which follows
links); a link not named in ALLOWED stops the session (exit 86, "relocate: symlink:
LINK -> WHERE", the sender refuses with exit 6). Checked once per directory, not per
file. A link at a file's own path is replaced by the rename, never followed.
Errors that retrying cannot fix (a name too long, a file where a directory must be,
Permission denied) are the item's own when they come from putting one file in place (its directories
under FINAL, its rename): that file is answered " x <why>" and the session goes on
with the next, so one blocked key costs neither the rest of its batch nor a new
session. Anywhere else (the staging dir, the receipts) they exit 4 naming the path;
either way the sender reports the item instead of retrying.
"""

import errno
import hashlib
import io
import os
import stat
import struct
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # for the type comments only (mypy reads them): nothing imported at run time
    from typing import Iterable, NoReturn, Optional, Set
    from relocate.targets.dropbehind import DropBehind  # at run time: sent in front of this file (shell.program)

MAGIC = b"RLC1"
HEAD = struct.Struct(">IQq")
LEN = struct.Struct(">I")
BUF = 1 << 20
READ_BUF = 128 << 10  # the stdin reader's own buffer: below BUF, so big reads bypass it
SMALL = 64 << 10  # up to this size a file comes in one read with its hash (from the reader's buffer)


STAGE = []  # type: list[bytes]  # this session's staging dir, once known
LINK_STATUS = 86  # targets/nolinks.py STATUS
ITEM_STATUS = 4
# EACCES, EPERM: a directory the login cannot write (another user's) does not become
# writable by sending again: an item, never a retry (README, exit 4).
PERMANENT = frozenset((errno.ENAMETOOLONG, errno.EEXIST, errno.ENOTDIR, errno.EISDIR, errno.ENOTEMPTY,
                       errno.ELOOP, errno.EINVAL, errno.EROFS, errno.EACCES, errno.EPERM))
# Of those, the ones a file's own path causes; a read-only file system is every file's.
ITEM_ERRNOS = PERMANENT - {errno.EROFS}


def fail(msg, status=1):
    # type: (str, int) -> NoReturn
    """Give up: nothing under STAGE is ever trusted, so leave none of it behind."""
    for stage in STAGE:
        clear(stage)
    sys.stderr.write("relocate receiver: " + msg + "\n")
    sys.exit(status)


def clear(path):
    # type: (bytes) -> None
    """Remove a staging dir. It is absent or empty but after a killed run, so shutil
    (which imports re and enum: 10 ms of each receiver's start-up) is loaded only then."""
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except OSError:
        import shutil
        shutil.rmtree(path, ignore_errors=True)


class Dirs:
    """Directories under ROOT made or checked once each, refusing symlinked components."""

    def __init__(self, root, allowed):
        # type: (bytes, Iterable[bytes]) -> None
        self.root = root.rstrip(b"/")
        self.allowed = set(allowed)
        self.ok = set()  # type: Set[bytes]

    def ensure(self, d):
        # type: (bytes) -> None
        if d in self.ok or d == b"/" or not d:
            return
        if d == self.root:  # the root itself may be (or sit under) a link: the user chose it
            os.makedirs(d, exist_ok=True)
            self.ok.add(d)
            return
        if not d.startswith(self.root + b"/"):
            fail("refusing a path outside the root: %r" % (d,))
        self.ensure(os.path.dirname(d))
        try:
            st = os.lstat(d)
        except FileNotFoundError:
            try:
                os.mkdir(d)
                self.ok.add(d)
                return
            except FileExistsError:  # another lane made it just now
                st = os.lstat(d)
        if stat.S_ISLNK(st.st_mode):
            if d not in self.allowed:
                try:
                    where = os.readlink(d)
                except OSError:
                    where = b"?"
                fail("relocate: symlink: %s -> %s" % (os.fsdecode(d), os.fsdecode(where)), LINK_STATUS)
        elif not stat.S_ISDIR(st.st_mode):
            raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), os.fsdecode(d))
        self.ok.add(d)


def read_exact(src, n):
    # type: (io.BufferedIOBase, int) -> bytes
    data = src.read(n)
    if len(data) != n:
        fail("stream ended early (connection lost?)")
    return data


UNSAFE_PARTS = frozenset((b"", b".", b".."))


def safe_rel(path):
    # type: (bytes) -> bytes
    """Paths come from relocate's key mapping; refuse anything that could escape FINAL.
    (A set test, not any() over a generator: this runs once per file, 10,000 times for
    10,000 small objects.)"""
    if not path or path[:1] == b"/" or b"\0" in path or not UNSAFE_PARTS.isdisjoint(path.split(b"/")):
        fail("refusing unsafe path %r" % (path,))
    return path


def place(tmp, dest, final, index):
    # type: (bytes, bytes, bytes, int) -> None
    """rename(2) into place; across file systems (FINAL on another mount than the
    staging area) copy beside the destination first, so the last step is still a rename."""
    try:
        os.rename(tmp, dest)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        import shutil
        near = os.path.join(os.path.dirname(dest), b".relocate-tmp-%d-%d" % (os.getpid(), index))
        shutil.copy2(tmp, near)
        try:
            os.rename(near, dest)
        except OSError:
            os.unlink(near)  # a failed item leaves no copy of itself beside its destination
            raise
        os.unlink(tmp)


def put(dirs, tmp, fin, rel, final, index):
    # type: (Dirs, bytes, bytes, bytes, bytes, int) -> Optional[str]
    """Put a verified file in place. None when it is, or why its own path can never be
    written (ITEM_ERRNOS: a file where one of its directories must go, a name too long):
    the answer names it and the session goes on. Any other error ends the session."""
    head = rel.rpartition(b"/")[0]  # os.path.dirname, by hand: once per file
    try:
        dirs.ensure(fin + b"/" + head if head else (fin or b"/"))
        place(tmp, fin + b"/" + rel, final, index)
        return None
    except OSError as exc:
        if exc.errno not in ITEM_ERRNOS:
            raise
        try:
            os.unlink(tmp)
        except OSError:
            pass
        # one line of ASCII whatever the path holds (the answer is split on newlines)
        why = "cannot write %s: %s" % (name_of(exc), exc.strerror or exc)
        return why.encode("ascii", "backslashreplace").decode("ascii").replace("\n", "\\n").replace("\r", "\\r")


def name_of(exc):
    # type: (OSError) -> str
    name = exc.filename2 or exc.filename or "?"
    return os.fsdecode(name) if isinstance(name, bytes) else str(name)


def open_receipt(dirs, src):
    # type: (Dirs, io.BufferedIOBase) -> int
    """An "R" record: a new receipt file in the directory it names (under ROOT, no links)."""
    (n,) = LEN.unpack(read_exact(src, LEN.size))
    where = safe_abs(read_exact(src, n))
    dirs.ensure(where)
    name = os.path.join(where, b"%d-%d.r" % (int(time.time() * 1e6), os.getpid()))
    return os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_NOFOLLOW, 0o600)


def safe_abs(path):
    # type: (bytes) -> bytes
    if not path.startswith(b"/") or b"\0" in path or any(p in (b".", b"..") for p in path.split(b"/")):
        fail("refusing unsafe path %r" % (path,))
    return path.rstrip(b"/")


def main():
    # type: () -> None
    stage, final = (os.fsencode(a) for a in sys.argv[1:3])
    # ROOT: where the checks start (without it, the deepest directory STAGE and FINAL share)
    root = os.fsencode(sys.argv[3]) if len(sys.argv) > 3 else os.path.commonpath([stage, final])
    dirs = Dirs(root, [os.fsencode(a) for a in sys.argv[4:]])
    dirs.ensure(os.path.dirname(stage))  # before clearing: it must not follow a symlinked .relocate
    clear(stage)
    dirs.ensure(stage)
    STAGE.append(stage)
    try:  # sshd's pipe to us: 1 MiB, not 64 KiB, so sshd and we wake each other less
        import fcntl
        fcntl.fcntl(0, 1031, BUF)  # F_SETPIPE_SZ (named only from Python 3.10)
    except (ImportError, OSError):
        pass
    # Headers and small files come through the reader's buffer; a read of more than it
    # holds (a big file's next MiB) goes from the pipe straight into `buf`: with a
    # buffer as big as the reads, every byte was copied through the buffer first.
    src = io.BufferedReader(io.FileIO(0, "r"), READ_BUF)
    out = sys.stdout
    if read_exact(src, 4) != MAGIC:
        fail("not a relocate stream")
    # Paths built by concatenation (safe_rel: REL is relative, no "." or ".." or empty part)
    tmp_prefix = stage if stage.endswith(b"/") else stage + b"/"
    fin = final.rstrip(b"/")
    buf = bytearray(BUF)
    view = memoryview(buf)
    index = 0
    in_batch = False
    behind = DropBehind()
    receipt = -1  # the receipt's fd, once an "R" asked for one
    note = None  # type: Optional[bytes]  # the "M" record describing the next file
    while True:
        kind = src.read(1)
        if not kind:
            if in_batch:
                fail("stream ended early (connection lost?)")
            break
        if kind == b"E":
            out.write("end\n")
            out.flush()
            if receipt >= 0:  # after the answer: a busy disk's fsync (up to 1 s seen) is off the sender's path
                os.fsync(receipt)
            in_batch, index = False, 0
            continue
        if kind == b"R":
            receipt = open_receipt(dirs, src)
            continue
        if kind == b"K":  # RELOCATE_PAGE_CACHE=keep: leave what is written in the page cache
            behind.enabled = False
            continue
        in_batch = True
        if kind == b"M":
            (n,) = LEN.unpack(read_exact(src, LEN.size))
            note = read_exact(src, n)
            continue
        if kind != b"F":
            fail("bad record %r" % (kind,))
        plen, size, mtime = HEAD.unpack(read_exact(src, HEAD.size))
        rel = safe_rel(read_exact(src, plen))
        tmp = tmp_prefix + b"%d" % index
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            if size <= SMALL:
                # A small file and the sender's hash of it in one read from the reader's
                # buffer, hashed and written in one call each: no slicing loop per file.
                data = read_exact(src, size + 32)
                body = memoryview(data)[:size]
                sha = hashlib.sha256(body)
                chunk = body
                while chunk:
                    chunk = chunk[os.write(fd, chunk):]
                sent = data[size:]
            else:
                sha = hashlib.sha256()
                left = size
                while left:
                    n = src.readinto(view[:min(left, BUF)])
                    if not n:
                        fail("stream ended early (connection lost?)")
                    chunk = view[:n]
                    sha.update(chunk)
                    while chunk:
                        chunk = chunk[os.write(fd, chunk):]
                    left -= n
                    behind.wrote(fd, size - left)
                sent = read_exact(src, 32)
            digest = sha.digest()
            if digest == sent:
                os.utime(fd, (mtime, mtime))  # futimens: no second lookup of the path
        finally:
            behind.finish(fd, size)  # closes fd, now or once its pages can go (dropbehind.py)
        if digest == sent:
            hexdigest = sha.hexdigest()
            why = put(dirs, tmp, fin, rel, final, index)
            if why is not None:
                out.write("%d %s x %s\n" % (index, hexdigest, why))
            else:
                if receipt >= 0 and note is not None and b"\n" not in note:
                    os.write(receipt, hexdigest.encode() + b" " + note + b"\n")
                out.write("%d %s\n" % (index, hexdigest))
        else:
            os.unlink(tmp)
            out.write("%d %s !\n" % (index, sha.hexdigest()))
        note = None
        index += 1
    behind.close()
    clear(stage)


if __name__ == "__main__":
    try:
        main()
    except OSError as exc:
        if exc.errno in PERMANENT:  # the sender reports the item (exit 4), it does not retry
            fail("cannot write %s: %s" % (name_of(exc), exc.strerror or exc), ITEM_STATUS)
        fail(str(exc))
