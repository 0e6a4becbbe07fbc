"""Two CPU processes under `accelerate launch` (DDP over gloo): one run folder, written
by the main process only, and the very same MSA subspace in both processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from backend import paths
from backend.runs import PROBE_STATE

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
SHIPPED = paths.SHIPPED_BASES / "default"
ACCELERATE = Path(sys.executable).parent / "accelerate"

# Run by every process: the project's own train(), plus a record of the estimator each
# process ended with (a subclass that only remembers its instances).
SCRIPT = """
import json, sys
from safetensors.torch import save_file
import backend.training as training
from backend import distributed
from backend.runs import RunConfig

made = []


class Remembered(training.MSASubspaceEstimator):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        made.append(self)


training.MSASubspaceEstimator = Remembered
run = training.train(RunConfig(**json.loads(sys.argv[2])))
est = made[-1]
save_file({f"basis.{l}": U.contiguous() for l, U in est.bases.items()}
          | {f"means.{l}": m.contiguous() for l, m in est.means.items()},
          f"{sys.argv[1]}/rank{distributed.rank()}-of-{distributed.world_size()}.safetensors")
print("RUN", run.id)
"""


@pytest.mark.skipif(not (SHIPPED / "config.json").is_file(), reason="no shipped base model")
@pytest.mark.skipif(not ACCELERATE.is_file(), reason="accelerate is not installed")
def test_two_processes_share_one_subspace_and_one_run_folder(tmp_path):
    models, out = tmp_path / "models", tmp_path / "out"
    out.mkdir()
    script = tmp_path / "train_ddp.py"
    script.write_text(SCRIPT, encoding="utf-8")
    config = dict(method="decoupled", source="offline:size=300", dialects=["CAI", "RAB"], base=str(SHIPPED),
                  steps=6, batch_size=4, max_length=48, probe_every=2, probe_batch=16, lam=5.0, lam_warmup=1,
                  save_every=3, name="ddp")
    env = {**os.environ, "DD_MODELS_DIR": str(models), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO),
           "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    # `--cpu` alone starts one process unless MPI is installed; `--multi_gpu` starts two
    # through torchrun, and ACCELERATE_USE_CPU keeps them on the CPU (gloo).
    env["ACCELERATE_USE_CPU"], env["CUDA_VISIBLE_DEVICES"] = "1", ""
    cmd = [str(ACCELERATE), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", str(script), str(out), json.dumps(config)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]

    # One run, named alike in both processes.
    ids = {line.split()[1] for line in proc.stdout.splitlines() if line.startswith("RUN ")}
    runs = [d for d in (models / "runs").iterdir() if d.is_dir()]
    assert len(ids) == 1 and [d.name for d in runs] == list(ids)
    run = runs[0]

    # Both processes ended with the same subspace and means, and it is the one saved.
    ranks = [load_file(str(out / f"rank{r}-of-2.safetensors")) for r in (0, 1)]
    assert set(ranks[0]) == set(ranks[1])
    for name, t in ranks[0].items():
        assert torch.equal(t, ranks[1][name]), name
    assert any(t.shape[1] > 0 for name, t in ranks[0].items() if name.startswith("basis."))
    saved = load_file(str(run / "subspace.safetensors"))
    assert all(torch.equal(saved[name], t) for name, t in ranks[0].items())

    # Written once: every step recorded once, one start and one end in the log.
    state = json.loads((run / "state.json").read_text(encoding="utf-8"))
    assert state["state"] == "finished"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["step"] for r in records] == list(range(1, 7))
    assert sum("overlap" in r for r in records) == 4  # the first update, then steps 2, 4, 6
    log = (run / "log.txt").read_text(encoding="utf-8")
    assert log.count(" starting ") == 1 and log.count("finished") == 1 and "x 2" in log
    assert (run / "adapter" / "adapter_config.json").is_file()
    checkpoints = list((run / "checkpoints").glob("checkpoint-*"))
    assert checkpoints and all((c / PROBE_STATE).is_file() for c in checkpoints)
