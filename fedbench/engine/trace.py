"""Traced execution of the vmap engine's step: ``make_fx`` graphs and two rewrites of them."""

from __future__ import annotations

import torch
from torch import fx
from torch.utils._pytree import tree_flatten

aten = torch.ops.aten
# Ops whose output is a view of their (first) input: a gradient may pass through them.
_VIEWS = {aten.view.default, aten._unsafe_view.default, aten.transpose.int, aten.t.default, aten.permute.default}


class TracedStep:
    """``fn`` run as graphs of aten ops traced by ``make_fx``, one per input signature.

    A signature is the shape, dtype and device of every tensor argument and the positions of
    ``None`` arguments: a step for 7 clients and one for 10 are different graphs. Python numbers
    seen while tracing (learning rate, momentum) are baked into the graph. Tracing a small model
    costs as much as a few hundred untraced steps, so a signature runs untraced for its first
    ``after`` calls and is traced only once it has recurred that often: the rare group sizes of
    ragged rounds are never traced. Each graph then goes through :func:`fuse_bmm_updates` and
    :func:`drop_identity_views`.
    """

    def __init__(self, fn, after: int = 64):
        self.fn, self.after = fn, after
        self.graphs: dict[tuple, fx.GraphModule] = {}
        self.calls: dict[tuple, int] = {}
        self._restored: dict[str, int] = {}  # call counts from a checkpoint, by signature text

    def __call__(self, *args):
        leaves, spec = tree_flatten(args)
        key = (str(spec), *((t.shape, t.dtype, t.device) if isinstance(t, torch.Tensor) else t for t in leaves))
        graph = self.graphs.get(key)
        if graph is None:
            calls = self.calls.get(key)
            if calls is None:  # first call of this signature here: a checkpoint may have counted it
                calls = self._restored.pop(str(key), 0)
            self.calls[key] = calls = min(calls + 1, self.after + 1)  # a restored count may be past it
            if calls <= self.after:
                return self.fn(*args)
            from torch.fx.experimental.proxy_tensor import make_fx

            graph = make_fx(self.fn, tracing_mode="fake")(*args)
            fuse_bmm_updates(graph)
            drop_identity_views(graph)
            self.graphs[key] = graph
        return graph(*args)

    def state_dict(self) -> dict[str, int]:
        """How often each signature has run (by its text), so a resumed run traces a step at the
        same call as an uninterrupted one: traced and untraced steps differ by float rounding."""
        return {**self._restored, **{str(k): n for k, n in self.calls.items()}}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.graphs, self.calls, self._restored = {}, {}, {k: int(v) for k, v in state.items()}


def _bmm_source(node: fx.Node) -> fx.Node | None:
    """The ``bmm`` whose output ``node`` is, element for element, or None.

    ``node`` must be reached from the bmm through view ops only, each used once (so nothing else
    reads the gradient), and both ends must be contiguous with the same shape: views of a
    contiguous tensor that end contiguous in the same shape are that tensor, element for element.
    """
    end = node
    while node.op == "call_function" and node.target in _VIEWS and len(node.users) == 1:
        node = node.args[0]
    if not (isinstance(node, fx.Node) and node.target == aten.bmm.default and len(node.users) == 1):
        return None
    a, b = node.meta.get("val"), end.meta.get("val")
    if a is None or b is None or a.shape != b.shape or not (a.is_contiguous() and b.is_contiguous()):
        return None
    return node


def _per_batch_scale(node: fx.Node, batch: int) -> bool:
    val = node.meta.get("val")
    return val is not None and val.dim() == 3 and val.shape[0] == batch and val.shape[1:] == (1, 1)


def drop_identity_views(gm: fx.GraphModule) -> int:
    """Remove ``view``/``expand``/``_unsafe_view`` nodes whose output has the input's shape and
    strides, and ``transpose`` pairs that undo each other; returns how many nodes went.

    vmap's batching rules emit many of these; each costs a Python-level op call per step. Both
    ends alias the same storage with the same layout, so readers see the same elements.
    """
    same = (aten.view.default, aten._unsafe_view.default, aten.expand.default)
    dropped = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or not isinstance(node.args[0], fx.Node):
            continue
        src = node.args[0]
        if node.target in same:
            a, b = src.meta.get("val"), node.meta.get("val")
            if a is None or b is None or a.shape != b.shape or a.stride() != b.stride():
                continue
        elif node.target == aten.transpose.int and src.target == aten.transpose.int:
            if sorted(node.args[1:]) != sorted(src.args[1:]) or len({*node.args[1:]}) != 2:
                continue
            src = src.args[0]
        else:
            continue
        node.replace_all_uses_with(src)
        gm.graph.erase_node(node)
        dropped += 1
    if dropped:
        for node in reversed(list(gm.graph.nodes)):  # views that only fed dropped nodes
            if node.op == "call_function" and node.target in (*_VIEWS, aten.expand.default) and not node.users:
                gm.graph.erase_node(node)
                dropped += 1
        gm.graph.lint()
        gm.recompile()
    return dropped


def fuse_bmm_updates(gm: fx.GraphModule) -> int:
    """Rewrite ``target += bmm(A, B)`` updates into ``target.baddbmm_(A, B)``; returns how many.

    A vmapped ``nn.Linear`` weight gradient is ``dW = bmm(g^T, h)``, one ``(out, in)`` matrix per
    client, that the SGD step then adds into the stacked weights (or momentum buffers) with
    ``_foreach_add_`` / ``_foreach_addcmul_``. Writing ``dW`` and reading it back is most of the
    memory traffic of a step; ``baddbmm_`` accumulates the product straight into the target
    instead. Handled: ``_foreach_add_.List(targets, grads, alpha=a)`` -> ``baddbmm_(t, A, B,
    alpha=a)`` and ``_foreach_addcmul_.Scalar(targets, grads, scales)`` with one scale per client
    -> ``baddbmm_(t, A * s, B)``. Same products, summed into the target in a different order:
    equal up to float rounding. Entries that do not match stay in the foreach op.
    """
    fused = 0
    graph = gm.graph
    for node in list(graph.nodes):
        if node.op != "call_function" or node.target not in (aten._foreach_add_.List, aten._foreach_addcmul_.Scalar):
            continue
        add = node.target == aten._foreach_add_.List
        if add and len(node.args) != 2 or not add and len(node.args) != 3 or set(node.kwargs) - {"alpha"}:
            continue
        alpha = node.kwargs.get("alpha", 1)
        targets, grads = list(node.args[0]), list(node.args[1])
        scales = None if add else list(node.args[2])
        keep = []
        for i, (t, g) in enumerate(zip(targets, grads)):
            bmm = _bmm_source(g) if isinstance(g, fx.Node) else None
            if bmm is None or (scales is not None and not _per_batch_scale(scales[i], bmm.meta["val"].shape[0])):
                keep.append(i)
                continue
            a, b = bmm.args
            with graph.inserting_before(node):
                if scales is not None:
                    a = graph.call_function(aten.mul.Tensor, (a, scales[i]))
                graph.call_function(aten.baddbmm_.default, (t, a, b), {"alpha": alpha} if alpha != 1 else {})
            fused += 1
        if len(keep) == len(targets):
            continue
        if keep:
            args = ([targets[i] for i in keep], [grads[i] for i in keep])
            node.args = args if add else (*args, [scales[i] for i in keep])
        else:
            graph.erase_node(node)
        for g in grads:  # the rewritten gradients' view chains and bmms are now unused
            while isinstance(g, fx.Node) and not g.users:
                up = g.args[0] if g.target in _VIEWS else None
                graph.erase_node(g)
                g = up
    if fused:
        graph.lint()
        gm.recompile()
    return fused
