"""Progress bars that need nothing but tqdm: a widget in a notebook where ipywidgets is installed, text
everywhere else, and never tqdm's "IProgress not found" warning.

``from lora_teach.progress import tqdm`` everywhere the course shows progress (package and notebooks).
"""

from __future__ import annotations

import importlib
import importlib.util
import warnings

from tqdm import TqdmWarning

if importlib.util.find_spec("ipywidgets") is not None:
    from tqdm.auto import tqdm
else:
    from tqdm.std import tqdm

    # Without ipywidgets, tqdm.auto falls back to these same text bars but warns on its first import,
    # ours or a library's (PEFT imports it). Import it once here, quietly, so that no import warns.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TqdmWarning)
        importlib.import_module("tqdm.autonotebook")

__all__ = ["tqdm"]
