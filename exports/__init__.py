"""exports: benchmark a trained model's export formats into the same store.

``exports.benchmark.benchmark`` (what ``telemetry export-bench`` runs) saves the
model in each format (``exports.formats``: eager, TorchScript, ONNX Runtime, dynamic
int8, pruned...), measures size, load time and parity against eager
(``exports.measure``), times every format together in interleaved rounds with pinned
threads (``exports.timing``: p50 with its 95 % interval, p90, throughput), and
records one ``exports`` row per format and batch size through
``collector.Collector.record``. The ``export_parity`` and ``export_summary``
rules and the report's export section read those rows; the parity verdict and which
format is faster are decided there, once (``analysis/macros/exports.sql``).
"""
