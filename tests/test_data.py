"""Offline MNIST: checksums, counts, normalization, subsets, batching, and clear errors."""

import gzip
import hashlib
import os
import shutil
import stat
from pathlib import Path

import pytest
import torch

from lora_teach import data
from lora_teach.data import Batches, DataError, digit_subset, ensure_mnist, load_mnist, load_raw_mnist

REPO = Path(__file__).resolve().parent.parent
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture
def data_copy(tmp_path, monkeypatch):
    """A private copy of the committed .gz files, pointed at by LORA_TEACH_DATA."""
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for gz in (REPO / "data" / "MNIST" / "raw").glob("*.gz"):
        shutil.copy(gz, raw / gz.name)
    monkeypatch.setenv("LORA_TEACH_DATA", str(tmp_path))
    data._read_idx.cache_clear()
    yield raw
    data._read_idx.cache_clear()


@pytest.mark.parametrize("name", list(data.FILES))
def test_committed_files_decompress_to_the_canonical_md5(name):
    with gzip.open(REPO / "data" / "MNIST" / "raw" / f"{name}.gz", "rb") as f:
        content = f.read()
    size, md5 = data.FILES[name]
    assert len(content) == size
    assert hashlib.md5(content).hexdigest() == md5


def test_split_sizes_and_per_digit_counts():
    images, labels = load_raw_mnist("train")
    assert images.shape == (60_000, 28, 28) and images.dtype == torch.uint8
    assert torch.bincount(labels).tolist() == TRAIN_COUNTS
    test_images, test_labels = load_raw_mnist("test")
    assert test_images.shape == (10_000, 28, 28)
    assert torch.bincount(test_labels).tolist() == TEST_COUNTS


def test_pixel_mean_and_std_are_the_normalization_constants():
    images, _ = load_raw_mnist("train")
    pixels = images.double() / 255
    assert round(pixels.mean().item(), 4) == data.MEAN
    assert round(pixels.std().item(), 4) == data.STD


def test_load_mnist_returns_normalized_flat_tensors():
    x, y = load_mnist("test")
    assert x.shape == (10_000, 784) and x.dtype == torch.float32 and y.dtype == torch.int64
    train_x, _ = load_mnist("train")
    assert abs(train_x.mean().item()) < 1e-3 and abs(train_x.std().item() - 1) < 1e-3


def test_digit_subset_keeps_only_those_digits():
    x, y = load_mnist("train", digits=[2, 3, 5, 8, 9])
    assert set(y.unique().tolist()) == {2, 3, 5, 8, 9}
    assert len(y) == sum(TRAIN_COUNTS[d] for d in [2, 3, 5, 8, 9])
    xs, ys = digit_subset(torch.arange(6), torch.tensor([0, 1, 2, 1, 0, 2]), [1])
    assert xs.tolist() == [1, 3] and ys.tolist() == [1, 1]


@pytest.mark.parametrize("digits", [[], [10], [-1], [2.7], [2, 3.5], "235", ["2"], [True], [None], 3, None])
def test_bad_digits_are_refused(digits):
    with pytest.raises(ValueError, match="digits must be a non-empty list of whole numbers 0-9"):
        data.check_digits(digits)


def test_whole_digits_of_any_number_type_are_accepted():
    import numpy as np

    assert data.check_digits([np.int64(2), 3.0, torch.tensor(5), 8]) == [2, 3, 5, 8]
    assert data.check_digits(d for d in (9, 1)) == [9, 1]


def test_bad_split_is_refused():
    with pytest.raises(ValueError, match="split must be 'train' or 'test', got 'valid'"):
        load_mnist("valid")


def test_torchvision_path_gives_the_same_tensors():
    dataset = data.torchvision_mnist("test")
    x, y = load_mnist("test")
    for i in [0, 1, 9999]:
        image, label = dataset[i]
        assert label == y[i].item()
        torch.testing.assert_close(image.flatten(), x[i], rtol=1e-5, atol=1e-5)
    first_x, first_y = next(iter(data.torchvision_loader("test", batch_size=10)))
    assert first_x.shape == (10, 1, 28, 28) and first_y.tolist() == y[:10].tolist()


def test_batches_visit_every_example_once_per_epoch_in_contiguous_slices():
    x, y = torch.arange(23).float().unsqueeze(1), torch.arange(23)
    batches = Batches(x, y, batch_size=5, seed=1)
    assert len(batches) == 5
    seen = []
    for xb, yb in batches:
        assert xb.is_contiguous() and torch.equal(xb.squeeze(1).long(), yb)
        seen += yb.tolist()
    assert sorted(seen) == list(range(23)) and seen != list(range(23))


def test_batches_with_a_seed_repeat_and_without_shuffle_keep_order():
    x, y = torch.randn(10, 2), torch.arange(10)
    first = [yb.tolist() for _, yb in Batches(x, y, 3, seed=7)]
    assert first == [yb.tolist() for _, yb in Batches(x, y, 3, seed=7)]
    assert [v for _, yb in Batches(x, y, 4, shuffle=False) for v in yb.tolist()] == list(range(10))


@pytest.mark.parametrize("batch_size", [0, -3, 2.5])
def test_bad_batch_size_is_refused(batch_size):
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        Batches(torch.zeros(4, 1), torch.zeros(4), batch_size)


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError, match="same length, got 4 and 3"):
        Batches(torch.zeros(4, 1), torch.zeros(3), 2)


def test_decompression_leaves_only_complete_files(data_copy):
    ensure_mnist()
    names = sorted(p.name for p in data_copy.iterdir())
    assert names == sorted([*data.FILES, *(f"{n}.gz" for n in data.FILES)])


def test_a_half_written_file_is_replaced(data_copy):
    ensure_mnist()
    target = data_copy / "t10k-labels-idx1-ubyte"
    target.write_bytes(target.read_bytes()[:100])
    ensure_mnist()
    assert target.stat().st_size == data.FILES["t10k-labels-idx1-ubyte"][0]


def test_corrupt_file_names_the_file_and_the_fix(data_copy):
    gz = data_copy / "t10k-labels-idx1-ubyte.gz"
    with gzip.open(gz, "rb") as f:
        content = bytearray(f.read())
    content[-1] ^= 0xFF
    with gzip.open(gz, "wb") as f:
        f.write(bytes(content))
    with pytest.raises(
        DataError, match=r"t10k-labels-idx1-ubyte.gz is corrupt.*git checkout -- data/MNIST/raw"
    ):
        ensure_mnist()
    assert not (data_copy / "t10k-labels-idx1-ubyte").exists()


def test_truncated_gzip_names_the_file(data_copy):
    gz = data_copy / "t10k-images-idx3-ubyte.gz"
    gz.write_bytes(gz.read_bytes()[:5000])
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz is corrupt"):
        ensure_mnist()
    assert [p.name for p in data_copy.iterdir() if p.name.startswith(".")] == []


def test_one_missing_file_names_it(data_copy):
    (data_copy / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte.gz is missing.*LORA_TEACH_DATA"):
        ensure_mnist()


def test_no_files_falls_back_to_torchvision_and_explains_a_failed_download(tmp_path, monkeypatch):
    monkeypatch.setenv("LORA_TEACH_DATA", str(tmp_path))
    calls = []

    class FailingMNIST:
        def __init__(self, root, train, download):
            calls.append((root, train, download))
            raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    import torchvision.datasets

    monkeypatch.setattr(torchvision.datasets, "MNIST", FailingMNIST)
    with pytest.raises(DataError, match=r"torchvision's download failed \(RuntimeError: Error downloading"):
        ensure_mnist()
    assert calls == [(str(tmp_path), True, True)]
    with pytest.raises(DataError, match="MNIST is not in"):
        ensure_mnist(download=False)


def test_data_is_found_from_the_notebooks_folder_and_from_elsewhere(monkeypatch, tmp_path):
    monkeypatch.delenv("LORA_TEACH_DATA", raising=False)
    monkeypatch.chdir(REPO / "notebooks")
    assert data.data_root() == REPO / "data"
    monkeypatch.chdir(tmp_path)  # outside the repository: the folder beside the package source
    assert data.data_root() == REPO / "data"
    monkeypatch.setenv("LORA_TEACH_DATA", str(tmp_path))
    assert data.data_root() == tmp_path


def test_a_file_changed_after_verification_is_checked_again(data_copy, monkeypatch):
    ensure_mnist()
    hashed = []
    real_md5 = data._md5
    monkeypatch.setattr(data, "_md5", lambda path: hashed.append(path.name) or real_md5(path))
    ensure_mnist()
    assert hashed == []  # unchanged files are not hashed twice in one process
    target = data_copy / "t10k-labels-idx1-ubyte"
    content = bytearray(target.read_bytes())
    content[-1] ^= 0xFF  # same size, other content
    target.write_bytes(bytes(content))
    ensure_mnist()
    assert "t10k-labels-idx1-ubyte" in hashed
    assert real_md5(target) == data.FILES["t10k-labels-idx1-ubyte"][1]


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_decompressed_files_get_the_mode_the_umask_allows(data_copy, umask, mode):
    previous = os.umask(umask)
    try:
        ensure_mnist()
    finally:
        os.umask(previous)
    for name in data.FILES:
        assert stat.S_IMODE((data_copy / name).stat().st_mode) == mode, name


def _no_temporary_files(raw: Path) -> bool:
    return [p.name for p in raw.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("where", ["copy", "chmod", "replace"])
@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_a_failure_while_decompressing_leaves_no_temporary_file(data_copy, monkeypatch, where, error):
    def fail(*args, **kwargs):
        raise error

    target = {"copy": (shutil, "copyfileobj"), "chmod": (os, "chmod"), "replace": (os, "replace")}[where]
    monkeypatch.setattr(*target, fail)
    with pytest.raises((DataError, KeyboardInterrupt)):
        ensure_mnist()
    monkeypatch.undo()
    assert _no_temporary_files(data_copy)
    assert not any((data_copy / name).exists() for name in data.FILES)
