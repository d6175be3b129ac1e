"""Automatic layer pairing: which teacher tap to distil into which student tap.

A *stage* is the tensor that ends a model's work at one spatial resolution:
the last layer output at that (H, W) that every path from the input to the
output passes through (a cut of the graph), so it holds everything the model
computed at that scale. The *features* are the penultimate vector (or map) the
classifier reads. `suggest_pairs` pairs the two models' stages by scale
(their resolution relative to the input) from the deepest one up and adds
the features pair, as the VID paper pairs a teacher's and a student's stage
outputs.
"""

import collections
import dataclasses
import math

import keras

from keras_vid import _compat
from keras_vid.errors import unknown_name
from keras_vid.taps import TapExtractor, _graph, _has_graph, check_graph_model

RULES = ("deep+features", "last+features", "all+features", "all", "features")
"""Pairing rules `suggest_pairs` accepts; the first is the default."""

_DROPOUT = (
    keras.layers.Dropout,  # SpatialDropout* subclass it
    keras.layers.GaussianDropout,
    keras.layers.GaussianNoise,
    keras.layers.AlphaDropout,
)
_GLOBAL_POOLING = (
    keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalMaxPooling2D,
)
# Layers that only move, pad or rescale pixels: their output is never a stage.
_PASSIVE = _DROPOUT + (
    keras.layers.ZeroPadding1D,
    keras.layers.ZeroPadding2D,
    keras.layers.ZeroPadding3D,
    keras.layers.Cropping1D,
    keras.layers.Cropping2D,
    keras.layers.Cropping3D,
    keras.layers.Resizing,
    keras.layers.CenterCrop,
    keras.layers.Rescaling,
    keras.layers.Normalization,
)


@dataclasses.dataclass(frozen=True)
class Tap:
    """A tappable layer output: its path and its shape without the batch axis.

    Args:
        path: a name `keras_vid.taps.find_layer` accepts, such as `"stage2"`,
            or `"backbone/block_6_add"` for a layer of a nested model.
        shape: the output shape without the batch axis, such as `(14, 14, 64)`.

    Example:

    >>> Tap("stage2", (14, 14, 64)).shape
    (14, 14, 64)
    """

    path: str
    shape: tuple


@dataclasses.dataclass
class _Call:
    """One layer call of the flattened graph, with tensors named by id."""

    path: str
    layer: keras.layers.Layer
    inputs: list  # ids of the input tensors (nested aliases resolved)
    in_shapes: list
    out_ids: list
    shape: tuple  # output shape without batch (the first output's)
    once: bool  # called exactly once in its graph, so tappable by name


def _flatten(model, prefix, alias, calls):
    """Appends the layer calls of `model` to `calls`, in topological order.

    A nested functional or Sequential model called once is replaced by its
    own calls, with paths `"<model name>/<layer name>"`, so that its inner
    stages are candidates too. `alias` maps the ids of a nested model's inner
    inputs and of its outer outputs to the ids of the tensors they stand for.
    """
    graph = _graph(model)
    # Deeper nodes come first, and no edge joins two nodes of the same
    # depth, so this order is topological.
    by_depth = _compat.nodes_by_depth(graph)
    nodes = [n for d in sorted(by_depth, reverse=True) for n in by_depth[d]]
    counts = collections.Counter(id(n.operation) for n in nodes)
    for node in nodes:
        layer = node.operation
        if node.is_input or layer is None:
            continue
        ins = [alias.get(id(t), id(t)) for t in node.input_tensors]
        once = counts[id(layer)] == 1
        if isinstance(layer, keras.Model) and once and _has_graph(layer):
            inner = _graph(layer)
            inner_ins = keras.tree.flatten(inner.inputs)
            if len(inner_ins) == len(ins):
                alias.update({id(t): src for t, src in zip(inner_ins, ins)})
                _flatten(layer, f"{prefix}{layer.name}/", alias, calls)
                inner_outs = keras.tree.flatten(inner.outputs)
                for outer, t in zip(node.output_tensors, inner_outs):
                    alias[id(outer)] = alias.get(id(t), id(t))
                continue
        outs = node.output_tensors
        calls.append(
            _Call(
                path=prefix + layer.name,
                layer=layer,
                inputs=ins,
                in_shapes=[tuple(t.shape) for t in node.input_tensors],
                out_ids=[id(t) for t in outs],
                shape=tuple(outs[0].shape[1:]) if len(outs) == 1 else (),
                once=once and len(outs) == 1,
            )
        )


def _walk(model):
    """Returns `(calls, producer, output ids, cut flags)` of `model`'s graph."""
    calls, alias = [], {}
    _flatten(model, "", alias, calls)
    producer = {t: i for i, c in enumerate(calls) for t in c.out_ids}
    outputs = [
        producer.get(alias.get(id(t), id(t)), -1)
        for t in keras.tree.flatten(_graph(model).outputs)
    ]
    # Furthest call that reads each call's output; a model output is read by
    # a virtual sink after the last call.
    furthest = list(range(len(calls)))
    reach = -1  # furthest reader of the model inputs, or of anything so far
    for v, c in enumerate(calls):
        for t in c.inputs:
            u = producer.get(t)
            if u is None:
                reach = max(reach, v)
            else:
                furthest[u] = max(furthest[u], v)
    for u in outputs:
        if u >= 0:
            furthest[u] = len(calls)
    # Call i is a cut when nothing before it is read after it: then every path
    # from the input to the output runs through it.
    cuts = []
    for i in range(len(calls)):
        cuts.append(reach <= i)
        reach = max(reach, furthest[i])
    return calls, producer, outputs, cuts


def _weighted(layer):
    # `weights` rather than `trainable_weights`: a frozen teacher still counts.
    return bool(layer.weights) and not isinstance(layer, _PASSIVE)


def _strided_next(calls, i):
    """Whether the first weighted layer after call `i` changes the resolution."""
    for c in calls[i + 1 :]:
        if _weighted(c.layer):
            s = c.in_shapes[0] if len(c.in_shapes) == 1 else ()
            return len(s) == 4 and len(c.shape) == 3 and s[1:3] != c.shape[:2]
    return False


def find_stages(model):
    """Returns the stages of `model`: one tap per spatial resolution.

    For each (H, W) of its channels-last 4-D activations, the stage is the
    last layer output at that resolution that every path from the input to
    the output passes through (so a tensor inside a residual block never is).
    Dropout, padding, resizing and rescaling layers are never stages, and a
    stage comes after at least one layer with weights, so input preprocessing
    is skipped. Only layers called once can be tapped. Where the resolution
    changes in a weighted strided layer, the layers after the last residual
    merge (a pre-activation BN-ReLU, a MobileNet expansion) open the next
    block, so the stage ends at that merge (and the weight-free layers right
    after it, such as a ReLU or a named `Identity`).

    Args:
        model: a functional or built Sequential `keras.Model`; nested
            functional or Sequential models are searched too.

    Returns:
        A list of `Tap`, from input to output; empty for a model without
        4-D activations, such as an MLP.

    Example:

    >>> import keras
    >>> inp = keras.Input((8, 8, 1))
    >>> x = keras.layers.Conv2D(4, 3, padding="same", name="c1")(inp)
    >>> x = keras.layers.MaxPooling2D()(x)
    >>> x = keras.layers.Conv2D(8, 3, padding="same", name="c2")(x)
    >>> x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    >>> m = keras.Model(inp, keras.layers.Dense(3)(x))
    >>> [t.path for t in find_stages(m)]
    ['c1', 'c2']
    """
    check_graph_model(model, "model")
    calls, _, _, cuts = _walk(model)
    first_weighted = next(
        (i for i, c in enumerate(calls) if _weighted(c.layer)), len(calls)
    )
    by_resolution = {}
    for i, c in enumerate(calls):
        if (
            cuts[i]
            and len(c.shape) == 3
            and c.once
            and i >= first_weighted
            and not isinstance(c.layer, _PASSIVE)
        ):
            by_resolution.setdefault(c.shape[:2], []).append(i)
    stages = []
    for positions in by_resolution.values():
        stage = positions[-1]
        merges = [i for i in positions if len(calls[i].inputs) > 1]
        if merges and _strided_next(calls, stage):
            stage = merges[-1]
            # Consecutive single-input cuts form a chain, so `stage + 1` is
            # the next layer on every path.
            while (
                stage + 1 in positions
                and not _weighted(calls[stage + 1].layer)
                and len(calls[stage + 1].inputs) == 1
            ):
                stage += 1
        stages.append(stage)
    return [Tap(calls[i].path, calls[i].shape) for i in sorted(stages)]


def find_features(model):
    """Returns the penultimate features of `model`: what its classifier reads.

    The classifier is the last layer with weights, found by walking back from
    the output through weight-free layers (Activation, Dropout, Identity...).
    Its input is the features, or the layer before it when that input comes
    from a Dropout.

    A headless model, whose output is a global pooling (`keras.applications`
    with `include_top=False, pooling="avg"`), has its output as features.

    Args:
        model: a functional or built Sequential `keras.Model`.

    Returns:
        A `Tap` of a vector `(D,)` or, without pooling before the classifier,
        a map `(H, W, C)`; `None` when there is no single-input classifier
        reading a tappable layer (for example a lone Dense on the input).

    Example:

    >>> import keras
    >>> inp = keras.Input((8,))
    >>> x = keras.layers.Dense(4, activation="relu", name="hidden")(inp)
    >>> x = keras.layers.Dropout(0.5)(x)
    >>> m = keras.Model(inp, keras.layers.Dense(2, name="logits")(x))
    >>> find_features(m)
    Tap(path='hidden', shape=(4,))
    """
    check_graph_model(model, "model")
    calls, producer, outputs, _ = _walk(model)
    if len(outputs) != 1 or outputs[0] < 0:
        return None
    i = outputs[0]
    if isinstance(calls[i].layer, _GLOBAL_POOLING) and calls[i].once:
        # A headless model (keras.applications with include_top=False,
        # pooling="avg") ends in its features: there is no classifier.
        return Tap(calls[i].path, calls[i].shape)
    while i is not None and not _weighted(calls[i].layer):
        if len(calls[i].inputs) != 1:
            return None
        i = producer.get(calls[i].inputs[0])
    if i is None or len(calls[i].inputs) != 1:
        return None
    j = producer.get(calls[i].inputs[0])
    if j is not None and isinstance(calls[j].layer, _DROPOUT):
        j = producer.get(calls[j].inputs[0])
    if j is None or not calls[j].once or len(calls[j].shape) not in (1, 3):
        return None
    return Tap(calls[j].path, calls[j].shape)


def _found(model, stages, features):
    return (
        f"'{model.name}': stages {[(t.path, t.shape) for t in stages]}, "
        f"features {(features.path, features.shape) if features else None}"
    )


def suggest_pairs(teacher, student, rule="deep+features"):
    """Suggests `(teacher tap, student tap)` pairs for distillation.

    Stages are paired by scale: each teacher stage, deepest first, with the
    unused student stage nearest in resolution relative to the input, if
    less than a factor of two apart, and shallower than the student stages
    already paired (so the pairs keep both models' order). Models of the same
    family and input pair stage by stage; a student with fewer stages pairs
    its stages with the teacher's of the same scale; a student that works at
    another resolution (a resized MobileNet) pairs by the nearest scale.

    - `"all"`: every aligned stage pair.
    - `"all+features"`: those and the features pair.
    - `"deep+features"` (default): the stage pairs but the shallowest (when
      there are several), and the features pair.
    - `"last+features"`: the deepest stage pair and the features pair.
    - `"features"`: only the features pair.

    A student without stages (an MLP) gets only the features pair whatever
    the rule. The features pair is left out when either model has none.

    Args:
        teacher: a functional or built Sequential `keras.Model`.
        student: a functional or built Sequential `keras.Model`.
        rule: one of `RULES`.

    Returns:
        A list of `(teacher path, student path)` tuples, shallow to deep.

    Raises:
        TypeError: when a model is a subclassed model without a layer graph.
        ValueError: for an unknown rule, or when no pair is found.

    Example:

    >>> from keras_vid.models import get_model
    >>> suggest_pairs(get_model("cnn"), get_model("cnn-small"))
    [('stage2', 'stage2'), ('stage3', 'stage3'), ('features', 'features')]
    """
    check_graph_model(teacher, "teacher")
    check_graph_model(student, "student")
    if rule not in RULES:
        raise unknown_name("pairing rule", rule, RULES, n=2)
    t_stages, s_stages = find_stages(teacher), find_stages(student)
    t_feat, s_feat = find_features(teacher), find_features(student)
    stage_pairs = _align_by_scale(teacher, t_stages, student, s_stages)
    k = len(stage_pairs)
    if not s_stages:
        # A vector-only student has nothing to match a teacher map with but
        # its features (a map-from-vector regressor is large and weak).
        rule = "features"
    pairs = {
        "all": stage_pairs,
        "all+features": stage_pairs,
        "deep+features": stage_pairs[1:] if k > 1 else stage_pairs,
        "last+features": stage_pairs[-1:],
        "features": [],
    }[rule]
    if rule != "all" and t_feat and s_feat:
        if (t_feat.path, s_feat.path) not in pairs:
            pairs.append((t_feat.path, s_feat.path))
    if not pairs:
        raise ValueError(
            f"No usable taps were found to pair the teacher with the student "
            f"(rule={rule!r}). Teacher {_found(teacher, t_stages, t_feat)}. "
            f"Student {_found(student, s_stages, s_feat)}. Pass the layers to "
            'pair explicitly, as `pairs=[("teacher_layer", "student_layer")]`.'
        )
    return pairs


def _align_by_scale(teacher, t_stages, student, s_stages):
    # A stage's scale is its height over the input's: a regressor can bridge
    # a factor below two with little loss, and the same scale means the same
    # receptive field, whatever the depth of either model.
    def scale(model, tap):
        return tap.shape[0] / model.inputs[0].shape[1]

    pairs = []
    free = len(s_stages)  # student stages [0, free) are still usable
    for t in reversed(t_stages):
        best = None
        for j in range(free):
            gap = abs(math.log2(scale(teacher, t) / scale(student, s_stages[j])))
            if gap < 1 and (best is None or gap <= best[0]):
                best = (gap, j)
        if best is not None:
            pairs.append((t.path, s_stages[best[1]].path))
            free = best[1]
    return pairs[::-1]


def describe_pairs(teacher, student, pairs):
    """Returns a readable table of `pairs` with their shapes, for logging.

    Args:
        teacher: the teacher `keras.Model`.
        student: the student `keras.Model`.
        pairs: `(teacher path, student path)` tuples, as `suggest_pairs`
            returns; `None` (`keras_vid.taps.OUTPUT`) is the model's output.

    Returns:
        A multi-line string, one `teacher (shape) <- student (shape)` a line.

    Example:

    >>> from keras_vid.models import get_model
    >>> print(describe_pairs(get_model("cnn"), get_model("cnn-small"),
    ...                      [("stage2", "stage2")]))
    VID pairs (teacher <- student):
      stage2 (14, 14, 64) <- stage2 (14, 14, 16)
    """
    pairs = [tuple(p) for p in pairs]
    shapes = []
    for model, role, names in (
        (teacher, "teacher", [p[0] for p in pairs]),
        (student, "student", [p[1] for p in pairs]),
    ):
        ext = TapExtractor(model, names, role=role, include_outputs=False)
        shapes.append([s[1:] for s in ext.tap_shapes])
    return format_pairs([(t, ts, s, ss) for (t, s), ts, ss in zip(pairs, *shapes)])


def format_pairs(rows):
    """Formats `(teacher path, teacher shape, student path, student shape)` rows.

    Example:

    >>> print(format_pairs([("features", (128,), "features", (32,))]))
    VID pairs (teacher <- student):
      features (128,) <- features (32,)
    """
    lines = ["VID pairs (teacher <- student):"]
    for t, t_shape, s, s_shape in rows:
        t, s = t or "<output>", s or "<output>"
        lines.append(f"  {t} {tuple(t_shape)} <- {s} {tuple(s_shape)}")
    return "\n".join(lines)
