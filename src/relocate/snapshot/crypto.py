"""Secrets at rest: age encryption (pyrage), with an identity from the environment
(RELOCATE_AGE_IDENTITY, read by the CLI: settings.Settings.age_identity) or a key file
created 0600. We never implement cryptography ourselves."""

from __future__ import annotations

import os
from pathlib import Path

import pyrage

from relocate.errors import ConfigError
from relocate.secret import Secret

ENV_IDENTITY = "RELOCATE_AGE_IDENTITY"


def load_identity(key_file: Path, *, create: bool, given: Secret | None = None) -> pyrage.x25519.Identity | None:
    """The identity `given` ($RELOCATE_AGE_IDENTITY), else from key_file (made on first use)."""
    if given is not None:
        try:
            return pyrage.x25519.Identity.from_str(given.reveal().strip())
        except Exception:
            raise ConfigError(f"${ENV_IDENTITY} is not an age identity (AGE-SECRET-KEY-1...)") from None
    try:
        if key_file.exists():
            if key_file.stat().st_mode & 0o077:
                raise ConfigError(f"{key_file}: key file is readable by others; run chmod 600 {key_file}")
            for raw in key_file.read_text().splitlines():
                if raw.startswith("AGE-SECRET-KEY-"):
                    return pyrage.x25519.Identity.from_str(raw.strip())
            raise ConfigError(f"{key_file}: no AGE-SECRET-KEY line found")
        if not create:
            return None
        key_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        identity = pyrage.x25519.Identity.generate()
        write_private(key_file, f"# relocate snapshot key: decrypts secrets.age in snapshots. Keep it safe.\n"
                                f"# public key: {identity.to_public()}\n{identity}\n".encode())
        return identity
    except (OSError, UnicodeDecodeError) as exc:  # a place that cannot hold it: the user's to fix, not a bug
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"snapshot.key_file: {key_file}: cannot use it ({why})") from None


def write_private(path: Path, data: bytes) -> None:
    """A new file, 0600 from its creation (O_CREAT|O_EXCL with the mode: never readable by
    others, not even for a moment, whatever the umask), written whole."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def encrypt(data: bytes, identity: pyrage.x25519.Identity) -> bytes:
    out: bytes = pyrage.encrypt(data, [identity.to_public()])
    return out


def decrypt(data: bytes, identity: pyrage.x25519.Identity) -> bytes:
    try:
        out: bytes = pyrage.decrypt(data, [identity])
        return out
    except Exception:
        raise ConfigError("cannot decrypt the snapshot's secrets with this key (wrong RELOCATE_AGE_IDENTITY or key file?)") from None
