"""The dry run's scoring estimate of a cell against the scorer's time on that cell, in one process and
within minutes of each other, so the machine's load (which moves both by 2-3x on this shared CPU) is
about the same for the two. For conditions whose model needs no training (pretrained, with any
context stage): the cell is estimated (`genmodes.experiments.estimate`, the scorer's plan costed by
calls timed here), then prepared as the runner prepares it and its questions scored, timed.

    python dev/scoring_estimate_check.py CONFIG CONDITION [CONDITION ...]

One line per cell: the estimate's scoring seconds (test ~s less the model load), the scorer's
measured seconds, the ratio estimate / measured, and the calibration it used. Writes nothing but a
temporary folder (the cell's retrieved documents, as the runner writes them).
"""
import sys
import tempfile
import time
from pathlib import Path

from genmodes.experiments.cell import prepare_cell, score_cell
from genmodes.experiments.config import load_config
from genmodes.experiments.estimate import CellEstimate, Estimator, calibrate
from genmodes.experiments.grid import grid
from genmodes.experiments.runner import Runner
from genmodes.models import precision, resolve_dtype

config, wanted = sys.argv[1], sys.argv[2:]
study = load_config(config)
with tempfile.TemporaryDirectory() as tmp:
    runner = Runner(study, Path(tmp) / "run", progress=False)
    runner.validate()
    cal = calibrate(runner)
    estimator = Estimator(runner, cal)
    with precision(resolve_dtype(runner.dtype, runner.device), runner.device):
        for cell in grid(study):
            if cell.condition.name not in wanted:
                continue
            est = CellEstimate(cell.id, 0, False)
            estimator.cell(cell, est)
            if est.train_s:
                print(f"{cell.id}: trains a model; this check is for scoring cells", file=sys.stderr)
                continue
            work = Path(tmp) / cell.id
            work.mkdir()
            ready = prepare_cell(study, cell, runner.datasets(), work, Path(tmp) / "shared", progress=False)
            ds = runner.datasets()[str(cell.dataset.name)]
            t0 = time.time()
            _, _, _, score_s = score_cell(study, cell, ds, ready, progress=False)
            estimated = est.test_s - cal.load_s
            print(f"{cell.id}: estimated {estimated:.1f} s, scored in {score_s:.1f} s, ratio {estimated / score_s:.2f} "
                  f"({time.strftime('%H:%M:%S', time.gmtime(t0))} UTC; {cal.forward.describe()})", flush=True)
