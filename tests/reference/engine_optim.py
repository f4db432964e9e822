"""Reference values for tests/engine/{optimizer,lr_schedule}_test.cpp from torch.optim.

Usage: /usr/bin/python3 tests/reference/engine_optim.py OUTDIR  (the C++ tests run it via reference_dir).

{sgd,adamw}_<case>.pt: params p0.., grads g<step>_<i> (a missing one = no gradient that step), lrs,
  and the params and the optimizer's per-parameter state (<slot><i>: momentum_buffer, exp_avg,
  exp_avg_sq, step, when present) after 3 torch.optim.SGD / AdamW steps.
lr_<case>.pt: the learning rate torchvision's reference training uses at each iteration:
  LinearLR(start_factor=warmup_factor, total_iters=warmup) chained with MultiStepLR or
  CosineAnnealingLR(T_max=iterations, eta_min=0), read before each optimizer step.
"""
import reference_env  # noqa: E402  (the versions this script was written for)
reference_env.require(torch="1.13", torchvision="0.14")

import math
import os
import sys

import torch

out_dir = sys.argv[1]
os.makedirs(out_dir, exist_ok=True)


def save(name, **tensors):
    torch.save(tensors, os.path.join(out_dir, name + ".pt"))


# --- SGD and AdamW: 3 params (one without a gradient at step 1), 3 steps with changing lr; float64
# so the comparison tests the update rule, not float32 rounding.
def optim_case(name, seed, kind, weight_decay, momentum=0.0, betas=(0.9, 0.999), clip=0.0):
    g = torch.Generator().manual_seed(seed)
    shapes = [(3, 4), (5,), (2, 100, 150)]  # the last spans several parallel chunks
    params = [torch.randn(s, generator=g, dtype=torch.float64) for s in shapes]
    lrs = [0.1, 0.05, 0.02]
    grads = {}
    for step in range(3):
        for i, s in enumerate(shapes):
            if step == 1 and i == 1:
                continue  # no gradient: the optimizer skips the parameter and keeps its state
            grads[f"g{step}_{i}"] = torch.randn(s, generator=g, dtype=torch.float64) * (5.0 if clip else 1.0)
    work = [p.clone().requires_grad_(True) for p in params]
    if kind == "sgd":
        opt = torch.optim.SGD(work, lr=lrs[0], momentum=momentum, weight_decay=weight_decay)
    else:
        opt = torch.optim.AdamW(work, lr=lrs[0], betas=betas, weight_decay=weight_decay)
    norms = []
    for step in range(3):
        opt.zero_grad(set_to_none=True)
        for i, p in enumerate(work):
            key = f"g{step}_{i}"
            if key in grads:
                p.grad = grads[key].clone()
        if clip:
            norms.append(float(torch.nn.utils.clip_grad_norm_(work, clip)))
        for group in opt.param_groups:
            group["lr"] = lrs[step]
        opt.step()
    out = {f"p{i}": p for i, p in enumerate(params)}
    out.update(grads)
    out["lrs"] = torch.tensor(lrs, dtype=torch.float64)
    out["hyper"] = torch.tensor([momentum, weight_decay, clip, betas[0], betas[1]], dtype=torch.float64)
    out["norms"] = torch.tensor(norms, dtype=torch.float64)
    for i, p in enumerate(work):
        out[f"after{i}"] = p.detach().clone()
        for slot, value in opt.state.get(p, {}).items():
            if value is not None:
                out[f"{slot}{i}"] = torch.as_tensor(value, dtype=torch.float64).clone()
    save(kind + "_" + name, **out)


optim_case("momentum_decay", 1, "sgd", 1e-4, momentum=0.9)
optim_case("plain", 2, "sgd", 0.0)
optim_case("decay_only", 3, "sgd", 0.01)
optim_case("clipped", 4, "sgd", 1e-4, momentum=0.9, clip=1.0)
optim_case("default", 5, "adamw", 0.01)
optim_case("betas_no_decay", 6, "adamw", 0.0, betas=(0.5, 0.9))
optim_case("clipped", 7, "adamw", 0.05, clip=1.0)


# --- learning-rate schedules
def lr_case(name, lr, iterations, warmup, warmup_factor, schedule, steps=(), gamma=0.1):
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=lr)
    schedulers = []
    if warmup > 0:
        schedulers.append(torch.optim.lr_scheduler.LinearLR(opt, start_factor=warmup_factor, total_iters=warmup))
    if schedule == "step":
        schedulers.append(torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(steps), gamma=gamma))
    else:
        schedulers.append(torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=iterations, eta_min=0.0))
    values = []
    for _ in range(iterations):
        values.append(opt.param_groups[0]["lr"])
        opt.step()
        for s in schedulers:
            s.step()
    # closed form of the same schedule, as a check on the chaining above
    closed = []
    for i in range(iterations):
        w = warmup_factor + (1 - warmup_factor) * i / warmup if i < warmup else 1.0
        d = (0.5 * (1 + math.cos(math.pi * i / iterations)) if schedule == "cosine"
             else gamma ** sum(1 for s in steps if i >= s))
        closed.append(lr * w * d)
    assert all(abs(a - b) <= 1e-9 * abs(b) + 1e-15 for a, b in zip(values, closed)), name
    save("lr_" + name,
         lrs=torch.tensor(values, dtype=torch.float64),
         config=torch.tensor([lr, iterations, warmup, warmup_factor, gamma], dtype=torch.float64),
         steps=torch.tensor(list(steps), dtype=torch.int64))


lr_case("step", 0.02, 40, 10, 0.001, "step", steps=(20, 30))
lr_case("step_in_warmup", 0.01, 30, 12, 0.1, "step", steps=(5, 25), gamma=0.5)
lr_case("step_no_warmup", 0.02, 20, 0, 1.0, "step", steps=(10,))
lr_case("cosine", 0.02, 50, 10, 0.001, "cosine")
lr_case("cosine_long_warmup", 0.05, 16, 8, 0.25, "cosine")
