"""The SFTP requests paramiko has no public call for: a file created with its mode, and
pipelined writes whose refusals are not lost."""

from __future__ import annotations

from relocate.ssh.deferred import defer

defer()  # before paramiko: it imports invoke as it starts (ssh/deferred.py)

import paramiko  # noqa: E402
from paramiko import sftp as proto  # noqa: E402

# The SFTP session type, for code outside this package that is handed one (targets/nolinks.py):
# paramiko is imported only under relocate/ssh (tests/test_ssh_package.py).
SFTPClient = paramiko.SFTPClient


def create_exclusive(sftp: paramiko.SFTPClient, path: str, mode: int) -> paramiko.SFTPFile:
    """SFTP open(O_WRONLY|O_CREAT|O_EXCL) with the permission attribute in the OPEN
    request itself, so sftp-server creates the file with `mode` (issue 13: paramiko's
    `open` sends no attributes; the file then appeared 0644 until a later chmod, and a
    neighbour watching with inotify read the secrets in that window). The request is
    made as `SFTPClient.open` makes it."""
    attrs = paramiko.SFTPAttributes()
    attrs.st_mode = mode
    flags = proto.SFTP_FLAG_WRITE | proto.SFTP_FLAG_CREATE | proto.SFTP_FLAG_EXCL
    kind, msg = sftp._request(proto.CMD_OPEN, sftp._adjust_cwd(path), flags, attrs)
    if kind != proto.CMD_HANDLE:
        raise paramiko.SFTPError("Expected handle")
    return paramiko.SFTPFile(sftp, msg.get_binary(), "wb", -1)


def finish_writes(fh: paramiko.SFTPFile) -> None:
    """Send what `fh` still buffers and read the answer to every write it sent pipelined,
    raising the first refusal (IOError, as an unpipelined write would). paramiko's own
    close() does not: it files write answers under no file, so a write the server refused
    (a full disk) would pass unnoticed and the short file be renamed into place."""
    fh.flush()
    reqs = fh._reqs  # the writes sent and not yet answered, in order (SFTPFile._write)
    while reqs:
        kind, _ = fh.sftp._read_response(reqs.popleft())
        if kind != proto.CMD_STATUS:
            raise paramiko.SFTPError("Expected status")
