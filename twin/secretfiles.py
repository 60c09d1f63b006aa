"""Files only this account may read: the cluster's passwords, the token signing secret, backups.

Each file is created with mode 0600 in the same call that creates it (``os.open`` with the
mode, never a ``chmod`` afterwards), so no other local account can open it in between, whatever
the umask. A secret appears whole: it is written beside its name and linked into place, so
processes that make it at the same moment all read the one that won.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path

from twin.errors import ConfigError
from twin.settings import TwinSettings

__all__ = ["secrets_dir", "private_dir", "create_private", "read_secret", "secret"]


def secrets_dir(settings: TwinSettings) -> Path:
    """The folder of the twin's secrets: ``<TWIN_DATA_DIR>/secrets``."""
    return (settings.data_dir / "secrets").resolve()


def private_dir(path: Path) -> Path:
    """``path`` as a folder only this account can enter (0700), made when missing."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if stat.S_IMODE(path.stat().st_mode) != 0o700:
        os.chmod(path, 0o700)
    return path


def create_private(path: Path) -> int:
    """A new file at ``path``, open for writing and 0600 from the start; FileExistsError if taken."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
    return os.open(path, flags, 0o600)


def read_secret(path: Path) -> str | None:
    """The secret in ``path``, or None when there is none; ConfigError if others may read it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return None
    with os.fdopen(fd) as f:
        if stat.S_IMODE(os.fstat(f.fileno()).st_mode) & 0o077:
            raise ConfigError(f"{path} may be read by other accounts; make it private: chmod 600 {path}",
                              zh=f"{path} 可被其他账户读取；请设为私有：chmod 600 {path}")
        return f.read().strip() or None


def secret(path: Path, make: Callable[[], str] = lambda: secrets.token_urlsafe(32)) -> str:
    """The secret kept in ``path``, made by ``make()`` on first use."""
    found = read_secret(path)
    if found:
        return found
    private_dir(path.parent)
    aside = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    with os.fdopen(create_private(aside), "w") as f:
        f.write(make() + "\n")
        f.flush()
        os.fsync(f.fileno())
    try:
        os.link(aside, path)  # atomic, and refuses to replace one another process made first
    except FileExistsError:
        pass
    finally:
        aside.unlink()
    found = read_secret(path)
    if not found:
        raise ConfigError(f"{path} is empty; remove it and try again",
                          zh=f"{path} 是空文件；请删除后重试")
    return found
