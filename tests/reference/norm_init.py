"""Batch-norm statistics and affine parameters drawn away from identity, shared by the reference
scripts: a port that ignores running_mean / running_var / weight / bias then disagrees."""
import torch
import torchvision


def randomise_norms(model, g):
    """Draws every (Frozen)BatchNorm2d's running_mean, running_var, weight, bias from generator g."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.BatchNorm2d, torchvision.ops.FrozenBatchNorm2d)):
                n = m.running_mean.numel()
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) * 0.5 + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
