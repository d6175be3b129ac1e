"""Knowledge transfer to another task: the paper's transfer-learning experiment.

A teacher trained on a source task teaches a student trained from scratch on
a target task with N labelled images per class (Ahn et al. 2019, section 4.2:
ImageNet to MIT-67 and CUB-200). The label spaces differ, so only methods on
intermediate layers apply (VID-I, FitNet, AT, NST); KD and VID-LP are refused.
Fine-tuning a copy of the teacher on the target is the reference line: it is
not a student (it has the teacher's size), so it gets its own row.

The default runs offline and mirrors the paper's setting on Fashion-MNIST
split by class: the teacher learns classes 0-4 (all their images), the
student classes 5-9 from N = 10, 50, 100 and 500 images each, 3 seeds:

    python recipes/transfer.py

Your own teacher and images (a folder with one sub-folder per class):

    python recipes/transfer.py --teacher=keras.applications.MobileNetV2 \\
        --teacher_weights=imagenet --target=/data/birds --image_size=64 \\
        --sizes=20 --seeds=0,1,2

Results go to --output_dir (results.json/.csv/.md and accuracy.png) after
every run; rerunning the same command resumes where it stopped.
"""

import functools
import json
import os
import time

import keras
from absl import app, flags

from keras_vid import VIDDistiller, experiment, methods, pairing, reporting
from keras_vid import data as data_lib

flags.DEFINE_string(
    "source",
    "fashion_mnist:0-4",
    "The teacher's task, when the teacher is trained here: a data set name "
    "with a class selection, or an image folder.",
)
flags.DEFINE_string(
    "target",
    "fashion_mnist:5-9",
    "The student's task: a data set name with a class selection, or an image "
    "folder (PATH/train/<class>/..., optionally PATH/test/<class>/...).",
)
flags.DEFINE_string(
    "teacher",
    "cnn",
    "A zoo architecture (trained on --source and cached in --output_dir), a "
    "saved .keras teacher, or a keras.applications model such as "
    "keras.applications.MobileNetV2.",
)
flags.DEFINE_string(
    "teacher_weights",
    "imagenet",
    "For a keras.applications teacher: imagenet, a weights file, or none.",
)
flags.DEFINE_integer(
    "teacher_image_size", 96, "A keras.applications teacher's input size."
)
flags.DEFINE_integer("teacher_epochs", 3, "Epochs when the teacher is trained.")
flags.DEFINE_string("student", "cnn-small", "Student architecture.")
flags.DEFINE_list(
    "methods",
    ["student", "fitnet", "at", "vid_i", "finetune"],
    "Rows: student alone, methods on intermediate layers (vid_i is "
    "VIDDistiller's defaults without KD), and finetune (the teacher itself "
    "fine-tuned on the target: a reference, not a student).",
)
flags.DEFINE_list("sizes", ["10", "50", "100", "500"], "Images per class (N).")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds.")
flags.DEFINE_string(
    "epochs_by_size",
    "10:200,50:60,100:30,500:10",
    "Epochs per N, as N:epochs pairs; about 200-400 steps of batch 64 each.",
)
flags.DEFINE_integer("image_size", None, "Resize target images (image folders).")
flags.DEFINE_float("learning_rate", 0.05, "Initial SGD learning rate (cosine).")
flags.DEFINE_float(
    "finetune_learning_rate",
    None,
    "The fine-tuned teacher's initial learning rate; defaults to "
    "--learning_rate, the students' (fine-tuning recipes often take a lower one).",
)
flags.DEFINE_string("manual_dir", None, "Directory with the raw data files.")
flags.DEFINE_string("output_dir", "runs/transfer", "Where results are written.")
flags.DEFINE_integer("verbose", 0, "Keras progress for each run.")
FLAGS = flags.FLAGS

# Their terms compare teacher and student logits class by class.
LOGIT_METHODS = ("kd", "dkd", "dist", "vid_lp")
EXTRA_METHODS = ("finetune",)


def check_methods(names):
    """Refuses methods that need the teacher's classes to be the student's.

    Example:

    >>> check_methods(["student", "vid_i"])
    """
    for name in names:
        if name in EXTRA_METHODS:
            continue
        parts = methods.parse_method(name)
        logit = [p for p in parts if p in LOGIT_METHODS]
        if logit:
            raise ValueError(
                f"Method {name!r} uses {logit}, which compare the teacher's and "
                "the student's logits class by class. In transfer learning the "
                "teacher was trained on other classes (the source task), so they "
                "do not apply. Use student, fitnet, at, nst, vid_i or finetune."
            )


def epochs_for(n):
    table = dict(
        (int(k), int(v))
        for k, v in (item.split(":") for item in FLAGS.epochs_by_size.split(","))
    )
    if n not in table:
        raise ValueError(
            f"--epochs_by_size has no entry for N={n}. Add one, e.g. "
            f"--epochs_by_size={FLAGS.epochs_by_size},{n}:30."
        )
    return table[n]


def vid_builder(cfg, teacher, student):
    """VIDDistiller's recommended recipe without a logit term: no shared classes.

    The other methods take `experiment.distill`'s own path: the registry's
    defaults, pairs found automatically for models outside the zoo, and the
    `keras.applications` teacher's preprocessing.
    """
    prep = experiment.teacher_preprocessing(cfg, teacher, student.inputs[0].shape[1:])
    return VIDDistiller(teacher, student, logits=None, teacher_preprocessing=prep)


def finetune(cfg, teacher):
    """The teacher's copy, with a new head, fine-tuned on the target task."""
    start = time.time()
    keras.utils.set_random_seed(cfg.seed)
    meta = data_lib.info(cfg.dataset, image_size=cfg.image_size)
    features = pairing.find_features(teacher)
    if features is None or len(features.shape) != 1:
        raise ValueError(
            f"finetune needs the teacher's pooled features (a vector), but "
            f"'{teacher.name}' has {features}. Leave finetune out of --methods."
        )
    copy = keras.models.clone_model(teacher)
    copy.set_weights(teacher.get_weights())
    copy.trainable = True
    backbone = keras.Model(copy.inputs, copy.get_layer(features.path).output)
    inputs = keras.Input(meta["input_shape"])
    x = inputs
    prep = experiment.teacher_preprocessing(cfg, teacher, meta["input_shape"])
    if prep is not None:
        x = prep(x)
    x = backbone(x)
    model = keras.Model(inputs, keras.layers.Dense(meta["num_classes"])(x))
    train, test = experiment.load_splits(cfg)
    steps = cfg.epochs * int(train.cardinality())
    rate = FLAGS.finetune_learning_rate or cfg.learning_rate
    model.compile(
        experiment.sgd(
            experiment.lr_schedule("cosine", rate, steps),
            momentum=0.9,
            clipnorm=None,
            nesterov=False,
        ),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(train, epochs=cfg.epochs, verbose=cfg.verbose, shuffle=False)
    logs = model.evaluate(test, verbose=0, return_dict=True)
    return {
        "test_accuracy": float(logs["accuracy"]),
        "test_loss": float(logs["loss"]),
        "seconds": round(time.time() - start, 1),
    }


def main(argv):
    del argv
    check_methods(FLAGS.methods)
    sizes = [int(n) for n in FLAGS.sizes]
    for n in sizes:
        epochs_for(n)
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    previous = reporting.previous_results(
        FLAGS.output_dir, dataset=FLAGS.target, teacher=FLAGS.teacher
    )
    weights = None if FLAGS.teacher_weights.lower() == "none" else FLAGS.teacher_weights
    teacher, teacher_acc = experiment.get_teacher(
        FLAGS.teacher,
        FLAGS.source,
        FLAGS.output_dir,
        epochs=FLAGS.teacher_epochs,
        manual_dir=FLAGS.manual_dir,
        weights=weights,
        teacher_image_size=FLAGS.teacher_image_size,
        image_size=FLAGS.image_size,
        verbose=FLAGS.verbose,
    )
    title = (
        f"Transfer: {FLAGS.teacher} on {FLAGS.source} -> {FLAGS.student} on "
        f"{FLAGS.target}, test accuracy (%)"
    )

    def run_cell(cell):
        method, n, seed = cell["method"], cell["samples_per_class"], cell["seed"]
        cfg = experiment.DistillConfig(
            dataset=FLAGS.target,
            teacher=FLAGS.teacher,
            student=FLAGS.student,
            **cell,
            epochs=epochs_for(n),
            learning_rate=FLAGS.learning_rate,
            clipnorm=None,
            nesterov=False,
            manual_dir=FLAGS.manual_dir,
            image_size=FLAGS.image_size,
            teacher_cache=True,
            verbose=FLAGS.verbose,
        )
        if method == "finetune":
            result = finetune(cfg, teacher)
        else:
            result = experiment.distill(
                cfg, teacher, builder=vid_builder if method == "vid_i" else None
            )
            result.pop("history", None)
        result.update(
            method=method,
            dataset=FLAGS.target,
            source=FLAGS.source,
            teacher=FLAGS.teacher,
            student=FLAGS.student,
            samples_per_class=n,
            seed=seed,
            epochs=cfg.epochs,
            clipnorm=None,
        )
        print(
            f"{method:10s} N={n:<4d} seed={seed} "
            f"{100 * result['test_accuracy']:.2f}% ({result['seconds']} s)",
            flush=True,
        )
        return result

    cells = reporting.grid_cells(
        samples_per_class=sizes,
        seed=[int(s) for s in FLAGS.seeds],
        method=FLAGS.methods,
    )
    write = functools.partial(reporting.write_results, title=title)
    results = reporting.run_grid(
        cells, run_cell, FLAGS.output_dir, write=write, previous=previous
    )
    print(reporting.markdown_table(results))
    if teacher_acc is not None:
        print(json.dumps({"teacher_test_accuracy_on_source": teacher_acc}))


if __name__ == "__main__":
    app.run(main)
