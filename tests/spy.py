"""A neighbour on the target (issue 13): run as another, unprivileged local user, it
watches with inotify every directory it can read under the given trees and tries to
open every file it sees appear or change, the moment it appears; it rescans the trees
every 100 ms too. Standard library only (ctypes inotify): it runs under the system python3.

    spy.py STOPFILE OUTDIR TREE[:depth] ...

Writes OUTDIR/ready once watching, then until STOPFILE exists; at the end OUTDIR/read.bin
(every byte it managed to read) and OUTDIR/report.json (names seen, opened, denied).
"""

import ctypes
import json
import os
import select
import stat
import struct
import sys
import time

IN_MODIFY, IN_ATTRIB, IN_CLOSE_WRITE, IN_MOVED_TO, IN_CREATE = 0x2, 0x4, 0x8, 0x80, 0x100
IN_ISDIR = 0x40000000
MASK = IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE
EVENT = struct.Struct("iIII")

libc = ctypes.CDLL(None, use_errno=True)
fd = libc.inotify_init1(os.O_NONBLOCK)
if fd < 0:
    sys.exit("inotify_init1 failed")

watched = {}  # wd -> dir
depth_of = {}  # dir -> how many more levels to follow
denied_dirs = set()
seen, opened, denied = set(), set(), set()
SINK = []  # OUTDIR/read.bin, open for the whole run


def watch(d, depth):
    if d in depth_of:
        return
    wd = libc.inotify_add_watch(fd, os.fsencode(d), MASK)
    if wd < 0:
        denied_dirs.add(d)
        return
    watched[wd] = d
    depth_of[d] = depth


last = {}  # path -> (inode, size, mtime) at the last attempt: a rescan retries only what changed


def try_read(path, force=False):
    seen.add(path)
    try:
        st = os.lstat(path)
        key = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_mode)
    except OSError:
        key = None
    if not force and key is not None and last.get(path) == key:
        return
    last[path] = key
    try:
        fh = open(path, "rb")
    except OSError:
        denied.add(path)
        return
    opened.add(path)
    try:
        st = os.fstat(fh.fileno())
        modes[path] = "%o uid=%d" % (st.st_mode, st.st_uid)
    except OSError:
        pass
    reread(fh)
    # An attacker keeps what it could open and reads it again later: a file opened in the
    # moment before its mode was narrowed still yields what is written into it afterwards.
    if len(held) < 2000:
        held.append(fh)
    else:
        fh.close()


held = []
modes = {}  # opened path -> its mode and owner when opened


last_read = {}  # id(file) -> what it held at the last read


def reread(fh):
    try:
        fh.seek(0)
        chunk = fh.read(1 << 20)
    except OSError:
        return
    if last_read.get(id(fh)) != chunk:  # new content only: read.bin grows with what changed
        last_read[id(fh)] = chunk
        SINK[0].write(chunk + b"\n")


def visit(path, depth):
    try:
        st = os.lstat(path)
    except OSError:
        return
    if stat.S_ISDIR(st.st_mode):
        watch(path, depth)
        if depth > 0:
            try:
                names = os.listdir(path)
            except OSError:
                denied_dirs.add(path)
                return
            for n in names:
                visit(os.path.join(path, n), depth - 1)
    elif stat.S_ISREG(st.st_mode):
        try_read(path)


def main():
    stop, out = sys.argv[1], sys.argv[2]
    SINK.append(open(os.path.join(out, "read.bin"), "wb"))
    trees = []
    for arg in sys.argv[3:]:
        path, _, depth = arg.partition(":")
        trees.append((path, int(depth or 64)))
    for path, depth in trees:
        visit(path, depth)
    open(os.path.join(out, "ready"), "w").close()
    last_scan = 0.0
    while not os.path.exists(stop):
        r, _, _ = select.select([fd], [], [], 0.02)
        if r:
            try:
                buf = os.read(fd, 1 << 16)
            except BlockingIOError:
                buf = b""
            i = 0
            while i < len(buf):
                wd, mask, _cookie, length = EVENT.unpack_from(buf, i)
                name = buf[i + EVENT.size:i + EVENT.size + length].rstrip(b"\0")
                i += EVENT.size + length
                d = watched.get(wd)
                if d is None or not name:
                    continue
                path = os.path.join(d, os.fsdecode(name))
                if mask & IN_ISDIR:
                    visit(path, max(0, depth_of.get(d, 0) - 1))
                else:
                    try_read(path, force=True)
        if time.monotonic() - last_scan > 0.1:
            last_scan = time.monotonic()
            for fh in held:
                reread(fh)
            for path, depth in trees:
                visit(path, depth)
            for d in list(depth_of):  # files that changed without an event we caught
                visit(d, 1 if depth_of[d] > 0 else 0)
    for fh in held:
        reread(fh)
    SINK[0].close()
    with open(os.path.join(out, "report.json"), "w") as fh:
        json.dump({"seen": sorted(seen), "opened": sorted(opened), "denied": sorted(denied),
                   "watched": sorted(depth_of), "modes": modes, "denied_dirs": sorted(denied_dirs)}, fh)


main()
