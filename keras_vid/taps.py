"""Finding layers by name and building the one-pass tap extractor.

A distiller needs, for each model, the model's own outputs *and* a few
intermediate activations ("taps"), all from a single forward pass, so that
BatchNorm statistics move once per step and dropout masks agree between the
outputs and the taps. `TapExtractor` builds that multi-output functional model
once, from the model's graph, sharing all of its layers and weights.
"""

import difflib

import keras

from keras_vid import _compat

OUTPUT = None
"""Tap name that stands for the model's own output (for example its logits)."""


def check_graph_model(model, role):
    """Raises unless `model` is a built functional or Sequential model.

    Args:
        model: the model to check.
        role: `"teacher"` or `"student"`, used in the message.

    Raises:
        TypeError: when `model` is not a `keras.Model`, or is a subclassed model
            whose layers cannot be tapped.
        ValueError: when a Sequential model has not been built.

    Example:

    >>> import keras
    >>> m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> check_graph_model(m, "student")
    """
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"The {role} must be a keras.Model. Received: {role}={model!r} "
            f"of type {type(model).__name__}."
        )
    if isinstance(model, keras.Sequential):
        if not model.built or getattr(model, "_functional", None) is None:
            raise ValueError(
                f"The {role} Sequential model '{model.name}' has not been built, so "
                "its layers have no outputs to tap. Start it with "
                "`keras.Input(shape=...)` or call "
                f"`{role}.build((None, *input_shape))` first."
            )
        return
    try:
        inputs, outputs = model.inputs, model.outputs
    except (AttributeError, ValueError):
        inputs = outputs = None
    if not inputs or not outputs or not hasattr(model, "_operations_by_depth"):
        raise TypeError(
            f"The {role} '{model.name}' is a subclassed keras.Model "
            f"({type(model).__name__}) with no layer graph, so its intermediate "
            "layers cannot be tapped by name. Build it with the functional API "
            "(`keras.Model(inputs, outputs)`) or as a `keras.Sequential`, or wrap "
            "its parts as layers of a functional model."
        )


def _graph(model):
    """The functional graph behind a Functional or built Sequential model."""
    return _compat.functional_graph(model)


def _all_layer_names(model, prefix=""):
    names = []
    for layer in model.layers:
        names.append(prefix + layer.name)
        if isinstance(layer, keras.Model) and _has_graph(layer):
            names.extend(_all_layer_names(layer, prefix + layer.name + "/"))
    return names


def _has_graph(model):
    try:
        check_graph_model(model, "model")
    except (TypeError, ValueError):
        return False
    return True


def find_layer(model, path, role="model"):
    """Returns the layer that `path` names in `model`.

    Args:
        model: a functional or Sequential `keras.Model`.
        path: a layer name, or a `/`-separated path into nested models, such
            as `"backbone/stage3"`.
        role: `"teacher"` or `"student"`, used in error messages.

    Returns:
        The `keras.layers.Layer`.

    Raises:
        ValueError: when no layer has that name; the message lists the close
            matches.

    Example:

    >>> import keras
    >>> inp = keras.Input((4,))
    >>> m = keras.Model(inp, keras.layers.Dense(2, name="head")(inp))
    >>> find_layer(m, "head").name
    'head'
    """
    if not isinstance(path, str) or not path:
        raise ValueError(
            f"A {role} layer name must be a non-empty string. Received: {path!r}."
        )
    current = model
    parts = path.split("/")
    for i, part in enumerate(parts):
        layer = next((lyr for lyr in current.layers if lyr.name == part), None)
        last = i == len(parts) - 1
        if layer is None or (not last and not isinstance(layer, keras.Model)):
            candidates = _all_layer_names(model)
            close = difflib.get_close_matches(path, candidates, n=5, cutoff=0.5)
            hint = f" Close matches: {close}." if close else ""
            raise ValueError(
                f"The {role} '{model.name}' has no layer '{path}'.{hint} "
                f"Layers: {candidates[:40]}{' ...' if len(candidates) > 40 else ''}. "
                "Use a layer name from `model.summary()`, or `outer/inner` for a "
                "layer of a nested model."
            )
        current = layer
    return current


def _single_output(layer, graph, model, role, path):
    # Count only the calls inside this graph: other extractors built on the
    # same layers add nodes of their own.
    nodes = [
        node
        for depth_nodes in _compat.nodes_by_depth(graph).values()
        for node in depth_nodes
        if node.operation is layer
    ]
    if len(nodes) != 1:
        raise ValueError(
            f"The {role} layer '{path}' of '{model.name}' is called "
            f"{len(nodes)} times in the model's graph, so its output is "
            "ambiguous. Tap a layer that is called exactly once (for example "
            "wrap the shared layer's result in a named `keras.layers.Identity`)."
        )
    outputs = nodes[0].output_tensors
    if len(outputs) != 1:
        raise ValueError(
            f"The {role} layer '{path}' of '{model.name}' has {len(outputs)} "
            "outputs; a tap must be a single tensor. Tap a layer that returns "
            "one tensor."
        )
    return outputs[0]


def _rebuild_with_nested_taps(model, nested, role):
    """Re-traces `model` so that taps inside nested sub-models become outputs.

    `nested` maps a direct child model's name to the inner paths to tap in it.
    The child models are called through an extended copy that shares their
    layers (and so their weights) and also returns the inner taps.
    Returns (functional graph, {full_path: tensor}).
    """
    extended = {}
    for child_name, inner_paths in nested.items():
        child = find_layer(model, child_name, role)
        ext = TapExtractor(child, inner_paths, role=role)
        extended[child_name] = (child, ext, inner_paths)

    found = {}

    def call_function(layer, *args, **kwargs):
        if layer.name in extended and extended[layer.name][0] is layer:
            _, ext, inner_paths = extended[layer.name]
            result = ext.model(*args, **kwargs)
            for p, t in zip(inner_paths, result["taps"]):
                found[f"{layer.name}/{p}"] = t
            return result["outputs"]
        return layer(*args, **kwargs)

    graph = _graph(model)
    if isinstance(model, keras.Sequential):
        x = keras.Input(batch_shape=model.inputs[0].shape, dtype=model.inputs[0].dtype)
        inputs, y = x, x
        for layer in model.layers:
            y = call_function(layer, y)
        return keras.Model(inputs, y), found
    clone = keras.models.clone_model(
        graph, clone_function=lambda layer: layer, call_function=call_function
    )
    return clone, found


class TapExtractor:
    """One-pass extractor: a model's outputs plus named intermediate taps.

    Builds, once, a functional model that shares every layer (and so every
    weight) of `model` and returns `(outputs, [tap_1, ..., tap_k])` from a
    single forward pass. A tap name of `None` (`keras_vid.taps.OUTPUT`) stands
    for the model's own output.

    Args:
        model: a functional or built Sequential `keras.Model`.
        names: list of layer names or nested paths (`"backbone/stage3"`).
        role: `"teacher"` or `"student"`, used in error messages.
        include_outputs: whether the model's own outputs are computed too. The
            teacher's are skipped when no term needs them, which prunes the
            layers after its last tap.

    Example:

    >>> import keras
    >>> inp = keras.Input((4,))
    >>> h = keras.layers.Dense(3, name="hidden")(inp)
    >>> m = keras.Model(inp, keras.layers.Dense(2, name="head")(h))
    >>> ext = TapExtractor(m, ["hidden"])
    >>> out, (hidden,) = ext(keras.ops.ones((1, 4)))
    >>> tuple(hidden.shape)
    (1, 3)
    """

    def __init__(self, model, names, role="model", include_outputs=True):
        check_graph_model(model, role)
        self.source = model
        self.names = list(names)
        self.role = role
        flat = [n for n in self.names if n is not OUTPUT and "/" not in n]
        nested = {}
        for n in self.names:
            if n is not OUTPUT and "/" in n:
                find_layer(model, n, role)  # validates the whole path early
                head, rest = n.split("/", 1)
                nested.setdefault(head, [])
                if rest not in nested[head]:
                    nested[head].append(rest)
        if nested:
            graph, found = _rebuild_with_nested_taps(model, nested, role)
        else:
            graph, found = _graph(model), {}
        inputs, outputs = graph.input, graph.output
        for n in flat:
            layer = find_layer(model, n, role)
            found[n] = _single_output(layer, graph, model, role, n)
        taps = []
        for n in self.names:
            t = outputs if n is OUTPUT else found[n]
            if n is OUTPUT and not isinstance(t, keras.KerasTensor):
                raise ValueError(
                    f"The {role} '{model.name}' has several outputs, so "
                    "'its output' is ambiguous for this term. Name the output "
                    "layer explicitly."
                )
            taps.append(t)
        self.tap_shapes = [tuple(t.shape) for t in taps]
        self.tap_dtypes = [t.dtype for t in taps]
        self.output_spec = outputs
        # A dict keeps a one-tap list a list (Keras unwraps a bare [tensor]).
        structure = {"taps": taps}
        if include_outputs:
            structure["outputs"] = outputs
        self.model = keras.Model(inputs, structure, name=f"{model.name}_taps")
        self.include_outputs = include_outputs

    def __call__(self, x, training=False):
        """Returns `(outputs, taps)`, or `(None, taps)` without outputs."""
        result = self.model(x, training=training)
        return result.get("outputs"), list(result["taps"])
