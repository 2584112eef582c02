"""Per-sample gradients and their clipping: the grad-sample modes and what implements them.

- :mod:`.modes`: the table of modes, the one place that says what each can do.
- :mod:`.opacus_engine`: Opacus' PrivacyEngine, extended with robustlr's own modes.
- :mod:`.ghost_norms`, :mod:`.pixel_gram`, :mod:`.group_norm`: per-sample norms without
  per-sample gradients; :mod:`.bookkeeping`, :mod:`.bookkeeping_loss`, :mod:`.clipped_sums`:
  the single-pass ``ghost_bk``; :mod:`.in_place_noise`: the optimizer's noise, in place.
- :mod:`.modules`: preparing a model (``fix_model``) and switching Opacus' hooks off.
- :mod:`.support`: which mode clips which layer, said before training.
"""

from .modes import DEFAULT_MODE, MODES, GradSampleMode, GradSampleModuleFactory

__all__ = ["DEFAULT_MODE", "MODES", "GradSampleMode", "GradSampleModuleFactory"]
