"""Custom ops of the generator, each a pure-PyTorch reference plus an optional JIT-built CUDA kernel."""
