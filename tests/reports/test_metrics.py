"""Which metrics get curves when a run logged more than a page draws, and the sentence."""

from __future__ import annotations

from reports import metrics


def test_findings_then_usual_then_loss_like_then_several_splits_then_by_name() -> None:
    splits = {"zeta": 1, "b.both": 2, "val_error": 1, "acc": 1, "loss": 2, "a.one": 1}
    choice = metrics.choose(splits, limit=5, named={"zeta"})
    assert set(choice.drawn) == {"zeta", "loss", "acc", "val_error", "b.both"}
    assert choice.drawn == ["loss", "acc", "b.both", "val_error", "zeta"], "the page's order"
    assert choice.left_out == ["a.one"]


def test_nothing_left_out_means_no_sentence() -> None:
    choice = metrics.choose({"loss": 1}, limit=40)
    assert choice.drawn == ["loss"] and choice.note("r") is None


def test_the_sentence_counts_names_some_and_quotes_the_query() -> None:
    splits = {f"m{i:03d}": 1 for i in range(100)}
    note = metrics.choose(splits, limit=10).note("it's")
    assert note is not None
    assert note.startswith("Curves for 10 of 100 metrics")
    assert "left out: m010, m011," in note and "m029, … and 70 more." in note
    assert "run_id = 'it''s' AND name = 'm010'" in note


def test_a_subject_names_a_metric_whose_own_name_has_a_slash() -> None:
    names = ["train/loss", "loss", "acc"]
    subjects = ["train/loss/val", "loss", None, "grad of fc.weight"]
    assert metrics.named_by(subjects, names) == {"train/loss", "loss"}
