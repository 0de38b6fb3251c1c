"""Run by torchrun in test_train.py: a tiny data-parallel training run, weights saved by rank 0."""

import os
import sys

import torch

from lib.train import train_denoiser
from test_train import tiny_config

result = train_denoiser(tiny_config(), device="cpu", progress=False)
if int(os.environ.get("RANK", "0")) == 0:
    torch.save(result.model.state_dict(), sys.argv[1])
