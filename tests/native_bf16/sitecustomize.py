"""Makes every Python process started with this folder on PYTHONPATH believe its CPU computes bfloat16 natively
(AVX512-BF16), so sgsim's CPU default precision is bf16 as on such CPUs: the suite runs down that path on any CPU
(docs/tolerances.md, "Checking another kernel path"). Without native instructions oneDNN emulates bf16: slower,
same results."""

import torch

torch.cpu._is_avx512_bf16_supported = lambda: True
