"""What mattered in a sweep: each hyperparameter of the runs' configs against an outcome.

The table is the ``sweep_of`` macro's (``analysis/macros/sweep.sql``): per run its
flattened config and its outcome, the best value of one metric. The statistics are
rank-based, so a learning rate on a log grid and a loss that spans decades need no
transformation, and a failed or diverged run can take part: it ranks worst (it is the
most informative run of a sweep, and a best loss from before it blew up would flatter it).

Per hyperparameter that varies among the runs:

* numeric: Spearman's rank correlation with the outcome (``scipy.stats.spearmanr``);
  importance = rho squared, the share of the outcome's rank variance a monotonic trend
  in the parameter explains, or, where larger (9 runs or more), epsilon squared across
  the parameter's terciles (below), which sees a learning rate best in the middle of its
  range; direction: which end of the range did better, or "best near" the middle
  third's median value;
* anything else (strings, booleans, lists): the Kruskal-Wallis test across its levels
  (``scipy.stats.kruskal``); importance = epsilon squared, H / (n - 1), its rank
  counterpart; the best level: the one with the best median rank.

Uncertainty: a percentile bootstrap interval of the importance over the runs
(``scipy.stats.bootstrap``, resampling runs) and a permutation p-value (the parameter's
values shuffled among the runs: ``scipy.stats.permutation_test``). A parameter whose
p-value is 0.05 or more is "no evidence": it may matter, this sweep cannot tell. Fewer
than ``MIN_RUNS`` runs with an outcome and the parameter: "not enough runs", no number.
A non-numeric key with a different value in every run (a run's own label) is "a
name", not ranked. Beyond the ``MAX_TESTED`` most important keys (a config of thousands
of keys) a key gets its importance but no interval or p-value: "not tested". Each
parameter is judged alone: two parameters varied together (always the same pair) get
the same importance, and interactions are not modelled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from store.errors import TelemetryError

if TYPE_CHECKING:
    from analysis.store import Store

MIN_RUNS = 6
"""Runs with an outcome a parameter needs before the sweep says how much it matters."""

ALPHA = 0.05
"""A permutation p-value at or above it: no evidence that the parameter matters."""

MAX_TESTED = 100
"""Keys, most important first, that get an interval and a p-value (each costs ~1,000
resamples); the rest are ranked by importance alone, verdict ``UNTESTED``."""

UNTESTED = "not tested"

MIN_BIN = 3
"""Runs per third of a numeric parameter's range before a U-shaped effect is looked for."""

RESAMPLES = 499
"""Bootstrap and permutation resamples (seeded: the same sweep gives the same answer)."""

SEED = 0


class SweepError(TelemetryError):
    """A sweep that cannot be computed (no runs, an unknown metric)."""


@dataclass(frozen=True)
class Param:
    """One hyperparameter's effect on the outcome."""

    name: str
    kind: str  # "numeric" | "categorical"
    runs_with_value: int
    importance: float | None  # None: not enough runs
    low: float | None  # the importance's 95 % bootstrap interval
    high: float | None
    p_value: float | None
    verdict: str  # "matters" | "no evidence" | "not enough runs" | "a name" | UNTESTED
    direction: str | None = None  # numeric: "lower is better" | "higher is better"
    best_level: str | None = None  # categorical: the level with the best median rank
    levels: dict[str, int] = field(default_factory=dict)  # categorical: runs per level

    def json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "importance": self.importance,
            "low": self.low,
            "high": self.high,
            "p_value": self.p_value,
            "verdict": self.verdict,
            "runs_with_value": self.runs_with_value,
        }
        if self.kind == "numeric":
            out["direction"] = self.direction
        else:
            out["best_level"] = self.best_level
            out["levels"] = self.levels
        return out


@dataclass(frozen=True)
class RunOutcome:
    run_id: str
    name: str
    outcome: float | None
    status: str
    diverged: bool

    @property
    def failed(self) -> bool:
        """Ranked worst: failed, crashed or diverged (its best value does not count)."""
        return self.diverged or self.status in ("failed", "crashed")


@dataclass(frozen=True)
class Sweep:
    metric: str
    mode: str
    runs: list[RunOutcome]
    params: list[Param]
    constant: list[str]  # config keys with one value across the runs

    @property
    def enough(self) -> bool:
        return len(self.runs) >= MIN_RUNS

    def json(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "mode": self.mode,
            "runs": len(self.runs),
            "failed_or_diverged": [r.run_id for r in self.runs if r.failed],
            "enough_runs": self.enough,
            "min_runs": MIN_RUNS,
            "params": [p.json() for p in self.params],
            "constant": self.constant,
        }


def split_metric(metric: str) -> tuple[str, str | None]:
    """``loss/val`` -> (``loss``, ``val``); a name without a split has none."""
    name, _, split = metric.rpartition("/")
    return (name, split) if name and split else (metric, None)


def sweep(
    store: Store,
    *,
    metric: str = "loss/val",
    mode: str | None = None,
    run_ids: list[str] | None = None,
) -> Sweep:
    """Rank the hyperparameters of the runs in ``store`` (or ``run_ids``) by how much of
    ``metric``'s best value they explain. ``mode`` (``min``/``max``): which way the
    metric improves; default: its goal (``metric_goals``), else ``min``."""
    name, split = split_metric(metric)
    if mode is None:
        goals = store.sql(
            "SELECT DISTINCT goal FROM metric_goals WHERE name = $name AND goal IS NOT NULL",
            {"name": name},
        )["goal"].to_list()
        mode = goals[0] if len(goals) == 1 else "min"
    if mode not in ("min", "max"):
        raise SweepError(f"mode must be 'min' or 'max', got {mode!r}")
    rows = store.sql(
        "SELECT * FROM sweep_of($name, $split, $goal) ORDER BY run_id, key",
        {"name": name, "split": split, "goal": mode},
    )
    if run_ids is not None:
        rows = rows.filter(rows["run_id"].is_in(run_ids))
    runs: dict[str, RunOutcome] = {}
    values: dict[str, dict[str, tuple[str, float | None]]] = {}
    for r in rows.iter_rows(named=True):
        run = RunOutcome(r["run_id"], r["name"], r["outcome"], r["status"], r["diverged"])
        if run.outcome is None and not run.failed:
            continue  # never logged the metric: no outcome to explain
        runs.setdefault(run.run_id, run)
        values.setdefault(r["key"], {})[run.run_id] = (r["value"], r["number"])
    if not runs:
        raise SweepError(
            f"no run in the store has an outcome for {metric!r} (a logged value, or a "
            "failure): log it, or pass --metric NAME/SPLIT"
        )
    badness = _badness(list(runs.values()), mode)
    params, constant = [], []
    for key, by_run in sorted(values.items()):
        if len({v for v, _ in by_run.values()}) < 2:
            constant.append(key)
            continue
        params.append(_param(key, by_run, badness, tested=False))
    params.sort(key=lambda p: (p.importance is None, -(p.importance or 0.0), p.name))
    for i, p in enumerate(params[:MAX_TESTED]):  # the intervals and p-values of the top
        if p.verdict == UNTESTED:
            params[i] = _param(p.name, values[p.name], badness)
    return Sweep(metric, mode, list(runs.values()), params, constant)


def _badness(runs: list[RunOutcome], mode: str) -> dict[str, float]:
    """Per run, a number that is larger for a worse run: failed runs worst of all."""
    out = {}
    for r in runs:
        if r.failed or r.outcome is None:
            out[r.run_id] = math.inf
        else:
            out[r.run_id] = r.outcome if mode == "min" else -r.outcome
    return out


def _param(
    key: str,
    by_run: dict[str, tuple[str, float | None]],
    badness: dict[str, float],
    *,
    tested: bool = True,
) -> Param:
    """The key's importance and effect; its interval and p-value when ``tested``."""
    ids = [r for r in by_run if r in badness]
    y = np.array([badness[r] for r in ids])
    numeric = all(by_run[r][1] is not None for r in ids)
    n = len(ids)
    if numeric:
        x = np.array([by_run[r][1] for r in ids], dtype=float)
        if n < MIN_RUNS:
            return Param(key, "numeric", n, None, None, None, None, "not enough runs")
        rho = float(_spearman(x, y))
        importance = float(_numeric_importance(x, y))
        direction = "lower is better" if rho > 0 else "higher is better"
        if importance > rho**2 + 1e-12:  # the terciles explain more than a trend
            bins = _terciles(x)
            ranks = _ranks(y)
            best_bin = min(range(3), key=lambda b: float(np.median(ranks[bins == b])))
            if best_bin == 1:  # better in the middle than at either end
                direction = f"best near {float(np.median(x[bins == 1])):.4g}"
        if not tested:
            return Param(key, "numeric", n, importance, None, None, None, UNTESTED, direction)
        stat = _resampled(lambda idx: _numeric_importance(x[idx], y[idx]), n)
        p = _permutation_p(lambda xs: _numeric_importance(xs, y), x)
        return Param(key, "numeric", n, importance, *stat, p, _verdict(p), direction=direction)
    levels = [by_run[r][0] for r in ids]
    counts = {level: levels.count(level) for level in sorted(set(levels))}
    if len(counts) == n:
        return Param(key, "categorical", n, None, None, None, None, "a name", levels=counts)
    if n < MIN_RUNS:
        return Param(
            key, "categorical", n, None, None, None, None, "not enough runs", levels=counts
        )
    codes = np.array([sorted(counts).index(level) for level in levels])
    ranks = _ranks(y)
    medians = {level: float(np.median(ranks[codes == i])) for i, level in enumerate(sorted(counts))}
    best = min(medians, key=lambda level: (medians[level], level))
    importance = float(_epsilon_squared(codes, y))
    if not tested:
        untested = (None, None, None, UNTESTED)
        return Param(key, "categorical", n, importance, *untested, best_level=best, levels=counts)
    stat = _resampled(lambda idx: _epsilon_squared(codes[idx], y[idx]), n)
    p = _permutation_p(lambda cs: _epsilon_squared(cs, y), codes)
    return Param(
        key, "categorical", n, importance, *stat, p, _verdict(p), best_level=best, levels=counts
    )


def _verdict(p: float) -> str:
    return "matters" if p < ALPHA else "no evidence"


def _ranks(y: np.ndarray) -> np.ndarray:
    """Average ranks along the last axis (inf ties with inf: failed runs share last)."""
    from scipy.stats import rankdata

    return np.asarray(rankdata(y, axis=-1), dtype=float)


# The statistics below take arrays whose last axis is the runs and any leading axes (a
# batch of resamples: scipy's bootstrap and permutation_test call them vectorized).


def _spearman(x: np.ndarray, y: np.ndarray) -> Any:
    """Spearman's rho: Pearson's correlation of the average ranks (spearmanr's
    definition); 0 where either side does not vary."""
    rx, ry = _ranks(x), _ranks(y)
    rx = rx - rx.mean(axis=-1, keepdims=True)
    ry = ry - ry.mean(axis=-1, keepdims=True)
    den = np.sqrt((rx * rx).sum(axis=-1) * (ry * ry).sum(axis=-1))
    num = (rx * ry).sum(axis=-1)
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)


def _numeric_importance(x: np.ndarray, y: np.ndarray) -> Any:
    """The larger of rho squared (a monotonic trend) and, with ``3 * MIN_BIN`` runs or
    more, epsilon squared across the parameter's terciles (a learning rate that is best
    in the middle of its range: a U that no rank correlation sees)."""
    rho2 = _spearman(x, y) ** 2
    if x.shape[-1] < 3 * MIN_BIN:
        return rho2
    return np.maximum(rho2, _epsilon_squared(_terciles(x), y))


def _terciles(x: np.ndarray) -> np.ndarray:
    """0, 1, 2: the run's third of the parameter's ranks (ties share a third)."""
    return np.minimum((3 * (_ranks(x) - 1) / x.shape[-1]).astype(int), 2)


def _epsilon_squared(codes: np.ndarray, y: np.ndarray) -> Any:
    """Kruskal-Wallis H (tie-corrected, as ``scipy.stats.kruskal``) / (n - 1): 0 when
    the levels' outcome ranks do not differ, 1 when the levels split them completely."""
    codes, y = np.broadcast_arrays(codes, y)
    n = y.shape[-1]
    ranks = _ranks(y)
    onehot = codes[..., None] == np.arange(int(codes.max()) + 1)  # [..., n, levels]
    sizes = onehot.sum(axis=-2)
    sums = (ranks[..., None] * onehot).sum(axis=-2)
    term = np.where(sizes > 0, sums * sums / np.where(sizes > 0, sizes, 1), 0.0).sum(axis=-1)
    h = 12.0 / (n * (n + 1)) * term - 3.0 * (n + 1)
    ties = (y[..., :, None] == y[..., None, :]).sum(axis=-1)  # each run's tie group size
    correction = 1.0 - (ties * ties - 1.0).sum(axis=-1) / (n**3 - n)
    h = np.where(correction > 0, h / np.where(correction > 0, correction, 1.0), 0.0)
    h = np.where((sizes > 0).sum(axis=-1) >= 2, h, 0.0)
    return np.clip(h / (n - 1), 0.0, 1.0)


def _batch(n: int) -> int:
    """Resamples per vectorized call: the tie matrix holds n * n values per resample."""
    return max(1, 4_000_000 // (n * n))


def _resampled(statistic: Any, n: int) -> tuple[float, float]:
    """The statistic's 95 % percentile bootstrap interval, runs resampled."""
    from scipy.stats import bootstrap

    result = bootstrap(
        (np.arange(n),),
        lambda idx, axis=-1: statistic(idx.astype(int)),
        vectorized=True,
        n_resamples=RESAMPLES,
        batch=_batch(n),
        method="percentile",
        rng=np.random.default_rng(SEED),
    )
    low, high = result.confidence_interval
    return float(low), float(high)


def _permutation_p(statistic: Any, x: np.ndarray) -> float:
    """The share of shufflings of ``x`` among the runs with a statistic at least as large."""
    from scipy.stats import permutation_test

    result = permutation_test(
        (x,),
        lambda xs, axis=-1: statistic(xs),
        permutation_type="pairings",
        vectorized=True,
        n_resamples=RESAMPLES,
        batch=_batch(len(x)),
        alternative="greater",
        rng=np.random.default_rng(SEED),
    )
    return float(result.pvalue)
