"""Training the denoisers: the shared resumable loop, the denoiser task, metrics, data parallelism
and shipped checkpoints.

- :mod:`lib.train.resumable` - the resumable loop every trainer runs in (:func:`run`,
  :class:`Task`, :class:`TrainResult`)
- :func:`train_denoiser`, :class:`TrainConfig` - the denoiser task (MSE, WGAN-GP + perceptual,
  autoencoder) - :mod:`lib.train.denoiser`
- :mod:`lib.train.metrics` - PSNR, SSIM, RMSE with the stated protocol
- :mod:`lib.train.distributed` - torchrun / gloo data parallelism
- ``python -m lib.train NAME --ship`` - retrain a shipped checkpoint and record it in the manifest
"""

from lib.train.denoiser import TrainConfig, baseline, evaluate, train_denoiser
from lib.train.resumable import TrainResult, read_checkpoint

__all__ = ["TrainConfig", "TrainResult", "train_denoiser", "evaluate", "baseline",
           "read_checkpoint"]
