"""DP-SGD through Opacus, with schedules applied per real optimizer step and a hard budget.

The loop's clock counts real steps only (under a memory manager most physical batches just
accumulate), so the LR, noise and clipping schedules all read the same progress. Noise for a
``target_epsilon`` is calibrated once for the whole planned run, noise schedule included;
``max_epsilon`` (default: the target) is a hard cap enforced by :class:`privacy.BudgetGuard`
before every step, whatever the schedules do. Cap, target and delta are on the trial's total
(its privacy ledger, :mod:`robustlr.regimes.dp_ledger`): DP-SGD gets what the entries spent
before training leave.

On several processes (``robustlr train --nproc``) the model is wrapped in Opacus' DP-DDP and
the optimizer becomes Opacus' distributed one (ghost clipping included, Opacus 1.6): each rank
clips its shard's per-sample gradients, rank 0 alone adds the noise, and the sum is divided
by the global expected batch size, so the update and the accounting (global sample rate,
same steps) are those of one process. The global Poisson batch is drawn alike on every rank
and sharded (:class:`robustlr.distributed.ShardedSampler`).
"""

from __future__ import annotations

import contextlib
import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from opacus.distributed import DifferentiallyPrivateDistributedDataParallel as DPDDP
from torch.utils.data import DataLoader, RandomSampler, TensorDataset

from robustlr import distributed
from robustlr.modes import generating_attack
from robustlr.privacy import BudgetGuard, calibrate, epsilon
from robustlr.privacy import engine as dp_engine
from robustlr.privacy.accounting import GDP_WARNING, epsilon_of_history, history
from robustlr.privacy.grad_sample.modules import fix_model, hooks_disabled, unwrap
from robustlr.privacy.ledger import Entry, Ledger
from robustlr.regimes import dp_ledger
from robustlr.regimes.adversarial import PGDTraining
from robustlr.regimes.base import REGIMES, Plan, Regime, TrainingSetup
from robustlr.regimes.dp_settings import DPSettings, check_fits_data, profile

# Opacus' hooks make torch warn on every backward whose inputs need no gradient (the usual
# case for a first layer); it says nothing the user can act on. Filtered only while DP runs.
_HOOK_WARNING = "Full backward hook is firing when gradients are computed with respect to"


@contextlib.contextmanager
def quiet_hooks():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_HOOK_WARNING)
        yield


class _QuietLoss:
    """The private loss (a tensor, or Opacus' ghost-clipping loss) whose backward pass, where
    the hooks fire, runs under :func:`quiet_hooks`; the loop calls only these two methods."""

    def __init__(self, loss):
        self.loss = loss

    def backward(self) -> None:
        with quiet_hooks():
            self.loss.backward()

    def detach(self) -> torch.Tensor:
        return self.loss.detach()


class _DeviceBatches:
    """Opacus' (Poisson) loader, split into physical batches if asked, moved to the device."""

    def __init__(self, loader: DataLoader, device: torch.device, optimizer,
                 physical_batch_size: int | None):
        self.loader, self.device, self.optimizer = loader, device, optimizer
        self.physical = physical_batch_size

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        managed = (dp_engine.memory_managed(self.loader, self.physical, self.optimizer)
                   if self.physical else contextlib.nullcontext(self.loader))
        with managed as batches:
            for x, y in batches:
                yield x.to(self.device), y.to(self.device)


@dataclass(frozen=True, kw_only=True)
class PreparedRun:
    """What :meth:`DPRegime.prepare` fixes for the whole run."""

    private: dp_engine.PrivateTraining
    fixes: list[str]  # what fix_model changed (BatchNorm -> GroupNorm, ...)
    n: int  # the set DP-SGD samples from (under scope=after_filter: the filtered set)
    delta: float  # DP-SGD's share of the trial's delta
    sample_rate: float
    training_cap: float | None  # what the cap on the total leaves DP-SGD
    base_noise: float  # given, or calibrated for the whole planned run


class DPRegime(Regime):
    name = "dp"
    loss_kind = "private"

    def __init__(self, settings: DPSettings):
        self.settings = settings
        self.noise_profile = profile(settings.noise_schedule)
        self.clip_profile = profile(settings.clip_schedule)
        # PGD-AT under DP is pgd_at's own attack (linf, default step size, random start)
        self.adversary = (PGDTraining(eps=settings.adversarial_eps, steps=settings.adversarial_steps,
                                      step_size=None, norm="linf", ramp=None)
                          if settings.adversarial_eps > 0 else None)
        self.views = settings.augmult
        self.prepared: PreparedRun | None = None  # set once by prepare
        self.prior = Ledger()  # the trial's entries before DP-SGD (see prepare)
        self.guard: BudgetGuard | None = None
        # per real step: the noise and clipping of the next one, and the history so far
        self.sigma = 0.0
        self.clip = settings.max_grad_norm
        self.steps_taken = 0
        self.noise_history: list[float] = []  # for accounting without a cap
        self.exhausted = False

    @property
    def run(self) -> PreparedRun:
        if self.prepared is None:
            raise RuntimeError("regime 'dp' is used before prepare()")
        return self.prepared

    @property
    def fixes(self) -> list[str]:
        return self.run.fixes

    @property
    def private(self) -> dp_engine.PrivateTraining | None:
        """Opacus' wrapped model, optimizer and criterion once prepared (diagnostics such as
        lr-find's clipped fraction read its per-sample norms)."""
        return None if self.prepared is None else self.prepared.private

    # -- set-up ------------------------------------------------------------------------
    def check_plan(self, plan: Plan) -> None:
        s = self.settings
        prior = dp_ledger.scoped(plan.ledger, s.scope)
        check_fits_data(s, dataset_size=plan.dataset_size, batch_size=plan.batch_size,
                        prior=prior)
        problem = dp_engine.check_grad_sample_mode(fix_model(plan.model)[0], s.grad_sample_mode)
        if problem is not None:
            raise ValueError(problem)
        if s.augmult > 1 and not plan.augmented:
            raise ValueError("augmult needs data.augment (an example's views are augmentations "
                             "of it)")

    def prepare(self, setup: TrainingSetup) -> TrainingSetup:
        s = self.settings
        model, fixes = fix_model(setup.model)
        optimizer = setup.optimizer if model is setup.model else _rebuild(setup.optimizer, model)
        # N is the set DP-SGD samples from: under scope=after_filter the filtered set, whose
        # size gives the sample rate and the default delta the guarantee is stated with
        n = len(setup.train_data[1])
        try:
            self.prior = dp_ledger.scoped(setup.ledger, s.scope)
            share = check_fits_data(s, dataset_size=n, batch_size=setup.batch_size,
                                    prior=self.prior)
        except ValueError as error:
            raise ValueError(f"regime 'dp': {error}") from None
        private = self._make_private(setup, model, optimizer)
        # a batch as large as the data set is full-batch DP-SGD: sample rate 1, as check_fits_data
        sample_rate = min(setup.batch_size / n, 1.0)
        total = setup.epochs * len(private.data_loader)
        if share.cap is not None:
            self.guard = BudgetGuard(max_epsilon=share.cap, delta=share.delta,
                                     sample_rate=sample_rate, accountant=s.bound_accountant)
        base_noise = s.noise_multiplier
        if base_noise is None:
            # land just under what the guard certifies (the cap less the accountant's error
            # margin), so the whole planned run is certified in one accountant call
            assert self.guard is not None and share.cap is not None
            assert share.target is not None
            target = min(share.target, share.cap - self.guard.margin)
            base_noise = calibrate(target_epsilon=target, sample_rate=sample_rate,
                                   steps=total, delta=share.delta,
                                   accountant=s.bound_accountant,
                                   noise_profile=self.noise_profile)
        self.prepared = PreparedRun(private=private, fixes=fixes, n=n, delta=share.delta,
                                    sample_rate=sample_rate, training_cap=share.cap,
                                    base_noise=base_noise)
        if self.guard is not None:
            self.guard.plan_steps([self._noise(i / total) for i in range(total)])
        self.sigma, self.clip = base_noise, s.max_grad_norm
        self.steps_taken = 0
        loader = _DeviceBatches(private.data_loader, setup.device, private.optimizer,
                                s.physical_batch_size)
        return TrainingSetup(model=private.module, optimizer=private.optimizer, loader=loader,
                             total_steps=total, epochs=setup.epochs, dataset_size=n,
                             batch_size=setup.batch_size, device=setup.device,
                             generator=setup.generator, train_data=setup.train_data,
                             world=setup.world, ledger=setup.ledger)

    def _make_private(self, setup: TrainingSetup, model: torch.nn.Module,
                      optimizer: torch.optim.Optimizer) -> dp_engine.PrivateTraining:
        """Opacus' objects over the fixed model, the loader one process or one rank of many
        samples from; the attack of PGD-AT under DP prepared beside them."""
        s, world = self.settings, setup.world
        x, y = setup.train_data
        loader: DataLoader
        if world.distributed:  # Opacus sees DP-DDP and builds its distributed optimizer
            model = DPDDP(model)
            loader = distributed.private_loader(x.cpu(), y.cpu(), batch_size=setup.batch_size,
                                                generator=setup.generator, world=world,
                                                poisson=s.poisson)
        else:
            dataset = TensorDataset(x.cpu(), y.cpu())
            # Without Poisson sampling the batches are those of the standard regime (same
            # generator, same permutation), which is what the equivalence test relies on.
            loader = DataLoader(dataset, batch_size=setup.batch_size,
                                sampler=RandomSampler(dataset, generator=setup.generator))
        private = dp_engine.make_private(
            module=model, optimizer=optimizer, data_loader=loader, noise_multiplier=1.0,
            max_grad_norm=s.max_grad_norm, poisson_sampling=s.poisson and not world.distributed,
            grad_sample_mode=s.grad_sample_mode)
        if world.distributed and s.poisson:
            private.module.forbid_grad_accumulation()  # what make_private does for Poisson
        if self.adversary is not None:
            self.adversary.prepare(setup)
        return private

    def _noise(self, progress: float) -> float:
        return self.run.base_noise * self.noise_profile(progress)

    # -- per step ------------------------------------------------------------------------
    def before_step(self, *, progress: float) -> None:
        self.sigma = self._noise(progress)
        self.clip = self.settings.max_grad_norm * self.clip_profile(progress)
        if self.guard is not None and not self.guard.allows(self.sigma):
            self.exhausted = True
            return
        dp_engine.set_noise_multiplier(self.run.private.optimizer, self.sigma)
        dp_engine.set_max_grad_norm(self.run.private.optimizer, self.clip)

    def losses(self, model, x, y, *, progress):
        if self.adversary is not None:
            # PGD-AT under DP: hooks off while the attack takes input gradients, on again for
            # the private forward and backward pass of the adversarial batch
            with generating_attack(model, self), quiet_hooks():
                x = self.adversary.perturb(model, x, y, self.adversary.eps_at(progress))
        with quiet_hooks():
            logits = model(x)
        return {"loss": _QuietLoss(self.run.private.criterion(logits, y)), "logits": logits}

    def step(self, optimizer) -> bool:
        if self.views > 1:
            _average_views(self.run.private.module, self.views)
        with quiet_hooks():
            optimizer.step()
        if dp_engine.step_was_skipped(optimizer):
            return False
        if self.guard is not None:
            self.guard.record(self.sigma)
        self.steps_taken += 1
        self.noise_history.append(self.sigma)
        return True

    # -- resuming mid-way ----------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The accountant's history (the noise of every real step), the schedules' position
        (the step count; noise and clipping are functions of progress), the budget guard's
        certificate and the attack's generator. Opacus draws its Poisson batches and its
        noise from the global torch RNG, which the checkpoint restores."""
        return {"noise_history": list(self.noise_history), "steps_taken": self.steps_taken,
                "sigma": self.sigma, "clip": self.clip, "exhausted": self.exhausted,
                "guard": self.guard.state_dict() if self.guard is not None else None,
                "adversary": self.adversary.state_dict() if self.adversary is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.noise_history = [float(sigma) for sigma in state["noise_history"]]
        self.steps_taken, self.exhausted = int(state["steps_taken"]), bool(state["exhausted"])
        self.sigma, self.clip = float(state["sigma"]), float(state["clip"])
        if self.guard is not None:
            self.guard.load_state_dict(state["guard"])
        if self.adversary is not None:
            self.adversary.load_state_dict(state["adversary"])
        dp_engine.set_noise_multiplier(self.run.private.optimizer, self.sigma)
        dp_engine.set_max_grad_norm(self.run.private.optimizer, self.clip)

    # -- reporting -----------------------------------------------------------------------
    def spent(self) -> float:
        """DP-SGD's epsilon so far (the ledger's other entries are in :meth:`ledger`)."""
        if not self.settings.poisson:
            return math.inf  # shuffled batches: no accounting valid for them here
        if self.guard is not None:
            return self.guard.spent()
        if not self.noise_history:
            return 0.0
        if min(self.noise_history) == 0:
            return math.inf  # no noise, no privacy (the equivalence check with standard SGD)
        return epsilon(sample_rate=self.run.sample_rate, noise_multiplier=self.noise_history,
                       steps=len(self.noise_history), delta=self.run.delta,
                       accountant=self.settings.bound_accountant)

    def gdp_estimate(self) -> float | None:
        """GDP's CLT estimate of epsilon, reported beside the bound when asked for; never
        used to stop or calibrate (it can fall below the true epsilon)."""
        if self.settings.accountant != "gdp" or not self.noise_history:
            return None
        if len(set(self.noise_history)) > 1 or min(self.noise_history) == 0:
            return None  # Opacus' GDP takes one constant noise only
        hist = history(np.asarray(self.noise_history, dtype=float), self.run.sample_rate,
                       accountant="gdp")
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=GDP_WARNING)
            return epsilon_of_history(hist, delta=self.run.delta, accountant="gdp")

    def ledger(self) -> tuple[Ledger, Entry]:
        """The trial's ledger so far (the entries before training, then DP-SGD's) and
        DP-SGD's entry."""
        s, run = self.settings, self.run
        noise = dp_ledger.noise_record(self.noise_history, run.base_noise, s.noise_schedule)
        training = dp_ledger.dp_sgd_entry(spent=self.spent(), delta=run.delta, poisson=s.poisson,
                                          detail={
            "sample_rate": run.sample_rate, "steps": self.steps_taken, "noise": noise,
            "max_grad_norm": s.max_grad_norm, "accountant": s.bound_accountant,
            "dataset_size": run.n, "poisson": s.poisson, "cap": run.training_cap})
        return self.prior.add(training), training

    def epoch_metrics(self) -> dict[str, float]:
        ledger, training = self.ledger()
        return {"epsilon": ledger.epsilon, "epsilon_training": training.epsilon,
                "noise_multiplier": self.sigma, "max_grad_norm": self.clip}

    def stop_reason(self) -> str | None:
        return "budget_exhausted" if self.exhausted else None

    def summary(self) -> dict[str, Any]:
        s = self.settings
        ledger, training = self.ledger()
        return {**dp_ledger.summary_fields(ledger, training),
                "accountant": s.bound_accountant, "epsilon_gdp": self.gdp_estimate(),
                "noise_multiplier": self.run.base_noise, "sample_rate": self.run.sample_rate,
                "dp_steps": self.steps_taken, "max_grad_norm": s.max_grad_norm,
                "target_epsilon": s.target_epsilon, "max_epsilon": s.cap,
                "budget_exhausted": self.exhausted, "grad_sample_mode": s.grad_sample_mode,
                "model_fixes": self.fixes}

    @contextlib.contextmanager
    def attack_mode(self, model):
        with hooks_disabled(model):
            yield

    def trained_model(self, model):
        return unwrap(model)

    def data_parallel(self, setup):
        return setup.model  # already DP-DDP inside Opacus' wrapper (see prepare)


def _average_views(model: torch.nn.Module, views: int) -> None:
    """Per-sample gradients of consecutive groups of ``views`` rows (one example's augmented
    views) replaced by their mean: the gradient of the example's mean loss over its views.
    The optimizer then clips one gradient per example (Opacus' ``mean`` loss reduction scales
    each row to its own loss's gradient, so the mean is not rescaled)."""
    def mean(grad_sample: torch.Tensor) -> torch.Tensor:
        return grad_sample.view(-1, views, *grad_sample.shape[1:]).mean(dim=1)

    for parameter in model.parameters():
        grad_sample = getattr(parameter, "grad_sample", None)
        # grad_sample is the attribute Opacus' hooks add to a parameter (unknown to torch's types)
        if isinstance(grad_sample, list):
            parameter.grad_sample = [mean(g) for g in grad_sample]  # type: ignore[attr-defined]
        elif grad_sample is not None:
            parameter.grad_sample = mean(grad_sample)  # type: ignore[attr-defined]


def _rebuild(optimizer: torch.optim.Optimizer, model: torch.nn.Module) -> torch.optim.Optimizer:
    """The same optimizer over the fixed model's parameters (BatchNorm became GroupNorm)."""
    rebuilt = type(optimizer)(model.parameters(), **optimizer.defaults)
    for group in rebuilt.param_groups:
        group["base_lr"] = optimizer.param_groups[0]["base_lr"]
    return rebuilt


@REGIMES.register("dp")
def dp(noise_multiplier: float | None = None, target_epsilon: float | None = None,
       max_epsilon: float | None = None, delta: float | None = None, max_grad_norm: float = 1.0,
       accountant: str = "prv", noise_schedule: str | None = None,
       clip_schedule: str | None = None, grad_sample_mode: str = dp_engine.DEFAULT_MODE,
       physical_batch_size: int | None = None, poisson: bool = True,
       adversarial_eps: float = 0.0, adversarial_steps: int = 7, augmult: int = 1,
       scope: str = "training_data") -> Regime:
    """DP-SGD via Opacus (Abadi et al. 2016): Poisson sampling, per-sample clipping, noise.

    Give ``noise_multiplier`` or ``target_epsilon`` (calibrated for the whole planned run,
    noise schedule included). ``max_epsilon`` is a hard cap (default: the target); a trial
    that reaches it stops with status ``budget_exhausted``. ``delta`` defaults to 0.1 / N.
    Target, cap and delta are on the trial's total (the privacy ledger: data statistics,
    planned selection, DP-SGD); DP-SGD gets what the other entries leave. ``poisson=false``
    (fixed shuffled batches) has no DP guarantee: refused with a target or cap, reported with
    an infinite epsilon otherwise. ``scope=after_filter`` states the guarantee for the set a
    poison filter kept (a filter is refused without it: it sees every example unprotected).
    ``adversarial_eps`` > 0 trains on L-inf PGD examples (PGD-AT under DP: Opacus' hooks are
    off while the attack runs). ``noise_multiplier=0`` with ``poisson=false`` is plain SGD
    through Opacus (epsilon infinite), for equivalence checks. ``accountant`` is ``prv``
    (default) or ``rdp``, the upper bound that stops and calibrates; ``gdp`` is a CLT
    estimate, never a bound: the run is then stopped and calibrated with ``prv`` and GDP's
    estimate is reported beside it as ``epsilon_gdp``. ``augmult`` K > 1 (augmentation
    multiplicity, De et al. 2022, arXiv:2204.13650; needs ``data.augment`` and
    ``grad_sample_mode`` hooks or functorch): each sampled example is augmented K times and
    the mean of its K view gradients is clipped as one, so the sensitivity and the accounting
    are those of one example.
    """
    return DPRegime(DPSettings(
        noise_multiplier=noise_multiplier, target_epsilon=target_epsilon,
        max_epsilon=max_epsilon, delta=delta, max_grad_norm=max_grad_norm,
        accountant=accountant, noise_schedule=noise_schedule, clip_schedule=clip_schedule,
        grad_sample_mode=grad_sample_mode, physical_batch_size=physical_batch_size,
        poisson=poisson, adversarial_eps=adversarial_eps, adversarial_steps=adversarial_steps,
        augmult=augmult, scope=scope))
