"""Triton kernels, registered as torch.library.triton_op under the ``hmore_triton`` namespace.

Imported lazily (on the first ``backend="triton"`` call) so that importing hmore_kernels never needs
triton. On a machine without a GPU they run through the interpreter (``TRITON_INTERPRET=1``).
"""
