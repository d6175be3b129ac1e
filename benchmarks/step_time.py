r"""Step time and peak memory of VIDDistiller against Keras's Distiller and the bound.

In one process, on the same teacher, student, batch and random data, this
times one training step of each candidate:

- `vid@k`: `keras_vid.VIDDistiller`, VID-I on k stage pairs (k = 3 is the
  main candidate, "1" in the ratios; smaller k is the pair-count study).
- `keras@k`: `keras.distillation.Distiller` with k `FeatureDistillation`
  terms on the same stage pairs plus `LogitsDistillation` ("2"). Its
  `FeatureDistillation` has no regressor and no stage tap of these pairs has
  the same shape in teacher and student, so its feature loss is a
  parameter-free spatial-attention MSE, which accepts any channel counts
  (`attention_mse` below).
- `bound`: teacher inference to the same taps plus one student training step
  on the task loss only, in one compiled function ("3"). A checksum of the
  teacher's taps is returned with the loss, so the teacher cannot be pruned.
- `student`: the student alone, one training step (reference).
- `regressors@k`: the VID terms alone (k regressors, their variances and the
  Gaussian NLL) on fixed, precomputed taps: forward, backward to the
  regressors' weights *and* to the student taps, and their optimizer update.
  It estimates the regressors' share of a `vid@k` step, and
  `overhead = vid@k - bound - regressors@k` the implementation's own cost.

Every candidate is a `keras.Model` compiled with the same optimizer, loss and
`jit_compile`, and is stepped through its own Keras train function (the one
`fit` uses), called in a Python loop with the same batch (as tensors), with
a host sync (`.numpy()` on the loss) after each step. After warm-up (the
first call traces and compiles), measurement runs in rounds: in each round
every candidate runs `steps / rounds` timed steps (one, by default: the
candidates alternate step by step), the candidate order rotating from round
to round, so that machine noise hits all candidates alike. Reported: the
median and interquartile range of the per-step wall-clock and process CPU
times, and ratios paired by round (each computed within a round, then the
median and IQR over rounds). CPU time (all threads) barely depends on other
jobs competing for the cores, so it is the robust measure on a shared machine.

Peak memory (`--memory=child`): each (pair, batch size, XLA) candidate runs
again in a fresh child process (`--child_spec`), which reports the resident
set size high-water mark (`VmHWM` in `/proc/self/status`) twice: over the
whole child (import, build, compile and steps), and over the steady-state
steps alone, after resetting the mark (`/proc/self/clear_refs`) once the
first step (trace + compile) is done. `tracemalloc` does not see TensorFlow's
allocations, and `tf.config.experimental.get_memory_info` has no statistics
on CPU. On a GPU the script would report `get_memory_info("GPU:0")["peak"]`.

Run (the figures in docs/benchmarks.md; see there for the memory run):

    TF_CPP_MIN_LOG_LEVEL=2 .venv/bin/python benchmarks/step_time.py \
        --pairs=all --batch_sizes=64,128 --fmnist_batch_sizes=128 \
        --steps=40 --rounds=40 --wrn_steps=30 --wrn_rounds=30 --warmup=1 \
        --xla=both --num_pairs=1,2,3 --scaling_batch_sizes=128 \
        --scaling_xla=off --memory_batch_sizes=128 --output=docs/benchmarks_raw.json
"""

import datetime
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time

from absl import app, flags
from pairs import (
    PAIR_LABELS,
    build_models,
    cpu_model,
    holder,
    keras_distiller,
    paper_vid,
    stage_taps,
)

FLAGS = flags.FLAGS

flags.DEFINE_enum("pairs", "all", ["fmnist_cnn", "wrn", "all"], "Model pairs.")
flags.DEFINE_list("batch_sizes", ["64", "128"], "Batch sizes.")
flags.DEFINE_list(
    "fmnist_batch_sizes", None, "Batch sizes for the CNN pair (default: --batch_sizes)."
)
flags.DEFINE_integer(
    "steps", 30, "Timed steps per candidate, in all rounds together (>= 30)."
)
flags.DEFINE_integer(
    "rounds",
    30,
    "Interleaved rounds; in each, every candidate runs steps / rounds timed "
    "steps (rounds = steps: they alternate step by step).",
)
flags.DEFINE_integer(
    "wrn_rounds", None, "Rounds for the WRN pair; defaults to --rounds."
)
flags.DEFINE_integer("wrn_steps", None, "Timed steps for the WRN pair.")
flags.DEFINE_integer("warmup", 2, "Untimed steps per candidate before round 1.")
flags.DEFINE_integer(
    "switch_steps", 0, "Untimed steps each time a candidate's turn comes up."
)
flags.DEFINE_enum("xla", "both", ["both", "on", "off"], "jit_compile setting.")
flags.DEFINE_list("num_pairs", ["1", "2", "3"], "Pair counts for VIDDistiller (1..3).")
flags.DEFINE_bool(
    "keras_scaling",
    False,
    "Also time Keras's Distiller at every --num_pairs (else only the largest).",
)
flags.DEFINE_list(
    "scaling_batch_sizes",
    None,
    "Batch sizes at which the smaller pair counts run (default: all).",
)
flags.DEFINE_list(
    "candidates",
    None,
    "Only these candidate families (student, bound, vid, regressors, keras).",
)
flags.DEFINE_enum(
    "scaling_xla", "both", ["both", "on", "off"], "XLA modes of the smaller k."
)
flags.DEFINE_enum(
    "memory_xla", "both", ["both", "on", "off"], "XLA modes of the memory children."
)
flags.DEFINE_enum("memory", "child", ["child", "off"], "Peak-memory method.")
flags.DEFINE_list(
    "memory_batch_sizes", None, "Batch sizes for the memory children (default all)."
)
flags.DEFINE_string(
    "memory_from",
    None,
    "Copy the peak-memory results of this earlier raw JSON instead of running "
    "memory children (they do not depend on machine load).",
)
flags.DEFINE_integer("memory_steps", 5, "Steady-state steps in a memory child.")
flags.DEFINE_float("learning_rate", 1e-4, "SGD learning rate (momentum 0.9).")
flags.DEFINE_integer("seed", 0, "Seed for weights and data.")
flags.DEFINE_string("output", "docs/benchmarks_raw.json", "Raw results (JSON).")
flags.DEFINE_string("child_spec", None, "Internal: run one memory child.")
flags.DEFINE_bool(
    "graph_stats",
    False,
    "Print each candidate's train-step graph (op counts, convolutions, float64 "
    "ops, Python callbacks) at the first batch size, without XLA, and exit.",
)
flags.DEFINE_string(
    "report_from", None, "Print the Markdown tables of a raw JSON file and exit."
)

# The main candidates get a memory child; the pair-count variants do not.
MEMORY_KINDS = ("student", "bound", "vid@3", "keras@3")


def make_data(batch, input_shape, seed):
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, *input_shape)).astype("float32")
    y = rng.integers(0, 10, size=(batch,)).astype("int32")
    return tf.constant(x), tf.constant(y)


def make_bound_class():
    import keras
    import tensorflow as tf
    from keras import ops

    class Bound(keras.Model):
        """Teacher inference to the taps + one student step on the task loss."""

        def __init__(self, teacher, student, taps):
            super().__init__(name="bound")
            self.student = student
            extractor = keras.Model(
                teacher.inputs, [teacher.get_layer(n).output for n in taps]
            )
            self._t = holder(model=extractor)
            self.built = True

        def call(self, x, training=False):
            return self.student(x, training=training)

        def train_step(self, data):
            x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
            t_taps = self._t.model(x, training=False)
            t_taps = t_taps if isinstance(t_taps, (list, tuple)) else [t_taps]
            checksum = sum(ops.mean(t) for t in t_taps)
            with tf.GradientTape() as tape:
                y_pred = self.student(x, training=True)
                loss = self._compute_loss(
                    x=x, y=y, y_pred=y_pred, sample_weight=sample_weight
                )
            self._loss_tracker.update_state(loss, sample_weight=tf.shape(x)[0])
            grads = tape.gradient(loss, self.trainable_weights)
            self.optimizer.apply(grads, self.trainable_weights)
            return {"loss": self._loss_tracker.result(), "teacher": checksum}

    return Bound


def make_regressor_class():
    import keras
    import tensorflow as tf
    from keras import ops

    from keras_vid.transfer.vid import VIDTerm

    class RegressorsOnly(keras.Model):
        """The VID terms of `vid@k` alone, on fixed teacher and student taps.

        Its data is `x = [teacher taps..., student taps...]`. The step takes
        gradients to the terms' weights and to the student taps (what the
        student's backward pass receives from the terms) and applies the
        optimizer to the terms' weights.
        """

        def __init__(self, t_shapes, s_shapes):
            super().__init__(name="regressors")
            self.k = len(t_shapes)
            self.terms = [
                VIDTerm(f"t{i}", f"s{i}", name=f"vid_{i}") for i in range(self.k)
            ]
            for term, ts, ss in zip(self.terms, t_shapes, s_shapes):
                term.build(ts, ss)
            self.built = True

        def call(self, x, training=False):
            return x

        def train_step(self, data):
            x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
            t_taps, s_taps = list(x[: self.k]), list(x[self.k :])
            with tf.GradientTape() as tape:
                tape.watch(s_taps)
                batch = ops.cast(ops.shape(s_taps[0])[0], "float32")
                loss = sum(
                    term.weight
                    * ops.sum(term(ops.stop_gradient(t), s, training=True))
                    / batch
                    for term, t, s in zip(self.terms, t_taps, s_taps)
                )
            variables = self.trainable_weights
            grads = tape.gradient(loss, variables + s_taps)
            self.optimizer.apply(grads[: len(variables)], variables)
            tap_grad = sum(ops.mean(g) for g in grads[len(variables) :])
            return {"loss": loss, "tap_grad": tap_grad}

    return RegressorsOnly


def taps_for(model, names, x):
    import keras

    ext = keras.Model(model.inputs, [model.get_layer(n).output for n in names])
    out = ext(x, training=False)
    return list(out) if isinstance(out, (list, tuple)) else [out]


def build_candidate(kind, teacher, student, x, jit, lr):
    """Returns a compiled `keras.Model` whose train function is one step."""
    import keras

    def task_loss():
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def optimizer():
        return keras.optimizers.SGD(lr, momentum=0.9)

    name, _, k = kind.partition("@")
    k = int(k) if k else 3
    taps = stage_taps(k)
    if name == "student":
        model = student
    elif name == "bound":
        model = make_bound_class()(teacher, student, stage_taps(3))
    elif name == "vid":
        model = paper_vid(teacher, student, taps)
    elif name == "keras":
        model = keras_distiller(teacher, student, taps)
    elif name == "regressors":
        t_taps = taps_for(teacher, taps, x)
        s_taps = taps_for(student, taps, x)
        model = make_regressor_class()(
            [tuple(t.shape) for t in t_taps], [tuple(s.shape) for s in s_taps]
        )
        model.compile(optimizer=optimizer(), loss=None, jit_compile=jit)
        return model, (t_taps + s_taps, None)
    else:
        raise ValueError(f"Unknown candidate {kind!r}.")
    if model is student:
        # A fresh functional copy on the same layers gets its own optimizer
        # and train function without re-compiling the shared student.
        model = keras.Model(student.inputs, student.outputs, name="student_alone")
    model.compile(optimizer=optimizer(), loss=task_loss(), jit_compile=jit)
    return model, None


class Stepper:
    """One candidate: `step()` runs one synced training step."""

    def __init__(self, kind, jit, model, x, y):
        self.kind, self.jit, self.model = kind, jit, model
        self.x, self.y = x, y
        self.times = []
        self.cpu_times = []
        self.traces = 0
        original = model.train_step

        def counted(data):
            self.traces += 1  # Python runs only while tracing.
            return original(data)

        model.train_step = counted

    @property
    def key(self):
        return f"{self.kind}|xla={'on' if self.jit else 'off'}"

    def first_step(self):
        start = time.perf_counter()
        self.model.train_on_batch(self.x, self.y)
        self.first_s = time.perf_counter() - start
        self.fn = self.model.train_function
        self.batch = [(self.x, self.y, None)]

    def step(self):
        logs = self.fn(self.batch)
        # A host sync on the result: the step is finished when this returns.
        return float(logs["loss"].numpy())


# --------------------------------------------------------------- timing


def summarize(times):
    ms = sorted(1000.0 * t for t in times)
    q = statistics.quantiles(ms, n=4, method="inclusive")
    return {
        "median_ms": statistics.median(ms),
        "q1_ms": q[0],
        "q3_ms": q[2],
        "iqr_ms": q[2] - q[0],
        "min_ms": ms[0],
        "n": len(ms),
    }


def run_config(pair, batch, modes, kinds, steps, rounds, warmup, lr, seed):
    """Times `kinds` (a list, or a dict: XLA flag -> list) on one config."""
    import keras

    teacher, student, input_shape = build_models(pair, seed)
    x, y = make_data(batch, input_shape, seed)
    steppers = []
    for jit in modes:
        for kind in kinds[jit] if isinstance(kinds, dict) else kinds:
            model, data = build_candidate(kind, teacher, student, x, jit, lr)
            if data is not None:
                steppers.append(Stepper(kind, jit, model, data[0], data[1]))
            else:
                steppers.append(Stepper(kind, jit, model, x, y))
    for s in steppers:
        s.first_step()
        for _ in range(warmup):
            s.step()
        print(
            f"  warm {s.key:28s} first step {s.first_s:6.1f} s  traces {s.traces}",
            flush=True,
        )
    per_round = -(-steps // rounds)
    for r in range(rounds):
        shift = r % len(steppers)
        order = steppers[shift:] + steppers[:shift]
        if r % 2:
            order = order[::-1]
        for s in order:
            for _ in range(FLAGS.switch_steps):
                s.step()  # untimed: the switch from the previous candidate
            for _ in range(per_round):
                start, cpu = time.perf_counter(), time.process_time()
                s.step()
                s.times.append(time.perf_counter() - start)
                s.cpu_times.append(time.process_time() - cpu)
    results = {}
    for s in steppers:
        stats = summarize(s.times)
        stats["cpu"] = summarize(s.cpu_times)
        stats["first_step_s"] = s.first_s
        stats["traces"] = s.traces
        for name, values in (("wall", s.times), ("cpu", s.cpu_times)):
            stats[f"round_{name}_ms"] = [
                1000.0 * statistics.median(values[i : i + per_round])
                for i in range(0, len(values), per_round)
            ]
        results[s.key] = stats
        print(
            f"  {s.key:28s} median {stats['median_ms']:8.2f} ms  "
            f"IQR {stats['iqr_ms']:6.2f}  cpu {stats['cpu']['median_ms']:8.2f} ms  "
            f"traces {s.traces}",
            flush=True,
        )
    del steppers
    keras.backend.clear_session()
    gc.collect()
    return results


# --------------------------------------------------------------- memory


def read_status(*fields):
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in fields:
                out[key] = int(value.split()[0]) / 1024.0  # MiB
    return out


def child_main(spec):
    import tensorflow as tf

    spec = json.loads(spec)
    teacher, student, input_shape = build_models(spec["pair"], spec["seed"])
    x, y = make_data(spec["batch"], input_shape, spec["seed"])
    model, data = build_candidate(
        spec["kind"], teacher, student, x, spec["jit"], spec["lr"]
    )
    if data is not None:
        x, y = data
    before = read_status("VmRSS")["VmRSS"]
    stepper = Stepper(spec["kind"], spec["jit"], model, x, y)
    stepper.first_step()
    after_compile = read_status("VmRSS", "VmHWM")
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
        reset = True
    except OSError:
        reset = False
    for _ in range(spec["steps"]):
        stepper.step()
    end = read_status("VmRSS", "VmHWM")
    result = {
        "rss_before_first_step_mib": before,
        "peak_incl_compile_mib": max(after_compile["VmHWM"], end["VmHWM"]),
        "rss_after_compile_mib": after_compile["VmRSS"],
        "peak_steady_mib": end["VmHWM"] if reset else None,
        "steady_above_before_mib": (end["VmHWM"] - before) if reset else None,
    }
    if tf.config.list_physical_devices("GPU"):
        result["gpu_peak_mib"] = (
            tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
        )
    print("CHILD_RESULT " + json.dumps(result), flush=True)


def run_memory_child(pair, batch, kind, jit, lr, seed, steps):
    spec = {
        "pair": pair,
        "batch": batch,
        "kind": kind,
        "jit": jit,
        "lr": lr,
        "seed": seed,
        "steps": steps,
    }
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--child_spec", json.dumps(spec)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("CHILD_RESULT "):
            return json.loads(line[len("CHILD_RESULT ") :])
    tail = (proc.stderr or "")[-2000:]
    raise RuntimeError(f"Memory child {spec} failed (rc={proc.returncode}):\n{tail}")


# --------------------------------------------------------------- report


def machine_info():
    import keras
    import tensorflow as tf

    model = cpu_model()
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"
        ),
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
        "loadavg_at_start": os.getloadavg(),
    }


def _paired(timing, xla, fn, *kinds):
    """Median and IQR over rounds of fn(per-round medians of kinds).

    Each round runs every candidate back to back, so a per-round ratio
    compares candidates under the same machine load.
    """
    out = {}
    runs = [timing.get(f"{k}|xla={xla}") for k in kinds]
    if any(r is None for r in runs):
        return None
    for name in ("wall", "cpu"):
        values = [fn(*v) for v in zip(*(r[f"round_{name}_ms"] for r in runs))]
        if len(values) == 1:
            out[name] = {"median": values[0], "q1": values[0], "q3": values[0]}
            continue
        q = statistics.quantiles(values, n=4, method="inclusive")
        out[name] = {"median": statistics.median(values), "q1": q[0], "q3": q[2]}
    return out


def derived(timing, mem, max_k):
    """Per-round paired ratios, regressor share and overhead for one config."""
    del mem
    out = {}
    vid, keras_, regs = f"vid@{max_k}", f"keras@{max_k}", f"regressors@{max_k}"
    for xla in ("off", "on"):
        if f"{vid}|xla={xla}" not in timing:
            continue
        d = {
            "vid_over_bound": _paired(timing, xla, lambda v, b: v / b, vid, "bound"),
            "vid_over_keras": _paired(timing, xla, lambda v, k: v / k, vid, keras_),
            "vid_over_student": _paired(
                timing, xla, lambda v, s: v / s, vid, "student"
            ),
            "regressors_share_pct": _paired(
                timing, xla, lambda v, r: 100.0 * r / v, vid, regs
            ),
            "overhead_ms": _paired(
                timing, xla, lambda v, b, r: v - b - r, vid, "bound", regs
            ),
            "overhead_pct": _paired(
                timing, xla, lambda v, b, r: 100.0 * (v - b - r) / v, vid, "bound", regs
            ),
        }
        out[f"xla={xla}"] = {k: v for k, v in d.items() if v is not None}
    return out


def _mem_cell(mem):
    if not mem:
        return "-"
    steady, delta = mem.get("peak_steady_mib"), mem.get("steady_above_before_mib")
    if steady is None:
        return f"? / {mem['peak_incl_compile_mib']:.0f}"
    return f"{steady:.0f} (+{delta:.0f}) / {mem['peak_incl_compile_mib']:.0f}"


def _kinds(timing):
    families = ["student", "bound", "vid", "keras", "regressors"]
    main_kinds = ["student", "bound", "vid@3", "keras@3", "regressors@3"]
    names = {x.split("|")[0] for x in timing}
    rest = sorted(
        names - set(main_kinds), key=lambda k: (families.index(k.split("@")[0]), k)
    )
    return [k for k in main_kinds if k in names] + rest


def _three(timing, xla):
    """(median, min, CPU median) of each kind, in ms."""
    out = {}
    for key, s in timing.items():
        kind, _, mode = key.partition("|xla=")
        if mode == xla:
            out[kind] = (s["median_ms"], s["min_ms"], s["cpu"]["median_ms"])
    return out


def _fmt(values, digits=2, pct=False):
    if any(v is None for v in values):
        return "-"
    return " / ".join(f"{v:.{0 if pct else digits}f}" for v in values)


def markdown(report):
    """Markdown tables of a raw report (what docs/benchmarks.md shows)."""
    lines = []
    results = report["results"]
    for res in results.values():
        t, mem = res["timing"], res.get("memory", {})
        lines += [
            f"#### {res['label']}, batch {res['batch']}",
            "",
            "| candidate | XLA | wall ms/step median (IQR) | wall min | "
            "CPU ms/step median | peak RSS MiB steady (+step) / total | "
            "first step s |",
            "|---|---|---|---|---|---|---|",
        ]
        for xla in ("off", "on"):
            for kind in _kinds(t):
                s = t.get(f"{kind}|xla={xla}")
                if not s:
                    continue
                lines.append(
                    f"| {kind} | {xla} | {s['median_ms']:.1f} "
                    f"({s['q1_ms']:.1f}-{s['q3_ms']:.1f}) | {s['min_ms']:.1f} | "
                    f"{s['cpu']['median_ms']:.1f} | "
                    f"{_mem_cell(mem.get(f'{kind}|xla={xla}'))} | "
                    f"{s['first_step_s']:.1f} |"
                )
        lines.append("")
    lines += [
        "#### Ratios and shares, paired by round: median (IQR) over rounds",
        "",
        "| pair | batch | XLA | clock | 1/3 vid/bound | 1/2 vid/keras | "
        "vid/student | regressors % of vid step | overhead % of vid step | "
        "overhead ms |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]

    def cell(d, key, clock, digits=2):
        v = d.get(key)
        v = v.get(clock) if isinstance(v, dict) else None
        if not v:
            return "-"
        return (
            f"{v['median']:.{digits}f} ({v['q1']:.{digits}f} to {v['q3']:.{digits}f})"
        )

    for res in results.values():
        for xla in ("off", "on"):
            d = res["derived"].get(f"xla={xla}")
            if not d:
                continue
            for clock in ("wall", "cpu"):
                lines.append(
                    f"| {res['pair']} | {res['batch']} | {xla} | {clock} | "
                    f"{cell(d, 'vid_over_bound', clock)} | "
                    f"{cell(d, 'vid_over_keras', clock)} | "
                    f"{cell(d, 'vid_over_student', clock)} | "
                    f"{cell(d, 'regressors_share_pct', clock, 1)} | "
                    f"{cell(d, 'overhead_pct', clock, 1)} | "
                    f"{cell(d, 'overhead_ms', clock, 1)} |"
                )
    lines += [
        "",
        "#### Pair-count scaling (ms/step, wall median; CPU median in brackets)",
        "",
        "| pair | batch | XLA | k | vid@k | regressors@k | vid@k - bound |",
        "|---|---|---|---|---|---|---|",
    ]
    for res in results.values():
        for xla in ("off", "on"):
            m = _three(res["timing"], xla)
            if "vid@1" not in m or "bound" not in m:
                continue
            b = m["bound"]
            lines.append(
                f"| {res['pair']} | {res['batch']} | {xla} | 0 (bound) | "
                f"{b[0]:.1f} [{b[2]:.1f}] | - | - |"
            )
            for k in (1, 2, 3):
                v, r = m.get(f"vid@{k}"), m.get(f"regressors@{k}")
                if not v:
                    continue
                reg = f"{r[0]:.1f} [{r[2]:.1f}]" if r else "-"
                lines.append(
                    f"| {res['pair']} | {res['batch']} | {xla} | {k} | "
                    f"{v[0]:.1f} [{v[2]:.1f}] | {reg} | "
                    f"{v[0] - b[0]:.1f} [{v[2] - b[2]:.1f}] |"
                )
    batches = sorted({r["batch"] for r in results.values()})
    lines += [
        "",
        "#### Batch-size scaling (ms/step, wall median; CPU median in brackets)",
        "",
        "| pair | XLA | candidate | "
        + " | ".join(f"batch {b}" for b in batches)
        + " | CPU ratio last/first |",
        "|---|---|---|" + "---|" * (len(batches) + 1),
    ]
    for pair in sorted({r["pair"] for r in results.values()}):
        runs = [results.get(f"{pair}|batch={b}") for b in batches]
        if sum(r is not None for r in runs) < 2:
            continue
        for xla in ("off", "on"):
            for kind in ("student", "bound", "vid@3", "keras@3", "regressors@3"):
                cells, cpus = [], []
                for res in runs:
                    s = res["timing"].get(f"{kind}|xla={xla}") if res else None
                    cells.append(
                        f"{s['median_ms']:.1f} [{s['cpu']['median_ms']:.1f}]"
                        if s
                        else "-"
                    )
                    if s:
                        cpus.append(s["cpu"]["median_ms"])
                ratio = f"{cpus[-1] / cpus[0]:.2f}" if len(cpus) > 1 else "-"
                lines.append(
                    f"| {pair} | {xla} | {kind} | "
                    + " | ".join(cells)
                    + f" | {ratio} |"
                )
    return "\n".join(lines)


def graph_stats(pair, batch, lr, seed):
    """Op counts of each candidate's training step, traced once more."""
    import collections

    import tensorflow as tf

    teacher, student, input_shape = build_models(pair, seed)
    x, y = make_data(batch, input_shape, seed)
    rows = {}
    for kind in ("student", "bound", "vid@3", "regressors@3", "keras@3"):
        model, data = build_candidate(kind, teacher, student, x, False, lr)
        xx, yy = data if data is not None else (x, y)
        model.train_on_batch(xx, yy)  # builds the optimizer
        graph = (
            tf.function(model.train_step).get_concrete_function((xx, yy, None)).graph
        )
        ops_ = graph.get_operations()
        types = collections.Counter(op.type for op in ops_)
        rows[kind] = {
            "ops": len(ops_),
            "conv_ops": sum(v for k, v in types.items() if "Conv2D" in k),
            "float64_ops": sum(
                any(t.dtype == tf.float64 for t in op.outputs) for op in ops_
            ),
            "py_callbacks": sum(v for k, v in types.items() if "PyFunc" in k),
            "variable_updates": sum(
                v for k, v in types.items() if k.startswith(("Assign", "ResourceApply"))
            ),
        }
        print(f"{pair} batch {batch} {kind:14s} {rows[kind]}", flush=True)
    return rows


def main(argv):
    del argv
    if FLAGS.child_spec:
        child_main(FLAGS.child_spec)
        return
    if FLAGS.graph_stats:
        pairs = ["fmnist_cnn", "wrn"] if FLAGS.pairs == "all" else [FLAGS.pairs]
        for pair in pairs:
            graph_stats(
                pair, int(FLAGS.batch_sizes[0]), FLAGS.learning_rate, FLAGS.seed
            )
        return
    if FLAGS.report_from:
        with open(FLAGS.report_from) as f:
            print(markdown(json.load(f)))
        return
    start = time.time()
    pairs = ["fmnist_cnn", "wrn"] if FLAGS.pairs == "all" else [FLAGS.pairs]
    batches = [int(b) for b in FLAGS.batch_sizes]
    ks = sorted({int(k) for k in FLAGS.num_pairs})
    if not ks or ks[0] < 1 or ks[-1] > 3:
        raise app.UsageError("--num_pairs must hold values in 1..3.")
    max_k = ks[-1]
    if min(FLAGS.steps, FLAGS.wrn_steps or FLAGS.steps) < 30:
        print("Warning: fewer than 30 timed steps per candidate.", flush=True)
    modes = {"both": [False, True], "on": [True], "off": [False]}[FLAGS.xla]
    scaling_batches = (
        [int(b) for b in FLAGS.scaling_batch_sizes]
        if FLAGS.scaling_batch_sizes
        else batches
    )
    memory_batches = (
        [int(b) for b in FLAGS.memory_batch_sizes]
        if FLAGS.memory_batch_sizes
        else batches
    )
    report = {
        "machine": machine_info(),
        "flags": {
            f: FLAGS[f].value
            for f in (
                "pairs",
                "batch_sizes",
                "fmnist_batch_sizes",
                "steps",
                "rounds",
                "wrn_rounds",
                "wrn_steps",
                "warmup",
                "switch_steps",
                "xla",
                "num_pairs",
                "keras_scaling",
                "scaling_batch_sizes",
                "scaling_xla",
                "candidates",
                "memory_xla",
                "memory",
                "memory_batch_sizes",
                "memory_from",
                "memory_steps",
                "learning_rate",
                "seed",
            )
        },
        "results": {},
    }
    print(json.dumps(report["machine"]), flush=True)
    for pair in pairs:
        rounds = FLAGS.rounds
        steps = FLAGS.steps
        if pair == "wrn":
            rounds = FLAGS.wrn_rounds or rounds
            steps = FLAGS.wrn_steps or steps
        pair_batches = batches
        if pair == "fmnist_cnn" and FLAGS.fmnist_batch_sizes:
            pair_batches = [int(b) for b in FLAGS.fmnist_batch_sizes]
        for batch in pair_batches:
            kinds = {}
            for jit in modes:
                scaling = batch in scaling_batches and FLAGS.scaling_xla in (
                    "both",
                    "on" if jit else "off",
                )
                kinds[jit] = ["student", "bound"]
                for k in ks if scaling else [max_k]:
                    kinds[jit] += [f"vid@{k}", f"regressors@{k}"]
                    if FLAGS.keras_scaling or k == max_k:
                        kinds[jit].append(f"keras@{k}")
                if FLAGS.candidates:
                    kinds[jit] = [
                        c for c in kinds[jit] if c.split("@")[0] in FLAGS.candidates
                    ]
            print(f"{pair} batch {batch}: {kinds}", flush=True)
            t0, load0 = time.time(), os.getloadavg()[0]
            timing = run_config(
                pair,
                batch,
                modes,
                kinds,
                steps,
                rounds,
                FLAGS.warmup,
                FLAGS.learning_rate,
                FLAGS.seed,
            )
            mem = {}
            memory_modes = {
                "both": modes,
                "on": [m for m in modes if m],
                "off": [m for m in modes if not m],
            }[FLAGS.memory_xla]
            if FLAGS.memory_from:
                with open(FLAGS.memory_from) as f:
                    earlier = json.load(f)["results"].get(f"{pair}|batch={batch}", {})
                mem = earlier.get("memory", {})
            elif FLAGS.memory == "child" and batch in memory_batches:
                for jit in memory_modes:
                    for kind in MEMORY_KINDS:
                        kind = kind.replace("@3", f"@{max_k}")
                        family = kind.split("@")[0]
                        if FLAGS.candidates and family not in FLAGS.candidates:
                            continue
                        key = f"{kind}|xla={'on' if jit else 'off'}"
                        mem[key] = run_memory_child(
                            pair,
                            batch,
                            kind,
                            jit,
                            FLAGS.learning_rate,
                            FLAGS.seed,
                            FLAGS.memory_steps,
                        )
                        print(f"  memory {key:28s} {mem[key]}", flush=True)
            report["results"][f"{pair}|batch={batch}"] = {
                "pair": pair,
                "label": PAIR_LABELS[pair],
                "batch": batch,
                "timing": timing,
                "memory": mem,
                "derived": derived(timing, mem, max_k),
                "wall_s": time.time() - t0,
                "loadavg_1min": [load0, os.getloadavg()[0]],
            }
            print(
                json.dumps(report["results"][f"{pair}|batch={batch}"]["derived"]),
                flush=True,
            )
            if FLAGS.output:
                report["wall_s"] = time.time() - start
                os.makedirs(os.path.dirname(FLAGS.output) or ".", exist_ok=True)
                with open(FLAGS.output, "w") as f:
                    json.dump(report, f, indent=1)
    report["wall_s"] = time.time() - start
    if FLAGS.output:
        with open(FLAGS.output, "w") as f:
            json.dump(report, f, indent=1)
    print(markdown(report))
    print(f"total wall time {report['wall_s']:.0f} s", flush=True)


if __name__ == "__main__":
    app.run(main)
