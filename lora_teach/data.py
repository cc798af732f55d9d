"""MNIST, offline first: checked IDX files, ready tensors, digit subsets, fast batches.

The four canonical IDX files live gzipped in ``data/MNIST/raw/`` (torchvision's
layout). Loading checks their MD5 sums, decompresses them atomically beside
the ``.gz`` files, and returns normalized tensors. The seed's torchvision
``Dataset`` + ``DataLoader`` path is here too, for comparison.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import os
import shutil
import tempfile
import zlib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from lora_teach.outputs import umask_mode

MEAN, STD = 0.1307, 0.3081
TUTORIAL_MEAN = 0.1301  # the value the MNIST tutorial typed; see the errata
SEED_MEAN = TUTORIAL_MEAN  # the older name, kept for code written against it
FILES = {  # name -> (bytes, md5 of the uncompressed file)
    "train-images-idx3-ubyte": (47_040_016, "6bbc9ace898e44ae57da46a324031adb"),
    "train-labels-idx1-ubyte": (60_008, "a25bea736e30d166cdddb491f175f624"),
    "t10k-images-idx3-ubyte": (7_840_016, "2646ac647ad5339dbf082846283269ea"),
    "t10k-labels-idx1-ubyte": (10_008, "27ae3e4e09519cfbb04c329615203637"),
}
SPLITS = {"train": "train", "test": "t10k"}
HOW_TO_FIX = (
    "restore it with `git checkout -- data/MNIST/raw` in the course repository, "
    "or point LORA_TEACH_DATA at a folder holding MNIST/raw/*.gz (see data/README.md)"
)


class DataError(RuntimeError):
    """A missing or corrupt MNIST file, with what to do about it."""


def data_root(marker: str = "MNIST/raw") -> Path:
    """The ``data/`` folder that holds ``marker`` (a sub-path such as "MNIST/raw" or "text"):
    $LORA_TEACH_DATA, else the nearest ``data/`` above the working directory that has it, else the
    one beside the package source (an editable install), else ``./data`` (where a download would go).
    """
    if os.environ.get("LORA_TEACH_DATA"):
        return Path(os.environ["LORA_TEACH_DATA"]).expanduser().resolve()
    here = Path.cwd().resolve()
    package_repo = Path(__file__).resolve().parent.parent
    for folder in [here, *here.parents, package_repo]:
        if (folder / "data" / marker).exists():
            return folder / "data"
    return here / "data"


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


_VERIFIED: set[tuple[str, int, int]] = set()  # (path, size, mtime) already checked in this process


def _verified(path: Path, md5: str) -> bool:
    """Whether ``path`` has the MD5 sum ``md5``; hashed once per process while unchanged."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _VERIFIED:
        if _md5(path) != md5:
            return False
        _VERIFIED.add(key)
    return True


def _decompress_atomically(gz_path: Path, out_path: Path) -> None:
    """Write ``out_path`` from ``gz_path`` via a temporary file and a rename, so a
    reader never sees a half-written file. The file gets the mode the umask allows
    (0o644 usually, so a shared data folder stays readable to all), and on any
    failure the temporary file is removed."""
    handle, tmp = tempfile.mkstemp(dir=out_path.parent, prefix=f".{out_path.name}.")
    try:
        with os.fdopen(handle, "wb") as out, gzip.open(gz_path, "rb") as src:
            shutil.copyfileobj(src, out, 1 << 22)
        os.chmod(tmp, umask_mode())
        os.replace(tmp, out_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _download_with_torchvision(root: Path) -> None:
    try:
        from torchvision.datasets import MNIST

        for train in (True, False):
            MNIST(root=str(root), train=train, download=True)
    except Exception as error:  # noqa: BLE001 - any failure gets the same advice
        raise DataError(
            f"MNIST is not in {root / 'MNIST' / 'raw'} and torchvision's download failed "
            f"({type(error).__name__}: {error}). Fix: {HOW_TO_FIX}."
        ) from error


def ensure_mnist(root: Path | str | None = None, download: bool = True) -> Path:
    """Make sure the four IDX files exist uncompressed and match their MD5 sums.

    Returns the ``MNIST/raw`` folder. Falls back to torchvision's download
    (when ``download``) only if no ``.gz`` files are there at all.
    """
    root = Path(root) if root is not None else data_root()
    raw = root / "MNIST" / "raw"
    present = [n for n in FILES if (raw / f"{n}.gz").exists() or (raw / n).exists()]
    if not present:
        if not download:
            raise DataError(f"MNIST is not in {raw}. Fix: {HOW_TO_FIX}.")
        _download_with_torchvision(root)
    for name, (size, md5) in FILES.items():
        path, gz_path = raw / name, raw / f"{name}.gz"
        if path.exists() and path.stat().st_size == size and _verified(path, md5):
            continue
        if not gz_path.exists():
            raise DataError(f"{gz_path} is missing. Fix: {HOW_TO_FIX}.")
        try:
            _decompress_atomically(gz_path, path)
        except (EOFError, gzip.BadGzipFile, zlib.error) as error:
            raise DataError(f"{gz_path} is corrupt ({error}). Fix: {HOW_TO_FIX}.") from error
        except OSError as error:
            raise DataError(
                f"cannot write {path} ({error.strerror or error}). Fix: free space or permissions in {raw}, "
                "or point LORA_TEACH_DATA at a writable folder holding MNIST/raw/*.gz (see data/README.md)."
            ) from error
        if not _verified(path, md5):
            path.unlink()
            raise DataError(
                f"{gz_path} is corrupt: its content does not match the MD5 sum {md5} of the "
                f"canonical {name}. Fix: {HOW_TO_FIX}."
            )
    return raw


@functools.lru_cache(maxsize=4)
def _read_idx(path: Path) -> np.ndarray:
    data = np.fromfile(path, dtype=np.uint8)
    ndim = int(data[3])
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i].tobytes(), "big") for i in range(ndim))
    array = data[4 + 4 * ndim :].reshape(shape)
    array.flags.writeable = False
    return array


def load_raw_mnist(split: str = "train", root: Path | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixels and labels as stored: images (N, 28, 28) uint8, labels (N,) int64."""
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    raw = ensure_mnist(root)
    prefix = SPLITS[split]
    images = torch.from_numpy(_read_idx(raw / f"{prefix}-images-idx3-ubyte").copy())
    labels = torch.from_numpy(_read_idx(raw / f"{prefix}-labels-idx1-ubyte").astype(np.int64))
    return images, labels


def _whole_number(value: object) -> int | None:
    """``value`` as an int when it is a whole number (int, numpy integer, 2.0, a one-element
    tensor); None for anything else (2.7, "2", True, None)."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    elif isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def check_digits(digits: Sequence[int]) -> list[int]:
    """``digits`` as a list of ints 0-9, or a ValueError that says what is wrong
    (a fraction such as 2.7, a string, a digit out of range, an empty list)."""
    message = "digits must be a non-empty list of whole numbers 0-9, such as [2, 3, 5, 8, 9]"
    if isinstance(digits, (str, bytes)) or not isinstance(digits, Iterable):
        raise ValueError(f"{message}, got {digits!r}")
    given = list(digits)
    whole = [_whole_number(d) for d in given]
    if not given or any(d is None or not 0 <= d <= 9 for d in whole):
        raise ValueError(f"{message}, got {given!r}")
    return whole


def digit_subset(
    x: torch.Tensor, y: torch.Tensor, digits: Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep the examples whose label is in ``digits``: x (N, ...), y (N,) -> (M, ...), (M,)."""
    keep = torch.isin(y, torch.tensor(check_digits(digits), device=y.device))
    return x[keep], y[keep]


def load_mnist(
    split: str = "train",
    digits: Sequence[int] | None = None,
    mean: float = MEAN,
    std: float = STD,
    device: torch.device | str | None = None,
    root: Path | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST as ready tensors: x (N, 784) float32, (pixel / 255 - mean) / std; y (N,) int64.

    ``digits`` keeps only those labels, e.g. ``[2, 3, 5, 8, 9]``.
    """
    images, labels = load_raw_mnist(split, root)
    if digits is not None:
        images, labels = digit_subset(images, labels, digits)
    x = images.reshape(len(images), -1).to(torch.float32).div_(255).sub_(mean).div_(std)
    if device is not None:
        x, labels = x.to(device), labels.to(device)
    return x, labels


class Batches:
    """Mini-batches over in-memory tensors: each epoch one shuffled order of the whole
    set, each batch one gather of its rows (no per-sample work, no collation).

    Iterating yields (x (batch, ...), y (batch,)); ``len`` is the number of batches.
    With ``seed=None`` the shuffle draws from torch's global generator, as a
    ``DataLoader(shuffle=True)`` does; the last batch may be smaller.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        shuffle: bool = True,
        seed: int | None = None,
    ) -> None:
        if len(x) != len(y):
            raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.x, self.y, self.batch_size, self.shuffle = x, y, batch_size, shuffle
        self.generator = None
        if seed is not None:
            self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return -(-len(self.x) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        x, y, size = self.x, self.y, self.batch_size
        if not self.shuffle:
            for start in range(0, len(x), size):
                yield x[start : start + size], y[start : start + size]
            return
        # gather each batch's rows when it is needed: an epoch cut short (num_steps)
        # never pays for copying the whole set, and every batch is contiguous
        order = torch.randperm(len(x), generator=self.generator).to(x.device)
        for start in range(0, len(x), size):
            rows = order[start : start + size]
            yield x[rows], y[rows]


def torchvision_mnist(
    split: str = "train", mean: float = MEAN, std: float = STD, digits: Sequence[int] | None = None
):
    """The seed's path: ``torchvision.datasets.MNIST`` with per-sample ToTensor and
    Normalize (pass ``mean=TUTORIAL_MEAN`` for the tutorial's exact transform)."""
    from torchvision import datasets, transforms

    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root = ensure_mnist().parent.parent
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((mean,), (std,))])
    dataset = datasets.MNIST(root=str(root), train=split == "train", download=False, transform=transform)
    if digits is not None:
        keep = torch.isin(dataset.targets, torch.tensor(check_digits(digits)))
        dataset.data, dataset.targets = dataset.data[keep], dataset.targets[keep]
    return dataset


def torchvision_loader(split: str = "train", batch_size: int = 10, shuffle: bool | None = None, **kwargs):
    """A ``DataLoader`` over ``torchvision_mnist`` (shuffled for train, as in the seed)."""
    shuffle = split == "train" if shuffle is None else shuffle
    return torch.utils.data.DataLoader(
        torchvision_mnist(split, **kwargs), batch_size=batch_size, shuffle=shuffle
    )
