"""Both backends, and any number of replicas, visit the training images in the same global batches, epoch after
epoch; each replica trains on its slice, and the weighted replica losses average to the global batch's loss."""
import numpy as np
import pytest

from datamodules.base import ImageSet
from datamodules.batching import epoch_order, loss_scale, replica_slice, replica_weights, train_batches, trained_images


def _part(n):
    images = np.arange(n, dtype=np.uint8).reshape(n, 1, 1, 1)
    return ImageSet(images, np.arange(n, dtype=np.int64))


def _torch_epochs(part, batch_size, epochs, rank=0, world=1):
    """Per epoch, the batches replica `rank` of `world` trains on: (labels, Part) each."""
    import torch

    from datamodules.torch_data import TrainBatches

    epoch = {"value": 0}
    loader = TrainBatches(torch.from_numpy(part.images), torch.from_numpy(part.labels), batch_size, seed=3,
                          epoch_fn=lambda: epoch["value"], rank=rank, world=world)
    out = []
    for e in range(epochs):
        epoch["value"] = e
        batches = [(labels.tolist(), tuple(where)) for _, labels, where in loader]
        assert len(batches) == len(loader) == train_batches(len(part), batch_size, world)
        out.append(batches)
    return out


def _keras_epochs(part, batch_size, epochs, first_epoch=0):
    from datamodules.tf_data import steps_per_epoch, train_dataset

    steps = steps_per_epoch(part, batch_size)
    batches = [y.numpy().tolist() for _, y in train_dataset(part, batch_size, 3, first_epoch, epochs)]
    return [batches[i * steps:(i + 1) * steps] for i in range(epochs - first_epoch)]


@pytest.mark.parametrize("n, batch_size", [(70, 16), (65, 64), (10, 3)])
def test_same_batches_on_both_backends(n, batch_size):
    part = _part(n)
    torch_batches = [[labels for labels, _ in epoch] for epoch in _torch_epochs(part, batch_size, 3)]
    keras_batches = _keras_epochs(part, batch_size, 3)
    assert torch_batches == keras_batches
    assert torch_batches[0] != torch_batches[1]  # reshuffled every epoch
    for epoch in torch_batches:
        seen = [i for batch in epoch for i in batch]
        assert len(seen) == len(set(seen)) == trained_images(n, batch_size)
        assert min(len(batch) for batch in epoch) > 1


def test_resumed_pipeline_continues_the_sequence():
    part = _part(40)
    assert _keras_epochs(part, 8, 4, first_epoch=2) == _keras_epochs(part, 8, 4)[2:]


def test_order_is_seeded():
    assert (epoch_order(100, 0, 1, 10) == epoch_order(100, 0, 1, 10)).all()
    assert not (epoch_order(100, 0, 1, 10) == epoch_order(100, 1, 1, 10)).all()
    assert not (epoch_order(100, 0, 1, 10) == epoch_order(100, 0, 2, 10)).all()


@pytest.mark.parametrize("n, batch_size, world", [(259, 32, 2), (70, 16, 2), (67, 8, 4), (66, 4, 4), (41, 6, 3)])
def test_replicas_slice_every_global_batch(n, batch_size, world):
    """259 images on 2 ranks used to give one rank 5 batches and the other 4, a DDP hang."""
    part = _part(n)
    ranks = [_torch_epochs(part, batch_size, 2, rank, world) for rank in range(world)]
    for e in range(2):
        steps = {len(r[e]) for r in ranks}
        assert steps == {train_batches(n, batch_size, world)}  # the same number of steps on every rank
        order = epoch_order(n, 3, e, batch_size, world).tolist()
        for step in range(len(ranks[0][e])):
            parts = [r[e][step] for r in ranks]
            # together the ranks' slices are the global batch, in order; each knows where its slice sits
            assert sum((labels for labels, _ in parts), []) == order[step * batch_size:(step + 1) * batch_size]
            assert [where[0] for _, where in parts] == [replica_slice(parts[0][1][1], r, world).start
                                                         for r in range(world)]
            assert min(len(labels) for labels, _ in parts) >= min(2, batch_size // world)
        seen = [i for r in ranks for labels, _ in r[e] for i in labels]
        assert len(seen) == len(set(seen)) == trained_images(n, batch_size, world)  # disjoint, one pass


def test_the_last_batch_is_trimmed_only_below_two_images_a_replica():
    assert trained_images(65, 32) == 64 and trained_images(66, 32) == 66
    assert trained_images(66, 32, world=2) == 64 and trained_images(68, 32, world=2) == 68
    assert trained_images(10, 1) == 10 and trained_images(11, 2, world=2) == 10  # a replica would get none


@pytest.mark.parametrize("batch_len, world", [(32, 2), (5, 2), (7, 3), (9, 4)])
def test_weighted_replica_losses_average_to_the_global_loss(batch_len, world):
    losses = np.random.default_rng(0).random(batch_len)
    slices = [replica_slice(batch_len, r, world) for r in range(world)]
    replica_means = [losses[s].mean() * loss_scale(s.stop - s.start, batch_len, world) for s in slices]
    assert np.mean(replica_means) == pytest.approx(losses.mean())  # what DDP's gradient averaging sees
    weights = replica_weights(batch_len, world)  # Keras: a weighted sum over each replica's batch size
    keras = [(weights[s] * losses[s]).sum() / (s.stop - s.start) / world for s in slices]
    assert sum(keras) == pytest.approx(losses.mean())
