"""Forward FLOPs per image: the spec count, FlopCounterMode's on the Lightning network, and what runs record."""
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from lab.config.settings import make_settings
from lab.specs.architectures import BatchNorm, Conv, Dense, Flatten, MaxPool, ReLU, forward_flops
from lab.specs.models import model_spec
from lightning_modules.components import build_network


def _counted(spec, shape) -> int:
    """FlopCounterMode's count of one image through the Lightning network built from spec."""
    net = build_network(spec, shape, (0.5,) * shape[2], (0.25,) * shape[2]).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(torch.zeros((1, *shape), dtype=torch.uint8))
    return counter.get_total_flops()


@pytest.mark.parametrize("model, settings", [("mlp", {}), ("first_cnn", {}), ("first_cnn", {"padding": "same",
                                                                                             "stride": 2}),
                                             ("cifar_cnn", {"depth": 2}), ("cnn", {"blocks": 2})])
@pytest.mark.parametrize("shape", [(28, 28, 1), (17, 15, 3)])
def test_spec_count_equals_flop_counter_mode(model, settings, shape):
    spec = model_spec(make_settings({"model": model, **settings}), shape, 10)
    assert forward_flops(spec, shape) == _counted(spec, shape) > 0


def test_one_3x3_convolution_by_hand():
    # 'valid' 3x3 over 8x6x2 -> 6x4x5: 6*4*5 outputs, each 3*3*2 multiply-adds of 2 FLOPs; then a dense 120 -> 7
    spec = [Conv(5, 3), ReLU(), Flatten(), Dense(7)]
    assert forward_flops(spec, (8, 6, 2)) == 2 * (6 * 4 * 5) * (3 * 3 * 2) + 2 * 120 * 7 == 6_000


def test_pooling_and_batch_norm_are_not_counted():
    shape = (8, 8, 3)
    spec = [Conv(4, 3, padding="same"), BatchNorm(), ReLU(), MaxPool(2), Flatten(), Dense(2)]
    # the convolution on 8x8x4 outputs, the dense layer on the pooled 4x4x4 features
    assert forward_flops(spec, shape) == 2 * (8 * 8 * 4) * (3 * 3 * 3) + 2 * (4 * 4 * 4) * 2
