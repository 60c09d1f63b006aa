"""Passphrase encryption of backups, in chunks, so a dump of any size streams through.

A sealed file is a header, a key check and a run of chunks::

    MAGIC (16) | salt (16) | log2 n, r, p of scrypt (3) | log2 chunk size (1) | nonce prefix (7)
    key check: AES-256-GCM tag of nothing under nonce (prefix | ffffffff | 02)
    chunk i:   length (4, big-endian) | AES-256-GCM(chunk) under nonce (prefix | i | last?)

The key comes from the passphrase through scrypt (n = 2^17, r = 8, p = 1: 128 MiB, about a
third of a second). Every chunk's nonce carries its number and whether it is the last, and the
header is the associated data of each, so chunks cannot be reordered, dropped or cut off
unnoticed, nor the parameters changed (the STREAM construction of Hoang, Reyhanitabar, Rogaway
and Vizár). The key check tells a wrong passphrase from a damaged file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from twin.errors import InputError

__all__ = ["MAGIC", "is_sealed", "SealedWriter", "Unsealer", "MIN_PASSPHRASE"]

MAGIC = b"PIPETWIN-SEALED1"
MIN_PASSPHRASE = 8
_LOG2_N, _R, _P = 17, 8, 1
_LOG2_CHUNK = 20  # 1 MiB
_HEADER = len(MAGIC) + 16 + 3 + 1 + 7
_TAG = 16
_CHECK = 0xFFFFFFFF


def is_sealed(path: Path | str) -> bool:
    """Whether ``path`` is a sealed (passphrase-encrypted) file."""
    with open(path, "rb") as f:
        return f.read(len(MAGIC)) == MAGIC


def _key(passphrase: str, salt: bytes, log2_n: int, r: int, p: int) -> AESGCM:
    if log2_n > 22 or r > 32 or p > 16:  # a forged header must not make us spend gigabytes
        raise InputError("the sealed file asks for an unreasonable key derivation; it is not ours",
                         zh="密封文件要求的密钥派生参数不合理；它不是本系统生成的")
    kdf = Scrypt(salt=salt, length=32, n=1 << log2_n, r=r, p=p)
    return AESGCM(kdf.derive(passphrase.encode()))


def _nonce(prefix: bytes, counter: int, last: bool) -> bytes:
    return prefix + counter.to_bytes(4, "big") + (b"\x02" if counter == _CHECK else b"\x01" if last else b"\x00")


class SealedWriter:
    """Encrypts what is written to it into ``out``, chunk by chunk; :meth:`close` ends the file."""

    def __init__(self, out: BinaryIO, passphrase: str) -> None:
        if len(passphrase) < MIN_PASSPHRASE:
            raise InputError(f"a backup passphrase has at least {MIN_PASSPHRASE} characters",
                             zh=f"备份口令至少 {MIN_PASSPHRASE} 个字符")
        salt, self._prefix = os.urandom(16), os.urandom(7)
        self._header = MAGIC + salt + bytes([_LOG2_N, _R, _P, _LOG2_CHUNK]) + self._prefix
        self._aead = _key(passphrase, salt, _LOG2_N, _R, _P)
        self._out = out
        self._size = 1 << _LOG2_CHUNK
        self._buffer = bytearray()
        self._counter = 0
        out.write(self._header)
        out.write(self._aead.encrypt(_nonce(self._prefix, _CHECK, False), b"", self._header))

    def _emit(self, chunk: bytes, last: bool) -> None:
        sealed = self._aead.encrypt(_nonce(self._prefix, self._counter, last), chunk, self._header)
        self._out.write(len(sealed).to_bytes(4, "big") + sealed)
        self._counter += 1

    def write(self, data: bytes) -> None:
        """Add ``data``; whole chunks are encrypted and written as they fill."""
        self._buffer += data
        while len(self._buffer) > self._size:  # keep the last bytes: they may end the file
            self._emit(bytes(self._buffer[: self._size]), False)
            del self._buffer[: self._size]

    def close(self) -> None:
        """Write the last chunk (marked as the last). The output stays open."""
        self._emit(bytes(self._buffer), True)
        self._buffer.clear()


class Unsealer:
    """The plain content of a sealed file, read again as often as needed with one derived key."""

    def __init__(self, path: Path | str, passphrase: str) -> None:
        self.path = Path(path)
        with open(self.path, "rb") as f:
            self._header = f.read(_HEADER)
            check = f.read(_TAG)
        if len(self._header) < _HEADER or not self._header.startswith(MAGIC) or len(check) < _TAG:
            raise InputError(f"{self.path} is not a sealed PipeTwin file, or it is cut short",
                             zh=f"{self.path} 不是 PipeTwin 密封文件，或不完整")
        salt = self._header[len(MAGIC): len(MAGIC) + 16]
        log2_n, r, p, log2_chunk = self._header[len(MAGIC) + 16: len(MAGIC) + 20]
        self._prefix = self._header[-7:]
        self._max = (1 << min(log2_chunk, 30)) + _TAG
        self._aead = _key(passphrase, salt, log2_n, r, p)
        try:
            self._aead.decrypt(_nonce(self._prefix, _CHECK, False), check, self._header)
        except InvalidTag:
            raise InputError(f"wrong passphrase for the encrypted backup {self.path}",
                             code="WRONG_PASSPHRASE",
                             zh=f"加密备份 {self.path} 的口令错误") from None

    def chunks(self) -> Iterator[bytes]:
        """The plain content in pieces; InputError if the file was changed or cut short."""
        damaged = f"the encrypted backup {self.path} is damaged or was cut short"
        damaged_zh = f"加密备份 {self.path} 已损坏或不完整"
        with open(self.path, "rb") as f:
            f.seek(_HEADER + _TAG)
            counter = 0
            while True:
                length = f.read(4)
                size = int.from_bytes(length, "big") if len(length) == 4 else -1
                if not _TAG <= size <= self._max:
                    raise InputError(damaged, zh=damaged_zh)
                sealed = f.read(size)
                if len(sealed) != size:
                    raise InputError(damaged, zh=damaged_zh)
                for last in (False, True):
                    try:
                        plain = self._aead.decrypt(_nonce(self._prefix, counter, last), sealed, self._header)
                        break
                    except InvalidTag:
                        continue
                else:
                    raise InputError(damaged, zh=damaged_zh)
                counter += 1
                if last:
                    if f.read(1):
                        raise InputError(damaged, zh=damaged_zh)
                    if plain:
                        yield plain
                    return
                yield plain
