"""Image folders as data sets: scanning, decoding, resizing, the test split.

A folder holds `train/<class>/...` (and optionally `test/<class>/...`), or
`<class>/...`; see `keras_vid.data`'s docstring. `_load_folder` scans it,
decodes every image once with TensorFlow's decoders and caches the arrays,
keyed by the file list with sizes and mtimes. `_flat_folder` reads a folder
without classes, for `load_unlabeled`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import re
from pathlib import Path

import numpy as np

from keras_vid._tf import require as _require_tf
from keras_vid._tf import tf
from keras_vid.data.builtin import _ARRAY_CACHE, DATASETS, SPLITS, _freeze

logger = logging.getLogger(__name__)


# Image folders: the file types read (case-insensitive), and how the test split
# is drawn from the training images when the folder has no `test` sub-folder.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
FOLDER_TEST_FRACTION = 0.2
FOLDER_SPLIT_SEED = 0


_LAYOUT_HINT = (
    "An image folder holds PATH/train/<class>/<images> (and optionally "
    "PATH/test/<class>/<images>), or PATH/<class>/<images>, with image files "
    f"ending in {', '.join(IMAGE_EXTENSIONS)}."
)


@dataclasses.dataclass(frozen=True)
class _Folder:
    """The files of an image folder, before decoding.

    `files[split]` lists `(path, label)` pairs, by class, then by path.
    `class_dirs[split][label]` is the folder the class's images came from.
    """

    root: Path
    class_names: tuple
    files: dict
    class_dirs: dict
    auto_test: bool
    stamp: tuple


def _folder_path(name):
    """The folder that `name` points to, or None for a data set name.

    A registered name always means the built-in set, even if a directory of
    that name exists; `"./mnist"` reaches such a directory.
    """
    if isinstance(name, str) and name in DATASETS:
        return None
    if isinstance(name, os.PathLike):
        return Path(name).expanduser()
    if isinstance(name, str):
        separators = [s for s in (os.sep, os.altsep) if s]
        if (
            any(s in name for s in separators)
            or name.startswith(("~", "."))
            or os.path.isdir(name)
        ):
            return Path(name).expanduser()
    return None


def _image_size(image_size):
    """`image_size` as a `(height, width)` tuple of ints, or None."""
    if image_size is None:
        return None
    if isinstance(image_size, int | np.integer) and not isinstance(image_size, bool):
        size = (image_size, image_size)
    else:
        try:
            size = tuple(image_size)
        except TypeError:
            size = ()
    if len(size) != 2 or not all(
        isinstance(v, int | np.integer) and not isinstance(v, bool) and v > 0
        for v in size
    ):
        raise ValueError(
            f"image_size must be a positive int or a (height, width) pair of "
            f"positive ints, got {image_size!r}."
        )
    return int(size[0]), int(size[1])


def _class_names(directory):
    # Hidden folders are tool droppings (.ipynb_checkpoints), not classes.
    return sorted(
        p.name for p in directory.iterdir() if p.is_dir() and not p.name.startswith(".")
    )


def _image_files(directory):
    found = []
    for dirpath, dirnames, filenames in os.walk(directory, followlinks=True):
        dirnames.sort()  # Walk order fixes the example order, so make it stable.
        found += [
            Path(dirpath) / f
            for f in sorted(filenames)
            if f.lower().endswith(IMAGE_EXTENSIONS)
        ]
    return found


def _split_rank(relative):
    # A hash of the path, not a random permutation: adding or removing an
    # image moves at most a few others between the splits.
    key = f"{FOLDER_SPLIT_SEED}:{relative.as_posix()}".encode()
    return hashlib.sha256(key).digest()


def _auto_test_split(files, class_dirs):
    """Splits `(path, label)` pairs into train and a stratified test part."""
    train, test = [], []
    for label, directory in enumerate(class_dirs):
        paths = [f for f, y in files if y == label]
        if len(paths) < 2:
            raise ValueError(
                f"Class folder {directory} holds {len(paths)} image file(s), but "
                f"the image folder has no test/ sub-folder, so "
                f"{FOLDER_TEST_FRACTION:.0%} of every class (at least one image) "
                f"is held out for testing and each class needs at least 2 images. "
                f"Add images, or put the test images in a separate "
                f"PATH/test/<class>/ folder (and the rest in PATH/train/<class>/)."
            )
        num_test = int(FOLDER_TEST_FRACTION * len(paths) + 0.5)
        num_test = min(max(num_test, 1), len(paths) - 1)
        ranked = sorted(paths, key=lambda f: _split_rank(f.relative_to(directory)))
        held_out = set(ranked[:num_test])
        train += [(f, label) for f in paths if f not in held_out]
        test += [(f, label) for f in paths if f in held_out]
    return train, test


def _scan_folder(path):
    """Finds the classes and image files of an image folder, checking them."""
    if not path.exists():
        raise ValueError(
            f"Image folder {path} does not exist (and {str(path)!r} is not a data "
            f"set name: {', '.join(DATASETS)}). {_LAYOUT_HINT}"
        )
    if not path.is_dir():
        raise ValueError(f"{path} is a file, not an image folder. {_LAYOUT_HINT}")
    root = path.resolve()
    split_dirs = {"train": root / "train", "test": root / "test"}
    if not split_dirs["train"].is_dir():
        if split_dirs["test"].is_dir():
            raise ValueError(
                f"Image folder {root} has a test/ sub-folder but no train/ one. "
                f"Put the training images in {root / 'train'}/<class>/."
            )
        split_dirs = {"train": root}
    elif not split_dirs["test"].is_dir():
        del split_dirs["test"]

    names = {}
    for split, directory in split_dirs.items():
        names[split] = _class_names(directory)
        if not names[split]:
            loose = _image_files(directory)
            hint = (
                f" Its {len(loose)} image file(s) must sit in one sub-folder per "
                f"class, e.g. {directory / 'cat'}/."
                if loose
                else ""
            )
            raise ValueError(
                f"{directory} holds no class sub-folders.{hint} {_LAYOUT_HINT}"
            )
    if "test" in names and names["train"] != names["test"]:
        only_train = sorted(set(names["train"]) - set(names["test"]))
        only_test = sorted(set(names["test"]) - set(names["train"]))
        raise ValueError(
            f"The class folders of {split_dirs['train']} and {split_dirs['test']} "
            f"differ: only in train/: {', '.join(only_train) or '(none)'}; only in "
            f"test/: {', '.join(only_test) or '(none)'}. Both need the same class "
            f"sub-folders, so that the labels mean the same classes."
        )

    class_names = tuple(names["train"])
    files, class_dirs = {}, {}
    for split, directory in split_dirs.items():
        class_dirs[split] = tuple(directory / c for c in class_names)
        files[split] = []
        for label, class_dir in enumerate(class_dirs[split]):
            found = _image_files(class_dir)
            if not found:
                raise ValueError(
                    f"Class folder {class_dir} holds no image files (looked for "
                    f"{', '.join(IMAGE_EXTENSIONS)}). Add images to it or remove it."
                )
            files[split] += [(f, label) for f in found]
    every = [f for split in files for f, _ in files[split]]
    stamp = []
    for f in every:
        st = f.stat()
        stamp.append((f.relative_to(root).as_posix(), st.st_size, st.st_mtime_ns))
    auto_test = "test" not in files
    if auto_test:
        files["train"], files["test"] = _auto_test_split(
            files["train"], class_dirs["train"]
        )
        class_dirs["test"] = class_dirs["train"]
    return _Folder(root, class_names, files, class_dirs, auto_test, tuple(stamp))


def _tf_message(error):
    """The readable part of a TensorFlow op error message."""
    message = re.sub(r"\{\{[^}]*\}\}\s*", "", error.message)
    # Eager errors end in "[Op:Name] name: ..."; neither helps the user.
    return re.sub(r"\s*\[Op:.*$", "", message, flags=re.S).strip().rstrip(".")


def _decode(path):
    try:
        image = tf.io.decode_image(tf.io.read_file(str(path)), expand_animations=False)
    except tf.errors.OpError as e:
        raise ValueError(
            f"Cannot read image file {path}: {_tf_message(e)}. Replace it with "
            f"a valid image or remove it."
        ) from None
    return image.numpy()


def _to_rgb(image):
    channels = image.shape[-1]
    if channels in (1, 2):  # Grayscale, maybe with alpha.
        return np.repeat(image[..., :1], 3, axis=-1)
    return image[..., :3]  # Alpha is dropped: the others have none.


def _resize(image, size):
    if image.shape[:2] == size:
        return image
    resized = tf.image.resize(image, size, method="bilinear").numpy()
    return np.clip(np.rint(resized), 0, 255).astype(np.uint8)


def _decode_all(files, size, root):
    """Decodes `files` to uint8 arrays with one channel count, resized to `size`."""
    _require_tf(f"Reading the image folder {root}")
    # Host memory: decoded images are kept as numpy arrays anyway.
    with tf.device("/CPU:0"):
        images = [_decode(f) for f in files]
        channels = {im.shape[-1] for im in images}
        if len(channels) > 1:
            logger.info(
                "%s mixes images with %s channels; converting all to RGB.",
                root,
                sorted(channels),
            )
            images = [_to_rgb(im) for im in images]
        if size is not None:
            images = [_resize(im, size) for im in images]
    return images


def _read_folder(folder, size):
    """Decodes every image of both splits into `{split: (x, y)}` uint8 arrays."""
    logger.info("Decoding the images of %s", folder.root)
    files = [f for s in SPLITS for f, _ in folder.files[s]]
    decoded = _decode_all(files, size, folder.root)
    images, start = {}, 0
    for s in SPLITS:
        images[s] = decoded[start : start + len(folder.files[s])]
        start += len(folder.files[s])
    if size is None:
        examples = {}
        for s in SPLITS:
            for (f, _), im in zip(folder.files[s], images[s]):
                examples.setdefault(im.shape[:2], f)
        if len(examples) > 1:
            listed = "; ".join(
                f"{h}x{w} (e.g. {f})" for (h, w), f in list(examples.items())[:5]
            )
            raise ValueError(
                f"The images of {folder.root} have {len(examples)} different sizes "
                f"(height x width): {listed}. Pass image_size=(height, width) (or "
                f"an int for square images) to resize them all to one size."
            )
    return {
        s: (
            np.stack(images[s]),
            np.array([y for _, y in folder.files[s]], dtype=np.int32),
        )
        for s in SPLITS
    }


def _load_folder(path, image_size):
    """Returns `(folder, {split: (x, y)})`, decoding only on a cache miss."""
    size = _image_size(image_size)
    folder = _scan_folder(path)
    # The stamp (file list, sizes, mtimes) makes an edited folder a new key.
    key = ("folder", str(folder.root), size, folder.stamp)
    if key not in _ARRAY_CACHE:
        # Older versions of this folder would never be hit again: free them.
        for old in [k for k in _ARRAY_CACHE if k[:3] == key[:3]]:
            del _ARRAY_CACHE[old]
        _ARRAY_CACHE[key] = _freeze(_read_folder(folder, size))
    return folder, _ARRAY_CACHE[key]


def _check_folder_counts(folder, split, labels, samples_per_class):
    """`subset_indices`'s check, with the class names and folders in the message."""
    if isinstance(samples_per_class, bool) or not isinstance(
        samples_per_class, int | np.integer
    ):
        return  # subset_indices rejects it with its own message.
    counts = np.bincount(labels, minlength=len(folder.class_names))
    short = [c for c, n in enumerate(counts) if n < samples_per_class]
    if not short:
        return
    held_out = (
        f", after {FOLDER_TEST_FRACTION:.0%} of each class was held out as the "
        f"automatic test split"
        if folder.auto_test and split == "train"
        else ""
    )
    detail = "; ".join(
        f"class {folder.class_names[c]!r} has {counts[c]} "
        f"(folder {folder.class_dirs[split][c]})"
        for c in short
    )
    raise ValueError(
        f"samples_per_class={samples_per_class} asks for more {split} images than "
        f"exist{held_out}: {detail}. Lower samples_per_class or add images."
    )


def _flat_folder(path, image_size):
    """Every image under `path` (any layout), as one uint8 array."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise ValueError(
            f"The unlabelled image folder {str(path)!r} does not exist or is not "
            "a directory. Pass the folder that holds the images (sub-folders "
            "are read too)."
        )
    files = _image_files(root)
    if not files:
        raise ValueError(
            f"The unlabelled image folder {root} holds no image "
            f"({', '.join(IMAGE_EXTENSIONS)}). Put the images in it, or pass "
            "another folder."
        )
    size = _image_size(image_size)
    stamp = tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    key = ("unlabeled", str(root.resolve()), size, stamp)
    if key not in _ARRAY_CACHE:
        logger.info("Decoding the %d unlabelled images of %s", len(files), root)
        images = _decode_all(files, size, root)
        sizes = {im.shape[:2] for im in images}
        if len(sizes) > 1:
            raise ValueError(
                f"The unlabelled images of {root} have {len(sizes)} different sizes "
                f"(height x width): {sorted(sizes)[:5]}. Pass image_size=(height, "
                "width) (or an int) to resize them all to the labelled images' size."
            )
        _ARRAY_CACHE[key] = np.stack(images)
    return _ARRAY_CACHE[key]
