"""int8 on this machine's LibTorch, probed (docs/precision.md, "int8"): one 256->256 3x3 convolution
on a 100x152 map through the oneDNN quantized engine (quantized::conv2d, u8 activations,
per-channel symmetric s8 weights, channels-last) against ATen's fp32 and bf16 convolutions, with
the int8 output's error. Run with ONEDNN_VERBOSE=1 to see which oneDNN kernel runs.

usage: /usr/bin/python3 bench/precision_int8_probe.py
"""
import time

import torch

print('quantized engines:', torch.backends.quantized.supported_engines)
torch.set_num_threads(2)
torch.backends.quantized.engine = 'onednn'
x = torch.randn(1, 256, 100, 152)
conv = torch.nn.Conv2d(256, 256, 3, padding=1)
w = conv.weight.detach()
# per-channel symmetric int8 weights (oneDNN needs zero points 0), per-tensor uint8 activations
ws = w.abs().amax(dim=(1, 2, 3)) / 127
qw = torch.quantize_per_channel(w, ws, torch.zeros(256, dtype=torch.long), 0, torch.qint8)
xs = float(x.abs().max() / 127)
packed = torch.ops.quantized.conv2d_prepack(qw, conv.bias.detach(), [1, 1], [1, 1], [1, 1], 1)
qx = torch.quantize_per_tensor(x, xs * 2, 128, torch.quint8)
with torch.no_grad():
    ref = conv(x)
    out_scale = float(ref.abs().max() / 127)
    def t(f, n=5):
        f(); s = time.perf_counter()
        for _ in range(n): f()
        return (time.perf_counter() - s) / n
    xl = x.contiguous(memory_format=torch.channels_last)
    convl = conv.to(memory_format=torch.channels_last)
    tf = t(lambda: convl(xl))
    qxl = qx.contiguous(memory_format=torch.channels_last)
    ti = t(lambda: torch.ops.quantized.conv2d(qxl, packed, out_scale, 128))
    q = torch.ops.quantized.conv2d(qxl, packed, out_scale, 128).dequantize()
    xb = xl.to(torch.bfloat16); convb = torch.nn.Conv2d(256, 256, 3, padding=1).to(torch.bfloat16).to(memory_format=torch.channels_last)
    tb = t(lambda: convb(xb))
flop = 2 * 256 * 256 * 9 * 100 * 152
print(f"fp32 channels-last conv: {tf*1e3:.1f} ms ({flop/tf/1e9:.0f} GFLOP/s)")
print(f"int8 onednn quantized::conv2d: {ti*1e3:.1f} ms ({flop/ti/1e9:.0f} GOP/s)  rel. error {float((q-ref).abs().max()/ref.abs().max()):.4f}")
print(f"bf16 aten conv (mkldnn): {tb*1e3:.1f} ms ({flop/tb/1e9:.0f} GFLOP/s)")
