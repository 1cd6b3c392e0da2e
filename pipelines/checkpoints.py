"""A run's training checkpoint: one file, written atomically, loaded without pickle code.

The file lives in the run's internal folder (``<out>.internal/checkpoint.pt``), never in a
release, and goes when the internal report replaces that folder at the end of the run. It
holds the training state of ``synth.checkpoint`` (weights, optimizer moments, the
accountant's history, the pre-training DP measurements), the run key (the hash of input,
schema, settings and code that names the run) and the budget ledger entry the run charges.
Only a run with the same key resumes from it, and it keeps charging that same entry.

Its contents are DP outputs (every iterate of DP-SGD is covered by the run's guarantee),
but not a release: the discriminator is the best membership oracle there is, so the file
stays as private as the internal report. It is written through ``publish.atomic_write``
(a kill leaves the previous checkpoint or the new one) and read by ``torch.load`` with
``weights_only=True``: a file that needs pickle code to load is refused, never run.
"""

from __future__ import annotations

import io
import logging
import pickle
from pathlib import Path

import torch

from pipelines.errors import DataError
from pipelines.publish import atomic_write, list_in_manifest, remove_listed

log = logging.getLogger(__name__)

FILE = "checkpoint.pt"


class CheckpointError(DataError):
    """A checkpoint file that cannot be trusted or read."""


def load_weights(path: Path) -> dict:
    """``torch.load`` of a file this tool wrote: tensors, numbers, strings and containers
    only. Anything that needs pickle code (a class, a function, a ``__reduce__``) is refused.

    Raises:
        CheckpointError: naming the file and what to do.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path}: refused to load: it needs pickle code to load, so this tool did not "
            f"write it ({str(exc).splitlines()[0][:120]}); delete it to start afresh"
        ) from None
    except (RuntimeError, EOFError, OSError) as exc:
        raise CheckpointError(f"{path}: not a readable checkpoint ({exc}); delete it to "
                              f"start afresh") from None


class RunCheckpoint:
    """The checkpoint of one run (``synth.checkpoint.Checkpoint``).

    Args:
        path: the checkpoint file.
        key: the run key; a file saved under another key is not this run's and is ignored
            (and replaced by this run's first save).
        entry: the ledger entry this run charges.
        every: DP-SGD steps between saves.
    """

    def __init__(self, path: Path, key: str, entry: int, every: int):
        self.path, self.key, self.entry, self.every = Path(path), key, entry, every
        self._saved: dict | None = None

    @staticmethod
    def found(path: Path, key: str) -> dict | None:
        """The saved file at ``path`` if it is this run's (same key), else None.

        Raises:
            CheckpointError: a file that is there but cannot be loaded safely.
        """
        if not Path(path).is_file():
            return None
        saved = load_weights(path)
        if not isinstance(saved, dict) or saved.get("run_key") != key:
            log.info("%s belongs to another run: it is not resumed", path)
            return None
        return saved

    def resume_from(self, saved: dict) -> None:
        """Resume from ``saved`` (what ``found`` returned) instead of starting afresh."""
        self._saved = saved

    @property
    def resumed(self) -> bool:
        return self._saved is not None

    def load(self) -> dict | None:
        return None if self._saved is None else self._saved["state"]

    def save(self, state: dict) -> None:
        buffer = io.BytesIO()
        torch.save({"run_key": self.key, "entry": self.entry, "state": state}, buffer)
        blob = buffer.getvalue()
        # the folder's manifest vouches for the file at every moment (the old version, then
        # the new): only a folder this tool wrote is ever replaced (publish.check_replaceable)
        list_in_manifest(self.path.parent, self.path.name, blob, previous=self.path)
        atomic_write(self.path, blob)
        list_in_manifest(self.path.parent, self.path.name, blob)
        log.info("checkpoint at step %d saved", state["step"])


def carried(checkpoint: RunCheckpoint | None) -> dict[str, bytes]:
    """The checkpoint's file, to carry into the internal folder that replaces the one it is
    in: until the release is in place, a run killed after training resumes from it (with
    nothing left to train, charging its entry once) instead of training again."""
    if checkpoint is None or not checkpoint.path.is_file():
        return {}
    return {checkpoint.path.name: checkpoint.path.read_bytes()}


def discard(folder: Path) -> None:
    """Removes a run's checkpoint from its internal folder once the release is in place."""
    if (Path(folder) / FILE).exists():
        remove_listed(folder, FILE)
