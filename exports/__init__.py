"""exports: benchmark a trained model's export formats into the same store.

``exports.benchmark.benchmark`` (what ``telemetry export-bench`` runs) saves the
model in each format (``exports.formats``: eager, TorchScript, ONNX Runtime, dynamic
int8, pruned...), measures latency, throughput, size, load time and parity against
eager (``exports.measure``), and records one ``exports`` row per format and batch size
through ``collector.Collector.record``. The ``export_parity`` and ``export_summary``
rules and the report's export section read those rows.
"""
