"""Update codecs with exact wire formats (groundwork of the compression axis, issue 8).

Every codec has two paths that must agree:

- the **fast path** ``roundtrip(x) -> (x_hat, nbytes)`` over a stacked batch ``x`` ``(n, d)``:
  what the server would decode from each row, and the exact length in bytes of each row's
  message (``(n,)`` int64), computed without building the bytes;
- the **wire path** ``encode(row) -> bytes`` and ``decode(data, d) -> row``, byte for byte the
  message of the docstring's format.

``tests/test_compress.py`` and ``tests/test_codecs.py`` check, for every codec, that
``decode(encode(row))`` equals the fast path's row and that ``len(encode(row))`` equals its byte
count. The simulation uses the fast path and counts its bytes (config groups ``uplink`` and
``downlink``, :mod:`fedbench.compress.options`); the wire path is the specification it is held to.
Error feedback wraps any lossy codec (:mod:`fedbench.compress.feedback`).
"""

from fedbench.compress.cast import BF16, FP16
from fedbench.compress.powersgd import PowerSGD
from fedbench.compress.quantize import QSGD, TernGrad, Uniform
from fedbench.compress.randk import RandK
from fedbench.compress.sign import ScaledSign
from fedbench.compress.stc import STC
from fedbench.compress.threshold import Threshold
from fedbench.compress.topk import TopK

__all__ = ["BF16", "FP16", "PowerSGD", "QSGD", "RandK", "STC", "ScaledSign", "TernGrad", "Threshold", "TopK", "Uniform"]
