"""AFMs (and FMs) trained with other libraries, turned into checkpoints of this project.

Each importer maps the library's parameters exactly onto ours (`afm.models`), so the imported
model reproduces the source model's outputs on the same rows; it can then be inspected, scored
and explained like one trained here. Weights are read as plain data only (`weights`).
"""

from afm.importers.deepctr import import_deepctr
from afm.importers.torchfm import import_torchfm

__all__ = ["import_deepctr", "import_torchfm"]
