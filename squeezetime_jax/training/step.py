"""The jitted train and evaluation steps (pure functions of state and batch)."""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from squeezetime_jax.data import device_augment
from squeezetime_jax.data.normalize import normalize_on_device
from squeezetime_jax.training.state import TrainState


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(
        logits.astype(jnp.float32), labels
    )


def train_step(
    state: TrainState,
    batch: dict[str, jax.Array],
    *,
    model,
    tx,
    schedule: Callable[[jax.Array], jax.Array],
    crop_size: int | None = None,
) -> tuple[TrainState, dict[str, Any]]:
    """One SGD step. BatchNorm statistics are per `model.bn_group_size` clips of the
    global batch (or all of it): under jit the batch is one logical array, however
    many devices hold its shards, and a group is a slice of it.
    `crop_size` (data.train.crop_size) is needed for batches of YUV crops."""
    dropout_rng = jax.random.fold_in(state.rng, state.step)
    if device_augment.PARAM_KEYS[0] in batch:
        # data.train.augment_on_device: flip, colour jitter and erasing drawn on the
        # host, applied here where they are nearly free.
        clip = device_augment.augment_and_normalize(batch, crop_size)
    else:
        clip = normalize_on_device(batch["video"])
    labels = batch["label"]

    def loss_fn(params):
        logits, updates = model.apply(
            {"params": params, "batch_stats": state.batch_stats},
            clip,
            train=True,
            mutable=["batch_stats"],
            rngs={"dropout": dropout_rng},
        )
        return cross_entropy(logits, labels).mean(), (logits, updates["batch_stats"])

    (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params
    )
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {
        "loss": loss,
        "accuracy": jnp.mean(jnp.argmax(logits, -1) == labels),
        "learning_rate": schedule(state.step),
        "grad_norm": optax.tree.norm(grads),
    }
    if "decode_failed" in batch:  # clips that replaced an undecodable video
        metrics["decode_failures"] = jnp.sum(batch["decode_failed"].astype(jnp.int32))
    new_state = state.replace(
        step=state.step + 1, params=params, batch_stats=batch_stats, opt_state=opt_state
    )
    return new_state, metrics


def eval_metrics(
    logits: jax.Array, labels: jax.Array, mask: jax.Array
) -> dict[str, jax.Array]:
    """Sums (not means) of top-1/top-5 hits and loss over the unmasked examples."""
    mask = mask.astype(jnp.float32)
    top5 = jax.lax.top_k(logits, min(5, logits.shape[-1]))[1]
    return {
        "count": mask.sum(),
        "loss_sum": (cross_entropy(logits, labels) * mask).sum(),
        "top1_sum": ((top5[:, 0] == labels) * mask).sum(),
        "top5_sum": (jnp.any(top5 == labels[:, None], axis=-1) * mask).sum(),
    }
