"""Dataset registry: every dataset is a set of in-memory tensors on the run's device.

Clients never hold copies of the data; they are index sets into ``Dataset.x_train``.
Register a new dataset with :func:`register_dataset`; its loader receives the dataset config
(a dict of the options in ``conf/dataset/<name>.yaml``) and the run seed.
"""

from fedbench.data.registry import DATASETS, Dataset, load_dataset, register_dataset

# Import for registration side effects.
from fedbench.data import digits as _digits  # noqa: E402,F401  isort: skip
from fedbench.data import images as _images  # noqa: E402,F401  isort: skip
from fedbench.data import natural as _natural  # noqa: E402,F401  isort: skip
from fedbench.data import synthetic as _synthetic  # noqa: E402,F401  isort: skip

__all__ = ["DATASETS", "Dataset", "load_dataset", "register_dataset"]
