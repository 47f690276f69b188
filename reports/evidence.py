"""Which chart shows the evidence of a finding: rule and subject -> a chart of the same run.

Every chart block carries a ``topic`` (``metric:loss``, ``grad_norms``,
``update_ratio``, ``system``...). A finding links to the first chart of its run
whose topic matches, tried in this order: the metric its subject names
(``loss/val`` -> ``metric:loss``), the kind of tensor it names (``grad of fc.weight``),
then the rule's own list below; a rule about a split (``SPLIT_RULES``) tries that
split's chart first. A finding whose evidence the page does not draw
gets no link rather than a wrong one. A few rules have a second piece of evidence
(``ALSO_TOPICS``): a further link to that chart when it is drawn and not the first.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from reports.blocks import Chart

LOSS = ("metric:loss",)

RULE_TOPICS: dict[str, tuple[str, ...]] = {
    "overfitting": LOSS,
    "underfitting": LOSS,
    "early_stopping": LOSS,
    "loss_spike": LOSS,
    "loss_oscillation": LOSS,
    "loss_not_decreasing": LOSS,
    "divergence": LOSS,
    "accuracy_plateau": ("metric:acc", "metric:accuracy"),
    "nonfinite": ("grad_norms", "grad_global", "activations"),
    "exploding_gradients": ("grad_norms", "grad_global", "grad_step"),
    "missing_zero_grad": ("grad_step",),
    "lr_too_high": LOSS + ("grad_step",),
    "vanishing_gradients": ("grad_heatmap", "grad_norms"),
    "poor_initialization": ("grad_norms", "activation_std"),
    "unused_parameters": ("grad_heatmap", "grad_norms"),
    "update_ratio": ("update_ratio",),
    "stalled_parameters": ("update_ratio", "weights"),
    "dead_relu": ("dead_frac", "activations"),
    "saturated_activations": ("saturated_frac", "activations"),
    "data_bottleneck": ("system",),
    "rank_imbalance": ("system",),
    "export_parity": ("exports",),
    "export_summary": ("exports",),
    "unnormalized_inputs": ("inputs",),
    "memory_pressure": ("memory",),
    "class_imbalance": ("confusion", "class_recall"),
    "prediction_collapse": ("confusion", "class_recall", "residuals"),
}
"""Rule id -> topics of the charts that show its evidence, best first."""

SPLIT_RULES = frozenset({"class_imbalance", "prediction_collapse"})
"""Rules whose subject is a split (``val``): their split's own chart comes first
(``confusion:val``), then any chart of the topic (``confusion``: the first split drawn)."""

ALSO_TOPICS: dict[str, tuple[str, ...]] = {
    # The loss rose (the first link); the gradient norm before clipping shows how large
    # the gradients were while clip_grad_norm_ held the optimizer's norm flat.
    "lr_too_high": ("grad_step",),
    # A jump of the sampled global norm (the first link); every step's norm shows its
    # course between the samples, and whether clipping caught it.
    "exploding_gradients": ("grad_step",),
    # The matrix at the latest step (the first link); the recall lines show since when.
    "class_imbalance": ("class_recall",),
    "prediction_collapse": ("class_recall",),
}
"""Rule id -> topics of further evidence, linked besides the first chart when drawn."""

_TENSOR_TOPICS = {"grad": "grad_norms", "weight": "weights", "update": "update_ratio"}

_SPLIT_TOPICS = frozenset({"confusion", "class_recall"})
"""Chart topics drawn once per split (``reports.model_io``): ``confusion:<split>``."""


@dataclass(frozen=True)
class Link:
    chart_id: str
    label: str


def topics(rule: str, subject: str | None) -> list[str]:
    """The chart topics that could show a finding's evidence, best first."""
    out = []
    own = RULE_TOPICS.get(rule, ())
    if subject and rule in SPLIT_RULES:
        out += [f"{topic}:{subject}" for topic in own]
    elif subject:
        out.append("metric:" + subject.split("/", 1)[0])
        kind, sep, _ = subject.partition(" of ")
        if sep and kind in _TENSOR_TOPICS:
            out.append(_TENSOR_TOPICS[kind])
    return out + list(own)


def index(charts: Iterable[Chart]) -> dict[str, Chart]:
    """Topic -> the first chart with that topic (charts in page order). A topic of one
    split (``confusion:val``) also answers for its family (``confusion``)."""
    found: dict[str, Chart] = {}
    for chart in charts:
        if chart.topic:
            found.setdefault(chart.topic, chart)
            family, sep, _ = chart.topic.partition(":")
            if sep and family in _SPLIT_TOPICS:
                found.setdefault(family, chart)
    return found


def link(charts: dict[str, Chart], rule: str, subject: str | None) -> Link | None:
    """The link from a finding to its evidence chart in ``charts`` (see ``index``), if drawn."""
    for topic in topics(rule, subject):
        chart = charts.get(topic)
        if chart is not None:
            return Link(chart.id, title(chart))
    return None


def links(charts: dict[str, Chart], rule: str, subject: str | None) -> list[Link]:
    """``link`` first, then the charts of the rule's ``ALSO_TOPICS`` not linked yet."""
    first = link(charts, rule, subject)
    out = [first] if first is not None else []
    for topic in ALSO_TOPICS.get(rule, ()):
        chart = charts.get(topic)
        if chart is not None and all(chart.id != x.chart_id for x in out):
            out.append(Link(chart.id, title(chart)))
    return out


def title(chart: Chart) -> str:
    """The chart's title as plain text (Vega-Lite allows a string, a list or a title object)."""
    t = chart.spec.get("title")
    if isinstance(t, dict):
        t = t.get("text")
    if isinstance(t, list):
        t = " ".join(str(x) for x in t)
    return str(t) if t else "chart"
