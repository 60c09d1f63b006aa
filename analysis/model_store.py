"""The shutoff model kept on disk, one folder per state of the twin.

Building the model reads the whole pressurised network and segments it: 4.8 s at 1M pipes,
14 s at 3M, in every server worker and every ``twin`` command that answers a shutoff. A model
another process built for the same state of the twin loads in a fraction of that (see
``bench/shutoff.py``). A folder holds the frames as Arrow IPC files, the integer arrays as one
``.npz`` (read without pickle) and ``meta.json``.

A folder is named by the twin's identity (its random id, database and schema), what the model
covers and the twin's change mark (migration 0007), which moves with every committed change
and never returns to an old value (a restore moves it past the live one's): a model of
another state of the twin is never read. Folders are written under a temporary name and
renamed, so a crash mid-write leaves no half model; a builder holds a file lock so that
concurrent workers wait for the first one's model instead of building it again. Older
states of the same twin are removed when a newer one is written. The store is an
optimisation: a folder it cannot read or write is logged and the model built as before.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import sqlalchemy as sa

from analysis.segments import IsolationModel
from twin.db import CHANGE_MARK_SQL

__all__ = ["ModelStore", "FORMAT"]

log = logging.getLogger(__name__)

#: Layout of a stored model: a folder of another format is never read.
FORMAT = 1
_FRAMES = ("links", "nodes", "valves", "sources", "customers")
_ARRAYS = ("link_from", "link_to", "valve_link", "valve_node", "node_seg", "link_seg", "node_unit",
           "link_unit", "unit_seg", "source_units", "node_distance_m")
_COUNTS = ("n_segments", "n_units")
#: Folders of any twin not read or written for this long are removed when a model is written
#: (test schemas, dropped twins).
STALE_AFTER_S = 7 * 86400


@dataclass(frozen=True)
class ModelStore:
    """Stored shutoff models under ``root`` (``TWIN_MODEL_DIR``, or ``data_dir/models``)."""

    root: Path
    #: How long to wait for another process's build before building here too (a builder that
    #: hangs, or a command stopped with ^Z, must not keep a server's shutoffs waiting).
    wait_s: float = 120.0

    def name(self, conn: sa.Connection, covers: str) -> str:
        """The folder name of the state ``conn`` sees of its twin: ``<twin>-<state>``."""
        row = conn.execute(sa.text(
            "SELECT current_database(), current_schema(), "
            f"(SELECT value FROM twin_meta WHERE key = 'twin'), {CHANGE_MARK_SQL}")).one()
        twin = _digest(FORMAT, row[0], row[1], row[2], covers)
        return f"{twin}-{_digest(row[3])}"

    def load(self, name: str) -> IsolationModel | None:
        """The stored model of ``name``, or None when there is none (or it cannot be read)."""
        folder = self.root / name
        if not folder.is_dir():
            return None
        t0 = time.perf_counter()
        try:
            meta = json.loads((folder / "meta.json").read_text())
            if meta.get("format") != FORMAT or meta.get("name") != name:
                return None
            frames = {}
            for f in _FRAMES:
                with pa.OSFile(str(folder / f"{f}.arrow")) as source:
                    frames[f] = ipc.open_file(source).read_all().to_pandas()
            with np.load(folder / "arrays.npz", allow_pickle=False) as z:
                arrays = {a: z[a] for a in _ARRAYS}
            model = IsolationModel(**frames, **arrays, **{c: int(meta[c]) for c in _COUNTS},
                                   fingerprint=meta["fingerprint"])
        except (OSError, ValueError, KeyError, TypeError, pa.ArrowException) as exc:
            log.warning("stored shutoff model %s not read (%s): building it", folder, exc)
            return None
        os.utime(folder)  # (in use: not stale)
        model.timings = {"load_s": time.perf_counter() - t0}
        return model

    def save(self, name: str, model: IsolationModel) -> None:
        """Keep ``model`` as ``name``; drop this twin's older states and stale folders."""
        t0 = time.perf_counter()
        tmp = self.root / f".{name}.{uuid.uuid4().hex}"
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            tmp.mkdir(mode=0o700)
            for f in _FRAMES:
                table = pa.Table.from_pandas(getattr(model, f), preserve_index=False)
                with ipc.new_file(str(tmp / f"{f}.arrow"), table.schema) as out:
                    out.write_table(table)
            np.savez(tmp / "arrays.npz", **{a: getattr(model, a) for a in _ARRAYS})
            meta = {"format": FORMAT, "name": name, "fingerprint": model.fingerprint,
                    **{c: int(getattr(model, c)) for c in _COUNTS}, "timings": model.timings}
            (tmp / "meta.json").write_text(json.dumps(meta))
            if (self.root / name).exists():  # one that could not be read: replaced
                aside = self.root / f".{name}.{uuid.uuid4().hex}.old"
                (self.root / name).rename(aside)
                shutil.rmtree(aside, ignore_errors=True)
            tmp.rename(self.root / name)
        except OSError as exc:
            log.warning("shutoff model not stored in %s (%s)", self.root, exc)
            shutil.rmtree(tmp, ignore_errors=True)
            return
        self._prune(name)
        model.timings["store_s"] = time.perf_counter() - t0

    @contextlib.contextmanager
    def building(self, name: str) -> Iterator[None]:
        """Held while ``name`` is built: other processes building this twin wait for it."""
        twin = name.split("-", 1)[0]
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            lock = open(self.root / f"{twin}.lock", "a")  # noqa: SIM115 (held across the yield)
            os.utime(lock.fileno())  # (in use: not stale)
        except OSError as exc:
            log.warning("shutoff model store %s not usable (%s)", self.root, exc)
            yield
            return
        with lock:
            held = _wait_for(lock, self.wait_s)
            if not held:
                log.warning("the shutoff model of %s is being built by another process for more than %g s: "
                            "building it here too", name, self.wait_s)
            try:
                yield
            finally:
                if held:
                    fcntl.flock(lock, fcntl.LOCK_UN)

    def _prune(self, keep: str) -> None:
        twin = keep.split("-", 1)[0]
        now = time.time()
        for path in self.root.iterdir():
            if path.name == keep:
                continue
            try:
                old = (path.is_dir() and path.name.split("-", 1)[0] == twin
                       or now - path.stat().st_mtime > STALE_AFTER_S)
                if old and path.is_dir():
                    shutil.rmtree(path)
                elif old:
                    path.unlink()
            except OSError:  # (another process pruned it first)
                continue


def _wait_for(lock, seconds: float) -> bool:
    """Take the exclusive lock on the open file ``lock`` within ``seconds``; whether it was taken."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)


def _digest(*parts: object) -> str:
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()[:20]
