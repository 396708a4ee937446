"""Interoperability with PyTorch: the plain PyTorch twin and checkpoint conversion.

torch is imported only by the submodules that need it (`torch_model`, `torch_io`), so
importing this package, or the core library, works without torch installed.
"""
