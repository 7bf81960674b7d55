"""msd_fcn with int8 convolutions: what featurizing runs when its feature set asks for
``precision="int8"``.

The FCN's cost is its 3x3 convolutions over a 29 s spectrogram (layer2 alone is 1.6 G
multiply-adds, at the float32 peak of one core already). Static int8 quantization of blocks
2-4 (PyTorch's FX graph mode, "x86" backend: per-channel weights, 7-bit activations for
CPUs without VNNI) runs them 3.5x faster; block 1 (one input channel, memory-bound, run in
tiles) and block 5 (tiny) stay float32. mn04 was measured too and is not quantized: slower
in int8 (depthwise convolutions) and its embedding moved more.

Activations are quantized with fixed parameters, not calibrated at load time: the scale and
zero point of each quantized tensor were found once by PyTorch's histogram observer over
GTZAN windows (``calibrate``; ``bench/calibrate_fcn_int8.py`` writes them) and are committed
in ``msd_fcn_int8.json`` beside the weights. So the features do not depend on what a
process happened to see first, and loading costs no calibration pass. Nor any tracing: the
int8 blocks are built directly (``_Int8Block``), as the FX conversion would make them.

``torch.ao.quantization`` warns that it is deprecated in favour of torchao; torch is pinned
(pyproject.toml) and this is the API that runs int8 convolutions eagerly on a CPU today, so
the warning is silenced here and nowhere else.
"""

from __future__ import annotations

import copy
import json
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from genrectl.errors import ModelError
from worker.models.encoders import PRETRAINED_DIR
from worker.models.encoders.fcn import FCN, _FusedBlock

QUANTIZED_BLOCKS = ("layer2", "layer3", "layer4")
PARAMS_FILE = PRETRAINED_DIR / "msd_fcn_int8.json"


@contextmanager
def _quantization_api() -> Iterator[Any]:
    """torch.ao.quantization's FX functions, its deprecation warnings silenced (see above)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)  # its observers' reduce_range notice
        from torch.ao.quantization import get_default_qconfig_mapping, observer, quantize_fx

        torch.backends.quantized.engine = "x86"
        yield get_default_qconfig_mapping("x86"), observer, quantize_fx


def _prepare(block: nn.Module, example: Tensor, api: Any) -> nn.Module:
    mapping, _, quantize_fx = api
    return quantize_fx.prepare_fx(copy.deepcopy(block).eval(), mapping, example_inputs=(example,))


def _observers(prepared: nn.Module, observer: Any) -> dict[str, Any]:
    return {
        name: module
        for name, module in prepared.named_modules()
        if isinstance(module, observer.ObserverBase)
    }


def _block_inputs(model: FCN, windows: Tensor) -> dict[str, Tensor]:
    """The input of each quantized block for ``windows`` ``[n, 464000]``, one window at a
    time (as featurizing runs)."""
    seen: dict[str, list[Tensor]] = {name: [] for name in QUANTIZED_BLOCKS}
    hooks = [
        getattr(model, name).register_forward_hook(
            lambda _m, args, _out, name=name: seen[name].append(args[0])
        )
        for name in QUANTIZED_BLOCKS
    ]
    try:
        with torch.inference_mode():
            for window in windows:
                model(window[None])
    finally:
        for hook in hooks:
            hook.remove()
    return {name: torch.cat(inputs) for name, inputs in seen.items()}


def calibrate(model: FCN, windows: Tensor) -> dict[str, dict[str, list[float | int]]]:
    """Quantization parameters of every activation of the quantized blocks, from running the
    float ``model`` (fused for inference) on ``windows`` ``[n, 464000]`` at 16 kHz:
    ``{block: {observer: [scale, zero_point, quant_min, quant_max]}}``."""
    inputs = _block_inputs(model, windows)
    params: dict[str, dict[str, list[float | int]]] = {}
    with _quantization_api() as api:
        for name in QUANTIZED_BLOCKS:
            prepared = _prepare(getattr(model, name), inputs[name][:1], api)
            with torch.inference_mode():
                for row in inputs[name]:
                    prepared(row[None])
            params[name] = {}
            for key, obs in _observers(prepared, api[1]).items():
                scale, zero_point = obs.calculate_qparams()
                params[name][key] = [
                    float(scale),
                    int(zero_point),
                    int(obs.quant_min),
                    int(obs.quant_max),
                ]
    return params


def read_params(path: Path = PARAMS_FILE) -> dict[str, dict[str, list[float | int]]]:
    """The committed quantization parameters; ModelError when missing or malformed."""
    try:
        params: dict[str, dict[str, list[float | int]]] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"int8 parameters '{path}' cannot be read: {exc}") from exc
    if set(params) != set(QUANTIZED_BLOCKS):
        raise ModelError(f"int8 parameters '{path}' are not for blocks {QUANTIZED_BLOCKS}")
    return params


# The activations of a block as ``calibrate`` names them (FX's observers, in graph order):
# the block's input, quantized before the conv, and the conv's output, the int8 tensor the
# max pool reads.
_INPUT, _CONV_OUTPUT = "activation_post_process_0", "activation_post_process_1"


class _Int8Block(nn.Module):
    """A fused FCN block with an int8 conv: quantize the input with fixed parameters, conv
    and max pool in int8, then dequantize and ReLU in float (ReLU commutes with the pool).
    The module FX's ``convert_fx`` makes of the block, built directly: no tracing at load
    (0.5 s of a process's start; the outputs are the same bits, tests/worker/models)."""

    def __init__(self, block: _FusedBlock, params: dict[str, list[float | int]]) -> None:
        super().__init__()
        if set(params) != {_INPUT, _CONV_OUTPUT}:
            raise ModelError("int8 parameters do not fit block: retrace them")
        from torch.ao.nn import quantized as nnq
        from torch.ao.quantization import get_default_qconfig

        conv: nn.Conv2d = block.conv
        self.mp: nn.Module = block.mp
        self.input_scale, self.input_zero_point = float(params[_INPUT][0]), int(params[_INPUT][1])
        # The x86 backend's weight observer: per output channel, symmetric int8.
        observer = get_default_qconfig("x86").weight()
        observer(conv.weight)
        scales, zero_points = observer.calculate_qparams()
        weight = torch.quantize_per_channel(
            conv.weight.detach().float(), scales.double(), zero_points, 0, torch.qint8
        )
        qconv = nnq.Conv2d(
            conv.in_channels, conv.out_channels, conv.kernel_size, padding=conv.padding
        )
        assert conv.bias is not None  # fused with its batch norm
        qconv.set_weight_bias(weight, conv.bias.detach().float())
        qconv.scale = float(params[_CONV_OUTPUT][0])
        qconv.zero_point = int(params[_CONV_OUTPUT][1])
        self.conv = qconv

    def forward(self, x: Tensor) -> Tensor:
        q = torch.quantize_per_tensor(x, self.input_scale, self.input_zero_point, torch.quint8)
        return torch.relu(self.mp(self.conv(q)).dequantize())


def quantize_for_inference(
    model: FCN, params: dict[str, dict[str, list[float | int]]] | None = None
) -> FCN:
    """A copy of the fused ``model`` (``fcn.fuse_for_inference``) with blocks 2-4 in int8,
    their activations quantized with ``params`` (default: the committed file)."""
    params = read_params() if params is None else params
    quantized = copy.deepcopy(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # see the module's docstring
        warnings.simplefilter("ignore", UserWarning)  # quantized tensors' deprecation notice
        torch.backends.quantized.engine = "x86"
        for name in QUANTIZED_BLOCKS:
            try:
                block = _Int8Block(getattr(model, name), params.get(name, {}))
            except ModelError:
                raise ModelError(f"int8 parameters do not fit block {name}: retrace them") from None
            setattr(quantized, name, block)
    return quantized
