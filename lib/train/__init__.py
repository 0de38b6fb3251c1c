"""Training the denoisers: the shared resumable loop, the denoiser task, metrics, data parallelism
and shipped checkpoints.

- :mod:`lib.train.resumable` - the resumable loop every trainer runs in (:func:`run`,
  :class:`Task`, :class:`TrainResult`), :func:`late_change` and :func:`late_mean_change` (has a
  run or a noisy curve flattened out?)
- :func:`train_denoiser`, :class:`TrainConfig` - the denoiser task (MSE, WGAN-GP + perceptual,
  autoencoder) - :mod:`lib.train.denoiser`
- :mod:`lib.train.metrics` - PSNR, SSIM, RMSE with the stated protocol, and the perceptual loss
  (with :func:`feature_network`)
- :mod:`lib.train.distributed` - torchrun / gloo data parallelism
- ``python -m lib.train NAME --ship`` - retrain a shipped checkpoint and record it in the manifest
"""

from lib.train.denoiser import TrainConfig, baseline, evaluate, feature_network, train_denoiser
from lib.train.resumable import TrainResult, late_change, late_mean_change, read_checkpoint

__all__ = ["TrainConfig", "TrainResult", "train_denoiser", "evaluate", "baseline",
           "feature_network", "late_change", "late_mean_change", "read_checkpoint"]
