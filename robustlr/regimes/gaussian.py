"""Gaussian noise augmentation: the training recipe of smoothed classifiers.

Cohen, Rosenfeld & Kolter, "Certified Adversarial Robustness via Randomized Smoothing",
ICML 2019, https://arxiv.org/abs/1902.02918: the base model is trained on x + N(0, sigma^2 I)
(no clipping), the same noise ``evaluation.certify`` certifies under; train and certify with
the same sigma.
"""

from __future__ import annotations

import torch
from torch import nn

from robustlr.regimes.adversarial import attack_generator
from robustlr.regimes.base import REGIMES, Regime, TrainingSetup


class GaussianAugmentation(Regime):
    name = "gaussian"

    def __init__(self, *, sigma: float):
        self.sigma = sigma
        self.generator = torch.Generator()  # replaced by the trial's seeded one in prepare()

    def prepare(self, setup: TrainingSetup) -> TrainingSetup:
        # its own seeded stream (offset per rank), so batch order does not depend on the noise
        self.generator = attack_generator(setup)
        return setup

    def losses(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
               progress: float) -> dict[str, torch.Tensor]:
        noise = torch.randn(x.shape, generator=self.generator, device=self.generator.device)
        logits = model(x + self.sigma * noise.to(x.device, x.dtype))
        return {"loss": self.criterion(logits, y), "logits": logits}

    def state_dict(self):
        return {"noise_generator": self.generator.get_state()}

    def load_state_dict(self, state):
        self.generator.set_state(state["noise_generator"])


@REGIMES.register("gaussian")
def gaussian(sigma: float = 0.25) -> Regime:
    """Gaussian noise augmentation (Cohen et al. 2019), the recipe for certified robustness."""
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    return GaussianAugmentation(sigma=sigma)
