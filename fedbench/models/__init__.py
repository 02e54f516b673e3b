"""Model registry.

Every model is a plain ``nn.Module`` without BatchNorm or other buffers that change during
training, so that the vmap engine can train many copies at once with ``torch.func``. Where a
normalisation layer is wanted, the CNNs offer GroupNorm (``norm: group``), which has no running
statistics. Register a new model with :func:`register_model` (and import its module here).
"""

from fedbench.models.registry import MODELS, build_model, count_params, register_model

from fedbench.models import zoo as _zoo  # noqa: E402,F401  isort: skip
from fedbench.models import cnn as _cnn  # noqa: E402,F401  isort: skip
from fedbench.models import lstm as _lstm  # noqa: E402,F401  isort: skip
from fedbench.models import resnet as _resnet  # noqa: E402,F401  isort: skip

__all__ = ["MODELS", "build_model", "count_params", "register_model"]
