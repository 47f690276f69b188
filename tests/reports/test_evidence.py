"""Findings link to the chart of their run that shows the evidence, or to nothing."""

from __future__ import annotations

from reports import evidence
from reports.blocks import Chart


def _charts(*topics: str) -> dict[str, Chart]:
    charts = [Chart(f"chart-{i}", {"title": t}, topic=t) for i, t in enumerate(topics, 1)]
    return evidence.index(charts)


def test_a_metric_subject_links_to_that_metric_chart() -> None:
    charts = _charts("metric:loss", "metric:acc", "grad_norms")
    link = evidence.link(charts, "accuracy_plateau", "acc/val")
    assert link == evidence.Link("chart-2", "metric:acc")


def test_a_rule_falls_back_to_its_own_topics_in_order() -> None:
    charts = _charts("grad_norms", "grad_heatmap", "update_ratio", "system")
    assert evidence.link(charts, "vanishing_gradients", "fc.weight") == evidence.Link(
        "chart-2", "grad_heatmap"
    )
    system = evidence.link(charts, "data_bottleneck", "data_time_s")
    ratio = evidence.link(charts, "nonfinite", "update of fc.bias")
    assert system is not None and system.chart_id == "chart-4"
    assert ratio is not None and ratio.chart_id == "chart-3"


def test_no_chart_no_link_and_unknown_rules_get_none() -> None:
    assert evidence.link(_charts("metric:acc"), "overfitting", "loss/val") is None
    assert evidence.link(_charts("metric:loss"), "some_new_rule", None) is None


def test_the_first_chart_of_a_topic_wins_and_titles_read_as_text() -> None:
    charts = [
        Chart("a", {"title": {"text": "loss", "subtitle": "x"}}, topic="metric:loss"),
        Chart("b", {"title": "loss again"}, topic="metric:loss"),
    ]
    link = evidence.link(evidence.index(charts), "overfitting", None)
    assert link == evidence.Link("a", "loss")


def test_a_rule_about_a_split_links_to_that_splits_chart_first() -> None:
    charts = _charts("confusion:train", "confusion:val", "class_recall:train", "residuals")
    assert evidence.link(charts, "class_imbalance", "val") == evidence.Link(
        "chart-2", "confusion:val"
    )
    # A split without a matrix of its own: the first matrix drawn, then its recall lines.
    assert evidence.links(charts, "class_imbalance", "test") == [
        evidence.Link("chart-1", "confusion:train"),
        evidence.Link("chart-3", "class_recall:train"),
    ]
    regression = _charts("metric:loss", "residuals")
    assert evidence.link(regression, "prediction_collapse", "val") == evidence.Link(
        "chart-2", "residuals"
    )


def test_inputs_and_memory_rules_link_to_their_charts() -> None:
    charts = _charts("inputs", "memory")
    assert evidence.link(charts, "unnormalized_inputs", "input") == evidence.Link(
        "chart-1", "inputs"
    )
    assert evidence.link(charts, "memory_pressure", "cuda memory") == evidence.Link(
        "chart-2", "memory"
    )
