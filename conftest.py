"""Test-wide settings, for tests and for the notebook kernels nbval starts (they inherit the environment).

One torch thread per process: on a 2-core machine, pytest's process, a notebook kernel
and torch's OpenMP pool otherwise spin against each other, and a 256 x 784 SVD went
from 0.03 s to 5.6 s that way. The bench sets its own thread counts.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
