"""Training the denoisers: loops, metrics, data parallelism and shipped checkpoints.

- :func:`train`, :class:`TrainConfig` - the training loop (MSE, WGAN-GP + perceptual, autoencoder)
- :mod:`lib.train.metrics` - PSNR, SSIM, RMSE with the stated protocol
- :mod:`lib.train.distributed` - torchrun / gloo data parallelism
- ``python -m lib.train NAME --ship`` - retrain a shipped checkpoint and record it in the manifest
"""

from lib.train.loops import TrainConfig, TrainResult, baseline, evaluate, read_checkpoint, train

__all__ = ["TrainConfig", "TrainResult", "train", "evaluate", "baseline", "read_checkpoint"]
