"""store: the on-disk format of a telemetry store and its I/O, without torch.

One job: what a store is on disk and how rows get there and back. The stream schemas
and the schema version (``store.schema``), the directory layout and segment names
(``store.layout``), claiming run directories and attempts (``store.claims``), turning
rows into Arrow tables (``store.records``) and publishing them as immutable Parquet
segments (``store.segments``, ``store.writer``), merging a closed writer's segments
(``store.compaction``) and summarising them for listing (``store.digest``), finding
and checking what a store holds (``store.scan``, ``store.checks``), and the project's
one error tree (``store.errors``).

Everything above it depends on it and nothing here imports them: ``collector`` (which
observes a training loop and writes through ``store.writer``), ``analysis`` (which reads
through ``store.scan``), and through them ``reports`` and the ``telemetry`` CLI. pyarrow
is its only heavy dependency.
"""
