"""Next-token cross-entropy without the full logits: the LM head applied in tiles, at labelled positions.

For a 135M model with a 49k vocabulary, the (tokens x vocabulary) logits of a training row dominate a
fine-tuning step on a CPU: the forward writes them, ``log_softmax`` writes them again, the backward
writes their gradient and a zero-padded copy for the shift. TRL's ``SFTTrainer`` avoids that with a
fused LM head (``trl.trainer.utils.add_fused_lm_head``); this is the same idea, written for our loop
(``bench/finetune.py --trl`` measures both; figures in docs/PERFORMANCE.md):

- only positions whose next token carries a label are projected (context tokens of a ``cumulative``
  example and pad positions are skipped);
- they are projected ``CHUNK`` at a time, and each tile's gradient (softmax minus one-hot) is turned
  into the gradients of the hidden states and of the head weight right away, in the forward, so no
  tile's logits are kept: three matmuls per tile, as the plain path, and memory of one tile.

The loss is the plain path's up to float summation order (``tests/models/test_lm_loss.py`` checks
loss and every gradient against ``cross_entropy`` over the full logits, with and without a logit
soft-cap, for a full fine-tune and for LoRA, where the head weight is frozen).
"""

from __future__ import annotations

from typing import Any

import torch

IGNORE = -100
CHUNK = 1024  # positions per tile: 1024 x 49,152 fp32 logits = 200 MB


class _TiledHeadCE(torch.autograd.Function):
    """sum_i CE(softcap(h_i W^T), y_i), gradients computed tile by tile in the forward pass."""

    @staticmethod
    def forward(ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor,
                cap: float | None, chunk: int) -> torch.Tensor:
        want_h, want_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_h = torch.empty_like(hidden) if want_h else None
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if want_w else None
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        for i in range(0, hidden.shape[0], chunk):
            h, y = hidden[i:i + chunk], labels[i:i + chunk]
            z = (h @ weight.t()).float()
            if cap:
                t = torch.tanh(z / cap)
                z = cap * t
            lse = torch.logsumexp(z, dim=-1)
            rows = torch.arange(len(y), device=y.device)
            total += (lse - z[rows, y]).sum()
            if not (want_h or want_w):
                continue
            g = torch.exp(z.sub_(lse[:, None]))  # softmax, in place of the logits
            g[rows, y] -= 1.0
            if cap:
                g *= 1.0 - t * t
            if want_h:
                grad_h[i:i + chunk] = (g.to(weight.dtype) @ weight).to(hidden.dtype)
            if want_w:
                grad_w.addmm_(g.t(), h.float())
        ctx.save_for_backward(*(x for x in (grad_h, grad_w) if x is not None))
        ctx.weight_dtype = weight.dtype
        return total

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[Any, ...]:
        saved = iter(ctx.saved_tensors)  # grad_h, grad_w: those the forward computed, in that order
        gh = next(saved) * grad_out if ctx.needs_input_grad[0] else None
        gw = (next(saved) * grad_out).to(ctx.weight_dtype) if ctx.needs_input_grad[1] else None
        return gh, gw, None, None, None


def _parts(model: Any) -> tuple[Any, Any, float | None] | None:
    """(backbone, LM head, final logit soft-cap or None), or None where the head is not a plain
    linear map of the backbone's last hidden state (then the caller computes the full logits)."""
    hf = model.get_base_model() if hasattr(model, "get_base_model") else model
    backbone = getattr(hf, getattr(hf, "base_model_prefix", ""), None)
    head = hf.get_output_embeddings() if hasattr(hf, "get_output_embeddings") else None
    if backbone is None or head is None or getattr(head, "bias", None) is not None:
        return None
    cfg = hf.config.get_text_config() if hasattr(hf.config, "get_text_config") else hf.config
    if any(getattr(cfg, k, None) not in (None, 1.0) for k in ("logit_scale", "logits_scaling", "output_multiplier")):
        return None
    if not isinstance(getattr(head, "weight", None), torch.Tensor) or hasattr(head, "base_layer"):
        return None  # a LoRA-adapted head: its output is not h W^T
    return backbone, head, getattr(cfg, "final_logit_softcapping", None)


def loss_sum(model: Any, input_ids: torch.Tensor, position_ids: torch.Tensor, labels: torch.Tensor,
             chunk: int = CHUNK) -> torch.Tensor:
    """Summed next-token cross-entropy over the labelled tokens (``labels`` aligned with ``input_ids``;
    position ``t`` predicts ``labels[t + 1]``). No attention mask and no cache, so transformers builds the
    per-example mask of packed rows from the position-id resets."""
    parts = _parts(model)
    target = labels[:, 1:]
    if parts is None:
        logits = model(input_ids=input_ids, position_ids=position_ids, use_cache=False).logits
        return torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(), target.flatten(),
                                                 ignore_index=IGNORE, reduction="sum")
    backbone, head, cap = parts
    hidden = backbone(input_ids=input_ids, position_ids=position_ids, use_cache=False).last_hidden_state
    mask = target != IGNORE
    return _TiledHeadCE.apply(hidden[:, :-1][mask], head.weight, target[mask], cap, chunk)
