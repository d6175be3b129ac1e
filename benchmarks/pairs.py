"""The model pairs and helpers that the step-time benchmarks share.

Imported by `step_time.py` (TensorFlow) and `backends.py` (every backend);
it defines no flags, so both can import it.
"""

# Pair k of the scaling study adds taps from the deepest one down:
# 1 -> stage3, 2 -> stage2 + stage3, 3 -> stage1 + stage2 + stage3.
STAGES = ("stage1", "stage2", "stage3")


def stage_taps(k):
    return list(STAGES[3 - k :])


def build_models(pair, seed):
    import keras

    from keras_vid import models

    keras.utils.set_random_seed(seed)
    if pair == "fmnist_cnn":
        from keras_vid.models import cnn

        teacher = models.small_cnn(widths=cnn.TEACHER_WIDTHS, name="cnn_teacher")
        student = models.small_cnn(widths=cnn.STUDENT_WIDTHS, name="cnn_student")
        return teacher, student, (28, 28, 1)
    teacher = models.wide_resnet(40, 2, input_shape=(32, 32, 3), name="wrn_40_2")
    student = models.wide_resnet(16, 1, input_shape=(32, 32, 3), name="wrn_16_1")
    return teacher, student, (32, 32, 3)


PAIR_LABELS = {
    "fmnist_cnn": "small_cnn (32, 64, 128) -> small_cnn (8, 16, 32), 28x28x1",
    "wrn": "WRN-40-2 -> WRN-16-1, 32x32x3",
}


def attention_mse(teacher, student):
    """Spatial-attention MSE per example; any channel counts, same H x W."""
    from keras import ops

    def at(a):
        q = ops.reshape(ops.mean(ops.square(a), axis=-1), (ops.shape(a)[0], -1))
        return q / ops.maximum(ops.norm(q, axis=-1, keepdims=True), 1e-12)

    return ops.mean(ops.square(at(teacher) - at(student)), axis=-1)


def holder(**kwargs):
    # A plain object keeps Keras from tracking (and double-listing) a model.
    return type("Holder", (), kwargs)()


def paper_vid(teacher, student, taps):
    """VID-I alone on raw taps with the paper's regressor (`vid@k`).

    The default VIDDistiller also standardises the targets, puts BatchNorm in
    the regressors and adds a logit term.
    """
    import keras_vid

    return keras_vid.VIDDistiller(
        teacher,
        student,
        pairs=[(t, t) for t in taps],
        vid_weight=1.0,
        kd_weight=None,
        standardize=False,
        regressor_batch_norm=False,
    )


def keras_distiller(teacher, student, taps):
    """Keras's Distiller: attention MSE on each tap pair plus KD (`keras@k`)."""
    import keras

    losses = [
        keras.distillation.FeatureDistillation(
            loss=attention_mse, teacher_layer_name=t, student_layer_name=t
        )
        for t in taps
    ]
    losses.append(
        keras.distillation.LogitsDistillation(
            temperature=4.0, loss=keras.losses.KLDivergence()
        )
    )
    return keras.distillation.Distiller(
        teacher, student, distillation_losses=losses, student_loss_weight=0.5
    )


def cpu_model():
    """The CPU's model name from /proc/cpuinfo ("unknown" elsewhere)."""
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return model
