"""Forward FLOPs per image: the spec count, FlopCounterMode's on the Lightning network, and what runs record."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from pytorch_lightning.utilities.model_summary import ModelSummary
from test_analysis import fake_results
from test_compare import make_run
from torch.utils.flop_counter import FlopCounterMode

from lab.config.settings import make_settings
from lab.pipeline.versus import versus_part
from lab.records.results import achieved_gflops
from lab.reports.report import summary_lines
from lab.specs.architectures import BatchNorm, Conv, Dense, Flatten, MaxPool, ReLU, forward_flops
from lab.specs.models import model_spec
from lab.specs.networks import describe
from lab.specs.zoo import BACKBONE_NAMES
from lightning_modules.components import build_network

TIMING = {"total_s": 10.0, "first_epoch_s": 3.5, "steady_epoch_s": 2.25, "epoch_s": [3.5, 2.25], "images_per_s": 1500.4}


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


def _digits_like():
    return SimpleNamespace(input_shape=(8, 8, 1), num_classes=10, mean=np.array([0.5]), std=np.array([0.2]),
                           class_names=[str(i) for i in range(10)])


@pytest.mark.parametrize("model", ["first_cnn", "cifar_cnn"])
def test_lightning_summary_and_keras_model_count_what_the_spec_counts(model):
    """Lightning's model summary (its "Total Flops" line) and the Keras model's layers: the spec's count."""
    keras_training = pytest.importorskip("keras_models.training")
    from keras_models.components.network import count_flops
    from lightning_modules.training import build_model

    settings, splits = make_settings({"model": model, "depth": 1, "padding": "same"}), _digits_like()
    expected = forward_flops(model_spec(settings, splits.input_shape, 10), splits.input_shape)
    assert ModelSummary(build_model(settings, splits)).total_flops == expected
    assert count_flops(keras_training.build_model(settings, splits)) == expected


@pytest.mark.slow  # builds every zoo network on both backends: some 10 s
@pytest.mark.parametrize("zoo", BACKBONE_NAMES)
def test_zoo_backbones_are_counted_by_each_backend_on_its_own_network(zoo):
    """mobilenet and efficientnet are the same networks on both sides, so the same count; resnet is resnet18 on
    PyTorch and ResNet50 on Keras, which needs more."""
    pytest.importorskip("keras_models.training")
    from keras_models.components.backbones import build_transfer
    from keras_models.components.backbones import zoo_flops as keras_flops
    from lightning_modules.components.backbones import zoo_flops as torch_flops

    settings, splits = make_settings({"model": zoo, "image_size": 64}), _digits_like()
    torch_count = torch_flops(describe(settings, splits))
    keras_count = keras_flops(build_transfer(settings, splits, None).net, settings)
    head = forward_flops(model_spec(settings, splits.input_shape, 10), (FEATURES[zoo],))
    if zoo == "resnet":
        assert keras_count > torch_count
    else:
        assert keras_count == torch_count
    # twice the side: up to four times the backbone's FLOPs (less for layers on pooled maps), the head's the same
    bigger = torch_flops(describe(make_settings({"model": zoo, "image_size": 128}), splits)) - head
    assert 3 * (torch_count - head) < bigger <= 4 * (torch_count - head)


FEATURES = {"resnet": 512, "mobilenet": 576, "efficientnet": 1280}  # torchvision's pooled features


def test_the_run_report_shows_flops_and_achieved_gflops():
    lines = summary_lines(fake_results(flops_per_image=2_500_000, timing={**TIMING, "images_per_s": 1000.0}))
    assert "- FLOPs per image: 2.5 MFLOPs forward" in lines
    assert "- Images per second: 1,000 in training, 7.5 GFLOP/s achieved (3x the forward FLOPs per image)" in lines
    assert lines.index("- FLOPs per image: 2.5 MFLOPs forward") == 1 + next(
        i for i, line in enumerate(lines) if line.startswith("- Parameters:"))


def test_runs_made_before_flops_were_recorded_still_render(tmp_path):
    old = fake_results(timing=TIMING)
    assert "flops_per_image" not in old and achieved_gflops(old) is None
    lines = summary_lines(old)
    assert "- FLOPs per image: not recorded" in lines and "- Images per second: 1,500" in lines
    runs = {"keras": {"cifar": {"cifar_cnn": make_run(tmp_path / "keras", "keras", timing=TIMING)}},
            "lightning": {"cifar": {"cifar_cnn": make_run(tmp_path / "lightning", "lightning", timing=TIMING,
                                                         flops_per_image=3_000_000)}}}
    table = "\n".join(versus_part(runs, ["cifar"], tmp_path))
    assert "| not recorded / 3 MFLOPs forward | not recorded / 13.5 |" in table


def test_the_versus_table_names_one_count_when_both_backends_record_it(tmp_path):
    runs = {backend: {"cifar": {"cifar_cnn": make_run(tmp_path / backend, backend, flops_per_image=3_000_000,
                                                      timing={**TIMING, "images_per_s": rate})}}
            for backend, rate in (("keras", 1000.0), ("lightning", 2000.0))}
    assert "| 3 MFLOPs forward | 9 / 18 |" in "\n".join(versus_part(runs, ["cifar"], tmp_path))
