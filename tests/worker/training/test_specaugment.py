from __future__ import annotations

import torch

from worker.training.specaugment import spec_augment


def test_masks_whole_bands_and_frames_with_the_segment_mean() -> None:
    torch.manual_seed(3)
    mel = torch.randn(16, 1, 90, 130) * 10 - 40
    out = spec_augment(mel, masks=2, max_bands=12, max_frames=20)
    assert out.shape == mel.shape
    changed = out != mel
    assert changed.any(), "with 16 segments some mask must have non-zero width"
    for i in range(16):
        if not changed[i].any():
            continue
        fill = mel[i].mean()
        assert torch.allclose(out[i][changed[i]], fill.expand(int(changed[i].sum())))
        rows = changed[i, 0].all(dim=1).sum() + changed[i, 0].all(dim=0).sum()
        assert rows > 0  # a masked band spans all frames, or a masked frame all bands


def test_same_seed_same_masks_and_input_untouched() -> None:
    mel = torch.zeros(4, 1, 90, 130)
    mel[:, :, ::2] = -80.0
    before = mel.clone()
    torch.manual_seed(7)
    first = spec_augment(mel)
    torch.manual_seed(7)
    assert torch.equal(first, spec_augment(mel))
    assert torch.equal(mel, before)
