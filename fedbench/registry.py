"""Config options declared next to their code.

Every option of a config group is a dataclass registered with :func:`register` in the module that
implements it; its range checks sit on its fields (:func:`option`). ``fedbench.config`` knows the
groups and which package fills each, never the options: adding an algorithm is its module (with
its dataclass) plus its ``conf/<group>/<name>.yaml``.

    @register("algorithm", "fedprox", impl=FedProx)
    @dataclass
    class FedProxConfig(LocalConfig):
        name: str = "fedprox"
        mu: float = option(0.01, number(min=0))
"""

from __future__ import annotations

import importlib
import math
import pkgutil
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from typing import Any

# config group -> the package whose import registers its options
GROUPS: dict[str, str] = {
    "dataset": "fedbench.data",
    "partition": "fedbench.partition",
    "model": "fedbench.models",
    "algorithm": "fedbench.algorithm",
    "server_opt": "fedbench.server_opt",
    "engine": "fedbench.engine",
    "logger": "fedbench.logger",
    "uplink": "fedbench.compress",
    "downlink": "fedbench.compress",
    "attack": "fedbench.attack",
    "aggregator": "fedbench.aggregator",
}


@dataclass(frozen=True)
class Entry:
    schema: type  # the option's config dataclass
    impl: Any = None  # what builds or runs it (a class or function), where the group has one


_OPTIONS: dict[str, dict[str, Entry]] = {g: {} for g in GROUPS}
_IMPORTED: set[str] = set()


def register(group: str, name: str, impl: Any = None) -> Callable[[type], type]:
    """Class decorator: ``schema`` is option ``name`` of config group ``group``."""
    if group not in GROUPS:
        raise ValueError(f"unknown config group {group!r}; known: {', '.join(GROUPS)}")

    def wrap(schema: type) -> type:
        if not is_dataclass(schema):
            raise TypeError(f"{group}={name}: the registered schema must be a dataclass")
        _OPTIONS[group][name] = Entry(schema, impl)
        return schema

    return wrap


def options(group: str) -> dict[str, Entry]:
    """The registered options of ``group``, after importing every module of the group's package
    (so a new option is found by its module alone, without an import to add anywhere)."""
    package = importlib.import_module(GROUPS[group])
    if group not in _IMPORTED:
        for info in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{package.__name__}.{info.name}")
        _IMPORTED.add(group)
    return _OPTIONS[group]


def moved_key(key: str) -> str | None:
    """Where a dotted key that an option declares as moved (its ``moved`` class attribute, e.g.
    ``algorithm.server_lr`` -> ``server_opt.lr``) went, or None."""
    group, _, name = key.partition(".")
    if group not in GROUPS:
        return None
    for e in options(group).values():
        new = getattr(e.schema, "moved", {}).get(name)
        if new:
            return new
    return None


def entry(group: str, name: str) -> Entry:
    return options(group)[name]


Check = tuple[Callable[[Any], bool], str]  # (test, what is allowed)


def option(default: Any, check: Check | None = None) -> Any:
    """A dataclass field with a default and a range check (see :func:`integer`, :func:`number`,
    :func:`one_of`). Mutable defaults (lists) are copied per instance."""
    meta = {"ok": check[0], "allowed": check[1]} if check is not None else {}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


def integer(min: int = 0, nullable: bool = False, note: str = "") -> Check:
    allowed = f"{'null or ' if nullable else ''}an integer >= {min}{note}"
    return (lambda v: (nullable and v is None) or (v is not None and v >= min)), allowed


def number(min: float | None = None, max: float | None = None, min_open: bool = False, max_open: bool = False) -> Check:
    """A finite float in the given (closed unless ``*_open``) bounds."""

    def ok(v: float) -> bool:
        if v is None or not math.isfinite(v):
            return False
        if min is not None and (v < min or (min_open and v == min)):
            return False
        return not (max is not None and (v > max or (max_open and v == max)))

    if min is not None and max is not None:
        allowed = f"a number in {'(' if min_open else '['}{min:g}, {max:g}{')' if max_open else ']'}"
    elif min is not None:
        allowed = f"a finite number {'>' if min_open else '>='} {min:g}"
    else:
        allowed = "a finite number"
    return ok, allowed


def one_of(*values: Any) -> Check:
    return (lambda v: v in values), ", ".join("null" if v is None else str(v) for v in values)


def range_errors(obj: Any, prefix: str = "") -> list[str]:
    """One ``key=value: out of range; allowed: ...`` line per field of ``obj`` that fails its check."""
    errors = []
    for f in fields(obj):
        ok = f.metadata.get("ok")
        if ok is None:
            continue
        value = getattr(obj, f.name)
        try:
            good = bool(ok(value))
        except (TypeError, ValueError):
            good = False
        if not good:
            errors.append(f"{prefix}{f.name}={value!r}: out of range; allowed: {f.metadata['allowed']}")
    return errors


def defaults(schema: type) -> dict[str, Any]:
    """The default value of every field of ``schema`` (for comparing with its yaml)."""
    out = {}
    for f in fields(schema):
        if f.default is not MISSING:
            out[f.name] = f.default
        elif f.default_factory is not MISSING:
            out[f.name] = f.default_factory()
    return out
