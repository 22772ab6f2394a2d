"""U-Net precision: the auto rule, and bf16 / channels-last against float32 in 2-D and 3-D (the solver stays float32)."""

import pytest
import torch

from tvfast.models.lambda_net import LambdaNet
from tvfast.models.precision import Precision, resolve_precision
from tvfast.models.unet import UNet


def model():
    torch.manual_seed(0)
    return LambdaNet(UNet(), n_iter=32).eval()


def test_auto_rule_on_cpu(monkeypatch):
    import tvfast.models.precision as precision

    monkeypatch.setattr(precision, "cpu_has_amx_bf16", lambda: True)
    assert resolve_precision("auto", "cpu") == Precision(bf16=True, channels_last=True)
    monkeypatch.setattr(precision, "cpu_has_amx_bf16", lambda: False)
    assert resolve_precision("auto", "cpu") == Precision(bf16=False, channels_last=True)
    assert resolve_precision("bf16", "cpu").bf16 and not resolve_precision("fp32", "cpu").bf16


def test_unknown_precision_is_named():
    with pytest.raises(ValueError, match="precision: expected one of"):
        resolve_precision("fp16", "cpu")


@pytest.mark.parametrize("spatial_dims, shape", [(2, (2, 1, 40, 36)), (3, (2, 1, 3, 20, 18))])
def test_channels_last_fp32_is_the_same_function(spatial_dims, shape):
    torch.manual_seed(0)
    net = LambdaNet(UNet(base_channels=8, spatial_dims=spatial_dims), n_iter=32).eval()
    z = torch.rand(shape)
    with torch.no_grad():
        ref_x, ref_lam = net.denoise(z)
        net.set_precision(Precision(bf16=False, channels_last=True))
        layout = torch.channels_last if spatial_dims == 2 else torch.channels_last_3d
        assert net.unet.inc[0].weight.is_contiguous(memory_format=layout)
        x, lam = net.denoise(z)
    torch.testing.assert_close(lam, ref_lam, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(x, ref_x, atol=1e-6, rtol=1e-5)


def test_bf16_lambda_and_result_close_to_fp32():
    """bf16 autocast changes Λ by < 2 % (relative, max) and the denoised image by < 2e-3 (max, data in [0, 1])."""
    net = model()
    gen = torch.Generator().manual_seed(1)
    z = torch.rand(2, 1, 48, 48, generator=gen)
    with torch.no_grad():
        ref_x, ref_lam = net.denoise(z)
        net.set_precision(Precision(bf16=True, channels_last=True))
        x, lam = net.denoise(z)
    assert lam.dtype == torch.float32 and x.dtype == torch.float32  # the solver runs in float32
    assert ((lam - ref_lam).abs() / ref_lam).max() < 0.02
    assert (x - ref_x).abs().max() < 2e-3


def test_bf16_training_step_keeps_float32_weights_and_gradients():
    net = model().train()
    net.set_precision(Precision(bf16=True, channels_last=True))
    z = torch.rand(2, 1, 32, 32)
    loss = (net(z) - z).square().mean()
    loss.backward()
    for p in net.parameters():
        assert p.dtype == torch.float32 and p.grad is not None and p.grad.dtype == torch.float32
        assert torch.isfinite(p.grad).all()
