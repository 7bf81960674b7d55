from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import torchvision

from genrectl.errors import ConfigError, ModelError
from worker.models.cnn import build_model, get_normalisation, set_normalisation


def _mel(batch: int = 2) -> torch.Tensor:
    return -80.0 * torch.rand(batch, 1, 90, 130)


@pytest.mark.parametrize("input_size", ["native", "224"])
def test_cnn_maps_mel_batch_to_logits(input_size: str) -> None:
    model = build_model(arch="cnn", n_classes=10, input_size=input_size).eval()
    assert model(_mel(3)).shape == (3, 10)
    assert model(_mel(3)[:, 0]).shape == (3, 10)  # a missing channel axis is added


def test_densenet_input_is_three_standardised_channels_resized_for_224() -> None:
    model = build_model(arch="densenet121", n_classes=4, input_size="224")
    set_normalisation(model, mean=-40.0, std=20.0)
    image = model.input(torch.full((2, 1, 90, 130), -20.0))
    assert image.shape == (2, 3, 224, 224)
    assert torch.allclose(image, torch.ones_like(image))
    assert model.backbone.classifier.out_features == 4


def test_densenet_native_forward_and_backward() -> None:
    model = build_model(arch="densenet121", n_classes=10)
    logits = model(_mel(2))
    assert logits.shape == (2, 10)
    logits.sum().backward()
    first_conv = model.backbone.features.conv0.weight
    assert first_conv.grad is not None and first_conv.grad.abs().sum() > 0


def test_gapcnn_pools_any_length_into_a_small_head() -> None:
    model = build_model(arch="gapcnn", n_classes=10)
    assert model(_mel(2)).shape == (2, 10)
    # Pooled over the whole map: other lengths work with the same weights.
    assert model.eval()(-80.0 * torch.rand(1, 1, 90, 260)).shape == (1, 10)
    logits = model.train()(_mel(4))
    logits.sum().backward()
    first_conv = model.backbone.features[0][0].weight
    assert first_conv.grad is not None and first_conv.grad.abs().sum() > 0
    assert sum(p.numel() for p in model.parameters()) < 300_000
    with pytest.raises(ConfigError, match="too small for gapcnn"):
        build_model(arch="gapcnn", n_classes=10, n_mels=8, n_frames=130)


def test_normalisation_lives_in_the_state_dict() -> None:
    model = build_model(arch="cnn", n_classes=2)
    set_normalisation(model, mean=-33.0, std=12.5)
    assert get_normalisation(model) == {"mean": -33.0, "std": 12.5}
    other = build_model(arch="cnn", n_classes=2)
    other.load_state_dict(model.state_dict())
    assert get_normalisation(other) == {"mean": -33.0, "std": 12.5}
    with pytest.raises(ConfigError, match="std=0"):
        set_normalisation(model, mean=0.0, std=0.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"arch": "resnet", "n_classes": 10}, "arch='resnet'"),
        ({"arch": "cnn", "n_classes": 10, "input_size": "128"}, "input_size='128'"),
        ({"arch": "cnn", "n_classes": 1}, "n_classes=1"),
        ({"arch": "cnn", "n_classes": 10, "pretrained": Path("x.pth")}, "densenet121"),
    ],
)
def test_build_model_names_the_bad_value(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        build_model(**kwargs)  # type: ignore[arg-type]


def _as_published(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Key names as in torchvision's published file ("norm.1" where the module says "norm1")."""
    pattern = re.compile(r"(denselayer\d+\.(?:norm|relu|conv))([12])\.")
    return {pattern.sub(r"\1.\2.", k): v for k, v in state.items()}


def test_pretrained_weights_load_from_a_local_file_and_are_hash_checked(tmp_path: Path) -> None:
    torch.manual_seed(1)
    imagenet = torchvision.models.densenet121(weights=None).state_dict()
    published = _as_published(imagenet)
    assert published.keys() != imagenet.keys()
    local = tmp_path / "my-densenet121.pth"
    torch.save(published, local)

    model = build_model(arch="densenet121", n_classes=10, pretrained=local)
    conv0 = model.backbone.features.conv0.weight
    assert torch.equal(conv0, imagenet["features.conv0.weight"])
    assert model.backbone.classifier.out_features == 10

    impostor = tmp_path / "densenet121-a639ec97.pth"  # torch.hub's name, other bytes
    torch.save(published, impostor)
    with pytest.raises(ModelError, match=r"sha256 [0-9a-f]{64}.*starts with a639ec97"):
        build_model(arch="densenet121", n_classes=10, pretrained=impostor)
    with pytest.raises(ModelError, match="not found"):
        build_model(arch="densenet121", n_classes=10, pretrained=tmp_path / "missing.pth")
