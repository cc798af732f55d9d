"""Answers as data: what a student passed to a check, written out of the kernel so that it can be
re-checked elsewhere. Tensors and arrays go to ``.npy`` files (read back with ``allow_pickle=False``),
numbers, strings and containers to JSON, functions as their source text with the names they use.
Nothing here ever unpickles; what cannot be written is recorded as ``unsupported`` with a reason."""

from __future__ import annotations

import builtins
import inspect
import json
import textwrap
import types
from pathlib import Path
from typing import Any

MAX_ELEMENTS = 5_000_000  # a bigger tensor is not an exercise answer
MAX_DEPTH = 8


class Unsupported(ValueError):
    """An answer the re-check cannot rebuild; the message says why."""


def dump(answers: tuple, folder: Path) -> None:
    """Write ``answers`` (a check's arguments) into ``folder`` (``answers.json`` plus ``.npy`` files)."""
    folder.mkdir(parents=True, exist_ok=True)
    writer = _Writer(folder)
    encoded = [writer.encode(value, 0) for value in answers]
    (folder / "answers.json").write_text(json.dumps(encoded), encoding="utf-8")


def load(folder: Path) -> tuple:
    """The answers ``dump`` wrote; functions are rebuilt from their source in a fresh namespace.
    Raises Unsupported (with the reason) when one cannot be rebuilt."""
    encoded = json.loads((folder / "answers.json").read_text(encoding="utf-8"))
    if not isinstance(encoded, list):
        raise Unsupported("answers.json does not hold a list")
    return tuple(_decode(item, folder, 0) for item in encoded)


class _Writer:
    def __init__(self, folder: Path) -> None:
        self.folder, self.count = folder, 0

    def array(self, value: Any, kind: str, dtype: str) -> dict:
        import numpy as np

        self.count += 1
        name = f"a{self.count}.npy"
        np.save(self.folder / name, value, allow_pickle=False)
        return {"t": kind, "file": name, "dtype": dtype}

    def encode(self, value: Any, depth: int) -> dict:
        import numpy as np
        import torch

        if depth > MAX_DEPTH:
            return {"t": "unsupported", "why": "nested too deeply"}
        if value is None or isinstance(value, (bool, int, str)):
            return {"t": "py", "v": value}
        if isinstance(value, float):
            return {"t": "float", "v": repr(value)}
        if type(value).__name__ == "_Placeholder":
            return {"t": "placeholder"}
        if isinstance(value, torch.Tensor):
            if value.numel() > MAX_ELEMENTS:
                return {"t": "unsupported", "why": f"a tensor of {value.numel():,} elements"}
            plain = value.detach().cpu()
            if plain.dtype == torch.bfloat16:
                plain = plain.float()
            return self.array(plain.numpy().copy(), "tensor", str(value.dtype).removeprefix("torch."))
        if isinstance(value, np.ndarray):
            if value.dtype == object or value.size > MAX_ELEMENTS:
                return {"t": "unsupported", "why": "an array of objects or too many elements"}
            return self.array(value, "array", str(value.dtype))
        if isinstance(value, np.generic):
            return self.array(np.asarray(value), "npscalar", str(value.dtype))
        if isinstance(value, (list, tuple)):
            return {"t": type(value).__name__, "v": [self.encode(v, depth + 1) for v in value]}
        if isinstance(value, dict):
            if not all(isinstance(k, (str, int)) for k in value):
                return {"t": "unsupported", "why": "a dict whose keys are not strings or numbers"}
            items = [[self.encode(k, depth + 1), self.encode(v, depth + 1)] for k, v in value.items()]
            return {"t": "dict", "v": items}
        if isinstance(value, types.FunctionType):
            return self.function(value, depth)
        return {"t": "unsupported", "why": f"a {type(value).__name__}"}

    def function(self, function: types.FunctionType, depth: int) -> dict:
        if function.__name__ == "<lambda>":
            return {
                "t": "unsupported",
                "why": "a lambda (define the function with def to have it re-checked)",
            }
        if function.__closure__:
            return {
                "t": "unsupported",
                "why": f"`{function.__name__}` uses variables of an enclosing function",
            }
        try:
            source = textwrap.dedent(inspect.getsource(function))
        except (OSError, TypeError) as error:
            return {"t": "unsupported", "why": f"the source of `{function.__name__}` ({error})"}
        names: dict[str, dict] = {}
        for name in sorted(_global_names(function.__code__)):
            if name in function.__globals__:
                names[name] = self.global_value(function.__globals__[name], depth)
            elif not hasattr(builtins, name):
                names[name] = {"t": "unsupported", "why": f"`{name}` is not defined"}
        return {"t": "function", "name": function.__name__, "source": source, "globals": names}

    def global_value(self, value: Any, depth: int) -> dict:
        if isinstance(value, types.ModuleType):
            return {"t": "module", "name": value.__name__}
        module = getattr(value, "__module__", None)
        if isinstance(value, types.FunctionType) and module == "__main__":
            return self.encode(value, depth + 1)  # a helper the student wrote: its source too
        if callable(value) and isinstance(module, str) and module != "__main__":
            return {"t": "attr", "module": module, "name": str(getattr(value, "__qualname__", ""))}
        return self.encode(value, depth + 1)


def _global_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names


def _decode(item: Any, folder: Path, depth: int) -> Any:
    import numpy as np
    import torch

    if not isinstance(item, dict) or depth > MAX_DEPTH + 2:
        raise Unsupported("a malformed answer record")
    kind = item.get("t")
    if kind == "py":
        value = item.get("v")
        if value is not None and not isinstance(value, (bool, int, str)):
            raise Unsupported("a malformed answer record")
        return value
    if kind == "float":
        return float(str(item.get("v")))
    if kind == "placeholder":
        from lora_teach.course.exercises import ____

        return ____
    if kind in ("tensor", "array", "npscalar"):
        name = str(item.get("file", ""))
        if "/" in name or not name.endswith(".npy"):
            raise Unsupported("a malformed answer file name")
        array = np.load(folder / name, allow_pickle=False)
        if kind == "npscalar":
            return array[()]
        if kind == "array":
            return array
        dtype = getattr(torch, str(item.get("dtype")), None)
        tensor = torch.from_numpy(array.copy())
        return tensor.to(dtype) if isinstance(dtype, torch.dtype) else tensor
    if kind in ("list", "tuple"):
        values = [_decode(v, folder, depth + 1) for v in item.get("v", [])]
        return values if kind == "list" else tuple(values)
    if kind == "dict":
        return {_decode(k, folder, depth + 1): _decode(v, folder, depth + 1) for k, v in item.get("v", [])}
    if kind == "function":
        return _rebuild_function(item, folder, depth)
    if kind == "unsupported":
        raise Unsupported(f"the answer is {item.get('why', 'of a kind the re-check cannot rebuild')}")
    raise Unsupported(f"an answer of unknown kind {str(kind)[:40]!r}")


def _rebuild_function(item: dict, folder: Path, depth: int) -> Any:
    """Define the function from its source in a namespace of the names it uses; student code runs
    here only as the ``def`` (its decorators) and, later, when the check calls it."""
    import importlib

    namespace: dict[str, Any] = {"__builtins__": builtins, "__name__": "__student__"}
    for name, value in dict(item.get("globals", {})).items():
        if not isinstance(value, dict):
            raise Unsupported("a malformed answer record")
        kind = value.get("t")
        try:
            if kind == "module":
                namespace[name] = importlib.import_module(str(value["name"]))
            elif kind == "attr":
                obj: Any = importlib.import_module(str(value["module"]))
                for part in str(value["name"]).split("."):
                    obj = getattr(obj, part)
                namespace[name] = obj
            elif kind == "unsupported":
                continue  # a name the call may never reach; if it does, the check reports the NameError
            else:
                namespace[name] = _decode(value, folder, depth + 1)
        except (ImportError, AttributeError, KeyError) as error:
            raise Unsupported(f"`{name}` could not be rebuilt ({type(error).__name__})") from error
    name = str(item.get("name"))
    exec(compile(str(item.get("source", "")), f"<answer {name}>", "exec"), namespace)  # noqa: S102
    if not callable(namespace.get(name)):
        raise Unsupported(f"the source does not define `{name}`")
    return namespace[name]
