"""The dry run's training step of a condition's fine-tune against the fine-tune's own loop, in one
process and minutes apart, so the machine's load is about the same for both; each in wall seconds
and in this process's CPU seconds. With ``threads: 1`` the CPU seconds of a step hardly move with
the load (other jobs take turns on the cores; the step's own work stays), so a dry run that is far
from a run while its CPU seconds are near the run's wall seconds (a run alone on a core) is slowed
by the load, not modelling the step wrongly.

    OMP_NUM_THREADS=1 PYTHONPATH=src python dev/finetune_step_check.py CONFIG CONDITION [--steps N]

CONDITION's model stage: finetune_all or rl (the study's knowledge fine-tune, on every dataset). Prints
the estimate's step (:func:`genmodes.experiments.estimate._step_seconds`: 2 steps minus 1 on fresh
copies of the model, on the cell's own texts, wall seconds) and the mean step of the fine-tune's loop
over N steps (N+1 steps minus 1, on the cell's texts and settings), in wall and CPU seconds, and the
ratio of the two wall figures. Writes nothing.
"""
import sys
import time
from pathlib import Path

import torch

from genmodes.conditions.finetune_all import study_texts
from genmodes.experiments.config import load_config
from genmodes.experiments.estimate import _step_seconds
from genmodes.experiments.runner import Runner
from genmodes.models import load_model
from genmodes.training.finetune import train

args = sys.argv[1:]
n = 6
if "--steps" in args:
    i = args.index("--steps")
    n = int(args[i + 1])
    del args[i:i + 2]
config, condition = args
study = load_config(config)
if study.threads:
    torch.set_num_threads(study.threads)
runner = Runner(study, Path("/nonexistent/finetune_step_check"), progress=False)
cond = study.condition(condition)
ft = getattr(cond.stages.model_settings, "finetune", cond.stages.model_settings)
texts = study_texts(runner.datasets(), ft)


def clocks(fn):
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def loop(steps):
    model, tok = load_model(study.model_specs[0], seed=0)
    s = ft.model_copy(update={"steps": steps, "epochs": None, "until_recall": None, "max_epochs": None})
    return clocks(lambda: train(model, tok, texts, s, 0, progress=False))


shape = f"{ft.method} {ft.batch_size}x{ft.seq_len}"
print(f"{condition}: {len(texts)} texts, shape {shape}, torch threads {torch.get_num_threads()}", flush=True)
t0 = time.time()
wall = _step_seconds(runner, ft, texts)
print(f"estimate's step: {wall:.2f} s wall", flush=True)
one, more = loop(1), loop(n + 1)
w, c = (more[0] - one[0]) / n, (more[1] - one[1]) / n
print(f"the loop's step (mean of {n}): {w:.2f} s wall, {c:.2f} s CPU; estimate / loop (wall) {wall / w:.2f}", flush=True)
print(f"({time.strftime('%H:%M:%S', time.gmtime(t0))} - {time.strftime('%H:%M:%S', time.gmtime())} UTC)")
