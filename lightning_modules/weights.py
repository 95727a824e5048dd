"""Initial weights of a Lightning transfer run: ImageNet (torchvision's download or cache), a torchvision
state dict, or a Lightning checkpoint of an earlier run. Files load with torch.load(weights_only=True);
the backbone must match key for key and shape for shape, the head loads only if the classes agree."""
from __future__ import annotations

import pickle
from pathlib import Path
from urllib.parse import urlparse

import torch
import torchvision

from core.errors import LabError, one_line
from core.io import download_timeout
from lab.specs.weight_sources import WeightsSource, head_status, keeps_head, mismatch_sentence
from lightning_modules.compiling import eager_keys
from lightning_modules.components.backbones import ZOO_CLASSIFIER, BackboneNet, TransferParts


def load_initial_weights(parts: TransferParts, source: WeightsSource, class_names) -> str:
    """Load the weights into parts.net; returns what became of the head (lab.specs.phases.head_status)."""
    if source.kind == "none":
        return head_status(None, class_names)
    path = imagenet_file(parts.zoo_name) if source.kind == "imagenet" else source.path
    state = _network_state(read_state(path), parts)
    return _load(parts, state, path, class_names)


def imagenet_file(name: str) -> Path:
    """torchvision's ImageNet weights of model `name`, from the torch hub cache or downloaded into it."""
    url = torchvision.models.get_model_weights(name).DEFAULT.url
    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with download_timeout():
            torch.hub.download_url_to_file(url, str(path), progress=True)
    except Exception as e:  # noqa: BLE001  any network failure means the same to the user
        raise LabError(f"cannot download the ImageNet weights of {name} ({type(e).__name__}: {e}) and torch's "
                       f"cache has no copy (looked for {path}); copy {url} there or pass --weights FILE.") from None
    return path


def read_state(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a state dict or Lightning checkpoint file, loaded safely (weights only)."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as e:
        first = one_line(e)
        raise LabError(f"--weights {path} does not load as a PyTorch weights file ({first}); give a "
                       "state dict (.pth) or a Lightning checkpoint (.ckpt) of plain tensors.") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):  # a Lightning checkpoint
        obj = {k[len("net."):]: v for k, v in eager_keys(obj["state_dict"]).items() if k.startswith("net.")}
    elif isinstance(obj, dict):
        obj = eager_keys(obj)  # a state dict of a network wrapped as torch.compile(net)
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise LabError(f"--weights {path} holds no network weights (a state dict of tensors or a Lightning "
                       "checkpoint); give the checkpoint of a run or a torchvision .pth file.")
    return obj


def _network_state(state: dict, parts: TransferParts) -> dict:
    """A torchvision state dict becomes the backbone part of a BackboneNet's, its classifier dropped."""
    if not isinstance(parts.net, BackboneNet) or any(k.startswith(("backbone.", "head.")) for k in state):
        return state
    classifier = ZOO_CLASSIFIER[parts.zoo_name] + "."
    return {f"backbone.{k}": v for k, v in state.items() if not k.startswith(classifier)}


def _load(parts: TransferParts, state: dict, path: Path, class_names) -> str:
    target = parts.net.state_dict()
    head = _prefix(parts.net, parts.head)
    body = {k for k in target if not k.startswith(head)}
    given = {k for k in state if not k.startswith(head)}
    wrong = [(k, tuple(state[k].shape), tuple(target[k].shape)) for k in sorted(body & given)
             if state[k].shape != target[k].shape]
    if body != given or wrong:
        raise LabError(f"--weights {path} {mismatch_sentence(sorted(body - given), sorted(given - body), wrong)}")
    source_head = {k: v for k, v in state.items() if k.startswith(head)}
    fits = keeps_head(path, class_names, set(source_head) == {k for k in target if k.startswith(head)} and all(
        v.shape == target[k].shape for k, v in source_head.items()))
    merged = {**target, **{k: state[k] for k in body}, **(source_head if fits else {})}
    parts.net.load_state_dict(merged, strict=True)
    classes = source_head.get(head + "weight")
    return head_status(None if classes is None else len(classes), class_names, fits, path)


def _prefix(net: torch.nn.Module, module: torch.nn.Module) -> str:
    return next(name for name, m in net.named_modules() if m is module) + "."
