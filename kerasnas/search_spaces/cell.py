"""The DARTS/SNAS cell search space: supernet, derivation, child and evaluation networks.

A network is a 3x3 conv stem (``stem_multiplier * C`` channels), ``layers`` cells and a
global-average-pool + dense classifier. Cells at depth ``layers // 3`` and
``2 * layers // 3`` are reduction cells (stride 2 from their inputs, channels doubled).
Each cell preprocesses its two inputs to C channels, computes ``nodes`` intermediate nodes
(node j = sum over earlier nodes i of op_ij(node i)) and concatenates them. All normal cells
share one architecture, all reduction cells another. Works on any image size and channel
count (8x8x1 digits to 224x224x3).

Layer names tie the models together: ``cell{i}_pre0``/``cell{i}_pre1`` (input
preprocessing), ``cell{i}_edge{src}_{dst}`` (the supernet's MixedOp on that edge),
``cell{i}_edge{src}_{dst}_{op}`` (a fixed op in a child), ``stem_conv``, ``stem_bn``,
``classifier``. A child inherits the supernet's weights by these names.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np

from kerasnas import ops as ops_lib
from kerasnas.errors import SettingError
from kerasnas.genotype import Genotype
from kerasnas.layers import DropPath, MixedOp, mixed_ops
from kerasnas.wording import count

CELL_KINDS = ("normal", "reduce")
DERIVATION_RULES = ("argmax", "top2")

# edge_fn(cell, kind, src, dst, channels, strides) -> list of layers whose outputs are summed
EdgeFn = Callable[[int, str, int, int, int, int], Sequence[keras.layers.Layer]]


def reduction_cells(layers: int) -> tuple[int, ...]:
    """Indices of the reduction cells of an L-cell network: L//3 and 2L//3."""
    return tuple(sorted({layers // 3, 2 * layers // 3}))


def _clone(layer: keras.layers.Layer | None) -> keras.layers.Layer | None:
    if layer is None:
        return None
    return layer.__class__.from_config(layer.get_config())


def _build(
    input_shape: Sequence[int],
    *stack_args: Any,
    preprocessing: keras.layers.Layer | None = None,
    name: str = "network",
    **stack_kwargs: Any,
) -> keras.Model:
    """The network skeleton shared by the supernet, children and evaluation networks: raw
    images of `input_shape`, `preprocessing`, then :func:`_stack` (the other arguments)."""
    inputs = keras.Input(tuple(input_shape), name="image")
    x = inputs
    if preprocessing is not None:
        x = preprocessing(x)
    return keras.Model(inputs, _stack(x, *stack_args, **stack_kwargs), name=name)


def _stack(
    x,
    num_classes: int,
    init_channels: int,
    layers: int,
    nodes: int,
    edge_fn: EdgeFn,
    affine: bool,
    stem_multiplier: int = 3,
    auxiliary: bool = False,
):
    """Stem, cells and classifier on the (preprocessed) image tensor `x`: the logits, or
    [logits, aux_logits] when `auxiliary`."""
    c = stem_multiplier * init_channels
    x = keras.layers.Conv2D(c, 3, padding="same", use_bias=False, name="stem_conv")(x)
    x = ops_lib.BatchNorm(affine=True, name="stem_bn")(x)
    s0 = s1 = x
    reductions = reduction_cells(layers)
    channels = init_channels
    reduction_prev = False
    aux_logits = None
    for i in range(layers):
        reduction = i in reductions
        kind = "reduce" if reduction else "normal"
        if reduction:
            channels *= 2
        if reduction_prev:
            pre0 = ops_lib.FactorizedReduce(channels, affine=affine, name=f"cell{i}_pre0")
        else:
            pre0 = ops_lib.ReLUConvBN(channels, 1, 1, affine, name=f"cell{i}_pre0")
        pre1 = ops_lib.ReLUConvBN(channels, 1, 1, affine, name=f"cell{i}_pre1")
        states = [pre0(s0), pre1(s1)]
        for dst in range(2, nodes + 2):
            terms = []
            for src in range(dst):
                strides = 2 if reduction and src < 2 else 1
                for layer in edge_fn(i, kind, src, dst, channels, strides):
                    terms.append(layer(states[src]))
            if not terms:  # a node every edge of which was deleted: zeros
                strides = 2 if reduction else 1
                zero = ops_lib.Zero(channels, strides, name=f"cell{i}_node{dst}_zero")
                terms.append(zero(states[0]))
            if len(terms) == 1:
                states.append(terms[0])
            else:
                states.append(keras.layers.Add(name=f"cell{i}_node{dst}")(terms))
        s0, s1 = s1, keras.layers.Concatenate(name=f"cell{i}_out")(states[2:])
        reduction_prev = reduction
        if auxiliary and i == 2 * layers // 3:
            aux_logits = _auxiliary_head(s1, num_classes)
    x = keras.layers.GlobalAveragePooling2D(name="global_pool")(s1)
    logits = keras.layers.Dense(num_classes, name="classifier")(x)
    return [logits, aux_logits] if aux_logits is not None else logits


def _auxiliary_head(x, num_classes: int):
    """DARTS' auxiliary head: ReLU, 5x5/3 avg pool (when the map is large enough), 1x1 conv
    128, BN, ReLU, conv 768 over the remaining map, BN, ReLU, dense."""
    x = keras.layers.ReLU(name="aux_relu0")(x)
    if x.shape[1] >= 5 and x.shape[2] >= 5:
        x = keras.layers.AveragePooling2D(5, 3, padding="valid", name="aux_pool")(x)
    x = keras.layers.Conv2D(128, 1, use_bias=False, name="aux_conv1")(x)
    x = ops_lib.BatchNorm(name="aux_bn1")(x)
    x = keras.layers.ReLU(name="aux_relu1")(x)
    x = keras.layers.Conv2D(768, tuple(x.shape[1:3]), use_bias=False, name="aux_conv2")(x)
    x = ops_lib.BatchNorm(name="aux_bn2")(x)
    x = keras.layers.ReLU(name="aux_relu2")(x)
    x = keras.layers.Flatten(name="aux_flatten")(x)
    return keras.layers.Dense(num_classes, name="aux_classifier")(x)


@dataclasses.dataclass(frozen=True)
class CellSpace:
    """The cell search space at given sizes.

    Args:
      input_shape: (H, W, C) of one raw image.
      num_classes: classifier outputs (logits).
      init_channels: C, channels of the first cells (search default 16).
      layers: L, number of cells (>= 3, so both cell types exist).
      nodes: N, intermediate nodes per cell.
      ops: candidate op names (registered in :mod:`kerasnas.ops`).
      stem_multiplier: stem channels = stem_multiplier * C.
    """

    input_shape: tuple[int, int, int]
    num_classes: int
    init_channels: int = 16
    layers: int = 8
    nodes: int = 4
    ops: tuple[str, ...] = ops_lib.PRIMITIVES
    stem_multiplier: int = 3

    def __post_init__(self):
        object.__setattr__(self, "input_shape", tuple(int(d) for d in self.input_shape))
        object.__setattr__(self, "ops", tuple(self.ops))
        if len(self.input_shape) != 3 or min(self.input_shape) < 1:
            raise SettingError(f"CellSpace: input_shape must be (H, W, C), got {self.input_shape}")
        for field in ("num_classes", "init_channels", "nodes", "stem_multiplier"):
            value = getattr(self, field)
            if not isinstance(value, int) or value < 1:
                raise SettingError(f"CellSpace: {{{field}}} must be a positive int, got {value!r}")
        if not isinstance(self.layers, int) or self.layers < 3:
            raise SettingError(
                f"CellSpace: {{layers}} must be an int >= 3 (normal and reduction cells), "
                f"got {self.layers!r}"
            )
        if self.init_channels < 2:
            raise SettingError(
                f"CellSpace: {{init_channels}} must be >= 2, got {self.init_channels}"
            )
        if not self.ops:
            raise SettingError("CellSpace: {ops} must not be empty")
        known = ops_lib.registered_ops()
        for op in self.ops:
            if op not in known:
                raise SettingError(
                    f"CellSpace: unknown op {op!r} in {{ops}}; registered ops: {', '.join(known)}"
                )
        if len(set(self.ops)) != len(self.ops):
            raise SettingError(f"CellSpace: {{ops}} must be unique, got {self.ops}")

    @property
    def reduction_cells(self) -> tuple[int, ...]:
        return reduction_cells(self.layers)

    def first_cell(self, kind: str) -> int:
        """Index of the first cell of `kind` ("normal" or "reduce")."""
        reductions = self.reduction_cells
        for i in range(self.layers):
            if (i in reductions) == (kind == "reduce"):
                return i
        raise ValueError(f"no {kind} cell in a {self.layers}-cell network")

    def edges(self) -> list[tuple[int, int]]:
        """(src, dst) of every edge of a cell; dst counts like genotype inputs (2..N+1)."""
        return [(src, dst) for dst in range(2, self.nodes + 2) for src in range(dst)]

    def build_supernet(
        self,
        relaxation: str = "gumbel",
        preprocessing: keras.layers.Layer | None = None,
        seed: int | None = None,
    ) -> keras.Model:
        """The supernet: a MixedOp over `ops` on every edge; cells of a kind share logits.

        Output: logits (B, num_classes). Weights are those of the search (BN non-affine in
        cells, pooling followed by BN).
        """
        owners: dict[tuple[str, int, int], MixedOp] = {}

        def edge_fn(cell, kind, src, dst, channels, strides):
            key = (kind, src, dst)
            layer_seed = (
                None if seed is None else seed + 1000 * CELL_KINDS.index(kind) + 31 * dst + src
            )
            layer = MixedOp(
                list(self.ops),
                channels=channels,
                strides=strides,
                relaxation=relaxation,
                affine=False,
                search=True,
                share_with=owners.get(key),
                seed=layer_seed,
                name=f"cell{cell}_edge{src}_{dst}",
            )
            owners.setdefault(key, layer)
            return [layer]

        return self._build(edge_fn, preprocessing, name="supernet")

    def mixed_op(self, supernet: keras.Model, kind: str, src: int, dst: int) -> MixedOp:
        """The MixedOp that owns the logits of edge (src, dst) of cell type `kind`."""
        return supernet.get_layer(f"cell{self.first_cell(kind)}_edge{src}_{dst}")

    def derive(self, supernet: keras.Model, rule: str = "argmax") -> Genotype:
        """The child architecture of a trained supernet.

        ``argmax`` (SNAS): every edge takes its most likely op; edges whose op is ``none`` are
        deleted, so nodes may keep 0..k inputs. ``top2`` (DARTS): every node keeps the two
        incoming edges whose strongest non-``none`` op is most likely, with that op.
        """
        if rule not in DERIVATION_RULES:
            raise ValueError(f"derive: rule must be one of {DERIVATION_RULES}, got {rule!r}")
        cells = {}
        for kind in CELL_KINDS:
            cell = []
            for dst in range(2, self.nodes + 2):
                probs = {
                    src: keras.ops.convert_to_numpy(
                        self.mixed_op(supernet, kind, src, dst).probabilities()
                    )
                    for src in range(dst)
                }
                if rule == "argmax":
                    pairs = [(self.ops[int(np.argmax(p))], src) for src, p in probs.items()]
                    pairs = [(op, src) for op, src in pairs if op != "none"]
                else:
                    pairs = self._top2(probs)
                cell.append(tuple(pairs))
            cells[kind] = tuple(cell)
        return Genotype.of_cells(cells["normal"], cells["reduce"])

    def live_cells(self, genotype: Genotype) -> list[set[int]]:
        """Per cell, the inputs (0: the cell before last, 1: the last) its kept edges read;
        empty for a cell whose output nothing reads (the child's graph drops its layers,
        and its preprocessing with them). A node without edges reads input 0 (its zeros
        take that shape)."""
        reductions = self.reduction_cells
        reads = []
        for c in range(self.layers):
            kind = "reduce" if c in reductions else "normal"
            used = set()
            for node in genotype.cell(kind):
                srcs = {src for _, src in node}
                used |= srcs if srcs else {0}
            reads.append({src for src in used if src < 2})
        live = [set() for _ in range(self.layers)]
        needed = {self.layers - 1}  # the classifier reads the last cell
        for c in range(self.layers - 1, -1, -1):
            if c not in needed:
                continue
            live[c] = reads[c]
            if 1 in reads[c]:
                needed.add(c - 1)
            if 0 in reads[c]:
                needed.add(c - 2)
        return live

    def table_cost(
        self,
        supernet: keras.Model,
        genotype: Genotype,
        resource: str,
        layer_cost: Callable[[keras.layers.Layer], float] | None = None,
    ) -> float:
        """What the parts of the child of `genotype` that depend on the architecture cost:
        its kept ops (their rows of the supernet's MixedOp cost tables) and the cell
        preprocessing they read (``layer_cost(layer)`` of the supernet's layer, default:
        counted with :func:`kerasnas.resource.layer_cost`), over every live cell (see
        :meth:`live_cells`); units of `resource` (count, or ms of latency once measured).
        The child's cost is this plus a fixed part (stem, classifier) that no architecture
        changes."""
        from kerasnas import resource as resource_lib

        if layer_cost is None:

            def layer_cost(layer):
                return resource_lib.layer_cost(layer, layer.input.shape[1:]).get(resource)

        layers = {m.name: m for m in mixed_ops(supernet)}
        reductions = self.reduction_cells
        total = 0.0
        for c, reads in enumerate(self.live_cells(genotype)):
            kind = "reduce" if c in reductions else "normal"
            if not reads:
                continue
            for src in reads:
                total += float(layer_cost(supernet.get_layer(f"cell{c}_pre{src}")))
            for dst, node in enumerate(genotype.cell(kind), start=2):
                for op, src in node:
                    layer = layers[f"cell{c}_edge{src}_{dst}"]
                    total += float(resource_lib.cost_column(layer, resource)[self.ops.index(op)])
        return total

    def cost_range(
        self, supernet: keras.Model, resource: str, dropped_edges: bool = True
    ) -> tuple[float, float]:
        """The cheapest and the dearest child of the space in `resource` (params, flops or
        mac; counted on built children): every edge its cheapest op (``none`` included
        when `dropped_edges`: a dropped edge costs nothing; without, the cheapest child
        that keeps every edge) or its dearest."""
        from kerasnas import resource as resource_lib

        def extreme(pick) -> float:
            cells = {}
            for kind in ("normal", "reduce"):
                cell = []
                for dst in range(2, self.nodes + 2):
                    node = []
                    for src in range(dst):
                        layer = self.mixed_op(supernet, kind, src, dst)
                        column = resource_lib.cost_column(layer, resource)
                        allowed = [
                            k
                            for k, op in enumerate(self.ops)
                            if dropped_edges or op != "none" or len(self.ops) == 1
                        ]
                        k = pick(allowed, key=lambda k, c=column: (c[k], k))
                        if self.ops[k] != "none":
                            node.append((self.ops[k], src))
                    cell.append(tuple(node))
                cells[kind] = tuple(cell)
            child = self.build_child(Genotype.of_cells(cells["normal"], cells["reduce"]), supernet)
            return float(resource_lib.network_cost(child).get(resource))

        return extreme(min), extreme(max)

    def _top2(self, probs: dict[int, np.ndarray]) -> list[tuple[str, int]]:
        allowed = [k for k, op in enumerate(self.ops) if op != "none"]
        if not allowed:
            raise ValueError("derive(rule='top2') needs at least one op other than 'none'")
        scored = []
        for src, p in probs.items():
            best = max(allowed, key=lambda k: p[k])
            scored.append((float(p[best]), src, self.ops[best]))
        scored.sort(key=lambda t: (-t[0], t[1]))
        return [(op, src) for _, src, op in scored[:2]]

    def build_child(
        self,
        genotype: Genotype,
        supernet: keras.Model | None = None,
        preprocessing: keras.layers.Layer | None = None,
    ) -> keras.Model:
        """The fixed child network of `genotype` in its search-time form (BN non-affine in
        cells, pooling followed by BN), so it can inherit a supernet's weights.

        With `supernet`, every layer takes the supernet's weights (edges: the weights of
        the chosen candidate), and `preprocessing` defaults to a copy of the supernet's.
        Output: logits (B, num_classes).
        """
        self._check_genotype(genotype)
        if preprocessing is None and supernet is not None:
            preprocessing = _find_preprocessing(supernet)

        child = self._build(_child_edges(genotype), _clone(preprocessing), name="child")
        if supernet is not None:
            inherit_weights(child, supernet)
        return child

    def _check_genotype(self, genotype: Genotype) -> None:
        for kind in CELL_KINDS:
            if len(genotype.cell(kind)) != self.nodes:
                raise ValueError(
                    f"genotype has {count(len(genotype.cell(kind)), kind + ' node')}, "
                    f"the space has {self.nodes}"
                )
            if tuple(genotype.concat(kind)) != tuple(range(2, self.nodes + 2)):
                raise ValueError(
                    f"genotype {kind}_concat must be {list(range(2, self.nodes + 2))} in this space"
                )

    def _build(self, edge_fn, preprocessing, name):
        return _build(
            self.input_shape,
            self.num_classes,
            self.init_channels,
            self.layers,
            self.nodes,
            edge_fn,
            affine=False,
            stem_multiplier=self.stem_multiplier,
            preprocessing=preprocessing,
            name=name,
        )


def _find_preprocessing(model: keras.Model) -> keras.layers.Layer | None:
    image = model.inputs[0]
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if layer.name == "stem_conv":
            return None
        node_inputs = layer.input if not isinstance(layer.input, list) else layer.input
        if node_inputs is image:
            return layer
    return None


def inherit_weights(child: keras.Model, supernet: keras.Model) -> None:
    """Copies the supernet's weights into `child`, layer by layer name; a child edge layer
    ``cell{i}_edge{s}_{d}_{op}`` takes the weights of candidate `op` of the supernet's MixedOp
    ``cell{i}_edge{s}_{d}``."""
    for layer in child.layers:
        if not layer.weights:
            continue
        source = _source_layer(supernet, layer.name)
        if source is None:
            raise ValueError(f"inherit_weights: the supernet has no layer for {layer.name!r}")
        layer.set_weights(source.get_weights())


def _source_layer(supernet: keras.Model, name: str) -> keras.layers.Layer | None:
    try:
        return supernet.get_layer(name)
    except ValueError:
        pass
    base, _, op = name.rpartition("_edge")
    if not base:
        return None
    # name = cell{i}_edge{s}_{d}_{op}; op names may contain underscores
    edge = name.split("_", 3)
    if len(edge) < 4:
        return None
    try:
        mixed = supernet.get_layer("_".join(edge[:3]))
    except ValueError:
        return None
    if not isinstance(mixed, MixedOp) or edge[3] not in mixed.candidate_names:
        return None
    return mixed.candidates[mixed.candidate_names.index(edge[3])]


def build_network(
    genotype: Genotype,
    num_classes: int,
    input_shape: Sequence[int],
    init_channels: int = 36,
    layers: int = 20,
    auxiliary: bool = False,
    drop_path: float = 0.0,
    preprocessing: keras.layers.Layer | None = None,
    stem_multiplier: int = 3,
) -> keras.Model:
    """The DARTS/SNAS evaluation network of `genotype`, for training from scratch.

    Affine batch norm, pooling without batch norm, reductions at L//3 and 2L//3, an optional
    auxiliary head after cell 2L//3 and drop-path (rate `drop_path`, training only) on every
    op that is not an identity. Output: logits (B, num_classes), or [logits, aux_logits]
    when `auxiliary`. Cells may have any number of nodes (taken from the genotype).
    """
    if not isinstance(genotype, Genotype):
        raise ValueError(
            f"build_network: genotype must be a kerasnas.Genotype, got {type(genotype)}"
        )
    nodes = len(genotype.normal)
    if len(genotype.reduce) != nodes:
        raise ValueError(
            "build_network: normal and reduce cells must have the same number of nodes"
        )
    if not 0.0 <= drop_path < 1.0:
        raise ValueError(f"build_network: drop_path must be in [0, 1), got {drop_path}")
    if not isinstance(layers, int) or layers < 3:
        raise ValueError(f"build_network: layers must be an int >= 3, got {layers!r}")
    for kind in CELL_KINDS:
        if tuple(genotype.concat(kind)) != tuple(range(2, nodes + 2)):
            raise ValueError(f"build_network: {kind}_concat must list every intermediate node")

    return _build(
        input_shape,
        num_classes,
        init_channels,
        layers,
        nodes,
        _eval_edges(genotype, drop_path),
        affine=True,
        stem_multiplier=stem_multiplier,
        preprocessing=preprocessing,
        auxiliary=auxiliary,
        name="network",
    )


def genotype_stack(
    x,
    genotype: Genotype,
    num_classes: int,
    init_channels: int,
    layers: int,
    search: bool = False,
    drop_path: float = 0.0,
    stem_multiplier: int = 3,
):
    """The logits (B, num_classes) of `genotype`'s network on the preprocessed image tensor
    `x` (B, H, W, C): the layers after preprocessing of :func:`build_network` (no auxiliary
    head), or with `search` those of :meth:`CellSpace.build_child` (search-time form)."""
    nodes = len(genotype.normal)
    if search:
        edges, affine = _child_edges(genotype), False
    else:
        edges, affine = _eval_edges(genotype, drop_path), True
    return _stack(x, num_classes, init_channels, layers, nodes, edges, affine, stem_multiplier)


def _child_edges(genotype: Genotype) -> EdgeFn:
    """The edge_fn of a child in search-time form: the genotype's ops, BN non-affine."""

    def edge_fn(cell, kind, src, dst, channels, strides):
        return [
            ops_lib.create_op(
                op,
                channels,
                strides,
                affine=False,
                search=True,
                layer_name=f"cell{cell}_edge{src}_{dst}_{op}",
            )
            for op, s in genotype.cell(kind)[dst - 2]
            if s == src
        ]

    return edge_fn


def _eval_edges(genotype: Genotype, drop_path: float) -> EdgeFn:
    """The edge_fn of an evaluation network: the genotype's ops, affine BN, drop-path on
    every op that is not an identity when `drop_path` > 0."""

    def edge_fn(cell, kind, src, dst, channels, strides):
        out = []
        for op, s in genotype.cell(kind)[dst - 2]:
            if s != src:
                continue
            layer = ops_lib.create_op(
                op,
                channels,
                strides,
                affine=True,
                search=False,
                layer_name=f"cell{cell}_edge{src}_{dst}_{op}",
            )
            if drop_path > 0 and not isinstance(layer, ops_lib.Identity):
                drop = DropPath(drop_path, name=f"cell{cell}_edge{src}_{dst}_{op}_drop")
                out.append(_Chain([layer, drop]))
            else:
                out.append(layer)
        return out

    return edge_fn


class _Chain:
    """Applies layers in order when called on a functional tensor (no layer of its own)."""

    def __init__(self, layers):
        self.layers = layers

    def __call__(self, x):
        for layer in self.layers:
            x = layer(x)
        return x
