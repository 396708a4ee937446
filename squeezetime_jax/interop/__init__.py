"""Interoperability with PyTorch: the plain PyTorch twin and checkpoint conversion.

- `torch_model.SqueezeTimeTorch`: SqueezeTime in torch.nn with the released state_dict.
- `conversion.from_torch` / `conversion.to_torch`: state_dict <-> Flax variables, strict.
- `torch_checkpoints`: released-layout .pth files read into and written from Flax
  variables (converted directories and workdirs belong to `squeezetime_jax.checkpoints`).
- `infer.infer_model_config`: a checkpoint's model config from its shapes.

torch is imported only by `torch_model` and `torch_io`, and those are imported only
when a .pth file is read or written, so the rest of the library works without torch.
"""
