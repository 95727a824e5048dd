"""PyTorch Lightning side: networks built from lab.specs.architectures specs, the LightningModule, training."""
import warnings

# pytorch-lightning 2.6 calls an API torch 2.14 deprecates, once per fit; nothing a user can act on.
warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
