"""Byzantine model-poisoning attacks: pure, batched functions ``honest (n_h, d) -> Byzantine rows (f, d)``.

``honest`` holds the reference updates (the round's honest updates for an omniscient attacker, or
the attackers' own honestly computed updates), ``f >= 1`` is the number of rows to return; colluding
attackers usually send ``f`` identical rows. Each function's docstring gives its formula and paper.

- :mod:`~fedbench.attack.simple`: ``sign_flip``, ``gaussian``, ``large``, ``nonfinite``;
- :mod:`~fedbench.attack.statistical`: ``alie`` (with ``alie_z``), ``ipm``, ``mimic``;
- :mod:`~fedbench.attack.optimized`: ``minmax``, ``minsum`` (with ``minmax_gamma``, ``minsum_gamma``);
- :mod:`~fedbench.attack.poison`: data poisoning, ``flip_labels`` (``attack=label_flip``) and
  ``add_trigger`` (``attack=backdoor``), which change what Byzantine clients train on rather than
  returning rows;
- :mod:`~fedbench.attack.adaptive`: ``alie_adaptive``, ``ipm_adaptive`` (with ``*_scale``), tuned
  against the deployed aggregator.
"""

from fedbench.attack.adaptive import alie_adaptive, alie_adaptive_scale, ipm_adaptive, ipm_adaptive_scale
from fedbench.attack.optimized import minmax, minmax_gamma, minsum, minsum_gamma
from fedbench.attack.poison import add_trigger, flip_labels
from fedbench.attack.simple import gaussian, large, nonfinite, sign_flip
from fedbench.attack.statistical import alie, alie_z, ipm, mimic

__all__ = [
    "add_trigger",
    "flip_labels",
    "alie",
    "alie_adaptive",
    "alie_adaptive_scale",
    "alie_z",
    "gaussian",
    "ipm",
    "ipm_adaptive",
    "ipm_adaptive_scale",
    "large",
    "mimic",
    "minmax",
    "minmax_gamma",
    "minsum",
    "minsum_gamma",
    "nonfinite",
    "sign_flip",
]
