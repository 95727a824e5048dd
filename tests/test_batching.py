"""Both backends visit the training images in the same batches, epoch after epoch."""
import numpy as np
import pytest

from datamodules.base import ImageSet
from datamodules.batching import epoch_order, train_batches, trained_images


def _part(n):
    images = np.arange(n, dtype=np.uint8).reshape(n, 1, 1, 1)
    return ImageSet(images, np.arange(n, dtype=np.int64))


def _torch_epochs(part, batch_size, epochs):
    import torch

    from datamodules.torch_data import TensorBatches

    epoch = {"value": 0}
    loader = TensorBatches(torch.from_numpy(part.images), torch.from_numpy(part.labels), batch_size, seed=3,
                           epoch_fn=lambda: epoch["value"])
    out = []
    for e in range(epochs):
        epoch["value"] = e
        assert len(loader) == train_batches(len(part), batch_size)
        out.append([labels.tolist() for _, labels in loader])
    return out


def _keras_epochs(part, batch_size, epochs, first_epoch=0):
    from datamodules.tf_data import steps_per_epoch, train_dataset

    steps = steps_per_epoch(part, batch_size)
    batches = [y.numpy().tolist() for _, y in train_dataset(part, batch_size, 3, first_epoch, epochs)]
    return [batches[i * steps:(i + 1) * steps] for i in range(epochs - first_epoch)]


@pytest.mark.parametrize("n, batch_size", [(70, 16), (65, 64), (10, 3)])
def test_same_batches_on_both_backends(n, batch_size):
    part = _part(n)
    torch_batches, keras_batches = _torch_epochs(part, batch_size, 3), _keras_epochs(part, batch_size, 3)
    assert torch_batches == keras_batches
    assert torch_batches[0] != torch_batches[1]  # reshuffled every epoch
    for epoch in torch_batches:
        seen = [i for batch in epoch for i in batch]
        assert len(seen) == len(set(seen)) == trained_images(n, batch_size)
        assert min(len(batch) for batch in epoch) > 1


def test_resumed_pipeline_continues_the_sequence():
    part = _part(40)
    assert _keras_epochs(part, 8, 4, first_epoch=2) == _keras_epochs(part, 8, 4)[2:]


def test_order_is_seeded_and_sharded():
    assert (epoch_order(100, 0, 1, 10) == epoch_order(100, 0, 1, 10)).all()
    assert not (epoch_order(100, 0, 1, 10) == epoch_order(100, 1, 1, 10)).all()
    shards = [epoch_order(100, 0, 1, 10, rank=r, world=2) for r in (0, 1)]
    assert sorted(np.concatenate(shards).tolist()) == list(range(100))
