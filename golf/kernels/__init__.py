"""GPU kernels for training (issue 17), each guarded so a CPU machine imports and tests them.

fa4: FlashAttention 4 as torch.library custom ops (dense and varlen), installed as the "fa4"
attention backend by the training side; the bundled artifact never imports this package.
"""
