"""Weights made bfloat16-representable, shared by the reference scripts whose checkpoints are
saved in bfloat16: the model still computes in float32, on exactly the values the file holds."""
import torch


def round_to_bfloat16(model, prefixes=("",)):
    """Rounds every float parameter and buffer whose name starts with one of `prefixes` (all by
    default) to the nearest bfloat16, in place."""
    with torch.no_grad():
        for name, t in list(model.named_parameters()) + list(model.named_buffers()):
            if name.startswith(tuple(prefixes)) and t.is_floating_point():
                t.copy_(t.bfloat16().float())
