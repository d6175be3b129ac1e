"""MultiWorkerMirroredStrategy: two worker processes on 127.0.0.1.

`multi_worker_check.py` runs one worker (or the single-process reference) per
process. The first phase runs, side by side, an uninterrupted pair of workers,
the single-process reference and a pair that is interrupted after its first
epoch; the second relaunches the interrupted pair, which must resume from its
`BackupAndRestore` backup. The models use synchronized BatchNormalization, so
the two-worker run equals the single process.
"""

import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from keras_vid import distribute

HERE = os.path.dirname(__file__)
CHECK = os.path.join(HERE, "multi_worker_check.py")
TIMEOUT = 300  # seconds, for each phase
INTERRUPTED = 3  # multi_worker_check.INTERRUPTED
EPOCHS = 3
FLAGS = ("--sync-bn", "--epochs", str(EPOCHS))


def free_ports(n):
    """`n` distinct free TCP ports on 127.0.0.1 (held together while chosen)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class Job:
    """One `multi_worker_check.py` process, its output in `<out>/<name>.log`."""

    def __init__(self, out, name, *args):
        os.makedirs(out, exist_ok=True)
        self.out, self.name = out, name
        self.log_path = os.path.join(out, name + ".log")
        env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, CHECK, out, *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )

    def log_tail(self, n=3000):
        with open(self.log_path) as f:
            return f"--- {self.log_path}\n" + f.read()[-n:]

    def report(self):
        with open(os.path.join(self.out, self.name + ".json")) as f:
            return json.load(f)

    def weights(self):
        with np.load(os.path.join(self.out, self.name + ".npz")) as data:
            return [data[k] for k in sorted(data.files, key=lambda k: int(k[4:]))]


def single(out, *flags):
    return Job(out, "single", *flags)


def workers(out, ports, *flags):
    """Two workers of one cluster on 127.0.0.1:`ports`."""
    ports = ",".join(map(str, ports))
    return [
        Job(out, f"worker{i}", "--ports", ports, "--index", str(i), *flags)
        for i in range(2)
    ]


def wait(jobs, expected_rc, deadline=None):
    """Waits for all jobs; kills them all on a timeout or the first failure.

    A worker whose peer died would otherwise block in a collective op until
    the timeout, so one unexpected return code ends the wait at once.
    """
    deadline = deadline or time.monotonic() + TIMEOUT
    try:
        while any(job.proc.poll() is None for job in jobs):
            failed = [job for job in jobs if job.proc.poll() not in (None, expected_rc)]
            if failed or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        rcs = {job.name: job.proc.poll() for job in jobs}
        assert all(rc == expected_rc for rc in rcs.values()), (
            f"return codes {rcs} (None: killed after {TIMEOUT}s or after a "
            f"failure), expected {expected_rc}\n"
            + "\n".join(j.log_tail() for j in jobs)
        )
    finally:
        kill(jobs)


def kill(jobs):
    for job in jobs:
        if job.proc.poll() is None:
            job.proc.kill()
            job.proc.wait()


def max_diff(a, b):
    assert len(a) == len(b)
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Phase 1, in parallel: uninterrupted pair, reference, interrupted pair."""
    root = tmp_path_factory.mktemp("multi_worker")
    backup = str(root / "backup")
    start = time.monotonic()
    ports = free_ports(4)
    full = workers(str(root / "full"), ports[:2], *FLAGS)
    ref = [single(str(root / "single"), *FLAGS)]
    cut = workers(
        str(root / "interrupted"),
        ports[2:],
        *FLAGS,
        "--backup",
        backup,
        "--interrupt-at",
        "1",
    )
    deadline = time.monotonic() + TIMEOUT
    try:
        wait(full + ref, 0, deadline)
        wait(cut, INTERRUPTED, deadline)
    finally:
        kill(full + ref + cut)
    print(f"phase 1: {time.monotonic() - start:.1f}s")
    return {
        "root": root,
        "backup": backup,
        "full": full,
        "single": ref[0],
        "interrupted": cut,
    }


def test_workers_agree_and_equal_single_process(runs):
    w0, w1 = runs["full"]
    ref = runs["single"]
    for i, job in enumerate((w0, w1)):
        report = job.report()
        assert report["multi_worker"] and report["replicas"] == 2
        assert report["worker_index"] == i
        assert report["epochs"] == list(range(EPOCHS))
    assert ref.report()["replicas"] == 1

    # (a) Synchronous training: both workers hold the same weights.
    for a, b in zip(w0.weights(), w1.weights()):
        np.testing.assert_array_equal(a, b)
    # (b) ... which are the single process's on the same global batches.
    assert max_diff(w0.weights(), ref.weights()) < 1e-5
    # Logs are global values, not one worker's.
    h2, h1 = w0.report()["history"], ref.report()["history"]
    assert sorted(h2) == sorted(h1) and "vid/s_stage1" in h2
    for key in h1:
        np.testing.assert_allclose(h2[key], h1[key], atol=1e-5, err_msg=key)
    e2, e1 = w0.report()["evaluate"], ref.report()["evaluate"]
    for key in e1:
        np.testing.assert_allclose(e2[key], e1[key], atol=1e-5, err_msg=key)


def test_backup_and_restore_resumes_after_interruption(runs):
    backup = runs["backup"]
    for i, job in enumerate(runs["interrupted"]):
        report = job.report()
        assert report["interrupted"] and report["epochs"] == [0]
        # Each worker backed up epoch 0 in a directory of its own.
        with open(os.path.join(backup, f"worker_{i}", "training_metadata.json")) as f:
            assert json.load(f)["epoch"] == 1

    resumed = workers(
        str(runs["root"] / "resumed"), free_ports(2), *FLAGS, "--backup", backup
    )
    start = time.monotonic()
    wait(resumed, 0)
    print(f"phase 2: {time.monotonic() - start:.1f}s")
    full = runs["full"][0].weights()
    for job in resumed:
        # Resumed at the saved epoch, not at 0 ...
        assert job.report()["epochs"] == list(range(1, EPOCHS))
        # ... and ended where the uninterrupted run did.
        assert max_diff(job.weights(), full) < 1e-6
    # BackupAndRestore deletes its (per-worker) backup when training ends.
    assert not os.path.exists(os.path.join(backup, "worker_0"))
    assert not os.path.exists(os.path.join(backup, "worker_1"))


def test_get_strategy():
    assert distribute.get_strategy() is tf.distribute.get_strategy()
    assert distribute.get_strategy("default") is tf.distribute.get_strategy()
    mirrored = distribute.get_strategy("mirrored", devices=["/cpu:0"])
    assert isinstance(mirrored, tf.distribute.MirroredStrategy)
    with pytest.raises(ValueError, match="Unknown strategy name 'tpu'"):
        distribute.get_strategy("tpu")
    with pytest.raises(ValueError, match="Expected one of"):
        distribute.get_strategy(None)
    with pytest.raises(ValueError, match="takes no arguments"):
        distribute.get_strategy("default", devices=["/cpu:0"])
    # "multi_worker" is created by the workers above, each from TF_CONFIG.


def test_single_worker_helpers():
    assert not distribute.is_multi_worker()
    assert distribute.worker_index() == 0
    assert distribute.worker_backup_dir("/tmp/backup") == "/tmp/backup"
    x = tf.constant([1.0])
    assert distribute.local_batch((x, None)) == (x, None)
