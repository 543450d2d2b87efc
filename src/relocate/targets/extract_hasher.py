"""The target's end of a host-files copy: `tar -x` with every file hashed as it lands.

Run there, in the staging directory, as
`python3 -I -S -c <this file> tar -x -p -v --quoting-style=escape -f -`, with the tar
stream on stdin: tar reads it itself (Python never touches the data on its way in).

Why: before anything is put in place, the move compares the sha256 of every regular
file that landed with the one the stream carried (kinds/hostfiles.py). Hashing the
tree once `tar x` had finished (files.HASH_CWD: find | xargs openssl) read every byte
back after the stream: 0.39 s of a 3.9 s move of 506 MiB here (docs/transfer.md). Here
each file is hashed while tar extracts the ones after it. GNU tar -v names each member
(and flushes the line) before extracting it, so when the next name arrives the one before
is complete; the member tar is writing is followed as it grows (tar writes a file front to
back, once), so even a big last file is mostly hashed by the time tar exits.

Nothing depends on that timing being right: once tar has exited, the tree is walked and
every regular file is hashed again unless its inode, size and mtime are the ones it had
when it was hashed (a member extracted twice, a name the unescaping got wrong, a file
that was never named). So the answer is what hashing the finished tree gives.

stdout, in files.HASH_CWD's format: "<hex>  ./<path>\\0" per regular file, then "\\x01"
(also when tar failed: of what it left). Exit status: tar's when it failed; else 1 when a
file cannot be read (no hashes then).
Standard library only, no f-strings: it runs on whatever python3 the target has.
"""

import codecs
import hashlib
import os
import select
import signal
import stat
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # for the type comments only (mypy reads them): nothing imported at run time
    from typing import Dict, List, Optional, Tuple
    Seen = Tuple[bytes, int, int, int]  # (sha256, inode, size, mtime_ns) of a file when it was hashed

BUF = 1 << 20
BUFFER = memoryview(bytearray(BUF))  # every read lands here: no new 1 MiB object (and its page faults) per read
POLL_S = 0.005  # how often the file tar is writing is read on, between its names


class Following(object):
    """The member tar named last: its file, opened once it exists, read as it grows."""

    __slots__ = ("path", "fd", "sha", "skip")

    def __init__(self, path):
        # type: (bytes) -> None
        self.path = path
        self.fd = -1
        self.sha = hashlib.sha256()
        self.skip = False  # not a regular file (a directory, a link, a device): never opened

    def read_on(self):
        # type: () -> None
        """Open the file if it exists now and is regular; hash what has been written since."""
        if self.skip:
            return
        if self.fd < 0:
            try:
                st = os.lstat(self.path)
            except OSError:
                return  # not created yet (or unreadable: the walk at the end says which)
            if not stat.S_ISREG(st.st_mode):
                self.skip = True
                return
        try:
            if self.fd < 0:
                self.fd = open_file(self.path)
            read_on(self.fd, self.sha)
        except OSError:
            self.drop()  # the walk at the end hashes it, or says why it cannot

    def drop(self):
        # type: () -> None
        self.skip = True
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def finish(self, seen):
        # type: (Dict[bytes, Seen]) -> None
        """tar has moved past this member: hash the rest and note what the file was."""
        seen.pop(self.path, None)  # named again: extracted again
        self.read_on()
        if self.fd >= 0:
            try:
                st = os.fstat(self.fd)
                seen[self.path] = (self.sha.digest(), st.st_ino, st.st_size, st.st_mtime_ns)
            except OSError:
                pass  # the walk at the end tries again
        self.drop()


def member_path(line):
    # type: (bytes) -> bytes
    """A name as tar -v --quoting-style=escape prints it (C escapes: \\n, \\\\, \\ooo),
    normalised as the walk's paths are ("./a//b/" -> "a/b")."""
    return os.path.normpath(codecs.escape_decode(line)[0] if b"\\" in line else line)


def extract(tar):
    # type: (List[str]) -> Tuple[int, Dict[bytes, Seen]]
    """Run `tar` (reading this process's stdin) and hash each member it names, one behind.
    (tar's exit status, {path: what it was when hashed})."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: tar, with stdout into the pipe; stdin and stderr as they are
        try:
            signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # Python ignores it; tar should not
            os.close(r)
            os.dup2(w, 1)
            os.close(w)
            os.execvp(tar[0], tar)
        finally:
            os._exit(127)
    os.close(w)
    try:  # tar (and sshd feeding it) first: hashing fills the gaps, and catches up at the end
        os.nice(5)
    except OSError:
        pass
    seen = {}  # type: Dict[bytes, Seen]
    cur = None  # type: Optional[Following]
    pending = b""
    try:
        while True:
            ready = select.select([r], [], [], POLL_S if cur is not None and not cur.skip else None)[0]
            if ready:
                data = os.read(r, 65536)
                if not data:
                    break
                lines = (pending + data).split(b"\n")
                pending = lines.pop()
                for line in lines:
                    if cur is not None:
                        cur.finish(seen)
                    cur = Following(member_path(line))
            if cur is not None:
                cur.read_on()
        if cur is not None:
            cur.finish(seen)
    finally:
        os.close(r)
    status = os.waitpid(pid, 0)[1]
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
    return code, seen


def open_file(path):
    # type: (bytes) -> int
    return os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))


def read_on(fd, sha):
    # type: (int, hashlib._Hash) -> None
    """Hash what `fd` holds from where it stands to its current end."""
    while True:
        n = os.readv(fd, [BUFFER])
        if not n:
            return
        sha.update(BUFFER[:n])


def hash_file(path):
    # type: (bytes) -> bytes
    sha = hashlib.sha256()
    fd = open_file(path)
    try:
        read_on(fd, sha)
        return sha.digest()
    finally:
        os.close(fd)


def settle(seen):
    # type: (Dict[bytes, Seen]) -> Tuple[List[Tuple[bytes, bytes]], int]
    """Every regular file below ".", with its sha256: the one taken during the extraction
    when the file is still what it was then, else one taken now. ([(path, sha256)], how many
    were hashed now)."""
    out = []  # type: List[Tuple[bytes, bytes]]
    again = 0

    def refuse(exc):
        # type: (OSError) -> None
        raise exc

    for top, _dirs, files in os.walk(b".", onerror=refuse):
        for name in files:
            path = os.path.join(top, name)
            st = os.lstat(path)
            if not stat.S_ISREG(st.st_mode):
                continue
            had = seen.get(os.path.normpath(path))
            if had is not None and had[1:] == (st.st_ino, st.st_size, st.st_mtime_ns):
                out.append((path, had[0]))
            else:
                out.append((path, hash_file(path)))
                again += 1
    return out, again


def main():
    # type: () -> None
    # Hashed and answered whatever tar's status: tar goes on past a member it cannot make (a
    # device node, for a login that is not root), and the caller decides from tar's messages
    # whether the rest may still be put in place (kinds/hostfiles.py). tar's status stands.
    code, seen = extract(sys.argv[1:])
    try:
        files, _ = settle(seen)
    except OSError as exc:
        sys.stderr.write("relocate: cannot hash %s: %s\n" % (exc.filename, exc.strerror))
        sys.exit(code or 1)
    out = sys.stdout.buffer
    out.write(b"".join(b"%s  %s\0" % (digest.hex().encode(), path) for path, digest in files) + b"\x01")
    out.flush()
    sys.exit(code)


if __name__ == "__main__":
    main()
