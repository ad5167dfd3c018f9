"""Triton kernels of fastpass, installed as ``fastpass.triton_kernels``.

Importing a kernel module needs triton; ``fastpass`` itself never imports these eagerly."""
