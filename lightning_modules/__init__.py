"""PyTorch Lightning side: networks built from lab.specs descriptions, the LightningModule, training.

`from lightning_modules import BACKEND` gives the backend (lab.run.backend.Backend), imported on first use."""
import warnings

# pytorch-lightning 2.6 calls an API torch 2.14 deprecates, once per fit; nothing a user can act on.
warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")


def __getattr__(name: str):
    if name == "BACKEND":
        from lightning_modules.training import BACKEND

        return BACKEND
    raise AttributeError(f"module 'lightning_modules' has no attribute {name!r}")
