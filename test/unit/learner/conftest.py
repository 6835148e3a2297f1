"""Learner tests train tiny models: one intra-op thread is faster for them than two fighting for cores."""

from __future__ import annotations

import torch

torch.set_num_threads(1)
