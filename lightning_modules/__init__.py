"""PyTorch Lightning side: networks built from lab.architectures specs, the LightningModule, training."""
