"""Chart functions: keyword-only ``DataFrame -> alt.Chart``, no I/O and no SQL.

One module per topic, named like the rule family it illustrates (``gradients``).
The frames come from ``reports.data``, already decimated, with the values that
cannot be drawn cut out into marker frames.
"""
