"""TensorBoard tags -> this store's names: ``(name, split)`` for scalars, ``(param, kind)``
for histograms.

TensorBoard has one namespace, the tag; the store separates what was measured from
where (``scalars.name`` and ``scalars.split``), and which tensor from what of it
(``tensors.param`` and ``tensors.kind``), because the diagnostic rules ask for "the
train loss" or "every gradient". The mapping, shared by ``integrations.tensorboard`` and
``telemetry import tensorboard``:

Scalars (``metric_key``):
    * a split word (case-insensitive) as the first or last ``/`` component is the
      split, the rest is the name: ``Loss/train``, ``train/loss`` -> (loss, train);
      ``Accuracy/val``, ``eval/accuracy`` -> (acc, val). Split words:
      train, training -> train; val, valid, validation, eval, evaluation, dev -> val;
      test, testing -> test.
    * a one-component tag may carry it with ``_``: ``train_loss``, ``loss_val``,
      ``val_accuracy`` (Keras' names);
    * otherwise, like ``Collector.log``, the last ``/`` separates name and split
      (``charts/fps`` -> (charts, fps)), and a tag without ``/`` has no split;
    * names are lower-cased (``Loss`` and ``loss`` are one metric) and a name that is a
      synonym of one the rules read becomes that name (``NAME_SYNONYMS``: ``accuracy``,
      ``top1_acc``... -> ``acc``; ``learning_rate`` -> ``lr``), so the rules' defaults
      (``loss``, ``acc``) find them; splits other than the split words keep their case;
    * ``lr`` or ``learning_rate`` without a split is the learning rate as the
      collector records it: (lr, train).

``add_scalars(main_tag, {key: value})`` (``scalars_key``) is the tag ``main_tag/key``:
``add_scalars("Loss", {"train": a, "val": b})`` -> (loss, train) and (loss, val).

Histograms (``histogram_key``):
    * ``grad`` / ``grads`` / ``gradient(s)`` as the first or last ``/`` component, or
      a ``.grad`` / ``_grad`` suffix, is a gradient: ``fc1.weight.grad``,
      ``grad/fc1.weight`` -> (fc1.weight, grad);
    * ``weight(s)`` / ``param(s)`` / ``parameters`` as first or last component, a last
      dotted component ``weight`` or ``bias`` (PyTorch's parameter names), or a value
      that is an ``nn.Parameter`` is a weight: ``fc1.bias`` -> (fc1.bias, weight);
    * anything else (activations, embeddings) has kind ``histogram``, the tag as param:
      the rules on gradients and weights leave it alone.
"""

from __future__ import annotations

SPLIT_WORDS = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "eval": "val",
    "evaluation": "val",
    "test": "test",
    "testing": "test",
    "dev": "val",
}

NAME_SYNONYMS = {
    "accuracy": "acc",
    "top1": "acc",
    "top1_acc": "acc",
    "top1_accuracy": "acc",
    "acc1": "acc",
    "acc@1": "acc",
    "learning_rate": "lr",
}
"""Metric names (lower-cased) stored under the name the rules read by default."""

HISTOGRAM_KIND = "histogram"
"""``tensors.kind`` of a histogram that is neither a gradient nor a weight (TensorBoard only)."""

_GRAD_WORDS = frozenset({"grad", "grads", "gradient", "gradients"})
_WEIGHT_WORDS = frozenset({"weight", "weights", "param", "params", "parameters"})


def metric_key(tag: str) -> tuple[str, str | None]:
    """``(name, split)`` of a scalar tag (see the module docstring)."""
    name, split = _metric_key(tag)
    name = NAME_SYNONYMS.get(name, name)
    if split is None and name == "lr":
        return "lr", "train"
    return name, split


def scalars_key(main_tag: str, key: str) -> tuple[str, str | None]:
    """``(name, split)`` of ``add_scalars(main_tag, {key: value})``: the tag ``main_tag/key``."""
    for what, value in (("main_tag", main_tag), ("key", key)):
        if not isinstance(value, str) or not value.strip("/"):
            raise ValueError(f"add_scalars: {what} must be a non-empty string, got {value!r}")
    return metric_key(f"{main_tag.strip('/')}/{key.strip('/')}")


def _metric_key(tag: str) -> tuple[str, str | None]:
    if not isinstance(tag, str) or not tag.strip("/"):
        raise ValueError(f"a scalar tag must be a non-empty string, got {tag!r}")
    parts = [p for p in tag.split("/") if p]
    if len(parts) == 1:
        head, sep, tail = parts[0].partition("_")
        last_head, _, last_tail = parts[0].rpartition("_")
        if sep and head.lower() in SPLIT_WORDS and tail:
            return tail.lower(), SPLIT_WORDS[head.lower()]
        if last_head and last_tail.lower() in SPLIT_WORDS:
            return last_head.lower(), SPLIT_WORDS[last_tail.lower()]
        return parts[0].lower(), None
    if parts[-1].lower() in SPLIT_WORDS:
        return "/".join(parts[:-1]).lower(), SPLIT_WORDS[parts[-1].lower()]
    if parts[0].lower() in SPLIT_WORDS:
        return "/".join(parts[1:]).lower(), SPLIT_WORDS[parts[0].lower()]
    return "/".join(parts[:-1]).lower(), parts[-1]


def histogram_key(tag: str, *, parameter: bool = False) -> tuple[str, str]:
    """``(param, kind)`` of a histogram tag; ``parameter``: the value is an ``nn.Parameter``."""
    if not isinstance(tag, str) or not tag.strip("/"):
        raise ValueError(f"a histogram tag must be a non-empty string, got {tag!r}")
    parts = [p for p in tag.split("/") if p]
    for words, kind in ((_GRAD_WORDS, "grad"), (_WEIGHT_WORDS, "weight")):
        if len(parts) > 1 and parts[-1].lower() in words:
            return "/".join(parts[:-1]), kind
        if len(parts) > 1 and parts[0].lower() in words:
            return "/".join(parts[1:]), kind
    name = "/".join(parts)
    for suffix in (".grad", "_grad"):
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)], "grad"
    if parameter or name.rpartition(".")[2].lower() in ("weight", "bias"):
        return name, "weight"
    return name, HISTOGRAM_KIND
