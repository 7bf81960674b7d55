"""torchvision, imported without importing torch's compiler.

Every ``import torchvision`` runs ``torchvision.ops.roi_align``, which does ``from
torch._dynamo.utils import is_compile_supported`` at module level, and that imports all of
Dynamo: about 1.5 s of a worker's or ``genrectl predict``'s start (BENCHMARKS.md, "Speed
targets"), although genrectl never compiles and never calls roi_align. torchvision meant to
keep Dynamo lazy ("importing dynamo has undesirable side effects for eager mode only users",
pytorch/vision#8436); the name import above undid it.

So while torchvision imports, that one name comes from a stand-in module, removed right
after; the stand-in's function imports the real one when it is first called. Dynamo itself
is never touched: a later ``torch.compile`` or ``import torch._dynamo`` loads it as usual.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

_DYNAMO_UTILS = "torch._dynamo.utils"


def _is_compile_supported(device_type: Any) -> Any:
    from torch._dynamo.utils import is_compile_supported

    return is_compile_supported(device_type)


def import_torchvision() -> types.ModuleType:
    """``import torchvision``, without importing ``torch._dynamo`` unless it already was."""
    if "torchvision" in sys.modules or _DYNAMO_UTILS in sys.modules:
        return importlib.import_module("torchvision")
    stand_in = types.ModuleType(_DYNAMO_UTILS)
    stand_in.is_compile_supported = _is_compile_supported  # type: ignore[attr-defined]
    sys.modules[_DYNAMO_UTILS] = stand_in
    try:
        return importlib.import_module("torchvision")
    finally:
        if sys.modules.get(_DYNAMO_UTILS) is stand_in:
            del sys.modules[_DYNAMO_UTILS]
