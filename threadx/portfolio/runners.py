"""Portfolio runners: one strategy trading one dataset with its params and weight.

On the command line a runner is ``STRATEGY:DATASET[:param=value,...]``, e.g.
``bb_atr:binance/BTC_USDT-1h:bb_period=30,entry_z=2.2``. The dataset is a name from the data
catalog or a file path; params not given take the strategy's defaults.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any, Mapping, Sequence

from threadx.config import DEFAULT_RESEARCH_PARAMS, RESEARCH_PARAM_CHOICES
from threadx.errors import DataError, ParamError, ThreadXError, first_line
from threadx.requests import DatasetRef
from threadx.shapes import read_json_number

RUNNER_FORM = "STRATEGY:DATASET[:param=value,...]"
FILE_SUFFIXES = (".parquet", ".csv", ".feather")


@dataclass(frozen=True)
class Runner:
    """A strategy on a dataset (``data``: a :class:`DatasetRef`, a name or a path), ``params``
    (missing ones: the strategy's defaults), ``weight``: its share of the capital relative to
    the other runners' weights."""

    strategy: str
    data: DatasetRef
    params: Mapping[str, Any] = field(default_factory=dict)
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.data, DatasetRef):
            object.__setattr__(self, "data", DatasetRef.from_dict(self.data))
        if not isinstance(self.params or {}, Mapping):
            raise ParamError(f"runner {self.label}: params must be a mapping of name to value, got {self.params!r}")
        object.__setattr__(self, "params", dict(self.params or {}))
        try:
            if isinstance(self.weight, bool):
                raise TypeError("a bool")
            weight = float(self.weight)
        except (TypeError, ValueError):
            raise ParamError(f"runner {self.label}: weight must be a number, got {self.weight!r}") from None
        if not weight > 0 or weight == float("inf"):
            raise ParamError(f"runner {self.label}: weight must be a positive number, got {self.weight!r}")
        object.__setattr__(self, "weight", weight)

    @property
    def label(self) -> str:
        """``strategy:dataset``: the dataset's name, else its catalog name, else its file's stem."""
        source = self.data.source
        name = self.data.name or (PurePath(source).stem if PurePath(source).suffix in FILE_SUFFIXES else source)
        return f"{self.strategy}:{name}"

    def same_as(self, other: "Runner") -> bool:
        """Whether ``other`` is this runner again, whatever its weight: the same strategy on the
        same dataset with the same params once the strategy's defaults and types are applied."""
        return self.label == other.label and self.data == other.data and self._normalized() == other._normalized()

    def _normalized(self) -> Any:
        """The params with the strategy's defaults and types (``bb_period=20`` is the default 20); as
        given when they do not normalise (the error comes, naming the runner, when it runs)."""
        from threadx.strategy.base import get_strategy

        try:
            return get_strategy(self.strategy).normalize(self.params)
        except ThreadXError:
            return dict(self.params)

    def to_dict(self) -> dict[str, Any]:
        return {"strategy": self.strategy, "data": self.data.to_dict(), "params": dict(self.params),
                "weight": self.weight}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Runner":
        unknown = sorted(set(data) - {"strategy", "data", "params", "weight"})
        if unknown:
            raise ParamError(f"unknown runner key(s) {', '.join(unknown)}")
        if "strategy" not in data or "data" not in data:
            raise ParamError("a runner needs a strategy and a dataset")
        return cls(str(data["strategy"]), data["data"], data.get("params") or {}, data.get("weight", 1.0))


def runner_labels(runners: Sequence[Runner]) -> list[str]:
    """Each runner's label, ``strategy:dataset``; a second runner of the same strategy on the same
    dataset (other params) is ``... #2``. The same runner twice is an error (raise its weight)."""
    seen: dict[str, list[Runner]] = {}
    labels = []
    for runner in runners:
        same = seen.setdefault(runner.label, [])
        if any(runner.same_as(other) for other in same):
            raise ParamError(f"runner {runner.label} is given twice with the same params: give it a larger weight "
                             f"instead")
        same.append(runner)
        labels.append(runner.label if len(same) == 1 else f"{runner.label} #{len(same)}")
    return labels


def parse_runner(text: str, weight: float = 1.0) -> Runner:
    """A runner from ``STRATEGY:DATASET[:param=value,...]`` (values are coerced by the strategy).

    >>> parse_runner("bb_atr:binance/BTC_USDT-1h:bb_period=30").params
    {'bb_period': '30'}
    """
    strategy, sep, rest = str(text).strip().partition(":")
    if not sep or not strategy.strip() or not rest.strip():
        raise ParamError(f"a runner is {RUNNER_FORM}, got {text!r}")
    dataset, params = rest, {}
    head, sep, tail = rest.rpartition(":")
    if sep and "=" in tail:
        dataset = head
        for item in tail.split(","):
            name, eq, value = item.partition("=")
            if not eq or not name.strip():
                raise ParamError(f"runner {text!r}: params are param=value separated by commas, got {item!r}")
            if name.strip() in params:
                raise ParamError(f"runner {text!r}: param {name.strip()!r} is given twice")
            params[name.strip()] = value.strip()
    if not dataset.strip():
        raise ParamError(f"a runner is {RUNNER_FORM}, got {text!r}")
    if _PARAM_NAME.fullmatch(tail.strip()) and sep:  # (no dataset name ends in ":word"; it read "dataset ... is gone")
        raise ParamError(f"runner {text!r}: params are param=value separated by commas, got {tail.strip()!r}")
    if "=" in dataset:
        raise ParamError(f"runner {text!r}: params are param=value separated by commas, one value each (a range such "
                         "as 5:10:1 is for sweeps), after the dataset")
    return Runner(strategy.strip(), DatasetRef(source=dataset.strip()), params, weight)


_PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


PARAM_CHOICES = dict(zip(RESEARCH_PARAM_CHOICES, ("last_window_params", "params")))  # choice -> the cell's key


CHOICE_TEXT = {"last_window": "last in-sample window's winner",
               "whole_period": "whole-period winner (chosen with hindsight on all the data)"}
IN_SAMPLE_NOTE = ("In sample: these params were chosen on the candles this portfolio runs on, so its result "
                  "flatters them; the research's out-of-sample figures are its cells' walk-forwards")


HAND_ADDED = ", and runners added by hand"  # what an origin says once a runner was added beside the loaded ones


def research_origin(research_id: str, choice: str = DEFAULT_RESEARCH_PARAMS, kept_only: bool = False,
                    strategy: str | None = None, by_hand: bool = False) -> str:
    """Where runners loaded by :func:`runners_from_research` come from, as a portfolio records it
    (its ``origin``: the result then says it is in sample, see :func:`in_sample`): the research,
    its ``strategy`` filter, the params chosen, the positive-only filter, runners added by hand.

    >>> research_origin("r1")
    "research r1, last in-sample window's winner params"
    >>> research_origin("r1", strategy="bb_atr", by_hand=True)
    "research r1 (bb_atr cells), last in-sample window's winner params, and runners added by hand"
    """
    return (f"research {research_id}{f' ({strategy} cells)' if strategy else ''}, {CHOICE_TEXT[choice]} params"
            + (", cells with a positive OOS return only" if kept_only else "") + (HAND_ADDED if by_hand else ""))


def in_sample(origin: str | None) -> bool:
    """Whether a portfolio of that ``origin`` runs params chosen on its own candles."""
    return str(origin or "").startswith("research ")


def runners_from_research(research: Any, strategy: str | None = None, *, kept_only: bool = False,
                          choice: str = DEFAULT_RESEARCH_PARAMS) -> list[Runner]:
    """The runners a research job chose: one per cell (strategy x dataset) with the params its
    walk-forward picked there: ``choice`` "last_window" (the last IS window's winner, what
    trading on would use) or "whole_period" (the whole-period winner, as in the transfer matrix).
    Either way the params were chosen on the candles the runner runs on: a portfolio of them
    is in-sample.

    ``research``: a :class:`~threadx.validation.research.ResearchResult` or a stored research
    id; ``strategy``: only that strategy's cells; ``kept_only``: only cells whose own OOS
    result was positive. Cells without a winner (no combo met the minimum trades) are left out.
    """
    from threadx.strategy.base import get_strategy
    from threadx.validation.research import ResearchResult, load_research

    if choice not in PARAM_CHOICES:
        raise ParamError(f"choice must be one of {', '.join(PARAM_CHOICES)}, got {choice!r}")
    key = PARAM_CHOICES[choice]
    result = research if isinstance(research, ResearchResult) else load_research(str(research))
    datasets = {d.get("name") or d["source"]: d for d in result.config.get("datasets", [])}
    names = list(dict.fromkeys(cell["strategy"] for cell in result.cells))
    if strategy is not None and strategy not in names:
        if strategy in (result.config.get("strategies") or ()):  # a research stopped before its cells
            raise ParamError(f"research {result.research_id} has no finished cell of {strategy} (it was stopped "
                             "before them)")
        raise ParamError(f"research {result.research_id} has no strategy {strategy} (its strategies: "
                         f"{', '.join(names) or 'none'})")
    runners = []
    with_params = 0
    for cell in result.cells:
        if strategy is not None and cell["strategy"] != strategy:
            continue
        if not cell.get(key):
            continue
        with_params += 1
        gain = read_json_number(cell.get("oos_return"))
        if kept_only and not (gain is not None and gain > 0):
            continue
        # params chosen by other code of the strategy would run on today's (cells stored before
        # their code hash was recorded are not checked)
        get_strategy(cell["strategy"]).require_code(
            cell.get("strategy_code"), f"research {result.research_id}'s cell {cell['strategy']} on {cell['dataset']}")
        data = datasets.get(cell["dataset"])
        if not data or not data.get("fingerprint"):  # (the candles cannot be checked: never run unchecked)
            raise DataError(f"research {result.research_id} records no fingerprint of dataset {cell['dataset']}: "
                            "whether its candles are still those its params were chosen on cannot be checked; run "
                            "the research again")
        runners.append(Runner(cell["strategy"], DatasetRef.from_dict(data), dict(cell[key])))
    if not runners:
        which = f" of {strategy}" if strategy else ""
        if with_params and kept_only:
            raise ParamError(f"research {result.research_id}: no cell{which} had a positive OOS return "
                             f"({with_params} with chosen params): leave out the positive-only filter to run them")
        cells = [c for c in result.cells if strategy is None or c["strategy"] == strategy]
        failed = [c for c in cells if c.get("error")]
        if cells and len(failed) == len(cells):
            raise ParamError(f"research {result.research_id}: every cell{which} failed (the first: "
                             f"{failed[0]['error']})")
        raise ParamError(f"research {result.research_id}: no cell{which} has chosen params to run (no combo met "
                         "the minimum trade count)")
    return runners


# the engine options a research's walk-forwards ran with that a portfolio of its winners takes (not
# the capital: the portfolio's own; not funding: the portfolio's funding switch)
RESEARCH_ENGINE_KEYS = ("fee_bps", "slippage_bps", "fill", "sizing", "leverage", "fraction", "min_notional",
                        "ambiguity")


def research_engine_options(research: Any) -> dict[str, Any]:
    """The engine options under which a research chose its winners (a
    :class:`~threadx.validation.research.ResearchResult` or a stored id): a portfolio of them
    runs under these unless told otherwise (with 10 bps and next-open fills, winners chosen at 0
    bps and close fills made -65.75 % where they make -5.54 %). {} when none is recorded."""
    from threadx.engine.inputs import options_from
    from threadx.validation.research import ResearchResult, load_research

    result = research if isinstance(research, ResearchResult) else load_research(str(research))
    try:  # (checked here: the page put a recorded "abc" fee in a number box, a traceback)
        recorded = (result.config.get("walk_forward") or {}).get("engine_options") or {}
        options = {key: recorded[key] for key in RESEARCH_ENGINE_KEYS if recorded.get(key) is not None}
        options_from(**options)
    except (ThreadXError, TypeError, ValueError, AttributeError) as exc:  # (a list or {} where a value belongs)
        raise ThreadXError(f"the engine options recorded by research {result.research_id} cannot be used: "
                           f"{first_line(exc)}") from None
    return options


def research_funding(research: Any) -> dict[str, Any]:
    """The funding each dataset's cells of a research ran with, as it recorded it (dataset name ->
    None, a constant rate, or a stored file's record: :func:`threadx.engine.inputs.funding_record`);
    {} for a research that recorded none."""
    from threadx.validation.research import ResearchResult, load_research

    result = research if isinstance(research, ResearchResult) else load_research(str(research))
    pinned = result.config.get("funding")
    return dict(pinned) if isinstance(pinned, Mapping) else {}


def funding_differences(runners: Sequence[Runner], research: Mapping[str, Any], use_funding: bool = True) -> list[str]:
    """Each runner on a dataset of the research (``research``: :func:`research_funding`) whose
    funding now is not the one its winners were chosen under: the dataset's funding file changed,
    appeared or is gone since, or ``use_funding`` is off (the portfolio then pays none). Candles
    that changed are refused; this is what a portfolio of the winners pays."""
    from threadx.data.funding import stored_funding
    from threadx.engine.inputs import funding_record

    out, now = [], {}
    for runner in runners:
        name = runner.data.name or runner.data.source  # (as the research keys its datasets)
        if name not in research or name in now:
            continue
        try:
            now[name] = funding_record(stored_funding(runner.data.source)) if use_funding else None
        except ThreadXError as exc:  # a damaged funding file: the portfolio itself will refuse it
            now[name] = f"unreadable ({first_line(exc)})"
        if _funding_key(now[name]) != _funding_key(research[name]):
            out.append(f"funding of {name}: {now[name] or 'none'} (the research's winners were chosen under "
                       f"{research[name] or 'none'})")
    return out


def _funding_key(record: Any) -> Any:
    """What of a funding record says which rates were paid: a stored file's rows (its count and
    sha256, not its path: a data folder moved, or the research made on another machine, pays
    the same rates), else the record itself (None, a rate)."""
    from threadx.data.funding import stored_record

    stored = stored_record(record)
    return (stored["rates"], stored["sha"]) if stored else record


def option_differences(given: Mapping[str, Any], research: Mapping[str, Any]) -> list[str]:
    """Each of ``given``'s options that differs from the research's, in words.

    >>> option_differences({"fee_bps": 10.0, "fill": "close"}, {"fee_bps": 0.0, "fill": "close"})
    ['fee_bps 10.0 (the research ran with 0.0)']
    """
    return [f"{key} {given[key]} (the research ran with {research[key]})" for key in research
            if given.get(key) is not None and given[key] != research[key]]
