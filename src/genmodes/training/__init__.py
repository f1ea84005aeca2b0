"""Training loops, each usable from a model stage and from a bench script: fine-tuning on texts
(:mod:`~genmodes.training.finetune`), a small transformer from scratch
(:mod:`~genmodes.training.scratch`), and GRPO on thoughts (:mod:`~genmodes.training.grpo`, with the
thought format and reward it shares with the thinking stage in :mod:`~genmodes.training.thoughts`).

Below the conditions (which decide what to train on and cache the results per study) and above
models and scoring. Modules import torch where they use it, so their settings parse without it.
"""
