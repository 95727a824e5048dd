"""Lightning's RichProgressBar showing, while training, the epoch's running loss and accuracy, read from the
module at each redraw, as Keras' progress bar does (the module logs nothing per step: lightning_modules.speedups)."""
from __future__ import annotations

from pytorch_lightning.callbacks import RichProgressBar


class RunningMetricsBar(RichProgressBar):
    def get_metrics(self, trainer, pl_module):
        metrics = super().get_metrics(trainer, pl_module)
        if trainer.training and hasattr(pl_module, "running_metrics"):
            metrics.update(pl_module.running_metrics())
        return metrics
