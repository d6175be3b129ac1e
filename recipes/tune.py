"""Hyperparameter search for VID: KerasTuner over `keras_vid.tuning`.

    python recipes/tune.py --dataset=fashion_mnist --teacher=cnn \\
        --samples_per_class=100 --epochs=10 --tuner=random --max_trials=6 \\
        --output_dir=runs/tune

Takes distill.py's data and model flags (--data_dir with --image_size
included), but not --unlabeled, --unlabeled_dir or --teacher_cache, which it
refuses: add those to the distill.py command it prints. The teacher comes from
`experiment.get_teacher` (a `.keras` path, or an architecture trained once and
cached in --output_dir); its file is what each trial loads.

Data: training on --samples_per_class images per class drawn with --seed
(the images distill.py trains on); with --validation=holdout (the default)
the objective is measured on --val_per_class other training images per class,
drawn with seed + 1 from those left out of the subset, so the search never
looks at the test split. The best student's test accuracy is reported at the
end. --validation=test selects on the test split instead (then that test
accuracy is optimistic).

What is searched (see keras_vid.tuning): vid_i_weight, vid_init_variance,
learning_rate, use_pair_<i> per --candidate_pairs and use_kd, with KD's
weight and temperature fixed. The names are keras_vid.methods.DEFAULTS keys,
as in --overrides. --search_space and --fixed (JSON) override ranges and fix
values; an explicit --learning_rate fixes the learning rate; --overrides fixes
vid_i_weight, vid_init_variance, kd_weight, kd_temperature (and sets vid_eps,
vid_reduction); --method=vid_i+kd always adds KD.

Writes to --output_dir: trials.csv, trials.md, trials.png (the objective
against each hyperparameter), best.json, best_student.keras (the student
alone) and tuner/ (KerasTuner's trials and checkpoints; a rerun resumes it
unless --overwrite). best.json, trials.md and the output end with the
recipes/distill.py command that trains the best trial's distiller settings
(--method, --overrides, --learning_rate) again, and what it cannot carry.
"""

import functools
import inspect
import json
import os
import shlex
import time

from absl import app, flags

import common
from keras_vid import VIDDistiller, distribute, experiment, methods, reporting, tuning
from keras_vid import data as data_lib
from keras_vid.callbacks import save_atomic

common.define_flags(verbose_default=2)
# `--help` lists the shared flags too, not only this file's.
flags.adopt_module_key_flags(common)
flags.DEFINE_enum("tuner", "random", list(tuning.TUNERS), "KerasTuner search.")
flags.DEFINE_integer(
    "max_trials",
    10,
    "Trials for random and Bayesian search (Hyperband derives its own number "
    "of trials from --epochs and --hyperband_factor).",
    lower_bound=1,
)
flags.DEFINE_integer(
    "executions_per_trial", 1, "Trainings per trial, averaged.", lower_bound=1
)
flags.DEFINE_string(
    "objective",
    "val_accuracy",
    "The metric to optimise, e.g. val_accuracy (max) or val_task_loss (min); "
    "'name:min' or 'name:max' sets the direction.",
)
flags.DEFINE_list(
    "candidate_pairs",
    None,
    "Layer pairs 'teacher:student' (or one name for both), e.g. "
    "stage2:stage2,stage3:stage3. Defaults to experiment.paired_taps.",
)
flags.DEFINE_bool(
    "search_pairs", True, "Search which candidate pairs to use (else use all)."
)
flags.DEFINE_string(
    "search_space",
    "{}",
    "JSON {name: range}: {'min': ..., 'max': ..., 'sampling': 'log'} for a "
    "range, a list for a choice, true for a boolean, e.g. "
    '\'{"vid_i_weight": {"min": 0.5, "max": 50, "sampling": "log"}}\'.',
)
flags.DEFINE_string(
    "fixed", "{}", "JSON {name: value} of fixed values, e.g. '{\"use_kd\": false}'."
)
flags.DEFINE_enum(
    "validation",
    "holdout",
    ["holdout", "test"],
    "holdout: other training images (disjoint from the subset); test: the test split.",
)
flags.DEFINE_integer(
    "val_per_class", 200, "Held-out validation images per class.", lower_bound=1
)
flags.DEFINE_integer("hyperband_factor", 3, "Hyperband's reduction factor.")
flags.DEFINE_bool("overwrite", False, "Start afresh instead of resuming tuner/.")
FLAGS = common.FLAGS

# --overrides keys that are the hypermodel's hyperparameters (the same names),
# and those that are its arguments.
_HP_OVERRIDES = ("vid_i_weight", "vid_init_variance", *tuning.FIXED_DEFAULTS)
_ARG_OVERRIDES = {"vid_eps": "eps", "vid_reduction": "reduction"}
# The flags the search honours as distill.py does, carried into its command.
_CARRIED = (
    "dataset",
    "data_dir",
    "image_size",
    "manual_dir",
    "samples_per_class",
    "epochs",
    "batch_size",
    "lr_schedule",
    "clipnorm",
    "seed",
    "strategy",
)
# distill.py flags a search cannot honour: refused before any work, rather
# than dropped from the trials and from the command the search prints.
_UNLABELLED = "the trials train on the labelled subset only"
_REFUSED = {
    "unlabeled": _UNLABELLED,
    "unlabeled_dir": _UNLABELLED,
    "teacher_cache": "each trial runs the teacher on every batch",
}


def check_flags():
    """Refuses the flags tune.py cannot honour, before a teacher is trained."""
    for name, why in _REFUSED.items():
        if FLAGS[name].value:
            raise ValueError(
                f"--{name} is not supported by tune.py: {why}. Search without "
                "it, then add it to the recipes/distill.py command the search "
                "prints for its best trial."
            )
    if FLAGS.strategy == "multi_worker":
        raise ValueError(
            "--strategy=multi_worker is not supported by tune.py: KerasTuner runs "
            "its own chief/worker protocol for distributed search. Use default "
            "or mirrored."
        )


def parse_pairs(items, t_arch, s_arch):
    """Parses --candidate_pairs; defaults to the architectures' paired taps."""
    if not items:
        t, s = experiment.paired_taps(t_arch, s_arch)
        return list(zip(t, s))
    pairs = []
    for item in items:
        t, _, s = item.partition(":")
        pairs.append((t.strip(), (s or t).strip()))
    return pairs


def parse_json(name):
    """Parses a JSON-object flag."""
    return common.parse_json_flag(name, FLAGS[name].value)


def hypermodel_args():
    """Returns the search space, fixed values and VID arguments from the flags."""
    parts = methods.parse_method(FLAGS.method)
    if "vid_i" not in parts or set(parts) - {"vid_i", "kd"}:
        raise ValueError(
            f"tune.py searches VID's hyperparameters: --method must be vid_i (KD "
            f"searched as use_kd) or vid_i+kd (KD always on). Received: "
            f"{FLAGS.method!r}."
        )
    search_space = parse_json("search_space")
    fixed = parse_json("fixed")
    extra = {}
    for key, value in common.parse_overrides(FLAGS.overrides).items():
        if key in _HP_OVERRIDES:
            fixed.setdefault(key, value)
        elif key in _ARG_OVERRIDES:
            extra[_ARG_OVERRIDES[key]] = value
        else:
            raise ValueError(
                f"--overrides key {key!r} does not configure VID or KD. Valid: "
                f"{sorted([*_HP_OVERRIDES, *_ARG_OVERRIDES])}."
            )
    if "kd" in parts:
        fixed["use_kd"] = True
    if FLAGS["learning_rate"].present:
        fixed.setdefault("learning_rate", FLAGS.learning_rate)
    return search_space, fixed, extra


def distill_command(hypermodel, values, teacher_path, t_arch, s_arch):
    """The distill.py command that trains the best trial's distiller again.

    Returns `(command, omits)`: `omits` lists what the trial had that the
    command cannot say. The settings are the trial's; the random draws
    (initial weights, batch order) are distill.py's own.
    """
    kd = bool(values.get("use_kd"))
    # A trial's VIDDistiller keeps its own defaults where DEFAULTS differs.
    own = inspect.signature(VIDDistiller).parameters
    overrides = {k: values[k] for k in _HP_OVERRIDES if kd or not k.startswith("kd_")}
    overrides.update(
        vid_eps=hypermodel.eps,
        vid_reduction=hypermodel.reduction,
        vid_standardize=own["standardize"].default,
        vid_regressor_batch_norm=own["regressor_batch_norm"].default,
    )
    used = [p for n, p in hypermodel.pair_names.items() if values.get(n)]
    used = used or list(hypermodel.candidate_pairs)
    omits = []
    try:
        pairs = parse_pairs(None, t_arch, s_arch)
    except ValueError:
        pairs = None
    if used == pairs:
        overrides["vid_i_layers"] = "all"  # distill.py's pairs, every one
    else:
        omits.append(
            f"the pairs {used}: distill.py pairs the architectures' taps "
            f"({pairs or 'experiment.auto_taps'}), so its default vid_i_layers "
            "stands"
        )
    if "tuner/epochs" in values and values["tuner/epochs"] != FLAGS.epochs:
        omits.append(
            f"Hyperband trained this trial {values['tuner/epochs']} of the "
            f"{FLAGS.epochs} epochs its schedule spans; the command trains them all"
        )
    args = [FLAGS[n].serialize() for n in _CARRIED if FLAGS[n].value is not None]
    args += [
        f"--teacher={teacher_path}",
        f"--teacher_arch={t_arch}",
        f"--student={s_arch}",
        f"--learning_rate={values['learning_rate']}",
        f"--method={'vid_i+kd' if kd else 'vid_i'}",
        f"--overrides={json.dumps(overrides)}",
        f"--output_dir={os.path.join(FLAGS.output_dir, 'best_distill')}",
    ]
    return shlex.join(["python", "recipes/distill.py", *args]), omits


def resolve_teacher(spec, t_arch):
    """Returns `(teacher file, teacher architecture)`, training it if needed."""
    is_path = experiment.is_teacher_file(spec)
    teacher, acc = common.get_teacher(
        spec, common.dataset(), FLAGS.output_dir, seed=FLAGS.seed
    )
    if is_path:
        return spec, FLAGS.teacher_arch or t_arch
    path = experiment.teacher_cache_path(
        spec,
        common.dataset(),
        FLAGS.output_dir,
        FLAGS.teacher_samples_per_class or None,
    )
    if not os.path.exists(path):
        # The cache is named otherwise: give the trials a file of their own.
        path = save_atomic(
            teacher, os.path.join(FLAGS.output_dir, "teacher_for_search.keras")
        )
    if acc is not None:
        print(f"Teacher trained: test accuracy {100 * acc:.2f}% -> {path}")
    return path, FLAGS.teacher_arch or spec


def main(argv):
    del argv
    check_flags()
    common.setup()
    start = time.time()
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    search_space, fixed, extra = hypermodel_args()
    t_default, s_default = common.default_archs(FLAGS.dataset)
    teacher_path, t_arch = resolve_teacher(FLAGS.teacher or t_default, t_default)
    s_arch = FLAGS.student or s_default
    pairs = parse_pairs(FLAGS.candidate_pairs, t_arch, s_arch)
    strategy = (
        distribute.get_strategy("mirrored") if FLAGS.strategy == "mirrored" else None
    )

    spc = FLAGS.samples_per_class or None
    train, val = experiment.load_search_data(
        common.dataset(),
        spc,
        val_per_class=FLAGS.val_per_class,
        seed=FLAGS.seed,
        batch_size=FLAGS.batch_size,
        validation=FLAGS.validation,
        manual_dir=FLAGS.manual_dir,
        image_size=FLAGS.image_size,
    )
    hypermodel = tuning.VIDHyperModel(
        teacher_path,
        functools.partial(
            experiment.build_model, s_arch, common.dataset(), FLAGS.image_size
        ),
        pairs,
        search_space=search_space,
        fixed=fixed,
        search_pairs=FLAGS.search_pairs,
        lr_schedule=FLAGS.lr_schedule,
        epochs=FLAGS.epochs,
        seed=FLAGS.seed,
        # distill.py's optimiser, so that its command below trains the same.
        optimizer=functools.partial(experiment.sgd, clipnorm=FLAGS.clipnorm),
        **extra,
    )
    tuner_kwargs = {}
    if FLAGS.tuner == "hyperband":
        tuner_kwargs["factor"] = FLAGS.hyperband_factor
    tuner = tuning.make_tuner(
        FLAGS.tuner,
        hypermodel,
        objective=FLAGS.objective,
        max_trials=FLAGS.max_trials,
        max_epochs=FLAGS.epochs,
        executions_per_trial=FLAGS.executions_per_trial,
        seed=FLAGS.seed + 1,
        directory=FLAGS.output_dir,
        project_name="tuner",
        overwrite=FLAGS.overwrite,
        distribution_strategy=strategy,
        **tuner_kwargs,
    )
    print(
        f"Searching {FLAGS.tuner}: {t_arch} -> {s_arch} on {common.dataset()}, "
        f"N={spc or 'all'}, validation={FLAGS.validation}, "
        f"pairs {hypermodel.pair_names or pairs}"
    )
    tuner.search(train, validation_data=val, epochs=FLAGS.epochs, verbose=FLAGS.verbose)

    title = (
        f"{common.dataset()}, N={spc or 'all'}: {t_arch} -> {s_arch}, "
        f"{FLAGS.tuner} search, {tuner.oracle.objective.name}"
    )
    table = reporting.write_trials(tuner, FLAGS.output_dir, title)
    student_path = os.path.join(FLAGS.output_dir, "best_student.keras")
    student = tuning.best_student(tuner, student_path)
    test = data_lib.load(
        common.dataset(),
        "test",
        batch_size=512,
        manual_dir=FLAGS.manual_dir,
        image_size=FLAGS.image_size,
    )
    test_logs = student.evaluate(test, verbose=0, return_dict=True)
    best = tuner.oracle.get_best_trials(1)[0]
    command, omits = distill_command(
        hypermodel, best.hyperparameters.values, teacher_path, t_arch, s_arch
    )
    summary = {
        "best_trial": best.trial_id,
        "objective": tuner.oracle.objective.name,
        "direction": tuner.oracle.objective.direction,
        "best_value": best.score,
        "hyperparameters": best.hyperparameters.values,
        "pairs": hypermodel.pair_names,
        "test_accuracy": float(test_logs["accuracy"]),
        "validation": FLAGS.validation,
        "teacher": teacher_path,
        "student": student_path,
        "seconds": round(time.time() - start, 1),
        "distill_command": command,
        "distill_command_omits": omits,
    }
    reporting.write_json(
        summary, os.path.join(FLAGS.output_dir, "best.json"), default=str
    )
    again = "\nThe best trial's settings (not its random draws), by distill.py:"
    again += f"\n\n    {command}\n"
    again += "".join(f"\nNot carried: {o}." for o in omits)
    with open(os.path.join(FLAGS.output_dir, "trials.md"), "a") as f:
        f.write(again)
    print(table)
    print(json.dumps(summary, indent=2, default=str))
    print(again)


if __name__ == "__main__":
    app.run(main)
