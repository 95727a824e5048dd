"""What to build and train, backend-free: layer specs, the models and zoo backbones, augmentation, transfer
phases, where initial weights come from."""
