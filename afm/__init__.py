"""AFM Inspector: train, load and look inside Attentional Factorization Machines (Xiao et al.,
IJCAI 2017) and their FM and FwFM baselines.

The front door (afm.api): `afm.fit(frame_or_path, label=..., model=..., preset=...)` trains and
returns a `TrainedModel` (`predict`, `explain`, `evaluate`, `save`); `afm.load(path)` reads one back;
`afm.Recipe` is every setting of a training, `afm.presets` the named ones; `afm.AFMError` is
every mistake a user can make, in one line. scikit-learn estimators: `afm.sklearn`.
"""

from afm.cores import set_openmp_defaults

set_openmp_defaults()  # before torch loads OpenMP: idle workers spin 3,000 times, then sleep (afm.cores)

from afm.api import Explanation, TrainedModel, fit, load  # noqa: E402
from afm.errors import AFMError  # noqa: E402
from afm.recipe import PRESETS as presets  # noqa: E402
from afm.recipe import Recipe  # noqa: E402

__all__ = ["AFMError", "Explanation", "Recipe", "TrainedModel", "fit", "load", "presets"]
