"""bnexp: published claims about Batch Normalization put to the test with real training runs.

The folders follow the data: configs -> `run/` (one run's lifecycle around the training loop)
-> `records` (the run record on disk) -> `endpoints` (the committed table) -> `claims/` (one
module per claim, the ledger) -> `report`. Importing the package registers what composing its
configs needs: the OmegaConf resolvers (bnexp/resolvers.py) and the typed schema in Hydra's
ConfigStore (bnexp/config.py), so no script or test has to import a module for its side effect.
"""

from bnexp import resolvers as _resolvers  # noqa: F401  (registration is the import's effect)
from bnexp.config import register as _register

_register()
