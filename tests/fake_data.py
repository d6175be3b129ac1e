"""Tiny fake data set files for the data tests: idx files and CIFAR tarballs.

Each writer puts the files in a directory and registers what they are in
`keras_vid.data`'s tables (`DATASETS`, `CONTENT_SHA256`, `ARCHIVE_SHA256`)
with `monkeypatch`, so that `load_arrays(name, split, directory)` verifies
and reads them. No network.
"""

import dataclasses
import gzip
import hashlib
import io
import struct
import tarfile

import numpy as np
import pytest

from keras_vid import data
from keras_vid.data import builtin


@pytest.fixture(autouse=True)
def isolated_data(monkeypatch):
    """No env var, no system directories, an empty array cache.

    Autouse in the test modules that import it, and only there.
    """
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    monkeypatch.setattr(builtin, "SYSTEM_DIRS", {})
    data.clear_cache()
    yield
    data.clear_cache()


IDX_STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def sha256(blob):
    return hashlib.sha256(blob).hexdigest()


def idx_bytes(array, magic):
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def gzip_named(content, name, mtime=1234):
    """gzip with the original file name in the header (like the published files)."""
    buf = io.BytesIO()
    with gzip.GzipFile(filename=name, mode="wb", fileobj=buf, mtime=mtime) as f:
        f.write(content)
    return buf.getvalue()


def gzip_plain(content):
    """gzip without a file name (like Debian's re-gzipped files)."""
    return gzip.compress(content, mtime=0)


def strip_name(named_gz):
    """Drops the FNAME field of a gzip header, keeping the deflate stream."""
    assert named_gz[3] == 0x08
    end = named_gz.index(b"\0", 10)
    return named_gz[:3] + b"\0" + named_gz[4:10] + named_gz[end + 1 :]


def tiny_idx_arrays(split, per_class, seed=0):
    rng = np.random.default_rng(seed + (split == "test"))
    labels = np.repeat(np.arange(10), per_class)
    rng.shuffle(labels)
    images = rng.integers(0, 256, size=(labels.size, 28, 28), dtype=np.uint8)
    return images, labels


def write_tiny_idx(
    monkeypatch, directory, name="fashion_mnist", compress=gzip_named, register=True
):
    """Writes tiny idx files (4 per class train, 2 per class test) into `directory`.

    Returns {split: (images, labels)} and the contents written.
    """
    directory.mkdir(parents=True, exist_ok=True)
    monkeypatch.setitem(
        data.DATASETS,
        name,
        dataclasses.replace(data.DATASETS[name], num_train=40, num_test=20),
    )
    hashes = {}
    arrays = {}
    for split, per_class in (("train", 4), ("test", 2)):
        images, labels = tiny_idx_arrays(split, per_class)
        arrays[split] = (images, labels)
        img_stem, lab_stem = IDX_STEMS[split]
        for stem, content in (
            (img_stem, idx_bytes(images, 2051)),
            (lab_stem, idx_bytes(labels, 2049)),
        ):
            hashes[stem] = sha256(content)
            if compress is None:
                (directory / stem).write_bytes(content)
            else:
                blob = (
                    compress(content, stem)
                    if compress is gzip_named
                    else compress(content)
                )
                (directory / f"{stem}.gz").write_bytes(blob)
    if register:
        monkeypatch.setitem(data.CONTENT_SHA256, name, hashes)
    return arrays


def cifar_records(labels, images, coarse=None):
    chw = images.transpose(0, 3, 1, 2).reshape(len(labels), -1)
    cols = [labels[:, None].astype(np.uint8), chw]
    if coarse is not None:
        cols.insert(0, coarse[:, None].astype(np.uint8))
    return np.concatenate(cols, axis=1).tobytes()


def write_tiny_cifar(monkeypatch, directory, name="cifar10", tamper=None, drop=None):
    """Writes a tiny CIFAR binary tarball; returns (path, {split: (x, y)})."""
    directory.mkdir(parents=True, exist_ok=True)
    spec = dataclasses.replace(data.DATASETS[name], num_train=50, num_test=10)
    monkeypatch.setitem(data.DATASETS, name, spec)
    rng = np.random.default_rng(7)
    members, arrays = {}, {}
    for split in ("train", "test"):
        n = spec.num_examples(split)
        y = np.arange(n) % spec.num_classes
        x = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
        arrays[split] = (x, y)
        names = spec.members[split]
        per = n // len(names)
        for i, member in enumerate(names):
            sl = slice(i * per, (i + 1) * per)
            coarse = y[sl] % 20 if spec.label_bytes == 2 else None
            members[member] = cifar_records(y[sl], x[sl], coarse)
    for member in spec.extra_members:
        members[member] = b"a\nb\n"
    if tamper:
        blob = bytearray(members[tamper])
        blob[100] ^= 0xFF
        members[tamper] = bytes(blob)
    path = directory / spec.files[0]
    with tarfile.open(path, "w:gz") as tar:
        for member, content in members.items():
            if member == drop:
                continue
            ti = tarfile.TarInfo(member)
            ti.size = len(content)
            tar.addfile(ti, io.BytesIO(content))
    return path, arrays


def register_archive(monkeypatch, name, path):
    table = dict(data.ARCHIVE_SHA256[name])
    table[path.name] = sha256(path.read_bytes())
    monkeypatch.setitem(data.ARCHIVE_SHA256, name, table)
