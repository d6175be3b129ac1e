"""Teacher cache speed-up per epoch, side by side in one process.

    python benchmarks/teacher_cache.py --samples_per_class=100 --rounds=5

Two identical VIDDistillers (Fashion-MNIST cnn -> cnn-small, the study's
defaults) train one epoch at a time in alternation, one reading the teacher's
taps from `keras_vid.teacher_cache`, the other running the teacher every step.
The first epoch of each (tracing, and filling the cache) is not timed.
"""

import statistics
import time

import keras
from absl import app, flags

from keras_vid import data, experiment, methods, models
from keras_vid.teacher_cache import cache_teacher

flags.DEFINE_integer("samples_per_class", 100, "Images per class.")
flags.DEFINE_integer("rounds", 5, "Timed epochs per candidate.")
flags.DEFINE_integer("batch_size", 64, "Batch size.")
FLAGS = flags.FLAGS


def make(teacher):
    keras.utils.set_random_seed(0)
    student = models.get_model("cnn-small")
    t, s = experiment.paired_taps("cnn", "cnn-small")
    d = methods.build_distiller("vid_i", teacher, student, t, s, "features", "features")
    d.compile(
        keras.optimizers.SGD(0.05, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return d


def main(argv):
    del argv
    keras.utils.set_random_seed(0)
    teacher = models.get_model("cnn")  # untrained: the cost is the same
    n = FLAGS.samples_per_class
    plain = make(teacher)
    cached = make(teacher)
    kwargs = dict(batch_size=FLAGS.batch_size, samples_per_class=n, seed=0)
    plain_ds = data.load("fashion_mnist", "train", **kwargs)
    cached_ds = cache_teacher(
        cached,
        data.load("fashion_mnist", "train", shuffle=False, **kwargs),
        shuffle_buffer=10 * n,
    )
    times = {"no cache": [], "teacher cache": []}
    for model, ds in ((plain, plain_ds), (cached, cached_ds)):
        model.fit(ds, epochs=1, verbose=0)  # trace; fill the cache
    for _ in range(FLAGS.rounds):
        for name, model, ds in (
            ("no cache", plain, plain_ds),
            ("teacher cache", cached, cached_ds),
        ):
            start = time.perf_counter()
            model.fit(ds, epochs=1, verbose=0)
            times[name].append(time.perf_counter() - start)
    base = statistics.median(times["no cache"])
    for name, values in times.items():
        med = statistics.median(values)
        print(
            f"{name:14s} median epoch {1000 * med:8.1f} ms "
            f"(min {1000 * min(values):.1f}) speed-up x{base / med:.2f}"
        )


if __name__ == "__main__":
    app.run(main)
