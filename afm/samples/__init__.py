"""The bundled samples, all in one place: the data the project generates itself (never derived
from a licensed dataset), so the app is useful offline the moment it opens.

- `planted`: the two synthetic samples with planted pair interactions of known strength
  (`sample`: one pair gated by a third field; `sample-fixed`: pairs that matter in every row).
- `mltag_shape`: synthetic data of the paper's MovieLens-tag shape, for scale tests.
- `checkpoints`: the small FM, FwFM and AFM trained on each sample and shipped beside it.
- `random_planted`: planted data of random structure (fields, cardinalities, pairs, a gate) for
  tests and `bench/pair_recovery.py`: ground truth the project did not hand-pick. Not shipped.

`python -m afm sample [--checkpoints]` remakes them (seeded: same bytes, same weights).
"""
