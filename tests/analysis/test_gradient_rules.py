"""exploding_gradients beyond the contract test: a jump of the gradient norm is an
explosion only when the run pays for it, and the first steps are judged too."""

from __future__ import annotations

import math
from pathlib import Path

from analysis import diagnose, load_rules, open_store
from analysis.findings import Finding
from tests.analysis.cases import noisy, train_curve
from tests.builders import RunBuilder

RULE = next(r for r in load_rules() if r.id == "exploding_gradients")


def _findings(root: Path, **params: object) -> list[Finding]:
    store = open_store(root)
    return diagnose(store, rules=[RULE], params={RULE.id: params}).findings


def test_a_one_step_jump_the_loss_shrugs_off_is_not_an_explosion(tmp_path: Path) -> None:
    # a 2-row last batch under BatchNorm: 50x for one step, its own loss high, then all is well
    norms = noisy([1.0] * 60, 0.2)
    loss = train_curve(60)
    norms[35], loss[35] = 50.0, 3 * loss[35]
    run = RunBuilder(tmp_path, "r").scalars("loss", "train", loss)
    run.tensors("fc.weight", "grad", norms).write()
    assert _findings(tmp_path) == []


def test_gradual_growth_is_not_an_explosion(tmp_path: Path) -> None:
    # a net leaving a tiny initialisation: the norm grows 100x over 40 steps, 1.12x a step
    norms = noisy([0.05 * 1.12**i for i in range(40)] + [4.5] * 30, 0.2)
    run = RunBuilder(tmp_path, "r").scalars("loss", "train", train_curve(70))
    run.tensors("fc.weight", "grad", norms).write()
    assert _findings(tmp_path) == []


def test_an_explosion_in_the_first_steps_is_judged_against_their_own_scale(
    tmp_path: Path,
) -> None:
    # a ReLU RNN: 1.5, 1.5, 106, 2.9, 429, 3.5e17, then NaN; the loss goes with it
    norms = [1.53, 1.54, 106.0, 2.88, 429.0, 3.5e17, math.nan, math.nan]
    loss = [4.49, 4.03, 9.96, 4.39, 26.0, 2.8e16, math.nan, math.nan]
    run = RunBuilder(tmp_path, "r").scalars("loss", "train", loss)
    run.tensors("rnn.weight_hh_l0", "grad", norms)
    run.tensors("rnn.weight_ih_l0", "grad", [0.01] * 8).write()
    (finding,) = _findings(tmp_path)
    assert finding.step == 3 and finding.subject == "rnn.weight_hh_l0"
    assert finding.evidence["history"] == 2 and 60 < finding.evidence["ratio"] < 80
    assert finding.evidence["consequence"] == "loss_nonfinite"
    assert "went non-finite at step 7" in finding.message


def test_the_jump_step_must_be_the_cause_not_a_symptom(tmp_path: Path) -> None:
    # Adam at 100x the learning rate: the first update breaks the net, so the loss and the
    # gradient jump together at step 2 and both come back down (Adam's step does not grow
    # with the gradient): the damage was done before this gradient
    norms = noisy([1.4, 43.0, 35.0, 18.0, 12.0, 3.5] + [2.0] * 34, 0.1)
    loss = [2.34, 21.2, 14.6, 11.5, 7.2, 2.9] + train_curve(34, start=2.6, end=0.5)
    run = RunBuilder(tmp_path, "r").scalars("loss", "train", loss)
    run.tensors("fc.weight", "grad", norms).write()
    assert _findings(tmp_path) == []


def test_a_jump_is_measured_against_the_runs_own_noise(tmp_path: Path) -> None:
    # a gradient norm that routinely swings 10x either way: a 12x step is ordinary for it
    swings = [10.0 ** ((-1) ** i * (0.3 + 0.7 * (i % 3) / 2)) for i in range(60)]
    loss = train_curve(30) + [1.0] + [5.0] * 29  # and the loss did get worse afterwards
    swings[30] = 12 * sorted(swings[:30])[15]
    run = RunBuilder(tmp_path, "r").scalars("loss", "train", loss)
    run.tensors("fc.weight", "grad", swings).write()
    assert _findings(tmp_path) == []
    (finding,) = _findings(tmp_path, sigmas=0.0)
    assert finding.evidence["consequence"] == "loss_rose"


def test_without_a_loss_the_jump_must_persist(tmp_path: Path) -> None:
    transient = noisy([1.0] * 40, 0.2)
    transient[20] = 80.0
    RunBuilder(tmp_path, "transient").tensors("fc.weight", "grad", transient).write()
    lasting = noisy([1.0] * 20 + [80.0] * 20, 0.2)
    RunBuilder(tmp_path, "lasting").tensors("fc.weight", "grad", lasting).write()
    (finding,) = _findings(tmp_path)
    assert finding.run_id == "lasting" and finding.step == 21
    assert finding.evidence["consequence"] == "persisted"
