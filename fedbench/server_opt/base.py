"""Server optimizers as optax-style ``init``/``update`` pairs over flat vectors.

The server treats the aggregated client update ``Delta`` (mean of ``w_k - w``) as a negative
pseudo-gradient (Reddi et al. 2021, "Adaptive Federated Optimization"); ``update(Delta, state)``
returns the step to add to the global model, the new state and metrics. State is explicit (a
dict of tensors, or None), so a checkpoint is just that state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch


class ServerOpt(NamedTuple):
    init: Callable[[torch.Tensor], Any]
    update: Callable[[torch.Tensor, Any], tuple[torch.Tensor, Any, dict[str, float]]]
