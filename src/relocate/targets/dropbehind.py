"""Letting written data leave the page cache once the disk has it ("drop-behind").

Runs on the target, sent in front of receiver_agent.py in the same `python3 -c`
(shell.program): standard library only, Python 3.6 syntax.

Why: what a bulk copy writes is not read again soon, and left in the page cache it costs
twice. It pushes the target's own working set (a database's cache, the app being brought
up) out of memory, and every page of it is a new page to allocate. On a VM whose free
memory goes back to its host (virtio-balloon free page reporting, as on the machine the
bench runs on), touching such a page again is a fault to the host: the receiver spent
2.4-2.5 CPU-s in the kernel writing 1 GiB; letting the pages go as it writes, so that the
kernel hands the same pages out again, took that to about 0.8 (docs/transfer.md,
"Drop-behind").

The price: writeback starts as the data comes instead of when the kernel gets to it, so
a move of less than the kernel's dirty limit onto a disk slower than the link can end
later than it would have with the data still dirty in memory (on this machine, with the
page cache warm, one receiver alone: 1.23 s -> 1.41 s for 1 GiB). A move of terabytes
hits the dirty limit either way. RELOCATE_PAGE_CACHE=keep turns it off (the sender's
b"K" record).

How: posix_fadvise(POSIX_FADV_DONTNEED) twice per range. The first call starts the
range's writeback; the second, a window later, drops what is clean by then. Pages still
being written stay cached, and nothing here waits for the disk (the kernel may still
make the first call wait for room in the device's queue). A file being written is let go
of window by window; a finished one is held open until a window's worth more has been
written, then let go of and closed. Small files are not worth the two system calls.
`dd oflag=nocache` and rsync's --drop-cache patch do the same; tar, cp and rclone do not.

Host files were tried with the same scheme and kept out: the target's hasher letting go
of what tar wrote (extract_hasher.py), and the local snapshot copy of their tar, each made
the host-files bench slower (4.46 s against 4.33 s, 4.57 against 4.22 s, five alternating
rounds each): there the writeback it starts lands on relocate's own threads, and the
fresh pages it saves are few (docs/transfer.md, "Drop-behind").
"""

import os

TYPE_CHECKING = False
if TYPE_CHECKING:  # for the type comments only (mypy reads them): nothing imported at run time
    from typing import List, Tuple

DROP_WINDOW = 8 << 20  # written data is let go of in steps of this size
DROP_SMALL = 64 << 10  # files up to this size are closed at once, never advised
DROP_HELD = 64  # finished files held open, at most


def advise(fd, start, length):
    # type: (int, int, int) -> None
    """DONTNEED on [start, start + length) (length 0: to the end)."""
    try:
        os.posix_fadvise(fd, start, length, os.POSIX_FADV_DONTNEED)
    except (AttributeError, OSError):  # not Linux, or a file system that keeps no cache: nothing to do
        pass


class DropBehind(object):
    """One writer's files, each written front to back, one after another."""

    def __init__(self):
        # type: () -> None
        self.enabled = True  # False: every file is closed as soon as it is finished, nothing advised
        self.fd = -1  # the file being written
        self.mark = 0  # where its window not yet advised starts
        self.prev = 0  # where its window advised once (writeback started) starts
        self.held = []  # type: List[Tuple[int, int]]  # finished files: (fd, bytes not dropped yet), oldest first
        self.held_bytes = 0

    def wrote(self, fd, upto):
        # type: (int, int) -> None
        """fd's file is written (and not needed again) up to byte `upto`."""
        if fd != self.fd:
            self.fd, self.mark, self.prev = fd, 0, 0
        if upto - self.mark >= DROP_WINDOW and self.enabled:
            advise(fd, self.mark, upto - self.mark)  # starts its writeback
            if self.mark > self.prev:
                advise(fd, self.prev, self.mark - self.prev)  # a window ago: on the disk by now
            self.prev, self.mark = self.mark, upto

    def finish(self, fd, size):
        # type: (int, int) -> None
        """fd's file is complete (or given up) at `size` bytes. This closes fd: at once
        when it is small, else once DROP_WINDOW more bytes have been written after it."""
        start = self.prev if fd == self.fd else 0
        self.fd = -1
        if size <= DROP_SMALL or not self.enabled:
            os.close(fd)
            return
        advise(fd, start, 0)
        self.held.append((fd, size - start))
        self.held_bytes += size - start
        while self.held_bytes > DROP_WINDOW or len(self.held) > DROP_HELD:
            self._release()

    def _release(self):
        # type: () -> None
        fd, pending = self.held.pop(0)
        self.held_bytes -= pending
        advise(fd, 0, 0)
        os.close(fd)

    def close(self):
        # type: () -> None
        """Let go of (and close) every file still held."""
        while self.held:
            self._release()
