"""torchvision comes in without torch's compiler, and the compiler still works after."""

from __future__ import annotations

import subprocess
import sys

_PROBE = """
import sys
import worker.models.encoders.mn04, worker.models.cnn
print("dynamo after the models:", "torch._dynamo" in sys.modules)
roi_align = sys.modules["torchvision.ops.roi_align"]
print("compile supported on cpu:", roi_align.is_compile_supported("cpu"))
import torch._dynamo
print("real dynamo:", sys.modules["torch._dynamo.utils"].__file__ is not None)
"""


def test_models_import_torchvision_without_dynamo_and_dynamo_still_loads() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True, timeout=300
    ).stdout
    assert "dynamo after the models: False" in out
    assert "compile supported on cpu: True" in out
    assert "real dynamo: True" in out
