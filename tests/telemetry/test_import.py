"""``telemetry import tensorboard``: logs written by torch.utils.tensorboard, imported, compared.

The expected values are read from the event files with TensorBoard's low-level
``LegacyEventFileLoader`` (the importer uses ``EventAccumulator``), so every stored number
is checked against the proto it came from.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from analysis import diagnose, open_store
from integrations.tensorboard.histograms import QUANTILE_BPS, QUANTILE_SPLITS
from telemetry.cli import main
from tests.collector.tensorboard_logs import accuracy_plateau

STEPS = range(0, 12, 3)


def write_logs(logdir: Path) -> dict[str, dict[str, Any]]:
    """Two TensorBoard runs (one nested) written by torch's SummaryWriter; what was logged."""
    from torch.utils.tensorboard import SummaryWriter

    gen = torch.Generator().manual_seed(0)
    logged: dict[str, dict[str, Any]] = {}
    for run, scale in (("baseline", 1.0), ("sweep/lr0.1", 3.0)):
        tb = SummaryWriter(logdir / run)
        values: dict[str, Any] = {}
        for step in STEPS:
            loss = 1.0 / (step + 1) + 1e-8 * scale  # not representable in float32
            tb.add_scalar("Loss/train", loss, step)
            tb.add_scalar("Accuracy/val", 0.1 * step * scale, step, new_style=True)
            grad = torch.randn(500, generator=gen) * scale
            tb.add_histogram("fc1.weight.grad", grad, step)
            tb.add_histogram("activations/relu", torch.rand(64, generator=gen), step)
            values[f"loss/{step}"], values[f"grad/{step}"] = loss, grad
        tb.add_text("notes", f"run {run}", 2)
        tb.add_image("inputs", torch.rand(3, 4, 4, generator=gen), 0)
        tb.close()
        logged[run] = values
    return logged


def protos(run_dir: Path) -> list[tuple[Any, Any]]:
    """(event, summary value) of every summary in the run directory's event files."""
    # Legacy: the events as written, without the loader's migration to tensor summaries.
    from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader

    out = []
    for path in sorted(run_dir.glob("events.out.tfevents.*")):
        for event in LegacyEventFileLoader(str(path)).Load():
            out += [(event, value) for value in event.summary.value]
    return out


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, Any], str]:
    base = tmp_path_factory.mktemp("tb")
    logdir, root = base / "logs", base / "store"
    logged = write_logs(logdir)
    result = CliRunner().invoke(main, ["import", "tensorboard", str(logdir), "--root", str(root)])
    assert result.exit_code == 0, result.output
    return logdir, root, logged, result.output


def runs_by_name(root: Path) -> dict[str, dict[str, Any]]:
    with open_store(root) as store:
        return {r["name"]: r for r in store.sql("SELECT * FROM runs").to_dicts()}


def test_one_run_per_tensorboard_run_directory(imported: Any) -> None:
    logdir, root, _, output = imported
    runs = runs_by_name(root)
    assert set(runs) == {"baseline", "sweep-lr0.1"}
    for name, run in runs.items():
        assert run["status"] == "finished"
        assert run["steps"] == max(STEPS)
        walls = [e.wall_time for e, _ in protos(logdir / name.replace("-", "/"))]
        assert run["duration_s"] == pytest.approx(max(walls) - min(walls), abs=1e-5)
    assert "baseline -> baseline-" in output
    assert "not imported: images (1 tags)" in output


def test_every_scalar_is_the_event_files_value(imported: Any) -> None:
    from tensorboard.util import tensor_util

    logdir, root, logged, _ = imported
    with open_store(root) as store:
        for name, run_dir in (("baseline", "baseline"), ("sweep-lr0.1", "sweep/lr0.1")):
            ours = store.sql(
                "SELECT s.name, s.split, s.step, s.value, epoch_us(s.wall_time) AS us "
                "FROM scalars s JOIN runs r USING (run_id) "
                "WHERE r.name = $name AND s.name IN ('loss', 'acc') ORDER BY s.seq",
                {"name": name},
            ).rows()
            expected = []
            for event, value in protos(logdir / run_dir):
                if value.tag == "Loss/train":
                    number, key = value.simple_value, ("loss", "train")
                elif value.tag == "Accuracy/val":
                    number = float(tensor_util.make_ndarray(value.tensor))
                    key = ("acc", "val")
                else:
                    continue
                us = int(event.wall_time * 1_000_000)
                expected.append((*key, event.step, number, us))
            assert sorted(ours) == sorted(expected)
            assert len(ours) == 2 * len(STEPS)
            # float32 on disk in TensorBoard, exactly that float32 in the store
            for step in STEPS:
                loss = [v for n, _, s, v, _ in ours if n == "loss" and s == step]
                assert loss == [float(np.float32(logged[run_dir][f"loss/{step}"]))]


def test_histograms_keep_the_protos_statistics_and_percentiles(imported: Any) -> None:
    from tensorboard.plugins.distribution.compressor import compress_histogram_proto

    logdir, root, logged, _ = imported
    with open_store(root) as store:
        tensors = store.sql(
            "SELECT r.name AS run, t.* FROM tensors t JOIN runs r USING (run_id) ORDER BY t.seq"
        ).to_dicts()
        quantiles = store.sql(
            "SELECT r.name AS run, s.name, s.step, list(s.split ORDER BY s.seq) AS splits, "
            "list(s.value ORDER BY s.seq) AS values "
            "FROM scalars s JOIN runs r USING (run_id) WHERE s.split LIKE 'p%' "
            "GROUP BY ALL"
        ).to_dicts()
    by_key = {(t["run"], t["param"], t["kind"], t["step"]): t for t in tensors}
    q_by_key = {(q["run"], q["name"], q["step"]): q for q in quantiles}
    assert len(by_key) == len(tensors) == 2 * 2 * len(STEPS)
    for name, run_dir in (("baseline", "baseline"), ("sweep-lr0.1", "sweep/lr0.1")):
        for event, value in protos(logdir / run_dir):
            if not value.HasField("histo"):
                continue
            h = value.histo
            param, kind = {
                "fc1.weight.grad": ("fc1.weight", "grad"),
                "activations/relu": ("activations/relu", "histogram"),
            }[value.tag]
            row = by_key[(name, param, kind, event.step)]
            mean = h.sum / h.num
            assert row["numel"] == h.num
            assert (row["min"], row["max"]) == (h.min, h.max)
            assert row["mean"] == mean
            assert row["norm"] == math.sqrt(h.sum_squares)
            assert row["std"] == pytest.approx(
                math.sqrt((h.sum_squares - h.sum * mean) / (h.num - 1)), rel=1e-12
            )
            assert row["abs_max"] == max(-h.min, h.max)
            assert row["zero_frac"] is None and row["nonfinite"] is None
            q = q_by_key[(name, value.tag, event.step)]
            assert q["splits"] == list(QUANTILE_SPLITS)
            expected = [v for _, v in compress_histogram_proto(h, QUANTILE_BPS)]
            assert q["values"] == pytest.approx(expected, rel=1e-12)
            if value.tag == "fc1.weight.grad":  # and the proto is the tensor logged
                grad = logged[run_dir][f"grad/{event.step}"].double()
                assert row["mean"] == pytest.approx(float(grad.mean()), rel=1e-6, abs=1e-9)
                assert row["std"] == pytest.approx(float(grad.std()), rel=1e-6)


def test_text_becomes_note_events(imported: Any) -> None:
    _, root, _, _ = imported
    with open_store(root) as store:
        notes = store.sql(
            "SELECT r.name, e.step, e.payload FROM events e JOIN runs r USING (run_id) "
            "WHERE e.kind = 'note' ORDER BY r.name"
        ).rows()
    assert [(n, s, json.loads(p)) for n, s, p in notes] == [
        ("baseline", 2, {"tag": "notes", "text": "run baseline"}),
        ("sweep-lr0.1", 2, {"tag": "notes", "text": "run sweep/lr0.1"}),
    ]


def test_importing_again_skips_unless_asked(imported: Any) -> None:
    logdir, root, _, _ = imported
    before = len(runs_by_name(root))
    again = CliRunner().invoke(main, ["import", "tensorboard", str(logdir), "--root", str(root)])
    assert again.exit_code == 0, again.output
    assert "baseline: imported before, skipped" in again.output
    assert len(runs_by_name(root)) == before
    forced = CliRunner().invoke(
        main, ["import", "tensorboard", str(logdir / "baseline"), "--root", str(root), "--again"]
    )
    assert forced.exit_code == 0, forced.output
    with open_store(root) as store:
        names = store.sql("SELECT name FROM runs ORDER BY name").to_series().to_list()
    assert names == ["baseline", "baseline", "sweep-lr0.1"]


def test_a_directory_without_event_files_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["import", "tensorboard", str(tmp_path), "--root", str(tmp_path / "s")]
    )
    assert result.exit_code == 2
    assert "no TensorBoard event files" in result.output


def test_help_needs_neither_torch_nor_tensorboard() -> None:
    probe = (
        "import sys\nfrom click.testing import CliRunner\nfrom telemetry.cli import main\n"
        "r = CliRunner().invoke(main, ['import', 'tensorboard', '--help'])\n"
        "assert r.exit_code == 0 and 'Example' in r.output, r.output\n"
        "print(sorted(m for m in ('torch', 'tensorboard') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def import_logs(logdir: Path, root: Path) -> str:
    result = CliRunner().invoke(main, ["import", "tensorboard", str(logdir), "--root", str(root)])
    assert result.exit_code == 0, result.output
    return result.output


def started_payloads(root: Path) -> dict[str, dict[str, Any]]:
    with open_store(root) as store:
        rows = store.sql(
            "SELECT r.name, e.payload FROM events e JOIN runs r USING (run_id) "
            "WHERE e.kind = 'run_started'"
        ).rows()
    return {name: json.loads(payload) for name, payload in rows}


def test_add_scalars_and_add_hparams_subruns_are_imported_into_their_run(tmp_path: Path) -> None:
    """torch writes add_scalars' splits and add_hparams into directories of their own;
    they are one training run: its loss/train and loss/val meet, overfitting is seen."""
    from torch.utils.tensorboard import SummaryWriter

    logdir, root = tmp_path / "logs", tmp_path / "store"
    with SummaryWriter(logdir / "exp") as tb:
        for step in range(1, 41):
            tb.add_scalars("Loss", {"train": 2.0 / step, "val": 1.0 + abs(step - 10) / 10}, step)
            tb.add_scalar("Accuracy/val", 0.5, step)
        tb.add_hparams({"lr": 0.1, "opt": "adam"}, {"hparam/accuracy": 0.5}, global_step=40)
    subdirs = sorted(p.name for p in (logdir / "exp").iterdir() if p.is_dir())
    stamp, *scalars_dirs = subdirs
    assert scalars_dirs == ["Loss_train", "Loss_val"] and float(stamp) > 1e9  # time.time()
    output = import_logs(logdir, root)
    assert "121 scalars (4 tags)" in output  # Loss/train, Loss/val, Accuracy/val, hparam/...
    assert f"with the sub-runs {stamp}, Loss_train, Loss_val" in output
    runs = runs_by_name(root)
    assert list(runs) == ["exp"]
    assert json.loads(runs["exp"]["config"]) == {"lr": 0.1, "opt": "adam"}
    with open_store(root) as store:
        counts = store.sql(
            "SELECT name, split, count(*) AS n, max(step) AS last FROM scalars "
            "GROUP BY ALL ORDER BY ALL"
        ).rows()
        findings = {f.rule for f in diagnose(store).findings}
    assert counts == [
        ("acc", "val", 40, 40),
        ("hparam", "accuracy", 1, 40),
        ("loss", "train", 40, 40),
        ("loss", "val", 40, 40),
    ]
    assert "overfitting" in findings
    started = started_payloads(root)["exp"]
    assert started["subruns"] == subdirs
    assert started["imported_from"] == str((logdir / "exp").resolve())
    assert started["tensorboard_tags"] == {
        "Loss/train": ["loss", "train"],
        "Loss/val": ["loss", "val"],
        "Accuracy/val": ["acc", "val"],
    }


def test_runs_nested_in_a_log_dir_stay_runs_of_their_own(tmp_path: Path) -> None:
    """Only TensorBoard's own sub-run naming with only that sub-run's data makes a sub-run."""
    from torch.utils.tensorboard import SummaryWriter

    logdir, root = tmp_path / "runs", tmp_path / "store"
    for run in ("", "exp1", "exp2", "loss_train", "1700000000.5"):
        with SummaryWriter(logdir / run) as tb:
            for step in range(3):
                tb.add_scalar("loss", 1.0 / (step + 1), step)
                if run == "loss_train":  # named like add_scalars' sub-run, but a run
                    tb.add_scalar("acc", 0.5, step)
    with SummaryWriter(logdir / "sweep") as tb:  # a sweep: one hparams run per trial
        for trial in (1, 2):
            tb.add_hparams({"lr": 0.1 * trial}, {"loss": 1.0 / trial}, run_name=str(trial))
    import_logs(logdir, root)
    runs = runs_by_name(root)
    assert sorted(runs) == [
        "1700000000.5",
        "exp1",
        "exp2",
        "loss_train",
        "runs",
        "sweep-1",
        "sweep-2",
    ]
    assert json.loads(runs["sweep-2"]["config"]) == {"lr": 0.2}
    assert all(p["subruns"] == [] for p in started_payloads(root).values())


def test_accuracy_logged_as_tensorboard_users_tag_it_gets_the_accuracy_rules(
    tmp_path: Path,
) -> None:
    """``Accuracy/val`` in an event file is the rules' ``acc/val``: its plateau is diagnosed."""
    from torch.utils.tensorboard import SummaryWriter

    logdir, root = tmp_path / "logs", tmp_path / "store"
    with SummaryWriter(logdir / "plateau") as tb:
        for tag, value, step in accuracy_plateau():
            tb.add_scalar(tag, value, step)
    import_logs(logdir, root)
    with open_store(root) as store:
        findings = diagnose(store).findings
    (plateau,) = [f for f in findings if f.rule == "accuracy_plateau"]
    assert plateau.subject == "acc/val"


def test_hparams_keep_their_types_and_non_finite_values(tmp_path: Path) -> None:
    from torch.utils.tensorboard import SummaryWriter

    logdir, root = tmp_path / "logs", tmp_path / "store"
    with SummaryWriter(logdir / "exp") as tb:
        tb.add_scalar("loss", 1.0, 0)
        hparams = {"lr": float("nan"), "batch": 32, "opt": "adam", "nesterov": True}
        tb.add_hparams(hparams, {"hparam/loss": 1.0})
    import_logs(logdir, root)
    (run,) = runs_by_name(root).values()
    assert json.loads(run["config"]) == {
        "batch": 32.0,  # TensorBoard keeps every number as a double
        "lr": "NaN",
        "nesterov": True,
        "opt": "adam",
    }
