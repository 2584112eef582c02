"""Plain torch reference of Wong, Rice & Kolter 2020's FGSM adversarial training on MNIST.

The recipe of ``experiments/reproductions/wong_fgsm_rs_mnist.yaml`` written directly in
torch, without robustlr, following the authors' code line by line, so that a gap is
attributed: robustlr vs the recipe vs the paper (issue 23), and robustlr's wall time is
compared with what the recipe costs on its own (target robustlr/plain <= 1.10).

The recipe (github.com/locuslab/fast_adversarial, commit 54f7287, MNIST/train_mnist.py):
argparse defaults lines 24-34 (batch 100, 10 epochs, eps 0.3, alpha 0.375, lr-max 5e-3,
lr-type cyclic), Adam (line 52), the LR ``np.interp([t], [0, epochs * 2 // 5, epochs],
[0, lr_max, 0])`` at ``t = epoch + (i + 1) / len(loader)`` (lines 54, 70), FGSM from a uniform
start in the eps-ball (lines 74-82: the gradient is taken at ``X + delta`` *without* clipping
to [0, 1]; the step is clipped to the ball, then to the box), the loss on
``clamp(X + delta, 0, 1)`` (line 99); MNIST/mnist_net.py for the model; torchvision MNIST
through ``ToTensor()`` only. The evaluation is MNIST/evaluate_mnist.py's ``attack_pgd``
(lines 37-59: 50 steps of 0.01, 10 restarts, per-example updates while still correct, the
highest-loss restart kept), on a fixed subset of the official test set (``--subset``; the same
indices robustlr's final evaluation uses), clean accuracy on all 10,000.

``--start box`` clips the random start into [0, 1] before the gradient, as robustlr's
FGSM-RS does; ``--start zero`` is FGSM without random start (the paper's zero-init variant).
``--evaluate PATH`` only evaluates a saved state dict (e.g. the authors' MNIST/models/fgsm.pth).

    .venv/bin/python benchmarks/reference_wong_fgsm.py --root DIR --seeds 0,1,2 --out ref.json
"""

from __future__ import annotations

import json
import os
import time

for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from mnist_idx import arguments, data_for  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

RECIPE = {"batch_size": 100, "epochs": 10, "epsilon": 0.3, "alpha": 0.375, "lr_max": 5e-3,
          "eval_steps": 50, "eval_step_size": 0.01, "eval_restarts": 10}
MONITOR = {"steps": 20, "step_size": 0.025, "subset": 200}
"""The per-epoch check for catastrophic overfitting (robustlr's config monitors the same)."""


def mnist_net() -> nn.Module:
    """MNIST/mnist_net.py: 4x4 stride-2 convolutions, 16 and 32 channels, then 1568 -> 100 -> 10."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 4, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 4, stride=2, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 100), nn.ReLU(), nn.Linear(100, 10))


def fixed_subset(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """The indices robustlr's ``evaluation.final_subset`` takes (data.split_seed 0)."""
    if size >= n:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:size]


def fgsm_delta(model: nn.Module, x: torch.Tensor, y: torch.Tensor, start: str) -> torch.Tensor:
    eps, alpha = RECIPE["epsilon"], RECIPE["alpha"]
    if start == "zero":
        delta = torch.zeros_like(x)
    else:
        delta = torch.zeros_like(x).uniform_(-eps, eps)
        if start == "box":
            delta = torch.max(torch.min(1 - x, delta), -x)
    delta.requires_grad_(True)
    F.cross_entropy(model(x + delta), y).backward()
    delta = torch.clamp(delta.detach() + alpha * torch.sign(delta.grad), -eps, eps)
    return torch.max(torch.min(1 - x, delta), -x)


def attack_pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, steps: int, alpha: float,
               restarts: int) -> torch.Tensor:
    """evaluate_mnist.py's attack_pgd (CPU instead of .cuda())."""
    eps = RECIPE["epsilon"]
    max_loss = torch.zeros(y.shape[0])
    max_delta = torch.zeros_like(x)
    for _ in range(restarts):
        delta = torch.zeros_like(x).uniform_(-eps, eps)
        delta.data = torch.max(torch.min(delta, 1 - x), -x)
        delta.requires_grad = True
        for _ in range(steps):
            output = model(x + delta)
            index = torch.where(output.max(1)[1] == y)[0]
            if len(index) == 0:
                break
            F.cross_entropy(output, y).backward()
            d = torch.clamp(delta + alpha * torch.sign(delta.grad.detach()), -eps, eps)
            d = torch.max(torch.min(d, 1 - x), -x)
            delta.data[index] = d[index]
            delta.grad.zero_()
        all_loss = F.cross_entropy(model(x + delta), y, reduction="none")
        max_delta[all_loss >= max_loss] = delta.detach()[all_loss >= max_loss]
        max_loss = torch.max(max_loss, all_loss)
    return max_delta


def robust_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, **attack) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(y), 100):  # evaluate_mnist.py's batch size
        xb, yb = x[i:i + 100], y[i:i + 100]
        delta = attack_pgd(model, xb, yb, **attack)
        with torch.no_grad():
            correct += int((model(xb + delta).argmax(1) == yb).sum())
    return correct / len(y)


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    return sum(int((model(x[i:i + 2000]).argmax(1) == y[i:i + 2000]).sum())
               for i in range(0, len(y), 2000)) / len(y)


def evaluate(model: nn.Module, data: tuple[torch.Tensor, ...], subset: int, seed: int) -> dict:
    _, _, x_test, y_test = data
    began = time.perf_counter()
    torch.manual_seed(seed)  # evaluate_mnist.py seeds its restarts the same way
    chosen = fixed_subset(len(y_test), subset)
    robust = robust_accuracy(model, x_test[chosen], y_test[chosen], steps=RECIPE["eval_steps"],
                             alpha=RECIPE["eval_step_size"], restarts=RECIPE["eval_restarts"])
    return {"test_acc": accuracy(model, x_test, y_test), "robust_acc": robust,
            "robust_examples": len(chosen), "eval_seconds": time.perf_counter() - began}


def train(seed: int, data: tuple[torch.Tensor, ...], epochs: int, start: str) -> tuple[nn.Module, dict]:
    x, y, x_test, y_test = data
    np.random.seed(seed)
    torch.manual_seed(seed)
    model = mnist_net()
    loader = DataLoader(TensorDataset(x, y), batch_size=RECIPE["batch_size"], shuffle=True)
    opt = torch.optim.Adam(model.parameters(), lr=RECIPE["lr_max"])
    lr_max = RECIPE["lr_max"]

    def lr_schedule(t: float) -> float:
        return float(np.interp([t], [0, epochs * 2 // 5, epochs], [0, lr_max, 0])[0])

    monitor = fixed_subset(len(y_test), MONITOR["subset"])
    epoch_seconds = []
    for epoch in range(epochs):
        began = time.perf_counter()
        model.train()
        for i, (xb, yb) in enumerate(loader):
            opt.param_groups[0].update(lr=lr_schedule(epoch + (i + 1) / len(loader)))
            delta = fgsm_delta(model, xb, yb, start)
            loss = F.cross_entropy(model(torch.clamp(xb + delta, 0, 1)), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
        epoch_seconds.append(time.perf_counter() - began)
        # scored every epoch, as robustlr scores its trials (not counted in epoch_seconds in
        # either): clean accuracy, and a PGD monitor that shows catastrophic overfitting
        rng = torch.get_rng_state()
        monitor_acc = robust_accuracy(model, x_test[monitor], y_test[monitor], steps=MONITOR["steps"],
                                      alpha=MONITOR["step_size"], restarts=1)
        torch.set_rng_state(rng)  # the monitor must not change the training's random draws
        print(json.dumps({"seed": seed, "epoch": epoch + 1, "test_acc": accuracy(model, x_test, y_test),
                          "monitor_robust_acc": monitor_acc, "lr": opt.param_groups[0]["lr"],
                          "epoch_seconds": round(epoch_seconds[-1], 2)}), flush=True)
    return model, {"seed": seed, "epochs": epochs, "start": start,
                   "train_seconds": sum(epoch_seconds), "epoch_seconds": epoch_seconds}


def main() -> None:
    parser = arguments(__doc__.splitlines()[0], epochs=RECIPE["epochs"])
    parser.add_argument("--start", choices=("uniform", "box", "zero"), default="uniform",
                        help="FGSM start: the authors' (uniform), clipped into [0, 1] (box), none (zero)")
    parser.add_argument("--subset", type=int, default=1000, help="test examples attacked by PGD-50-10")
    parser.add_argument("--evaluate", default=None, help="only evaluate this saved state dict")
    args = parser.parse_args()
    data = data_for(args)
    results = []
    if args.evaluate:
        model = mnist_net()
        model.load_state_dict(torch.load(args.evaluate, map_location="cpu", weights_only=True))
        results.append({"model": args.evaluate, **evaluate(model, data, args.subset, seed=0)})
        print(json.dumps(results[-1]), flush=True)
    for seed in ([] if args.evaluate else (int(s) for s in args.seeds.split(","))):
        model, record = train(seed, data, args.epochs, args.start)
        results.append({**record, **evaluate(model, data, args.subset, seed=0)})
        print(json.dumps({k: v for k, v in results[-1].items() if k != "epoch_seconds"}), flush=True)
    if args.out:
        with open(args.out, "w") as handle:
            json.dump({"recipe": RECIPE, "monitor": MONITOR, "results": results}, handle, indent=1)


if __name__ == "__main__":
    main()
