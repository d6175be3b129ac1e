"""MirroredStrategy on two logical CPUs equals one device, same global batch."""

import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(__file__)


def run_check(*flags):
    proc = subprocess.run(
        [sys.executable, os.path.join(HERE, "mirrored_check.py"), *flags],
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("REPORT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    return json.loads(lines[-1][len("REPORT ") :])


@pytest.mark.parametrize(
    "flags",
    [
        (),
        ("--sync-bn", "--kd"),
        ("--sync-bn", "--defaults"),
        ("--sync-bn", "--kd", "--unlabeled"),
    ],
    ids=["no-bn", "sync-bn-with-kd", "sync-bn-defaults", "unlabeled"],
)
def test_two_replicas_match_one_device(flags):
    # "--defaults": the default VIDDistiller, whose fit() calibrates the
    # standardised terms first and which adds DIST (its intra-class term on
    # the gathered global batch); the others pin VID alone, or with KD.
    report = run_check(*flags)
    assert "vid/s_stage1" in report["keys"]
    if "--kd" in flags:
        assert "kd/output" in report["keys"]
    if "--defaults" in flags:
        assert "dist/output" in report["keys"]
    if "--unlabeled" in flags:
        # A replica with no labelled example: the task loss, accuracy and
        # DKD still average over the global batch's labelled examples.
        assert {"dkd/output", "accuracy", "task_loss"} <= set(report["keys"])
    assert report["max_weight_diff"] < 1e-5
    assert report["max_log_diff"] < 1e-5


@pytest.mark.parametrize(
    "flags",
    [
        # Forward-pass collectives (SyncBatchNorm, DIST's all_gather, the
        # labelled count) beside the clip's all-reduce: TF 2.21 aborted these
        # steps with a collective shape mismatch before apply_across_replicas.
        ("--clip=global", "--sync-bn", "--defaults"),
        ("--clip=norm", "--sync-bn", "--kd", "--unlabeled"),
    ],
    ids=["global-defaults-sync-bn", "norm-unlabeled-sync-bn"],
)
def test_clipped_two_replicas_match_one_device(flags):
    """Clipping acts on the replicas' summed gradient, as on one device.

    Keras 3.15 clips each replica's gradient before the sum; the check's run
    with `apply_across_replicas` switched off shows that this alone makes two
    replicas differ from one device.
    """
    report = run_check(*flags)
    assert report["clip_effect"] > 1e-3  # the clip changed the training
    assert report["keras_clip_replica_diff"] > 1e-3
    assert report["max_weight_diff"] < 1e-5
    assert report["max_log_diff"] < 1e-5


def test_clipped_two_replicas_match_one_device_in_float16():
    """The loss scale is taken off before the summed gradient is clipped."""
    report = run_check("--clip=global", "--mixed")
    assert report["clip_effect"] > 1e-3
    # float16 activations: equal to float16 rounding, not to float32's.
    assert report["max_weight_diff"] < 1e-3
    assert report["max_weight_diff"] < report["keras_clip_replica_diff"] / 4
