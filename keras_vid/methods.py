"""The method registry: one name per transfer method, one builder for all.

`build_distiller("vid_i+kd", teacher, student, teacher_taps, student_taps)`
returns a ready `keras_vid.Distiller` for any method in `available_methods()`
or any `+`-combination of them, so that a recipe can take the method as one
flag value. Which layers each method uses:

| name      | what it adds                             | layers                       |
|-----------|------------------------------------------|------------------------------|
| `student` | nothing: the student alone, same loop    | -                            |
| `kd`      | `KDTerm` (Hinton et al. 2015)            | the logits (model outputs)   |
| `dkd`     | `DKDTerm` (Zhao et al. 2022), labels     | the logits (model outputs)   |
| `dist`    | `DISTTerm` (Huang et al. 2022)           | the logits (model outputs)   |
| `fitnet`  | `FitNetTerm` (Romero et al. 2015)        | the middle tap pair          |
| `at`      | an `ATTerm` per pair (Zagoruyko 2017)    | every tap pair               |
| `nst`     | an `NSTTerm` per pair (Huang 2017)       | every tap pair               |
| `vid_i`   | a `VIDTerm` per pair (Ahn et al. 2019)   | every tap pair               |
| `vid_lp`  | a `VIDTerm`, linear mean (Ahn 2019)      | teacher logits, student feat.|

Any method with `vid_i` or `vid_lp` builds a `keras_vid.VIDDistiller` (the
other methods' terms go in its `terms=`, and it gets no KD term of its own:
KD is there only when the method names `kd`); the rest build a
`keras_vid.Distiller`. The task loss is whatever the caller passes to
`compile(loss=...)`. `dkd` needs the labels (`DKDTerm.needs_labels`): the
training data must have them, as class ids or one-hot rows. Logit
standardisation (Sun et al. 2024) is an option of `kd` and `dkd`
(`kd_standardize`, `dkd_standardize`), not a method of its own.

Every default lives in `DEFAULTS`, with its source. Each key there is also the
keyword that overrides it in `build_distiller`; keys are validated, so a
misspelt or unused override fails loudly instead of being ignored.
"""

from keras_vid.distiller import Distiller, LayerPair, VIDDistiller
from keras_vid.errors import unknown_name
from keras_vid.taps import OUTPUT
from keras_vid.transfer.at import ATTerm
from keras_vid.transfer.dist import DISTTerm
from keras_vid.transfer.dkd import DKDTerm
from keras_vid.transfer.fitnet import FitNetTerm
from keras_vid.transfer.kd import KDTerm
from keras_vid.transfer.nst import NSTTerm

METHODS = ("student", "kd", "dkd", "dist", "fitnet", "at", "nst", "vid_i", "vid_lp")
"""The single method names; `build_distiller` also takes `+`-combinations."""

_RD = "RepDistiller (HobbitLong/RepDistiller)"
_RD_SCRIPT = f"{_RD} scripts/run_cifar_distill.sh"
_MD = "mdistiller (megvii-research/mdistiller)"
_LS = (
    "Logit standardisation (Sun et al. CVPR 2024; "
    "sunshangquan/logit-standardization-KD)"
)
_DIST = "DIST (Huang et al. NeurIPS 2022; hunto/image_classification_sota)"

DEFAULTS = {
    "kd_weight": (
        1.0,
        f"{_RD} README, CRD+KD command: KD `-a 1` next to cross-entropy `-r 1`. "
        "(Its KD-only command uses -r 0.1 -a 0.9, line 5: pass kd_weight=9.0 "
        "for that ratio.)",
    ),
    "kd_temperature": (4.0, f"{_RD} train_student.py, `--kd_T` default 4."),
    "kd_standardize": (
        False,
        f"{_LS}: off unless `--logit-stand` (tools/train.py); z-scores each "
        "example's logits (mdistiller/distillers/KD.py, `normalize`). With it "
        "the authors use `--base-temp 2 --kd-weight 9` next to cross-entropy 1: "
        "pass kd_temperature=2.0, kd_weight=9.0 for their recipe.",
    ),
    "dkd_weight": (
        1.0,
        f"{_MD} mdistiller/distillers/DKD.py adds the DKD loss unscaled next to "
        "cross-entropy `CFG.DKD.CE_WEIGHT` 1.0 (alpha and beta weight its parts).",
    ),
    "dkd_alpha": (1.0, f"{_MD} mdistiller/engine/cfg.py, `CFG.DKD.ALPHA = 1.0`."),
    "dkd_beta": (
        8.0,
        f"{_MD} mdistiller/engine/cfg.py, `CFG.DKD.BETA = 8.0` (its CIFAR-100 "
        "default, e.g. configs/cifar100/dkd/res32x4_res8x4.yaml; "
        "wrn40_2_wrn_16_2.yaml lowers it to 6.0).",
    ),
    "dkd_temperature": (4.0, f"{_MD} mdistiller/engine/cfg.py, `CFG.DKD.T = 4.0`."),
    "dkd_warmup_steps": (
        27,
        f"{_MD}: `min(epoch / CFG.DKD.WARMUP, 1)` with WARMUP 20 of 240 epochs, "
        "i.e. the first 1/12 of training. 27 is 1/12 of the generalisation "
        "suite's N=100 run (1,000 images, batch 64: 16 steps x 20 epochs = 320 "
        "steps); for another run pass round(epochs * steps_per_epoch / 12) "
        "(the suite's N=500 run: 79 x 10 / 12 = 66).",
    ),
    "dkd_standardize": (
        False,
        f"{_LS}: off unless `--logit-stand`; mdistiller/distillers/DKD.py. With "
        "it tools/train.py multiplies alpha and beta by `--kd-weight` 9 and sets "
        "T to `--base-temp` 2: pass dkd_alpha=9.0, dkd_beta=72.0, "
        "dkd_temperature=2.0 for their recipe.",
    ),
    "dist_weight": (
        2.0,
        "torchdistill (yoshitomo-matsubara/torchdistill) configs/sample/"
        "ilsvrc2012/dist/resnet18_from_resnet34.yaml: DISTLoss weight 2.0 next "
        "to cross-entropy 1.0.",
    ),
    "dist_beta": (
        1.0,
        f"{_DIST} lib/models/losses/kd_loss.py, `DIST(beta=1, gamma=1, tau=1)`; "
        "torchdistill's DISTLoss default.",
    ),
    "dist_gamma": (1.0, f"{_DIST} lib/models/losses/kd_loss.py, `gamma=1`."),
    "dist_temperature": (1.0, f"{_DIST} lib/models/losses/kd_loss.py, `tau=1`."),
    "fitnet_weight": (
        100.0,
        f"{_RD_SCRIPT} line 7, FitNet `-b 100` with a mean-reduced MSE "
        "(distiller_zoo/FitNet.py, nn.MSELoss()).",
    ),
    "fitnet_pair": (
        None,
        "None means the middle tap pair, taps[len // 2]: RepDistiller's "
        "train_student.py `--hint_layer` default 2 (of WRN's conv1, block1-3 "
        "features), the paper's hint in the middle of the network.",
    ),
    "at_weight": (
        1000.0,
        f"{_RD_SCRIPT} line 9, AT `-b 1000`, summed over the tap pairs "
        "(helper/loops.py). The paper's beta=1e3 over map size and batch is the "
        "per-position mean here.",
    ),
    "at_p": (2.0, f"{_RD} distiller_zoo/AT.py `p=2`; the paper's choice."),
    "nst_weight": (
        50.0,
        f"{_RD_SCRIPT} line 27, NST `-b 50`, summed over the tap pairs "
        "(helper/loops.py).",
    ),
    "vid_i_weight": (
        20.0,
        "keras-vid's defaults study (docs/results.md): on Fashion-MNIST at "
        "N=100, lambda 20 with init_variance 1 beat lambda 1/5/10 and 40; "
        "lambda 100 collapsed to chance. RepDistiller's `-b 1` "
        "(scripts/run_cifar_distill.sh line 15) gave no gain over the student.",
    ),
    "vid_i_layers": (
        "deep+features",
        "keras-vid's defaults study: pairing the taps after the first plus the "
        "penultimate features (teacher_features, student_features) beat pairing "
        "every stage (the first stage of a thin student over-constrains it) and "
        "pairing the stages without the features. 'all' pairs every tap given.",
    ),
    "vid_lp_weight": (
        20.0,
        "No public default for VID-LP; the same lambda as VID-I, which the "
        "per-element mean makes independent of the layer size.",
    ),
    "vid_lp_target": (
        "logits",
        "The paper's VID-LP: the teacher's logits from the student's "
        "penultimate layer. 'features' uses teacher_features instead.",
    ),
    "vid_init_variance": (
        1.0,
        "keras-vid's defaults study (docs/results.md): 1.0 beat RepDistiller's "
        "5.0 (distiller_zoo/VID.py line 16, also torchdistill, mdistiller), whose "
        "1/sigma^2 scales the regression gradient down five-fold for the many "
        "steps the variance takes to adapt.",
    ),
    "vid_eps": (
        1e-2,
        "keras-vid's defaults study: a variance floor that bounds lambda/sigma^2. "
        "With RepDistiller's 1e-5 (distiller_zoo/VID.py line 17) and lambda 20 "
        "the loss went to NaN once a pair was fitted closely.",
    ),
    "vid_reduction": (
        "mean",
        "Per-element mean as RepDistiller, torchdistill and mdistiller; the "
        "paper sums ('sum').",
    ),
    "vid_standardize": (
        False,
        "The defaults study's VID-I, whose lambda 20 / variance 1 were tuned on "
        "raw taps (docs/results.md), so the demo and paper_table numbers "
        "reproduce. `keras_vid.VIDDistiller(teacher, student)` standardises the "
        "teacher taps by default (the generalisation suite): True here does too.",
    ),
    "vid_regressor_batch_norm": (
        False,
        "The paper's regressor (RepDistiller distiller_zoo/VID.py: three 1x1 "
        "convs, no BatchNorm), as the defaults study used, so the demo and "
        "paper_table numbers reproduce. `keras_vid.VIDDistiller(teacher, "
        "student)` adds BatchNorm to its map regressors by default, which keeps "
        "a ResNet student finite unclipped (docs/results.md).",
    ),
}
"""`{override key: (default, source)}` for every method's hyperparameters.

A key `<method>_<name>` belongs to `<method>`; the `vid_` keys that name no
variant (`vid_init_variance`, `vid_eps`, `vid_reduction`, `vid_standardize`,
`vid_regressor_batch_norm`) belong to both `vid_i` and `vid_lp`. `<name>` is,
where there is one, the keyword it sets (`kd_temperature` is `KDTerm`'s
`temperature`; `vid_i_weight` and `vid_init_variance` are `VIDDistiller`'s
`vid_weight` and `init_variance`). These keys are the one vocabulary of
string-keyed settings: `build_distiller`'s overrides, the recipes'
`--overrides`, results files, and `keras_vid.tuning`'s hyperparameters, so a
search's best values are overrides as they are.
"""

# The logit terms: each keyword `k` of the class comes from DEFAULTS'
# `<method>_<k>`.
_LOGIT_TERMS = {
    "kd": (KDTerm, ("weight", "temperature", "standardize")),
    "dkd": (
        DKDTerm,
        ("weight", "alpha", "beta", "temperature", "warmup_steps", "standardize"),
    ),
    "dist": (DISTTerm, ("weight", "beta", "gamma", "temperature")),
}

_VID = ("vid_i", "vid_lp")
_VID_SHARED = (
    "vid_init_variance",
    "vid_eps",
    "vid_reduction",
    "vid_standardize",
    "vid_regressor_batch_norm",
)


def _owners(key):
    """The methods that a `DEFAULTS` key configures."""
    if key in _VID_SHARED:
        return _VID
    return tuple(m for m in METHODS if key.startswith(m + "_"))


def available_methods():
    """Returns the single method names `build_distiller` accepts.

    Combine them with `+`, for example `"vid_i+kd"`.

    Returns:
        A tuple of names.

    Example:

    >>> available_methods()
    ('student', 'kd', 'dkd', 'dist', 'fitnet', 'at', 'nst', 'vid_i', 'vid_lp')
    """
    return METHODS


def default_hparams(method):
    """Returns the defaults that apply to `method`, a name or a combination.

    Args:
        method: a method name such as `"at"` or a combination `"vid_i+kd"`.

    Returns:
        A dict `{override key: default}`.

    Example:

    >>> default_hparams("at+kd")  # doctest: +NORMALIZE_WHITESPACE
    {'kd_weight': 1.0, 'kd_temperature': 4.0, 'kd_standardize': False,
     'at_weight': 1000.0, 'at_p': 2.0}
    """
    parts = parse_method(method)
    return {
        k: v for k, (v, _) in DEFAULTS.items() if any(o in parts for o in _owners(k))
    }


def overrides_for(method, overrides):
    """Keeps the overrides that apply to `method`; fails on unknown keys.

    For a grid of methods that share one set of overrides (for example
    `{"kd_temperature": 2.0}` for `student`, `kd` and `vid_i+kd`): each
    method gets only its own keys, while a misspelt key still fails.

    Args:
        method: a method name or `+`-combination.
        overrides: a dict of `DEFAULTS` keys to values.

    Returns:
        A dict with the keys of `overrides` that configure `method`.

    Raises:
        ValueError: for a key that is not in `DEFAULTS`.

    Example:

    >>> overrides_for("student", {"kd_temperature": 2.0})
    {}
    >>> overrides_for("vid_i+kd", {"kd_temperature": 2.0})
    {'kd_temperature': 2.0}
    """
    parts = parse_method(method)
    _check_keys(overrides)
    return {k: v for k, v in overrides.items() if any(o in parts for o in _owners(k))}


def parse_method(method):
    """Splits a method name into its parts, validating each.

    Args:
        method: `"kd"`, `"vid_i+kd"`, ... (case and spaces around `+` are
            ignored).

    Returns:
        A tuple of single method names, in the given order.

    Raises:
        ValueError: for an unknown name (with close matches), a repeated
            part, or `student` combined with another method.

    Example:

    >>> parse_method("VID_I + kd")
    ('vid_i', 'kd')
    """
    if not isinstance(method, str) or not method.strip():
        raise ValueError(
            f"`method` must be a non-empty string such as 'vid_i' or 'vid_i+kd'. "
            f"Received: method={method!r}."
        )
    parts = tuple(p.strip().lower() for p in method.split("+"))
    for part in parts:
        if part not in METHODS:
            raise unknown_name(
                "method",
                part,
                METHODS,
                f" Combine methods with '+', e.g. 'vid_i+kd'. Received: "
                f"method={method!r}.",
            )
    if len(set(parts)) != len(parts):
        raise ValueError(
            f"Method {method!r} names a method twice. List each once; to weight "
            "it more, override its weight (e.g. kd_weight=2.0)."
        )
    if "student" in parts and len(parts) > 1:
        raise ValueError(
            f"Method {method!r} combines 'student' (no transfer) with a transfer "
            "method. Use 'student' alone, or leave it out."
        )
    return parts


def _check_keys(overrides):
    for key in overrides:
        if key not in DEFAULTS:
            raise unknown_name(
                "override",
                key,
                list(DEFAULTS),
                " Each key is `<method>_<setting>`; see keras_vid.methods.DEFAULTS.",
            )


def _check_overrides(method, parts, overrides):
    _check_keys(overrides)
    for key in overrides:
        if not any(o in parts for o in _owners(key)):
            raise ValueError(
                f"The override {key}={overrides[key]!r} configures "
                f"{' or '.join(repr(o) for o in _owners(key))}, which method "
                f"{method!r} does not use. Remove it or add that method; to share "
                "one set of overrides across methods, pass "
                "overrides_for(method, overrides)."
            )


def _tap_pairs(method, teacher_taps, student_taps):
    teacher_taps = list(teacher_taps or [])
    student_taps = list(student_taps or [])
    if len(teacher_taps) != len(student_taps):
        raise ValueError(
            "`teacher_taps` and `student_taps` are paired in order, so they must "
            f"have the same length. Received: teacher_taps={teacher_taps} "
            f"({len(teacher_taps)}), student_taps={student_taps} "
            f"({len(student_taps)})."
        )
    if not teacher_taps:
        raise ValueError(
            f"Method {method!r} needs intermediate layer pairs, but `teacher_taps` "
            "and `student_taps` are empty. Give the layer names to pair, e.g. "
            "teacher_taps=['stage1', 'stage2', 'stage3'] and the same for the "
            "student."
        )
    return list(zip(teacher_taps, student_taps))


def build_distiller(
    method,
    teacher,
    student,
    teacher_taps=None,
    student_taps=None,
    teacher_features=None,
    student_features=None,
    teacher_preprocessing=None,
    **overrides,
):
    """Builds the distiller for a method name, with the documented defaults.

    Args:
        method: a name from `available_methods()` or a `+`-combination such
            as `"vid_i+kd"`, `"at+kd"` or `"vid_i+dkd"`. A method with `dkd`
            needs labels in the training data.
        teacher: the trained teacher, a functional or Sequential model.
        student: the student, with the same inputs.
        teacher_taps: the teacher's intermediate layers to pair, in order
            (for example its stage outputs). Needed by `fitnet`, `at`, `nst`
            and `vid_i`.
        student_taps: the student's layers paired with them, the same length.
        teacher_features: the teacher's penultimate (pre-logit) layer; used
            by `vid_lp` with `vid_lp_target="features"`.
        student_features: the student's penultimate layer; needed by `vid_lp`.
        teacher_preprocessing: an optional Keras layer applied to the inputs
            before the teacher only; see `keras_vid.Distiller`.
        **overrides: any key of `DEFAULTS` (for example `kd_temperature=2.0`,
            `at_weight=500.0`, `fitnet_pair=("t_stage1", "s_stage1")`,
            `dkd_warmup_steps=66`) that configures one of the chosen methods.

    Returns:
        A `keras_vid.VIDDistiller` when the method includes `vid_i` or
        `vid_lp`, otherwise a `keras_vid.Distiller`. It is not compiled.

    Raises:
        ValueError: for an unknown method or override, an override of a
            method not chosen, or missing layers.

    Example:

    ```python
    distiller = keras_vid.methods.build_distiller(
        "vid_i+kd", teacher, student,
        teacher_taps=["stage1", "stage2", "stage3"],
        student_taps=["stage1", "stage2", "stage3"],
        kd_weight=0.5,
    )
    distiller.compile(
        keras.optimizers.SGD(0.05, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    ```
    """
    parts = parse_method(method)
    _check_overrides(method, parts, overrides)
    hp = {k: overrides.get(k, v) for k, (v, _) in DEFAULTS.items()}

    ctx = _Context(
        method,
        teacher,
        student,
        teacher_taps,
        student_taps,
        teacher_features,
        student_features,
    )
    terms, vid_pairs = [], []
    for part in parts:
        part_terms, part_pairs = _BUILDERS[part](hp, ctx)
        terms.extend(part_terms)
        vid_pairs.extend(part_pairs)

    if vid_pairs:
        return VIDDistiller(
            teacher,
            student,
            pairs=vid_pairs,
            init_variance=hp["vid_init_variance"],
            eps=hp["vid_eps"],
            reduction=hp["vid_reduction"],
            standardize=hp["vid_standardize"],
            regressor_batch_norm=hp["vid_regressor_batch_norm"],
            # KD is an explicit part of the method ("vid_i+kd"), in `terms`.
            kd_weight=None,
            terms=terms,
            teacher_preprocessing=teacher_preprocessing,
        )
    return Distiller(
        teacher, student, terms=terms, teacher_preprocessing=teacher_preprocessing
    )


class _Context:
    """What a method's builder may read: the models and the layers to pair."""

    def __init__(self, method, teacher, student, t_taps, s_taps, t_feat, s_feat):
        self.method, self.teacher, self.student = method, teacher, student
        self._taps = (t_taps, s_taps)
        self.teacher_features, self.student_features = t_feat, s_feat

    @property
    def pairs(self):
        # Checked only for the methods that need intermediate pairs.
        return _tap_pairs(self.method, *self._taps)


def _logit(name):
    cls, names = _LOGIT_TERMS[name]
    return lambda hp, ctx: ([cls(**{n: hp[f"{name}_{n}"] for n in names})], [])


def _fitnet(hp, ctx):
    hint = hp["fitnet_pair"]
    if hint is None:
        pairs = ctx.pairs
        hint = pairs[len(pairs) // 2]
    if not isinstance(hint, (tuple, list)) or len(hint) != 2:
        raise ValueError(
            "`fitnet_pair` must be a (teacher layer, student layer) pair. "
            f"Received: fitnet_pair={hint!r}."
        )
    return [FitNetTerm(*hint, weight=hp["fitnet_weight"])], []


def _at(hp, ctx):
    terms = [ATTerm(t, s, weight=hp["at_weight"], p=hp["at_p"]) for t, s in ctx.pairs]
    return terms, []


def _nst(hp, ctx):
    return [NSTTerm(t, s, weight=hp["nst_weight"]) for t, s in ctx.pairs], []


def _vid_i(hp, ctx):
    chosen = _vid_i_pairs(hp, ctx.pairs, ctx.teacher_features, ctx.student_features)
    return [], [LayerPair(t, s, weight=hp["vid_i_weight"]) for t, s in chosen]


def _vid_lp(hp, ctx):
    pair = _vid_lp_pair(
        hp, ctx.teacher, ctx.student, ctx.teacher_features, ctx.student_features
    )
    return [], [pair]


# The registry: each method's builder returns (terms, VID layer pairs) from
# the hyperparameters and the context. A new method is a transfer term in
# keras_vid/transfer/ plus one entry here (and its DEFAULTS keys).
_BUILDERS = {
    "student": lambda hp, ctx: ([], []),
    "kd": _logit("kd"),
    "dkd": _logit("dkd"),
    "dist": _logit("dist"),
    "fitnet": _fitnet,
    "at": _at,
    "nst": _nst,
    "vid_i": _vid_i,
    "vid_lp": _vid_lp,
}
assert tuple(_BUILDERS) == METHODS


def _vid_i_pairs(hp, pairs, teacher_features, student_features):
    layers = hp["vid_i_layers"]
    if layers == "all":
        return pairs
    if layers != "deep+features":
        raise ValueError(
            "`vid_i_layers` must be 'deep+features' (the taps after the first, "
            f"plus the penultimate features) or 'all'. Received: {layers!r}."
        )
    chosen = pairs[1:] if len(pairs) > 1 else list(pairs)
    if teacher_features is not None and student_features is not None:
        feature_pair = (teacher_features, student_features)
        if feature_pair not in chosen:
            chosen.append(feature_pair)
    return chosen


def _vid_lp_pair(hp, teacher, student, teacher_features, student_features):
    target = hp["vid_lp_target"]
    if target not in ("logits", "features"):
        raise ValueError(
            "`vid_lp_target` must be 'logits' (the teacher's output) or "
            f"'features' (teacher_features). Received: vid_lp_target={target!r}."
        )
    if student_features is None:
        raise ValueError(
            "Method 'vid_lp' regresses the teacher's logits from the student's "
            "penultimate layer, so it needs `student_features` (that layer's "
            "name, e.g. 'features')."
        )
    if target == "features" and teacher_features is None:
        raise ValueError(
            "vid_lp_target='features' needs `teacher_features`, the teacher's "
            "penultimate layer name."
        )
    if target == "logits":
        t_shape, s_shape = (
            [tuple(o.shape) for o in m.outputs] for m in (teacher, student)
        )
        if len(t_shape) != 1 or len(s_shape) != 1 or t_shape[0][-1] != s_shape[0][-1]:
            # A regressor could map to any width, but the paper's VID-LP
            # transfers the teacher's class evidence to the same classes; with
            # another label space that target means nothing for the student.
            raise ValueError(
                "Method 'vid_lp' regresses the teacher's logits, so the teacher "
                "and the student must predict the same classes. Received: "
                f"teacher logits shape {t_shape}, student logits shape {s_shape}. "
                "For a teacher of another task, use 'vid_i' (intermediate layers "
                "only)."
            )
    teacher_layer = OUTPUT if target == "logits" else teacher_features
    return LayerPair(teacher_layer, student_features, weight=hp["vid_lp_weight"])
