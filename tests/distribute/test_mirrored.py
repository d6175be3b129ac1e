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
    "flags", [(), ("--sync-bn", "--kd")], ids=["no-bn", "sync-bn-with-kd"]
)
def test_two_replicas_match_one_device(flags):
    report = run_check(*flags)
    assert "vid/s_stage1" in report["keys"]
    if "--kd" in flags:
        assert "kd/output" in report["keys"]
    assert report["max_weight_diff"] < 1e-5
    assert report["max_log_diff"] < 1e-5
