"""``Collector.log_predictions``: confusion cells and regression sums, read back through
the ``confusion`` and ``residuals`` views, against numpy and scikit-learn's answers."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import confusion_matrix, mean_absolute_error, r2_score

from analysis import open_store
from collector import Collector, ConfigError
from collector import predictions as predictions_module
from collector.predictions import PendingPredictions, PredictionRows, reduce
from store.schema import Stream
from tests.collector.read_back import read_stream


def _matrix(root: Path, split: str, classes: int) -> np.ndarray:
    rows = open_store(root).sql(
        "SELECT true_class, predicted_class, count FROM confusion WHERE split = $split",
        {"split": split},
    )
    m = np.zeros((classes, classes), dtype=np.int64)
    for t, p, n in rows.iter_rows():
        m[t, p] += n
    return m


def test_logits_of_several_batches_at_one_step_add_up_to_sklearns_confusion_matrix(
    tmp_path: Path,
) -> None:
    gen = torch.Generator().manual_seed(0)
    targets = torch.randint(0, 4, (250,), generator=gen)
    logits = torch.randn(250, 4, generator=gen) + 2 * torch.nn.functional.one_hot(targets, 4)
    with Collector(tmp_path, name="cls") as tel:
        for lo in range(0, 250, 64):  # validation batch by batch, all at step 0
            tel.log_predictions(targets[lo : lo + 64], logits[lo : lo + 64], split="val")
    expected = confusion_matrix(targets.numpy(), logits.argmax(1).numpy(), labels=range(4))
    assert (_matrix(tmp_path, "val", 4) == expected).all()
    # one set of rows per split and step: the calls were summed before writing
    table = read_stream(tmp_path / tel.run_id, Stream.PREDICTIONS)
    cells = list(
        zip(table["true_class"].to_pylist(), table["predicted_class"].to_pylist(), strict=True)
    )
    assert len(cells) == len(set(cells)) == int((expected > 0).sum())
    assert set(table["index"].to_pylist()) == {None}


@pytest.mark.parametrize(
    ("targets_shape", "outputs_shape", "dim"),
    [
        ((6, 5), (6, 5, 3), -1),  # [N, T, C] sequence scores
        ((2, 4, 4), (2, 3, 4, 4), 1),  # [N, C, H, W] segmentation scores
        ((8, 1), (8, 3), 1),  # [N, 1] class ids against [N, C] scores
    ],
)
def test_scores_take_their_argmax_over_the_class_dimension(
    tmp_path: Path, targets_shape: tuple[int, ...], outputs_shape: tuple[int, ...], dim: int
) -> None:
    gen = torch.Generator().manual_seed(1)
    targets = torch.randint(0, 3, targets_shape, generator=gen)
    scores = torch.randn(outputs_shape, generator=gen)
    with Collector(tmp_path, name="shapes") as tel:
        tel.log_predictions(targets, scores, split="val")
    predicted = scores.argmax(dim).reshape(-1)
    expected = confusion_matrix(targets.reshape(-1), predicted, labels=range(3))
    assert (_matrix(tmp_path, "val", 3) == expected).all()


def test_class_ids_arrays_and_an_ignore_index(tmp_path: Path) -> None:
    """Predicted ids (a numpy array, a list) count as given; targets below 0 are left out."""
    targets = np.array([0, 1, 2, 2, -100, 1])
    predicted = [0, 2, 2, 2, 1, 1]
    with Collector(tmp_path, name="ids") as tel:
        tel.log_predictions(targets, predicted, split="test")
        tel.log_predictions(torch.tensor([-100, 0]), torch.randn(2, 3), split="val")
    expected = confusion_matrix([0, 1, 2, 2, 1], [0, 2, 2, 2, 1], labels=range(3))
    assert (_matrix(tmp_path, "test", 3) == expected).all()
    assert _matrix(tmp_path, "val", 3).sum() == 1  # the -100 target left out on the device too


def test_more_classes_than_counted_on_the_device_are_counted_from_their_ids(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(predictions_module, "DENSE_CLASSES", 2)
    gen = torch.Generator().manual_seed(2)
    targets = torch.randint(0, 5, (100,), generator=gen)
    scores = torch.randn(100, 5, generator=gen)
    assert reduce(targets, scores, split="val")[0] == "ids"
    with Collector(tmp_path, name="wide") as tel:
        tel.log_predictions(targets, scores)
    expected = confusion_matrix(targets, scores.argmax(1), labels=range(5))
    assert (_matrix(tmp_path, "val", 5) == expected).all()


def test_regression_residuals_match_numpy_over_batches_and_columns(tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(3)
    targets = torch.randn(300, 2, generator=gen) * torch.tensor([3.0, 0.5]) + 10
    outputs = targets + torch.randn(300, 2, generator=gen) * 0.2 + 0.1
    with Collector(tmp_path, name="reg") as tel:
        for lo in range(0, 300, 128):
            tel.log_predictions(targets[lo : lo + 128], outputs[lo : lo + 128], step=7)
        tel.log_predictions(targets[:, 0], outputs[:, :1], split="first")  # [N] vs [N, 1]
    rows = open_store(tmp_path).sql("SELECT * FROM residuals ORDER BY split, index")
    assert rows["split"].to_list() == ["first", "val", "val"]
    assert rows["step"].to_list() == [7, 7, 7]
    t, o = targets.double().numpy(), outputs.double().numpy()
    for row, (tc, oc) in zip(
        rows.iter_rows(named=True),
        [(t[:, 0], o[:, 0]), (t[:, 0], o[:, 0]), (t[:, 1], o[:, 1])],
        strict=True,
    ):
        e = oc - tc
        assert row["count"] == 300
        assert row["target_mean"] == pytest.approx(tc.mean())
        assert row["target_std"] == pytest.approx(tc.std())
        assert row["output_std"] == pytest.approx(oc.std())
        assert row["bias"] == pytest.approx(e.mean())
        assert row["rmse"] == pytest.approx(np.sqrt((e**2).mean()))
        assert row["mae"] == pytest.approx(mean_absolute_error(tc, oc))
        assert row["max_abs_error"] == pytest.approx(np.abs(e).max())
        assert row["r2"] == pytest.approx(r2_score(tc, oc))


def test_training_predictions_carry_their_step_and_epoch(tmp_path: Path) -> None:
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with Collector(tmp_path, name="train", model=model, optimizer=opt) as tel:
        for epoch in range(2):
            tel.set_epoch(epoch)
            for _ in range(3):
                x, y = torch.randn(16, 3), torch.randint(0, 2, (16,))
                out = model(x)
                opt.zero_grad()
                torch.nn.functional.cross_entropy(out, y).backward()
                opt.step()
                tel.log_predictions(y, out, split="train")
    per_step = open_store(tmp_path).sql(
        "SELECT step, epoch, sum(count)::BIGINT AS n FROM confusion GROUP BY ALL ORDER BY step"
    )
    assert per_step.rows() == [(s, (s - 1) // 3, 16) for s in range(1, 7)]


def test_device_values_read_in_a_batch_merge_per_split_and_step(tmp_path: Path) -> None:
    """What waits on a device is read in one batch: calls of one split and step become
    one set of rows, other splits and steps their own (classification and regression)."""
    with Collector(tmp_path, name="batched") as tel:
        pass
    writer_rows: list[object] = []

    class Sink:
        def put(self, rows: object) -> None:
            writer_rows.append(rows)

    rows = PredictionRows(Sink())  # type: ignore[arg-type]
    calls = [
        ("val", 5, torch.tensor([0, 1, 1]), torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0]])),
        ("val", 5, torch.tensor([1, 0]), torch.tensor([1, 0])),
        ("val", 9, torch.tensor([0]), torch.tensor([1])),
        ("reg", 5, torch.tensor([1.0, 2.0]), torch.tensor([1.5, 2.0])),
        ("reg", 5, torch.tensor([3.0]), torch.tensor([1.0])),
    ]
    for split, step, t, o in calls:
        kind, kept, classes, count = reduce(t, o, split=split)
        rows.pending.append(PendingPredictions(split, step, None, 0.0, kind, kept, classes, count))
    rows.read()
    got = {(r.columns["split"][0], r.step): r.columns for r in writer_rows}  # type: ignore[attr-defined]
    assert set(got) == {("val", 5), ("val", 9), ("reg", 5)}
    val = got[("val", 5)]
    assert list(zip(val["true_class"], val["predicted_class"], val["count"], strict=True)) == [
        (0, 0, 2),
        (1, 0, 1),
        (1, 1, 2),
    ]
    reg = got[("reg", 5)]
    assert reg["count"] == [3] and reg["index"] == [0]
    assert reg["error_mean"] == [pytest.approx((0.5 + 0.0 - 2.0) / 3)]
    errors = np.array([0.5, 0.0, -2.0])
    assert reg["error_m2"] == [pytest.approx(((errors - errors.mean()) ** 2).sum())]
    assert reg["error_abs_mean"] == [pytest.approx(2.5 / 3)]
    assert reg["error_abs_max"] == [2.0]
    assert not rows.pending and tel.run_id


@pytest.mark.parametrize(
    ("targets", "outputs", "says"),
    [
        (torch.tensor([0, 1]), torch.tensor([0.2, 0.9]), "pass class ids"),
        (torch.tensor([0, 1, 2]), torch.randn(2, 3), "do not fit"),
        (torch.tensor([0, 1, 2]), torch.tensor([0, 1]), "do not match"),
        (torch.tensor([0.5, 1.5]), torch.randn(3), "must match"),
        ("labels", torch.tensor([1]), "a tensor or an array"),
    ],
)
def test_shapes_that_do_not_fit_raise_and_record_nothing(
    tmp_path: Path, targets: object, outputs: torch.Tensor, says: str
) -> None:
    with Collector(tmp_path, name="bad") as tel:
        tel.log_predictions(torch.tensor([1, 0]), torch.tensor([1, 1]), split="val")
        with pytest.raises(ConfigError, match=says):
            tel.log_predictions(targets, outputs, split="val")
        with pytest.raises(ConfigError, match="split"):
            tel.log_predictions(torch.tensor([1]), torch.tensor([1]), split="")
    assert _matrix(tmp_path, "val", 2).tolist() == [[0, 1], [0, 1]]  # the first call kept


def test_an_empty_batch_records_nothing_and_a_closed_run_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tel = Collector(tmp_path, name="empty")
    tel.log_predictions(torch.zeros(0, dtype=torch.long), torch.zeros(0, 3))
    tel.close()
    with caplog.at_level(logging.WARNING):
        tel.log_predictions(torch.tensor([1]), torch.tensor([1]))
    assert "closed run" in caplog.text
    assert read_stream(tmp_path / tel.run_id, Stream.PREDICTIONS).num_rows == 0


def test_residuals_keep_their_digits_beside_a_large_offset(tmp_path: Path) -> None:
    """Targets around 1e8 with a std of 1 (timestamps, coordinates), in three calls:
    sums of squares would have lost every digit of the variance."""
    gen = torch.Generator().manual_seed(4)
    targets = 1e8 + torch.randn(3000, generator=gen, dtype=torch.float64)
    outputs = targets + 0.1 * torch.randn(3000, generator=gen, dtype=torch.float64)
    with Collector(tmp_path, name="offset") as tel:
        for lo in range(0, 3000, 1000):
            tel.log_predictions(targets[lo : lo + 1000], outputs[lo : lo + 1000])
            tel.flush()  # one row per call: the view merges them
    (row,) = open_store(tmp_path).sql("SELECT * FROM residuals").iter_rows(named=True)
    t, o = targets.numpy(), outputs.numpy()
    assert row["target_std"] == pytest.approx(t.std(), rel=1e-9)
    assert row["output_std"] == pytest.approx(o.std(), rel=1e-9)
    assert row["r2"] == pytest.approx(r2_score(t, o), rel=1e-9)


def test_one_binary_logit_is_refused_and_an_empty_regression_batch_is_nothing(
    tmp_path: Path,
) -> None:
    with Collector(tmp_path, name="binary") as tel:
        with pytest.raises(ConfigError, match=r"outputs > 0"):
            tel.log_predictions(torch.tensor([0, 1, 1]), torch.randn(3, 1))
        tel.log_predictions(torch.zeros(0), torch.zeros(0, 1))  # an all-False mask
    assert read_stream(tmp_path / tel.run_id, Stream.PREDICTIONS).num_rows == 0


def test_targets_beyond_the_scores_are_left_out_on_both_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """1-based labels against 3 score columns: label 3 has no column, counted nowhere,
    whether the cells are counted on the device or from the ids."""
    targets, scores = torch.tensor([1, 2, 3]), torch.eye(3)[[1, 2, 0]] * 5
    with Collector(tmp_path / "dense", name="dense") as tel:
        tel.log_predictions(targets, scores)
    monkeypatch.setattr(predictions_module, "DENSE_CLASSES", 2)
    with Collector(tmp_path / "ids", name="ids") as tel:
        tel.log_predictions(targets, scores)
    for root in ("dense", "ids"):
        assert _matrix(tmp_path / root, "val", 3).tolist() == [[0, 0, 0], [0, 1, 0], [0, 0, 1]]


def test_the_calls_of_one_matrix_add_into_one_pending_tensor() -> None:
    """Many validation batches at one step keep one [C * C] tensor, not one per call."""
    rows = PredictionRows(None)  # type: ignore[arg-type]
    for _ in range(50):
        kind, kept, classes, count = reduce(torch.tensor([0, 1]), torch.randn(2, 4), split="val")
        rows.add(PendingPredictions("val", 3, None, 0.0, kind, kept, classes, count))
    assert len(rows.pending) == 1 and rows.pending[0].count == 100
    assert int(rows.pending[0].kept.sum()) == 100


def test_a_nan_error_keeps_the_largest_error_nan_whatever_the_order() -> None:
    sink: list[object] = []

    class Sink:
        def put(self, rows: object) -> None:
            sink.append(rows)

    for order in ((0, 1), (1, 0)):
        rows = PredictionRows(Sink())  # type: ignore[arg-type]
        calls = [
            (torch.tensor([1.0]), torch.tensor([float("nan")])),
            (torch.tensor([1.0]), torch.tensor([6.0])),
        ]
        for i in order:
            kind, kept, classes, count = reduce(*calls[i], split="val")
            rows.pending.append(PendingPredictions("val", 1, None, 0.0, kind, kept, classes, count))
        rows.read()
    assert all(np.isnan(r.columns["error_abs_max"][0]) for r in sink)  # type: ignore[attr-defined]
