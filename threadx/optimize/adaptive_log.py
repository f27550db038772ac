"""The adaptive sampler's refinement rounds, recorded in the run's folder as each is planned.

Each round draws its combos around the best rows stored so far, so a run killed in round k
and resumed must not draw again: the rows stored by then include part of round k, and the
draw would differ (a resumed run held 432 combos of its own and lacked 152 of the
uninterrupted run's; re-running a completed run added a round each time). A resume replays
the recorded rounds (their ids, and the state each started from) and draws only past them,
so the resumed run holds exactly the uninterrupted run's combos.

Example::

    >>> import tempfile, numpy as np
    >>> folder = Path(tempfile.mkdtemp())
    >>> save_rounds(folder, AdaptiveSettings(5, 2), [AdaptiveRound(0.25, 0, 1.5, np.array([3, 7]))])
    >>> settings, rounds = load_rounds(folder, "r")
    >>> settings, rounds[0].ids.tolist(), rounds[0].best
    (AdaptiveSettings(rounds=5, patience=2), [3, 7], 1.5)
"""
from __future__ import annotations

import io
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from threadx.errors import ThreadXError
from threadx.files import atomic_write_bytes

ROUNDS_FILE = "adaptive_rounds.npz"


@dataclass(frozen=True)
class AdaptiveSettings:
    """How many refinement rounds a run makes at most, and after how many without a better best it stops."""

    rounds: int
    patience: int


@dataclass(frozen=True)
class AdaptiveRound:
    """One round as planned: the state it started from (neighbourhood radius, rounds without
    improvement, best objective so far or None) and the combo ids it drew."""

    radius: float
    stale: int
    best: float | None
    ids: np.ndarray


def save_rounds(folder: Path, settings: AdaptiveSettings, rounds: list[AdaptiveRound]) -> None:
    """Write every round planned so far (atomically: a kill leaves the previous record)."""
    ids = [np.asarray(r.ids, dtype=np.int64) for r in rounds]
    buffer = io.BytesIO()
    np.savez(buffer, settings=np.array([settings.rounds, settings.patience], dtype=np.int64),
             radius=np.array([r.radius for r in rounds], dtype=np.float64),
             stale=np.array([r.stale for r in rounds], dtype=np.int64),
             best=np.array([math.nan if r.best is None else r.best for r in rounds], dtype=np.float64),
             ends=np.cumsum([len(x) for x in ids], dtype=np.int64),
             ids=np.concatenate([np.empty(0, dtype=np.int64), *ids]))
    atomic_write_bytes(folder / ROUNDS_FILE, buffer.getvalue())


def load_rounds(folder: Path, run_id: str) -> tuple[AdaptiveSettings | None, list[AdaptiveRound]]:
    """(settings, rounds) recorded for the run in ``folder``; (None, []) when none were. A
    record that cannot be read is one ThreadXError (the run cannot be resumed as it ran)."""
    path = folder / ROUNDS_FILE
    if not path.exists():
        return None, []
    try:
        with np.load(path, allow_pickle=False) as data:
            settings = data["settings"].tolist()
            radius, stale, best = data["radius"].tolist(), data["stale"].tolist(), data["best"].tolist()
            ends, ids = data["ends"], data["ids"]
        if not (len(settings) == 2 and len(radius) == len(stale) == len(best) == len(ends)
                and (not len(ends) or (np.all(np.diff(ends) >= 0) and ends[0] >= 0 and ends[-1] == len(ids)))):
            raise ValueError("its arrays do not agree")
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise ThreadXError(f"run {run_id}: its record of the adaptive rounds ({path.name}) cannot be read ({exc}), "
                           "so a resume cannot replay them; pick another run id") from None
    starts = np.concatenate([[0], ends[:-1]]).astype(np.int64)
    rounds = [AdaptiveRound(float(r), int(s), None if math.isnan(b) else float(b), ids[lo:hi].copy())
              for r, s, b, lo, hi in zip(radius, stale, best, starts, ends)]
    return AdaptiveSettings(int(settings[0]), int(settings[1])), rounds
