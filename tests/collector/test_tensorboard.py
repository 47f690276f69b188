"""The TensorBoard drop-in: same calls as torch.utils.tensorboard.SummaryWriter, rows in the store.

Where TensorBoard's own code defines a value (image bytes, figure rendering, histogram
percentiles), the test computes it with that code and compares.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from analysis import diagnose, open_store
from collector import ConfigError
from integrations.tensorboard.histograms import (
    QUANTILE_BPS,
    QUANTILE_SPLITS,
    Histogram,
    bucket_quantiles,
)
from integrations.tensorboard.tags import histogram_key, metric_key, scalars_key
from integrations.tensorboard.writer import _UNSUPPORTED, SummaryWriter, UnsupportedError
from store.schema import Stream

from .read_back import read_stream
from .tensorboard_logs import accuracy_plateau


def rows(writer: SummaryWriter, stream: Stream) -> list[dict[str, Any]]:
    return read_stream(Path(writer.log_dir), stream).to_pylist()


@pytest.mark.parametrize(
    ("tag", "key"),
    [
        ("Loss/train", ("loss", "train")),
        ("loss/val", ("loss", "val")),
        ("Loss/test", ("loss", "test")),
        ("train/loss", ("loss", "train")),
        ("eval/Accuracy", ("acc", "val")),
        ("Accuracy/validation", ("acc", "val")),
        ("Accuracy/val", ("acc", "val")),
        ("accuracy/train", ("acc", "train")),
        ("val_accuracy", ("acc", "val")),
        ("dev/top1_acc", ("acc", "val")),
        ("Accuracy", ("acc", None)),
        ("Accuracy/top5", ("acc", "top5")),
        ("hparam/accuracy", ("hparam", "accuracy")),
        ("Loss/valid", ("loss", "val")),
        ("LOSS/Val", ("loss", "val")),
        ("learning_rate/train", ("lr", "train")),
        ("train_loss", ("loss", "train")),
        ("val_acc", ("acc", "val")),
        ("loss_valid", ("loss", "val")),
        ("loss", ("loss", None)),
        ("charts/fps", ("charts", "fps")),
        ("a/b/Train", ("a/b", "train")),
        ("learning_rate", ("lr", "train")),
        ("LR", ("lr", "train")),
        ("train", ("train", None)),
    ],
)
def test_scalar_tags_map_to_name_and_split(tag: str, key: tuple[str, str | None]) -> None:
    assert metric_key(tag) == key


@pytest.mark.parametrize(
    ("main_tag", "key", "expected"),
    [
        ("loss", "train", ("loss", "train")),
        ("Loss", "Validation", ("loss", "val")),
        ("Accuracy", "val", ("acc", "val")),
        ("Loss/sub", "train", ("loss/sub", "train")),
        ("acc", "ema", ("acc", "ema")),
    ],
)
def test_add_scalars_keys_are_the_tag_main_tag_slash_key(
    main_tag: str, key: str, expected: tuple[str, str | None]
) -> None:
    assert scalars_key(main_tag, key) == expected


def test_tags_stored_under_another_spelling_keep_the_original_once(tmp_path: Path) -> None:
    with SummaryWriter(tmp_path / "t") as w:
        for step in (1, 2):
            w.add_scalar("Accuracy/val", 0.5, step)
            w.add_scalar("loss/train", 0.5, step)  # stored as written: nothing to keep
            w.add_scalars("Loss", {"valid": 0.7}, step)
    scalars = [(r["name"], r["split"]) for r in rows(w, Stream.SCALARS)]
    assert scalars == [("acc", "val"), ("loss", "train"), ("loss", "val")] * 2
    events = [json.loads(r["payload"]) for r in rows(w, Stream.EVENTS) if r["kind"] == "config"]
    assert events == [
        {"tensorboard_tags": {"Accuracy/val": ["acc", "val"]}},
        {"tensorboard_tags": {"Loss/valid": ["loss", "val"]}},
    ]


def test_a_bad_value_records_nothing_not_even_the_tag(tmp_path: Path) -> None:
    with SummaryWriter(tmp_path / "bad") as w:
        with pytest.raises(ConfigError, match="expected a number"):
            w.add_scalar("Accuracy/val", "high", 1)
        with pytest.raises(ConfigError, match="keys must be non-empty strings"):
            w.add_scalars("Loss", {"": 1.0}, 1)
        with pytest.raises(ConfigError, match="non-empty string"):
            w.add_scalar(["a"], 1.0, 1)  # type: ignore[arg-type]
    assert rows(w, Stream.SCALARS) == []
    assert [r["kind"] for r in rows(w, Stream.EVENTS)] == ["run_started", "run_finished"]


@pytest.mark.parametrize(
    ("tag", "parameter", "key"),
    [
        ("fc1.weight.grad", False, ("fc1.weight", "grad")),
        ("fc1.weight_grad", False, ("fc1.weight", "grad")),
        ("grad/fc1.weight", False, ("fc1.weight", "grad")),
        ("fc1.weight/gradients", False, ("fc1.weight", "grad")),
        ("fc1.bias", False, ("fc1.bias", "weight")),
        ("weights/fc1", False, ("fc1", "weight")),
        ("encoder", True, ("encoder", "weight")),
        ("activations/relu1", False, ("activations/relu1", "histogram")),
    ],
)
def test_histogram_tags_map_to_param_and_kind(
    tag: str, parameter: bool, key: tuple[str, str]
) -> None:
    assert histogram_key(tag, parameter=parameter) == key


def test_scalars_land_with_their_step_split_and_walltime(tmp_path: Path) -> None:
    with SummaryWriter(tmp_path / "exp", comment="_lr0.1") as w:
        w.add_scalar("Loss/train", torch.tensor(0.5), 3)
        w.add_scalar("loss/val", np.float32(0.25), 3, walltime=1_700_000_000.5)
        w.add_scalars("acc", {"train": 0.9, "Val": 0.8, "ema": 0.85}, global_step=4)
        w.add_scalar("charts/fps", 12)  # no step: the largest step so far
    assert Path(w.log_dir).parent == tmp_path
    assert Path(w.log_dir).name.startswith("exp_lr0.1-")
    got = [(r["step"], r["name"], r["split"], r["value"]) for r in rows(w, Stream.SCALARS)]
    assert got == [
        (3, "loss", "train", 0.5),
        (3, "loss", "val", 0.25),
        (4, "acc", "train", 0.9),
        (4, "acc", "val", 0.8),
        (4, "acc", "ema", 0.85),
        (4, "charts", "fps", 12.0),
    ]
    stamped = rows(w, Stream.SCALARS)[1]["wall_time"]
    assert stamped.timestamp() == 1_700_000_000.5


def test_histogram_statistics_and_exact_quantiles(tmp_path: Path) -> None:
    values = torch.randn(1000, generator=torch.Generator().manual_seed(0)) * 3 + 1
    values[:10] = 0.0
    layer = nn.Linear(3, 2)
    with SummaryWriter(tmp_path / "h") as w:
        w.add_histogram("fc1.weight.grad", values, 7)
        w.add_histogram("encoder", layer.weight, 8)  # an nn.Parameter: a weight
    tensors = rows(w, Stream.TENSORS)
    grad = tensors[0]
    assert (grad["step"], grad["param"], grad["kind"]) == (7, "fc1.weight", "grad")
    x = values.double()
    assert grad["numel"] == 1000
    assert grad["mean"] == pytest.approx(float(x.mean()), rel=1e-6)
    assert grad["std"] == pytest.approx(float(x.std()), rel=1e-6)
    assert grad["norm"] == pytest.approx(float(x.norm()), rel=1e-6)
    assert (grad["min"], grad["max"]) == (float(values.min()), float(values.max()))
    assert grad["zero_frac"] == pytest.approx(0.01)
    assert grad["nonfinite"] == 0
    assert (tensors[1]["param"], tensors[1]["kind"]) == ("encoder", "weight")
    quantiles = [r for r in rows(w, Stream.SCALARS) if r["name"] == "fc1.weight.grad"]
    assert [r["split"] for r in quantiles] == list(QUANTILE_SPLITS)
    expected = np.quantile(values.numpy().astype(np.float64), [bp / 10000 for bp in QUANTILE_BPS])
    assert [r["value"] for r in quantiles] == pytest.approx(expected.tolist(), rel=1e-12)


def test_histogram_from_buckets_matches_tensorboards_percentiles(tmp_path: Path) -> None:
    from tensorboard.plugins.distribution.compressor import compress_histogram_proto
    from torch.utils.tensorboard import SummaryWriter as TensorBoardWriter
    from torch.utils.tensorboard.summary import histogram

    tb = TensorBoardWriter(tmp_path / "tb")
    bins = tb.default_bins  # what add_histogram's bins="tensorflow" stands for
    tb.close()
    values = np.random.default_rng(1).gamma(2.0, size=5000)
    proto = histogram("t", values, bins).value[0].histo  # what add_histogram writes
    expected = [v for _, v in compress_histogram_proto(proto)]
    assert bucket_quantiles(Histogram.of(proto)) == pytest.approx(expected, rel=1e-12)
    with SummaryWriter(tmp_path / "raw") as w:
        w.add_histogram_raw(
            "act/relu",
            proto.min,
            proto.max,
            proto.num,
            proto.sum,
            proto.sum_squares,
            list(proto.bucket_limit),
            list(proto.bucket),
            global_step=2,
        )
    (row,) = rows(w, Stream.TENSORS)
    assert (row["param"], row["kind"], row["numel"]) == ("act/relu", "histogram", 5000)
    assert row["mean"] == pytest.approx(values.mean(), rel=1e-9)
    assert row["std"] == pytest.approx(values.std(ddof=1), rel=1e-9)
    assert row["zero_frac"] is None
    got = [r["value"] for r in rows(w, Stream.SCALARS)]
    assert got == pytest.approx(expected, rel=1e-12)


def _tensorboard_pixels(img: torch.Tensor, dataformats: str) -> np.ndarray:
    """The HWC pixels TensorBoard itself stores for ``img`` (its PNG, decoded)."""
    from PIL import Image
    from torch.utils.tensorboard.summary import image

    summary = image("t", img, dataformats=dataformats)
    return np.asarray(Image.open(io.BytesIO(summary.value[0].image.encoded_image_string)))


@pytest.mark.parametrize(
    ("img", "dataformats"),
    [
        (torch.rand(3, 5, 7, generator=torch.Generator().manual_seed(2)), "CHW"),
        (torch.rand(6, 4, 3, generator=torch.Generator().manual_seed(3)) * 1.2 - 0.1, "HWC"),
        (torch.randint(0, 256, (3, 4, 4), dtype=torch.uint8), "CHW"),
    ],
)
def test_images_keep_tensorboards_bytes(
    tmp_path: Path, img: torch.Tensor, dataformats: str
) -> None:
    with SummaryWriter(tmp_path / "img") as w:
        w.add_image("inputs/first", img, 5, dataformats=dataformats)
    (row,) = rows(w, Stream.SAMPLES)
    assert (row["module"], row["what"], row["step"], row["dtype"]) == (
        "inputs/first",
        "image",
        5,
        "uint8",
    )
    c, h, wd = row["shape"]
    ours = np.frombuffer(row["data"], dtype=np.uint8).reshape(c, h, wd).transpose(1, 2, 0)
    np.testing.assert_array_equal(ours, _tensorboard_pixels(img, dataformats))
    assert row["lo"] == [0.0] * c and row["hi"] == [1.0] * c


def test_images_batch_and_grayscale(tmp_path: Path) -> None:
    batch = torch.rand(4, 1, 6, 6)
    with SummaryWriter(tmp_path / "imgs") as w:
        w.add_images("batch", batch, 1)
        w.add_image("gray", torch.rand(6, 6), 1, dataformats="HW")
    first, second = rows(w, Stream.SAMPLES)
    assert first["shape"] == [4, 6, 6] and second["shape"] == [1, 6, 6]
    expected = (batch.double() * 255).clamp(0, 255).to(torch.uint8).numpy().tobytes()
    assert first["data"] == expected


def test_figure_is_rendered_like_tensorboard(tmp_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from torch.utils.tensorboard._utils import figure_to_image

    def figure() -> Any:
        fig, ax = plt.subplots(figsize=(2, 1.5), dpi=40)
        ax.plot([0, 1, 2], [2, 0, 1])
        return fig

    with SummaryWriter(tmp_path / "fig") as w:
        w.add_figure("curve", figure(), 3)
    (row,) = rows(w, Stream.SAMPLES)
    expected = figure_to_image(figure())  # CHW uint8, RGB
    assert row["shape"] == list(expected.shape)
    assert row["data"] == expected.tobytes()


def test_graph_hparams_and_text(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 10))
    model.eval()
    with SummaryWriter(tmp_path / "g") as w:
        w.add_graph(model, torch.randn(2, 1, 8, 8))
        w.add_text("notes", "baseline, **bold**", 1)
        w.add_hparams({"lr": 0.1, "opt": "sgd", "layers": [1, 2]}, {"hparam/accuracy": 0.75})
    modules = {r["module"]: r for r in rows(w, Stream.MODULES)}
    assert modules[""]["params"] == sum(p.numel() for p in model.parameters())
    assert json.loads(modules["0"]["output_shape"]) == [2, 4, 6, 6]
    assert json.loads(modules["3"]["input_shape"]) == [2, 144]
    assert not model.training  # the forward ran in the model's own mode
    events = [(r["kind"], json.loads(r["payload"])) for r in rows(w, Stream.EVENTS)]
    assert ("note", {"tag": "notes", "text": "baseline, **bold**"}) in events
    config = [p for k, p in events if k == "config"]
    assert config == [
        {
            "config": {"lr": 0.1, "opt": "sgd", "layers": [1, 2]},
            "metrics": {"hparam/accuracy": 0.75},
        }
    ]
    assert [(r["name"], r["split"], r["value"]) for r in rows(w, Stream.SCALARS)] == [
        ("hparam", "accuracy", 0.75)
    ]


def test_a_run_the_analysis_diagnoses(tmp_path: Path) -> None:
    """Train loss falls while val loss turns up: the store's rules see it, as with Collector."""
    with SummaryWriter(tmp_path / "overfit") as w:
        for step in range(1, 41):
            w.add_scalar("Loss/train", 2.0 / step, step)
            w.add_scalar("Loss/val", 1.0 + abs(step - 10) / 10, step)
    with open_store(tmp_path) as store:
        (run,) = store.sql("SELECT run_id, name, status, steps FROM runs").to_dicts()
        assert (run["name"], run["status"], run["steps"]) == ("overfit", "finished", 40)
        found = {f.rule for f in diagnose(store).findings}
    assert "overfitting" in found


def test_exception_in_the_block_marks_the_run_failed(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), SummaryWriter(tmp_path / "boom") as w:
        w.add_scalar("loss", 1.0, 1)
        raise RuntimeError("diverged")
    kinds = [r["kind"] for r in rows(w, Stream.EVENTS)]
    assert kinds[-1] == "run_failed"


def test_default_log_dir_is_a_run_in_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    w = SummaryWriter(comment="-baseline")
    w.close()
    assert Path(w.get_logdir()).parent == Path("runs")
    assert Path(w.log_dir).name.startswith("baseline-")


@pytest.mark.parametrize("method", sorted(_UNSUPPORTED))
def test_unsupported_methods_name_the_alternative(tmp_path: Path, method: str) -> None:
    with SummaryWriter(tmp_path / "u") as w, pytest.raises(UnsupportedError) as err:
        getattr(w, method)("tag", torch.zeros(1))
    assert method in str(err.value)
    assert _UNSUPPORTED[method] in str(err.value)
    assert isinstance(err.value, NotImplementedError)


def test_purge_step_and_hparams_run_name_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedError, match="resume="):
        SummaryWriter(tmp_path / "p", purge_step=10)
    with SummaryWriter(tmp_path / "q") as w, pytest.raises(UnsupportedError, match="one Summ"):
        w.add_hparams({"lr": 1}, {"acc": 1}, run_name="sweep-1")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda w: w.add_scalar("loss", "0.5", 1), "expected a number"),
        (lambda w: w.add_scalar("loss", torch.ones(3), 1), "one-element tensor"),
        (lambda w: w.add_scalar("", 1.0, 1), "non-empty string"),
        (lambda w: w.add_scalar("loss", 1.0, -1), r"global_step must be an int from 0 to 2\*\*63"),
        (lambda w: w.add_scalar("loss", 1.0, 2**63), r"from 0 to 2\*\*63 - 1"),
        (lambda w: w.add_scalar("loss", 1.0, 1, walltime=1e300), "walltime must be seconds"),
        (lambda w: w.add_scalar("loss", 1.0, 1.5), "global_step must be an int"),
        (lambda w: w.add_scalars("loss", {}, 1), "non-empty mapping"),
        (lambda w: w.add_histogram("h", torch.zeros(0), 1), "empty"),
        (lambda w: w.add_image("i", torch.rand(3, 4, 4), 1, dataformats="NCHW"), "dataformats"),
        (lambda w: w.add_image("i", torch.rand(4, 4), 1), "2-d tensor"),
        (lambda w: w.add_histogram_raw("h", 0, 1, 2, 1, 1, [1.0], [1, 1]), "same length"),
        (lambda w: w.add_graph(nn.Linear(2, 2), torch.randn(3, 5)), "forward on input_to_model"),
    ],
)
def test_bad_input_is_a_clear_error(tmp_path: Path, call: Any, message: str) -> None:
    with SummaryWriter(tmp_path / "bad") as w, pytest.raises(ConfigError, match=message):
        call(w)


def test_accuracy_logged_as_tensorboard_users_tag_it_gets_the_accuracy_rules(
    tmp_path: Path,
) -> None:
    """``Accuracy/val`` is the rules' ``acc/val``: a plateau in it is diagnosed."""
    with SummaryWriter(tmp_path / "plateau") as w:
        for tag, value, step in accuracy_plateau():
            w.add_scalar(tag, value, step)
    with open_store(tmp_path) as store:
        findings = diagnose(store).findings
    (plateau,) = [f for f in findings if f.rule == "accuracy_plateau"]
    assert plateau.subject == "acc/val"
