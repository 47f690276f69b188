"""The README's SQL cookbook ("## SQL over your runs"): every query runs on a sweep built
here and answers its question, so the cookbook cannot rot."""

from __future__ import annotations

import math
import re
from pathlib import Path

import polars as pl
import pytest

from analysis import open_store
from telemetry.commands.query import run_query
from tests.analysis.cases import noisy
from tests.builders import RunBuilder

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "## SQL over your runs"


def cookbook() -> list[tuple[str, str]]:
    """(question, sql) for every numbered question of the README section."""
    text = README.read_text()
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    found = re.findall(r"\*\*(\d+\. [^*]+)\*\*\s*```sql\n(.*?)```", section, re.DOTALL)
    return [(q, sql) for q, sql in found]


EPOCH = 10  # steps per epoch


def _run(
    root: Path, run_id: str, *, lr: float, acc: float, start: float, layer1_grad: float = 0.5
) -> RunBuilder:
    """A 6-epoch run: loss falls, val accuracy climbs to ``acc``, two layers' statistics."""
    run = RunBuilder(root, run_id, config={"lr": lr, "batch_size": 64}, start=start)
    steps = list(range(1, 6 * EPOCH + 1))
    epochs = [(s - 1) // EPOCH for s in steps]
    run.scalars(
        "loss", "train", noisy([2.0 * math.exp(-s / 20) + 0.1 for s in steps]), epochs=epochs
    )
    val_steps = [EPOCH * (e + 1) for e in range(6)]
    run.scalars(
        "loss", "val", [1.5, 1.0, 0.7, 0.5, 0.45, 0.42], steps=val_steps, epochs=list(range(6))
    )
    curve = [acc - 0.05 * (5 - e) for e in range(6)]  # ends at its best
    run.scalars("acc", "val", curve, steps=val_steps, epochs=list(range(6)))
    for layer, grad in (("layer1.0.weight", layer1_grad), ("layer2.0.weight", 0.5)):
        run.tensors(layer, "grad", noisy([grad] * len(steps)), epochs=epochs)
        run.tensors(layer, "weight", [4.0] * len(steps), epochs=epochs)
        run.tensors(layer, "update", noisy([4e-3] * len(steps), seed=1), epochs=epochs)
    run.system(noisy([0.1] * len(steps)), noisy([0.01] * len(steps), seed=2))
    return run


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sweep")
    t0 = 1.7e9
    _run(root, "lr-1e-2", lr=1e-2, acc=0.93, start=t0).finish().write()
    _run(root, "lr-1e-3", lr=1e-3, acc=0.96, start=t0 + 1).finish().write()
    # layer 1's gradient vanishes
    _run(root, "lr-1e-4", lr=1e-4, acc=0.55, start=t0 + 2, layer1_grad=1e-8).finish().write()
    # validation loss turns up after epoch 2: overfitting
    overfit = _run(root, "overfit", lr=3e-3, acc=0.9, start=t0 + 3)
    overfit.scalars("loss", "val", [0.9, 1.2, 1.4], steps=[70, 80, 90], epochs=[6, 7, 8])
    overfit.finish().write()
    # the loss goes NaN and the run fails
    diverged = RunBuilder(root, "diverged", config={"lr": 1.0}, start=t0 + 4)
    diverged.scalars("loss", "train", [2.0, 5.0, 40.0, float("nan"), float("nan")])
    diverged.fail("FloatingPointError", "loss is NaN").write()
    # two ranks of one run, rank 1 waiting for data
    for rank, wait in ((0, 0.01), (1, 0.08)):
        ddp = RunBuilder(root, "ddp", config={"lr": 1e-3}, start=t0 + 5, rank=rank)
        ddp.system(noisy([0.12] * 20, seed=rank), noisy([wait] * 20, seed=rank + 5))
        ddp.finish().write()
    return root


def test_the_readme_has_ten_questions() -> None:
    questions = [q for q, _ in cookbook()]
    assert len(questions) == 10, questions
    assert [q.split(".", 1)[0] for q in questions] == [str(i) for i in range(1, 11)]


@pytest.fixture(scope="module")
def answers(sweep: Path) -> dict[int, pl.DataFrame]:
    with open_store(sweep) as store:
        return {i: run_query(store, sql) for i, (_, sql) in enumerate(cookbook(), start=1)}


def test_every_cookbook_query_answers_its_question(answers: dict[int, pl.DataFrame]) -> None:
    assert answers[1]["name"].to_list() == ["lr-1e-4"]  # layer-1 grads below 1e-6, epoch 1
    best = dict(zip(answers[2]["lr"].to_list(), answers[2]["best_val_acc"].to_list(), strict=True))
    assert best[1e-3] == pytest.approx(0.96) and best[1e-4] == pytest.approx(0.55)
    assert answers[3]["run_id"][0] == "overfit"  # the largest train/val gap first
    assert set(answers[4]["name"]) == {"lr-1e-2", "lr-1e-3", "overfit"}  # reached 90 %
    assert answers[5].select("name", "status").rows() == [("diverged", "failed")]
    assert "loss is NaN" in answers[5]["error"][0]
    assert answers[6].select("run_id", "first_step").rows() == [("diverged", 4)]
    assert answers[7]["run_id"].to_list() == ["overfit"]
    assert len(answers[8]) == 5 and answers[8]["update_ratio"][0] == pytest.approx(1e-3, rel=0.2)
    ddp = answers[9].filter(pl.col("run_id") == "ddp")
    assert ddp["rank"].to_list() == [0, 1] and ddp["data_share"][1] > 3 * ddp["data_share"][0]
    assert answers[10]["run_id"].unique().sort().to_list() == ["lr-1e-2", "lr-1e-3", "overfit"]
