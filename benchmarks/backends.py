r"""Step time of VIDDistiller on every Keras backend, in one table.

For each Keras backend (TensorFlow, JAX, PyTorch; optionally TensorFlow with
XLA) this times one training step of each candidate, on the same teacher,
student, starting weights and batch, and puts the backends side by side:

- `student`: the student alone, one training step (reference).
- `bound`: teacher inference to the three stage taps plus one student step on
  the task loss only: the least any feature distiller must do. A
  `keras.Model` whose `call` runs the student and whose `compute_loss`
  (Keras's public override point, the same on every backend) adds
  `w * checksum`, the checksum being the sum of the mean absolute values of
  the teacher's taps (computed with `training=False`, no gradient). `w` is a
  non-trainable variable holding 0.0, so the value is the task loss, but no
  compiler can prune the teacher (a literal `0.0 * checksum` could be folded
  away under a fast-math setting; a variable is a runtime input). After
  timing, three more steps at `w = 0, 1, 0` check that the loss grows by the
  checksum (recomputed eagerly), with no retrace: the teacher's taps really
  are computed inside the timed train step (`bound_check` in the JSON).
- `vid`: `keras_vid.VIDDistiller`, VID-I on the three stage pairs, raw
  targets, the paper's regressor, no logit term (the `vid@3` of
  `benchmarks/step_time.py` and docs/benchmarks.md).
- `vid_default`: `keras_vid.VIDDistiller(teacher, student)`: its defaults
  (pairs found from the graphs, standardised targets, BatchNorm in the
  regressors, DIST on the logits). `fit` calibrates the standardised
  targets before training and `train_on_batch` refuses to run without it, so
  the script calls `distiller.calibrate(x)` once, on the benchmark batch.
- `keras`: `keras.distillation.Distiller` with a parameter-free
  spatial-attention `FeatureDistillation` on each of the same stage pairs
  plus `LogitsDistillation(temperature=4, KLDivergence)`,
  `student_loss_weight=0.5` (the `keras@3` of `benchmarks/step_time.py`).

Pairs: `small_cnn (32, 64, 128) -> small_cnn (8, 16, 32)` at 28x28x1
(`fmnist_cnn`) and WRN-40-2 -> WRN-16-1 at 32x32x3 (`wrn`), as in
`step_time.py`.

Same computation on every backend: every weight of the teacher and the
student, and every kernel the distillers add (the VID regressors), is drawn
by NumPy from `--seed` (He-scaled normal kernels; BatchNorm `gamma` and
`moving_variance` uniform in [0.5, 1.5]; other vectors small normals), and
the batch is the same NumPy array (`x ~ N(0, 1)`, 10 random labels). The
teacher's BatchNorm moving statistics are then set to the batch's own (one
training-mode pass with momentum 0): with random weights and unit moving
variances, WRN-40-2's activations otherwise grow to hundreds in inference
mode, and the raw VID loss to 1e5, which blows the shared student up. The
first-step losses agree across backends to 5 digits. Every
candidate is a `keras.Model` compiled with `SGD(1e-4, momentum=0.9)`, sparse
categorical cross-entropy on the logits and the backend's default
`jit_compile="auto"`, which Keras resolves to XLA on JAX and to none on a
CPU-only TensorFlow and on PyTorch (the resolved value is recorded);
`--tf_xla` adds TensorFlow with `jit_compile=True` as the backend row
`tensorflow+xla`.

How it is timed. Each backend runs in its own child process (`KERAS_BACKEND`
is read at import), one after the other, never two at once. The JAX and
PyTorch children block the import of TensorFlow (`--noblock_tensorflow`
allows it), so they run as on a machine without it. A step is one call of Keras's public
`model.train_on_batch(x, y)` with the NumPy batch, the same single-step API
on every backend; it returns NumPy logs, a host sync, so the step is done
when it returns. It also converts the batch, resets the metrics and, on JAX,
gathers and writes back every variable of the model (teacher included) on
each call, which `fit` does once per epoch; `api_overhead_ms` in the JSON
estimates that host-side share (`reset_metrics` plus, on JAX, the state
gather and sync), per candidate. The first call (trace and compile) is timed
separately (`first_call_s`), then `--warmup` untimed steps. Measurement runs
in `--rounds` rounds: in each, every candidate runs `--steps_per_round`
timed steps, the candidate order rotating from round to round and reversing
every other round, so machine noise hits all candidates alike. Reported: the
median and interquartile range of the per-step wall-clock time
(`time.perf_counter`) and process CPU time (`time.process_time`, all
threads), and ratios paired by round (each computed within a round from the
candidates' per-round medians, then the median and IQR over rounds):
vid/bound, vid/keras, vid/student, bound/student, vid_default/bound,
vid_default/keras. CPU time barely depends on other jobs competing for the
cores, so it is the robust measure on a shared machine.

Threads: by default each backend uses its own thread pools. On a machine
where other jobs hold the cores, PyTorch's default OpenMP threads spin while
waiting for each other, and its steps were up to 30x slower (1.16 s instead
of 37 ms for the CNN student at batch 16); `--single_thread` gives every
backend one compute thread (TensorFlow's intra- and inter-op pools, XLA's
Eigen pool, `torch.set_num_threads(1)`), which makes the backends comparable
there. XLA's CPU runtime on JAX may still run independent operations of one
step concurrently (process CPU time above the wall clock).

Run (both pairs, the three backends; about 10 minutes on the shared 2-core
CPU, of which about 4 are imports, builds and JAX's compiles):

    .venv/bin/python benchmarks/backends.py --single_thread \
        --backends=tensorflow,jax,torch --pairs=fmnist_cnn,wrn \
        --fmnist_batch=128 --wrn_batch=64 --rounds=20 --wrn_rounds=8 \
        --warmup=1 --output=docs/benchmarks_backends.json

A quick check (about 2 minutes in all, mostly JAX's compiles):

    .venv/bin/python benchmarks/backends.py --single_thread --pairs=fmnist_cnn \
        --fmnist_batch=16 --rounds=3 --warmup=1 --output=/tmp/backends.json

The Markdown tables of an earlier run:

    .venv/bin/python benchmarks/backends.py --report_from=docs/benchmarks_backends.json
"""

import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import warnings

from absl import app, flags
from pairs import (
    PAIR_LABELS,
    STAGES,
    build_models,
    cpu_model,
    holder,
    keras_distiller,
    paper_vid,
)

FLAGS = flags.FLAGS

BACKENDS = ("tensorflow", "jax", "torch")
PAIRS = ("fmnist_cnn", "wrn")
CANDIDATES = ("student", "bound", "vid", "vid_default", "keras")
# The flags a backend's child process takes from the parent.
CHILD_FLAGS = (
    "pairs",
    "fmnist_batch",
    "wrn_batch",
    "candidates",
    "rounds",
    "wrn_rounds",
    "steps_per_round",
    "warmup",
    "learning_rate",
    "seed",
    "block_tensorflow",
    "single_thread",
    "check_bound",
)

flags.DEFINE_list(
    "backends", list(BACKENDS), "Keras backends, timed one after the other."
)
flags.DEFINE_bool(
    "tf_xla",
    False,
    "Also time TensorFlow with jit_compile=True (the row tensorflow+xla).",
)
flags.DEFINE_list("pairs", list(PAIRS), "Model pairs: fmnist_cnn, wrn.")
flags.DEFINE_integer("fmnist_batch", 128, "Batch size of the fmnist_cnn pair.")
flags.DEFINE_integer("wrn_batch", 64, "Batch size of the wrn pair.")
flags.DEFINE_list("candidates", list(CANDIDATES), "Candidates to time.")
flags.DEFINE_integer("rounds", 30, "Interleaved timing rounds.")
flags.DEFINE_integer("wrn_rounds", None, "Rounds for the wrn pair (default --rounds).")
flags.DEFINE_integer("steps_per_round", 1, "Timed steps per candidate per round.")
flags.DEFINE_integer(
    "warmup", 2, "Untimed steps per candidate after the first (compiling) call."
)
flags.DEFINE_float("learning_rate", 1e-4, "SGD learning rate (momentum 0.9).")
flags.DEFINE_integer("seed", 0, "Seed of the NumPy weights and data.")
flags.DEFINE_bool(
    "block_tensorflow",
    True,
    "Block the import of TensorFlow in the JAX and PyTorch children.",
)
flags.DEFINE_bool(
    "single_thread",
    False,
    "One compute thread on every backend (TF intra/inter-op 1, XLA's Eigen "
    "single-threaded, torch.set_num_threads(1)). Use it on a loaded machine: "
    "PyTorch's default OpenMP threads spin when a core is taken by another "
    "job, which made its steps up to 30x slower here.",
)
flags.DEFINE_bool(
    "check_bound",
    True,
    "After timing, check that the bound's train step computes the teacher.",
)
flags.DEFINE_string("output", "docs/benchmarks_backends.json", "Results (JSON).")
flags.DEFINE_string(
    "report_from", None, "Print the Markdown tables of a results JSON and exit."
)
flags.DEFINE_string("child", None, "Internal: the backend row this child runs.")
flags.DEFINE_string("child_output", None, "Internal: where the child writes JSON.")


# (name, numerator, denominator) of the ratios paired by round.
RATIOS = (
    ("vid/bound", "vid", "bound"),
    ("vid/keras", "vid", "keras"),
    ("vid/student", "vid", "student"),
    ("bound/student", "bound", "student"),
    ("vid_default/bound", "vid_default", "bound"),
    ("vid_default/keras", "vid_default", "keras"),
)


# ----------------------------------------------------------------- models
def numpy_value(variable, rng):
    """A NumPy draw for one weight, the same on every backend."""
    shape = tuple(variable.shape)
    name = variable.path.rsplit("/", 1)[-1]
    if name in ("gamma", "moving_variance"):
        return rng.uniform(0.5, 1.5, shape).astype("float32")
    if len(shape) >= 2:
        # He-scaled kernels keep the activations finite through 40 layers in
        # inference mode (the teacher), where BatchNorm does not renormalise.
        fan_in = 1
        for d in shape[:-1]:
            fan_in *= d
        return rng.normal(0.0, (2.0 / fan_in) ** 0.5, shape).astype("float32")
    return rng.normal(0.0, 0.1, shape).astype("float32")


def numpy_weights(model, seed):
    """Sets every weight of `model` from NumPy (like tests/backends)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    model.set_weights([numpy_value(w, rng) for w in model.weights])


def numpy_new_kernels(model, known, seed):
    """Redraws with NumPy the kernels `model` added (e.g. VID regressors).

    Their other weights (biases, variances, BatchNorm, calibration
    statistics) start from constants, the same on every backend.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    known = {id(v) for v in known}
    redrawn = 0
    for v in model.weights:
        if id(v) not in known and len(v.shape) >= 2:
            v.assign(numpy_value(v, rng))
            redrawn += 1
    return redrawn


def set_teacher_bn_statistics(teacher, x):
    """Sets the teacher's BatchNorm moving statistics to the batch's own.

    With random weights and unit moving variances, a deep residual teacher
    in inference mode amplifies its activations block after block (WRN-40-2's
    stage3 reached hundreds, its raw VID loss 1e5), which would make the
    distillers' gradients blow the shared student up within a few steps.
    One training-mode pass with momentum 0 makes every moving statistic the
    batch's statistic, so inference on the batch matches a trained network's
    scale. The same NumPy weights and batch on every backend give the same
    statistics, to float precision.
    """
    import keras

    layers = [
        layer
        for layer in teacher._flatten_layers()
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    momenta = [layer.momentum for layer in layers]
    try:
        for layer in layers:
            layer.momentum = 0.0
        teacher(x, training=True)
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
    return len(layers)


def make_data(batch, input_shape, seed):
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, *input_shape)).astype("float32")
    y = rng.integers(0, 10, size=(batch,)).astype("int32")
    return x, y


def make_bound_class():
    import keras
    from keras import ops

    class Bound(keras.Model):
        """Teacher inference to the taps + one student step on the task loss.

        Backend-agnostic: Keras's own train step on every backend calls
        `call` (the student) and then `compute_loss`, where the teacher runs.
        """

        def __init__(self, teacher, student, taps):
            super().__init__(name="bound")
            # Frozen and tracked as the distillers do, so on JAX its weights
            # are part of the state the train function takes.
            teacher.trainable = False
            self.teacher = teacher
            self.student = student
            extractor = keras.Model(
                teacher.inputs, [teacher.get_layer(n).output for n in taps]
            )
            self._t = holder(model=extractor)
            # 0.0 at run time, but a runtime input to the compiled step, so
            # the checksum (and the teacher) cannot be folded away.
            self.teacher_weight = self.add_weight(
                name="teacher_weight",
                shape=(),
                initializer="zeros",
                trainable=False,
            )
            self.built = True

        def call(self, x, training=False):
            return self.student(x, training=training)

        def checksum(self, x):
            t_taps = self._t.model(x, training=False)
            t_taps = t_taps if isinstance(t_taps, (list, tuple)) else [t_taps]
            # Mean absolute values: no cancellation, so the check below sees
            # a clearly nonzero checksum.
            return sum(ops.mean(ops.abs(ops.stop_gradient(t))) for t in t_taps)

        def compute_loss(
            self, x=None, y=None, y_pred=None, sample_weight=None, training=True
        ):
            loss = super().compute_loss(
                x, y, y_pred, sample_weight=sample_weight, training=training
            )
            return loss + self.teacher_weight * ops.cast(self.checksum(x), "float32")

    return Bound


def build_candidate(name, teacher, student, jit, lr, seed):
    """Returns `(compiled keras.Model, info dict)`."""
    import keras

    import keras_vid

    info = {}
    known = list(teacher.weights) + list(student.weights)
    if name == "student":
        # A fresh functional copy on the same layers gets its own optimizer
        # and train function without re-compiling the shared student.
        model = keras.Model(student.inputs, student.outputs, name="student_alone")
    elif name == "bound":
        model = make_bound_class()(teacher, student, STAGES)
    elif name == "vid":
        model = paper_vid(teacher, student, STAGES)
    elif name == "vid_default":
        model = keras_vid.VIDDistiller(teacher, student)
        info["pairs"] = [[p.teacher, p.student] for p in model.pairs]
        info["terms"] = [type(t).__name__ for t in model.terms]
    elif name == "keras":
        model = keras_distiller(teacher, student, STAGES)
    else:
        raise ValueError(f"Unknown candidate {name!r}.")
    info["numpy_kernels_added"] = numpy_new_kernels(model, known, seed)
    model.compile(
        optimizer=keras.optimizers.SGD(lr, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit,
    )
    info["jit_compile"] = model.jit_compile
    return model, info


# ----------------------------------------------------------------- timing


class Stepper:
    """One candidate: `step()` is one `train_on_batch` (synced: NumPy logs)."""

    def __init__(self, name, model, x, y):
        self.name, self.model, self.x, self.y = name, model, x, y
        self.times, self.cpu_times = [], []
        self.train_step_calls = 0
        original = model.train_step

        def counted(*args):
            # Python runs here when a step is traced (TF, JAX) or, eager
            # (PyTorch), on every step.
            self.train_step_calls += 1
            return original(*args)

        model.train_step = counted

    def step(self):
        return self.model.train_on_batch(self.x, self.y, return_dict=True)

    def first(self):
        start = time.perf_counter()
        self.logs = self.step()
        self.first_s = time.perf_counter() - start


def summarize(values_s):
    ms = sorted(1000.0 * t for t in values_s)
    if len(ms) == 1:
        q = [ms[0], ms[0], ms[0]]
    else:
        q = statistics.quantiles(ms, n=4, method="inclusive")
    return {
        "median_ms": statistics.median(ms),
        "q1_ms": q[0],
        "q3_ms": q[2],
        "min_ms": ms[0],
        "n": len(ms),
    }


def _median_iqr(values):
    if len(values) == 1:
        return {"median": values[0], "q1": values[0], "q3": values[0]}
    q = statistics.quantiles(values, n=4, method="inclusive")
    return {"median": statistics.median(values), "q1": q[0], "q3": q[2]}


def api_overhead_ms(model, repeats=10):
    """Host-side work of one `train_on_batch` besides the step itself.

    `reset_metrics`, and on JAX the gather of the state and its write-back
    into every variable (`_get_jax_state`, `jax_state_sync`). Median of
    `repeats` calls; the values written back are the current ones.
    """
    import keras

    jax = keras.backend.backend() == "jax"
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.reset_metrics()
        if jax:
            state = model._get_jax_state(
                trainable_variables=True,
                non_trainable_variables=True,
                optimizer_variables=True,
                metrics_variables=True,
            )
            names = (
                "trainable_variables",
                "non_trainable_variables",
                "optimizer_variables",
                "metrics_variables",
            )
            model._jax_state = dict(zip(names, state))
            model._jax_state_synced = False
            model.jax_state_sync()
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


def check_bound(stepper, x):
    """One step with the checksum's weight at 1: the loss must grow by it.

    The checksum is recomputed here, eagerly, from the teacher's taps. This
    proves that the teacher's taps are computed inside the same compiled
    train step that was timed (the weight is a runtime input, so no
    retrace; `retraced` counts traces of the step during the check). Three
    steps, at weights 0, 1, 0: the student's drift (one SGD step at lr 1e-4
    each) cancels in the difference to the mean of the outer two.
    """
    import keras
    import numpy as np

    model = stepper.model
    with warnings.catch_warnings():
        # The extractor's inputs are a list of one; Keras warns, harmlessly.
        warnings.simplefilter("ignore", UserWarning)
        taps = model._t.model(x, training=False)
    checksum = float(
        sum(
            np.mean(np.abs(keras.ops.convert_to_numpy(t)), dtype="float64")
            for t in taps
        )
    )
    calls = stepper.train_step_calls
    before = float(stepper.step()["loss"])
    model.teacher_weight.assign(1.0)
    try:
        with_teacher = float(stepper.step()["loss"])
    finally:
        model.teacher_weight.assign(0.0)
    after = float(stepper.step()["loss"])
    # The mean of the steps before and after cancels the student's drift.
    delta = with_teacher - 0.5 * (before + after)
    ok = bool(abs(delta - checksum) <= 1e-2 * max(1.0, abs(checksum)))
    out = {
        "checksum": checksum,
        "loss_w0_before": before,
        "loss_w1": with_teacher,
        "loss_w0_after": after,
        "delta": delta,
        "ok": ok,
        "retraced": stepper.train_step_calls - calls
        if keras.backend.backend() != "torch"
        else None,
    }
    if not ok:
        print(f"  BOUND CHECK FAILED: {out}", flush=True)
    return out


def run_pair(pair, batch, rounds, jit, names):
    import keras
    import numpy as np

    teacher, student, input_shape = build_models(pair, FLAGS.seed)
    numpy_weights(teacher, FLAGS.seed + 1)
    numpy_weights(student, FLAGS.seed + 2)
    x, y = make_data(batch, input_shape, FLAGS.seed)
    bn_layers = set_teacher_bn_statistics(teacher, x)
    out = {
        "pair": pair,
        "label": PAIR_LABELS[pair],
        "batch": batch,
        "rounds": rounds,
        "teacher_bn_layers_set_from_batch": bn_layers,
        "candidates": {},
        "errors": {},
    }
    steppers = []
    for i, name in enumerate(names):
        try:
            start = time.perf_counter()
            model, info = build_candidate(
                name, teacher, student, jit, FLAGS.learning_rate, FLAGS.seed + 10 + i
            )
            if name == "vid_default":
                # What fit() does before its first step; train_on_batch
                # refuses to step without it.
                model.calibrate(x)
                info["calibrated"] = not any(
                    getattr(t, "needs_calibration", False) for t in model.terms
                )
            info["build_s"] = time.perf_counter() - start
            stepper = Stepper(name, model, x, y)
            stepper.first()
            for _ in range(FLAGS.warmup):
                stepper.step()
            info["first_call_s"] = stepper.first_s
            info["first_logs"] = {k: float(v) for k, v in stepper.logs.items()}
            info["train_step_calls_after_warmup"] = stepper.train_step_calls
            out["candidates"][name] = info
            steppers.append(stepper)
            print(
                f"  {name:12s} jit_compile={info['jit_compile']!s:5s} "
                f"first call {stepper.first_s:6.1f} s  "
                f"loss {info['first_logs'].get('loss', float('nan')):.4f}",
                flush=True,
            )
        except Exception as e:  # Reported, not hidden: the other candidates run.
            out["errors"][name] = {
                "type": type(e).__name__,
                "message": str(e)[:4000],
                "traceback": traceback.format_exc()[-6000:],
            }
            print(f"  {name:12s} FAILED: {type(e).__name__}: {e}"[:2000], flush=True)
    per = FLAGS.steps_per_round
    for r in range(rounds):
        shift = r % max(1, len(steppers))
        order = steppers[shift:] + steppers[:shift]
        if r % 2:
            order = order[::-1]
        for s in order:
            if s.name in out["errors"]:
                continue
            for _ in range(per):
                start, cpu = time.perf_counter(), time.process_time()
                try:
                    s.last_logs = s.step()
                except Exception as e:
                    out["errors"][s.name] = {
                        "type": type(e).__name__,
                        "message": f"in timed step: {str(e)[:4000]}",
                        "traceback": traceback.format_exc()[-6000:],
                    }
                    break
                s.times.append(time.perf_counter() - start)
                s.cpu_times.append(time.process_time() - cpu)
    steppers = [s for s in steppers if s.name not in out["errors"]]
    for s in steppers:
        info = out["candidates"][s.name]
        info["wall"] = summarize(s.times)
        info["cpu"] = summarize(s.cpu_times)
        for clock, values in (("wall", s.times), ("cpu", s.cpu_times)):
            info[f"round_{clock}_ms"] = [
                1000.0 * statistics.median(values[i : i + per])
                for i in range(0, len(values), per)
            ]
        info["train_step_calls"] = s.train_step_calls
        logs = getattr(s, "last_logs", None) or s.logs
        info["last_logs"] = {k: float(v) for k, v in logs.items()}
        info["finite"] = bool(all(np.isfinite(v) for v in info["last_logs"].values()))
        info["api_overhead_ms"] = api_overhead_ms(s.model)
        print(
            f"  {s.name:12s} wall {info['wall']['median_ms']:8.2f} ms "
            f"(IQR {info['wall']['q1_ms']:.1f}-{info['wall']['q3_ms']:.1f})  "
            f"cpu {info['cpu']['median_ms']:8.2f} ms  "
            f"api overhead {info['api_overhead_ms']:.2f} ms",
            flush=True,
        )
    if FLAGS.check_bound:
        bound = [s for s in steppers if s.name == "bound"]
        if bound:
            out["bound_check"] = check_bound(bound[0], x)
            print(f"  bound check: {out['bound_check']}", flush=True)
    out["ratios"] = paired_ratios(out["candidates"])
    del steppers
    keras.backend.clear_session()
    return out


def paired_ratios(candidates):
    out = {}
    for label, num, den in RATIOS:
        a, b = candidates.get(num), candidates.get(den)
        if not a or not b or "round_wall_ms" not in a or "round_wall_ms" not in b:
            continue
        out[label] = {
            clock: _median_iqr(
                [u / v for u, v in zip(a[f"round_{clock}_ms"], b[f"round_{clock}_ms"])]
            )
            for clock in ("wall", "cpu")
        }
    return out


def child_main(label, output):
    backend = label.split("+")[0]
    if os.environ.get("KERAS_BACKEND") != backend:
        raise app.UsageError(f"--child={label} needs KERAS_BACKEND={backend}.")
    blocked = backend != "tensorflow" and FLAGS.block_tensorflow
    if blocked:
        # As on a machine without TensorFlow: any import of it fails.
        sys.modules["tensorflow"] = None
    if FLAGS.single_thread:
        # Read when XLA's CPU client starts (JAX, and TF with XLA).
        os.environ["XLA_FLAGS"] = (
            os.environ.get("XLA_FLAGS", "")
            + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        ).strip()
    import keras

    jit = True if label == "tensorflow+xla" else "auto"
    info = {
        "label": label,
        "backend": keras.backend.backend(),
        "jit_compile_requested": jit,
        "tensorflow_blocked": blocked,
        "keras": keras.__version__,
        "single_thread": FLAGS.single_thread,
        "xla_flags": os.environ.get("XLA_FLAGS"),
    }
    if backend == "jax":
        import jax

        info["jax"] = jax.__version__
        info["devices"] = [str(d) for d in jax.devices()]
    elif backend == "torch":
        import torch

        if FLAGS.single_thread:
            torch.set_num_threads(1)
            torch.set_num_interop_threads(1)
        info["torch"] = torch.__version__
        info["torch_num_threads"] = torch.get_num_threads()
        info["torch_num_interop_threads"] = torch.get_num_interop_threads()
    else:
        import tensorflow as tf

        if FLAGS.single_thread:
            tf.config.threading.set_intra_op_parallelism_threads(1)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        info["tensorflow"] = tf.__version__
        info["devices"] = [d.name for d in tf.config.list_physical_devices()]
        info["tf_threads_intra_inter"] = [
            tf.config.threading.get_intra_op_parallelism_threads(),
            tf.config.threading.get_inter_op_parallelism_threads(),
        ]
    names = [c for c in CANDIDATES if c in FLAGS.candidates]
    result = {"info": info, "pairs": {}}
    start = time.time()
    for pair in FLAGS.pairs:
        batch = FLAGS.fmnist_batch if pair == "fmnist_cnn" else FLAGS.wrn_batch
        rounds = FLAGS.rounds
        if pair == "wrn" and FLAGS.wrn_rounds:
            rounds = FLAGS.wrn_rounds
        print(f"[{label}] {pair} batch {batch}, {rounds} rounds", flush=True)
        t0 = time.time()
        res = run_pair(pair, batch, rounds, jit, names)
        res["wall_s"] = time.time() - t0
        res["loadavg_1min_end"] = os.getloadavg()[0]
        result["pairs"][pair] = res
        with open(output, "w") as f:
            json.dump(result, f, indent=1)
    result["info"]["tensorflow_imported"] = sys.modules.get("tensorflow") is not None
    result["wall_s"] = time.time() - start
    with open(output, "w") as f:
        json.dump(result, f, indent=1)


# ----------------------------------------------------------------- parent


def machine_info():
    """CPU and package versions, without importing any framework."""
    from importlib import metadata

    model = cpu_model()
    versions = {}
    for package in ("keras", "tensorflow", "jax", "jaxlib", "torch", "numpy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"
        ),
        "cpu_model": model,
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
        "loadavg_at_start": os.getloadavg(),
    }


def run_child(label):
    """Runs one backend row in a fresh process; returns its JSON (or error)."""
    fd, path = tempfile.mkstemp(suffix=".json", prefix="backends_")
    os.close(fd)
    env = dict(os.environ, KERAS_BACKEND=label.split("+")[0])
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = [f"--child={label}", f"--child_output={path}"]
    for name in CHILD_FLAGS:
        value = FLAGS[name].value
        if value is None:
            continue
        if isinstance(value, bool):
            args.append(f"--{name}" if value else f"--no{name}")
        elif isinstance(value, list):
            args.append(f"--{name}={','.join(value)}")
        else:
            args.append(f"--{name}={value}")
    start = time.time()
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), *args], env=env, check=False
    )
    result = {}
    try:
        with open(path) as f:
            text = f.read()
        result = json.loads(text) if text else {}
    finally:
        os.remove(path)
    result["returncode"] = proc.returncode
    result["child_wall_s"] = time.time() - start
    return result


def _cell(x, digits=1):
    return "-" if x is None else f"{x:.{digits}f}"


def _ratio_cell(ratios, key, clock):
    r = ratios.get(key, {}).get(clock)
    if not r:
        return "-"
    return f"{r['median']:.2f} ({r['q1']:.2f}-{r['q3']:.2f})"


def _jit(res):
    values = sorted({str(c["jit_compile"]) for c in res["candidates"].values()})
    return values[0] if len(values) == 1 else "mixed: " + "/".join(values)


def _rows(report):
    for label, run in report["runs"].items():
        for pair, res in run.get("pairs", {}).items():
            yield label, pair, res


def markdown(report):
    lines = []
    m = report["machine"]
    v = m["versions"]
    lines += [
        f"Machine: {m['cpu_model']}, {m['nproc']} cores; Python {m['python']}; "
        f"keras {v.get('keras')}, tensorflow {v.get('tensorflow')}, "
        f"jax {v.get('jax')}, torch {v.get('torch')}; {m['date']}.",
        "",
        "Threads: "
        + (
            "one compute thread per backend (`--single_thread`)."
            if report["flags"].get("single_thread")
            else "each backend's default."
        )
        + f" Load average at start: {m['loadavg_at_start'][0]:.1f}.",
        "",
    ]
    for clock, title in (("wall", "wall-clock"), ("cpu", "process CPU time")):
        lines += [
            f"#### ms/step ({title}, median) and ratios paired by round: median (IQR)",
            "",
            "| pair | batch | backend | jit_compile | student | bound | vid | "
            "vid_default | keras | vid/bound | vid/keras | vid_default/bound | "
            "vid_default/keras |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for label, pair, res in _rows(report):
            c = res["candidates"]
            ms = [
                _cell(c[n][clock]["median_ms"])
                if n in c and clock in c[n]
                else ("error" if n in res.get("errors", {}) else "-")
                for n in CANDIDATES
            ]
            ratios = [
                _ratio_cell(res.get("ratios", {}), k, clock)
                for k in (
                    "vid/bound",
                    "vid/keras",
                    "vid_default/bound",
                    "vid_default/keras",
                )
            ]
            lines.append(
                f"| {pair} | {res['batch']} | {label} | {_jit(res) if c else '-'} | "
                + " | ".join(ms + ratios)
                + " |"
            )
        lines.append("")
    lines += [
        "#### More: paired ratios (wall / CPU medians), first call, API overhead",
        "",
        "| pair | batch | backend | vid/student | bound/student | "
        "first call s (student/bound/vid/vid_default/keras) | "
        "train_on_batch host overhead ms (same order) | bound check |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, pair, res in _rows(report):
        c, r = res["candidates"], res.get("ratios", {})

        def two(key, r=r):
            x = r.get(key)
            if not x:
                return "-"
            return f"{x['wall']['median']:.2f} / {x['cpu']['median']:.2f}"

        first = "/".join(
            _cell(c[n].get("first_call_s")) if n in c else "-" for n in CANDIDATES
        )
        over = "/".join(
            _cell(c[n].get("api_overhead_ms"), 2) if n in c else "-" for n in CANDIDATES
        )
        check = res.get("bound_check")
        check = "-" if not check else ("ok" if check["ok"] else "FAILED")
        lines.append(
            f"| {pair} | {res['batch']} | {label} | {two('vid/student')} | "
            f"{two('bound/student')} | {first} | {over} | {check} |"
        )
    errors = [
        (label, pair, name, e)
        for label, pair, res in _rows(report)
        for name, e in res.get("errors", {}).items()
    ]
    failed = [
        (label, run["returncode"])
        for label, run in report["runs"].items()
        if run.get("returncode")
    ]
    if errors or failed:
        lines += ["", "#### Failures", ""]
        for label, pair, name, e in errors:
            lines.append(f"- {label}, {pair}, {name}: {e['type']}: {e['message']}")
        for label, rc in failed:
            lines.append(f"- {label}: child exited with code {rc}")
    return "\n".join(lines)


def main(argv):
    del argv
    if FLAGS.child:
        child_main(FLAGS.child, FLAGS.child_output)
        return
    if FLAGS.report_from:
        with open(FLAGS.report_from) as f:
            print(markdown(json.load(f)))
        return
    for b in FLAGS.backends:
        if b not in BACKENDS:
            raise app.UsageError(f"Unknown backend {b!r}; one of {BACKENDS}.")
    for p in FLAGS.pairs:
        if p not in PAIRS:
            raise app.UsageError(f"Unknown pair {p!r}; one of {PAIRS}.")
    for c in FLAGS.candidates:
        if c not in CANDIDATES:
            raise app.UsageError(f"Unknown candidate {c!r}; one of {CANDIDATES}.")
    labels = []
    for b in FLAGS.backends:
        labels.append(b)
        if b == "tensorflow" and FLAGS.tf_xla:
            labels.append("tensorflow+xla")
    start = time.time()
    report = {
        "machine": machine_info(),
        "flags": {
            name: FLAGS[name].value for name in ("backends", "tf_xla", *CHILD_FLAGS)
        },
        "command": " ".join(sys.argv),
        "runs": {},
    }
    print(json.dumps(report["machine"]), flush=True)
    for label in labels:
        report["runs"][label] = run_child(label)
        report["wall_s"] = time.time() - start
        if FLAGS.output:
            os.makedirs(os.path.dirname(FLAGS.output) or ".", exist_ok=True)
            with open(FLAGS.output, "w") as f:
                json.dump(report, f, indent=1)
    print(markdown(report))
    print(f"total wall time {report['wall_s']:.0f} s", flush=True)


if __name__ == "__main__":
    app.run(main)
