"""Interoperability with PyTorch: the plain PyTorch twin and checkpoint conversion.

- `torch_model.SqueezeTimeTorch`: SqueezeTime in torch.nn with the released state_dict.
- `conversion.from_torch` / `conversion.to_torch`: state_dict <-> Flax variables, strict.
- `checkpoints`: .pth files in and out, converted (Orbax) directories, train.py workdirs.
- `infer.infer_model_config`: a checkpoint's model config from its shapes.

torch is imported only by the submodules that need it (`torch_model`, `torch_io`) and
only when called, so importing this package, or the core library, works without torch.
"""
