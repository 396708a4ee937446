#!/usr/bin/env bash
# Sets up .venv (if needed), prints the released model's facts, and round-trips a
# checkpoint PyTorch -> JAX -> PyTorch, checking the logits agree.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
OUT="${1:-demo_output}"
mkdir -p "$OUT"
.venv/bin/python -m squeezetime_jax.summary --config configs/k400.py 2>/dev/null | tee "$OUT/summary.json"
.venv/bin/python - "$OUT" <<'PY'
import sys, numpy as np, torch
from squeezetime_jax.interop.torch_model import SqueezeTimeTorch, randomize_batchnorm_
out = sys.argv[1]
twin = randomize_batchnorm_(SqueezeTimeTorch()).eval()
torch.save({"state_dict": twin.state_dict()}, f"{out}/random_k400.pth")
PY
rm -rf "$OUT/converted"
.venv/bin/python -m squeezetime_jax.convert from-torch "$OUT/random_k400.pth" "$OUT/converted"
.venv/bin/python -m squeezetime_jax.convert to-torch "$OUT/converted" "$OUT/roundtrip.pth"
.venv/bin/python - "$OUT" <<'PY'
import sys, numpy as np, torch, squeezetime_jax
from squeezetime_jax.interop.torch_model import SqueezeTimeTorch
out = sys.argv[1]
clip = np.random.default_rng(0).normal(size=(1, 16, 224, 224, 3)).astype(np.float32)
jax_logits = np.asarray(squeezetime_jax.load(f"{out}/converted")(clip))
twin = SqueezeTimeTorch().eval()
twin.load_state_dict(torch.load(f"{out}/roundtrip.pth")["state_dict"], strict=True)
with torch.no_grad():
    torch_logits = twin(torch.from_numpy(clip).permute(0, 4, 1, 2, 3)).numpy()
error = np.abs(jax_logits - torch_logits).max() / np.abs(torch_logits).max()
print(f"JAX vs PyTorch logits after the round trip: relative error {error:.2e}")
print(f"outputs in {out}/")
PY
