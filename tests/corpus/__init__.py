"""The labelled corpus: healthy and pathological trainings to calibrate the rules on.

``registry`` (what a run is), ``healthy`` and ``pathological`` (the runs), ``loop`` (the
training loop), ``data`` and ``models`` (what they train), ``session`` (the corpus
trained into one store and diagnosed once), ``split`` (the tuning and held-out halves).
"""
