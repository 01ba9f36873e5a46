"""The run folder of one `icm label` command: refused before anything is written, locked while written.

``RunDir.open`` checks ``--out`` (not a file, creatable, not holding another run unless ``--resume``) and takes
an exclusive ``flock`` on the folder itself, so a second `icm label` on the same folder (a ``--resume`` while
the first still runs) stops at once with a clear error, and a killed run's lock goes with its process. The lock
needs no file: nothing is written into a folder whose run is refused.

``RunDir.guard`` wraps the work: if it fails before the search wrote its first checkpoint, what the
command wrote is removed again (and the folder, if the command made it), so the plain re-run is not blocked
by a stub; once a checkpoint exists the folder stays, for ``--resume``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from icm_plugin.errors import ICMError

CHECKPOINT = "checkpoint.json"


class RunDir:
    """One locked run folder. Use ``RunDir.open(out, resume)``; ``close()`` (or process exit) releases it."""

    def __init__(self, path: Path, fd: int, created: bool, before: set[str]):
        self.path = path
        self._fd = fd
        self.created = created
        self._before = before  # names present before this command

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT

    @classmethod
    def open(cls, out: str | Path, resume: bool) -> RunDir:
        """Check and lock ``out``. Raises ICMError: a file, not creatable, locked by another run, or holding a
        run while ``resume`` is False."""
        path = Path(out)
        if path.exists() and not path.is_dir():
            raise ICMError(f"--out {path} is a file, not a folder; choose a folder name (it is created if missing)")
        created = not path.exists()
        if created:
            try:
                path.mkdir(parents=True)
            except FileExistsError:
                created = False  # another command made it just now: the lock below decides
            except OSError as err:
                raise ICMError(f"--out {path}: cannot create the folder ({err.strerror}); choose a writable "
                               "place") from None
        if not os.access(path, os.W_OK | os.X_OK):
            raise ICMError(f"--out {path}: the folder is not writable; choose another --out")
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ICMError(f"--out {path}: another `icm label` is writing this run folder right now; wait for it "
                           "to finish (or stop it), then run again with --resume") from None
        before = {p.name for p in path.iterdir()}
        if before and not resume:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            raise ICMError(f"{path} already holds a run; pass --resume to continue it, or choose another --out")
        return cls(path, fd, created, before)

    @contextlib.contextmanager
    def guard(self) -> Iterator[RunDir]:
        """Undo this command's writes when the block fails before the first checkpoint; re-raises."""
        try:
            yield self
        except BaseException:
            if not any(self.path.rglob(CHECKPOINT)):  # a batched run keeps one per batch folder
                self._remove_new_files()
            raise

    def _remove_new_files(self) -> None:
        for p in self.path.iterdir():
            if p.name not in self._before:
                with contextlib.suppress(OSError):
                    shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
        if self.created:
            with contextlib.suppress(OSError):
                self.path.rmdir()  # only if empty

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> RunDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
