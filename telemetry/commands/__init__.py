"""The verbs of the ``telemetry`` command line, one module each; ``telemetry.cli`` registers them.

A verb's module holds its click command and what only it needs; what several verbs
share is in ``telemetry.common``, ``telemetry.output`` and ``telemetry.diagnosis``.
No verb imports another verb. ``telemetry import tensorboard`` converts with
``integrations.tensorboard.importer``, beside the ``SummaryWriter`` drop-in.
"""
