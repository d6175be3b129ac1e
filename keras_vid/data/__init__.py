"""Image-classification data: Fashion-MNIST, MNIST, CIFAR-10/100, image folders.

The data sets come from files the user already has (these machines, and many
clusters, have no internet). Every file is checked before use:

* A file that is byte-for-byte the published one is recognised by the SHA-256
  that `tensorflow-datasets` records for it (copied into `ARCHIVE_SHA256`).
* A file that was re-compressed (Debian's `dataset-fashion-mnist` package
  re-gzipped Fashion-MNIST without the original file name header) is
  recognised by the SHA-256 of its *decompressed* content (`CONTENT_SHA256`).
* Anything else is refused with `DataVerificationError`; verification is never
  skipped. On top of the hashes, the structure is checked (idx magic numbers,
  image size, record counts, label ranges, tarball member names).

Two sources deliver the verified data:

* `source="direct"` reads the raw files itself (idx `.gz` files for the MNIST
  family, the `*-binary.tar.gz` tarballs for CIFAR), without tfds.
* `source="tfds"` goes through `tfds.load`, preparing the data set from the
  same files with `tfds.download.DownloadConfig(manual_dir=...)` when it is not
  yet in the tfds `data_dir`. tfds checks the compressed files against its own
  checksums; for Debian's Fashion-MNIST files the original gzip header is
  restored first (the result matches tfds's checksums byte for byte). The
  examples come back in the files' order, as from the direct reader, and a
  full Fashion-MNIST split is checked against `CONTENT_SHA256` as well; so
  both sources give the same arrays, and the same subsets for a seed.

The default, `source="auto"`, reads the raw files when it finds them and
otherwise uses a copy that tfds already prepared in `data_dir`.

The user's own images are a third kind of source: wherever a data set name is
expected (`info`, `load`, `load_arrays`), the path of a folder may be given
instead. The folder holds `train/<class>/*.png` (also `.jpg`, `.jpeg`, `.bmp`,
`.gif`) and optionally `test/<class>/...`, or just `<class>/...` (all training
data). The class names are the sorted sub-folder names; label `i` is the
`i`-th of them. Without a `test` folder, a fixed 20% of every class (at least
one image, chosen with the fixed seed `FOLDER_SPLIT_SEED`, not the run's seed)
is the test split and the rest the train split. The images are decoded once
into uint8 arrays and then go through the same pipeline as the built-in sets.
A registered name always means the built-in set, even where a directory of
that name exists; write `./mnist` for such a directory.

A name (or folder) may end in a class selection, `"fashion_mnist:5-9"` or
`"cifar10:0,1,8"`: only those classes are kept, relabelled `0, 1, ...` in
the order given. It makes a transfer task from one data set, for example a
teacher trained on classes 0-4 and a student on classes 5-9.

The package's modules: `builtin` (the built-in sets: their files, the
verification, the direct reader and the tfds path, and the array cache),
`folders` (image folders), `pipeline` (`load_arrays`, `subset_indices`,
`info`, `load`) and `unlabeled` (`load_unlabeled`, `with_unlabeled`). The
public names are all imported here.
"""

from keras_vid.data.builtin import (
    ARCHIVE_SHA256,
    CONTENT_SHA256,
    DATASETS,
    ENV_VAR,
    NAMES,
    DatasetSpec,
    DataVerificationError,
    MissingDataError,
    clear_cache,
    resolve_manual_dir,
)

# Public names outside `__all__`, re-exported (`as`) as before the split. They
# are the submodule's objects: change them in place (`SYSTEM_DIRS[name] = ...`).
from keras_vid.data.builtin import SOURCES as SOURCES
from keras_vid.data.builtin import SPLITS as SPLITS
from keras_vid.data.builtin import SYSTEM_DIRS as SYSTEM_DIRS
from keras_vid.data.folders import (
    FOLDER_SPLIT_SEED,
    FOLDER_TEST_FRACTION,
    IMAGE_EXTENSIONS,
)
from keras_vid.data.pipeline import (
    default_augment,
    info,
    load,
    load_arrays,
    split_classes,
    subset_indices,
)
from keras_vid.data.unlabeled import UNLABELED, load_unlabeled, with_unlabeled

__all__ = [
    "ARCHIVE_SHA256",
    "CONTENT_SHA256",
    "DATASETS",
    "ENV_VAR",
    "FOLDER_SPLIT_SEED",
    "FOLDER_TEST_FRACTION",
    "IMAGE_EXTENSIONS",
    "NAMES",
    "UNLABELED",
    "DataVerificationError",
    "DatasetSpec",
    "MissingDataError",
    "clear_cache",
    "default_augment",
    "info",
    "load",
    "load_arrays",
    "load_unlabeled",
    "resolve_manual_dir",
    "split_classes",
    "subset_indices",
    "with_unlabeled",
]
