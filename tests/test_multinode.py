"""Beyond one process, through the real CLIs on CPU (gloo), C2D-R18+CGD at a tiny size, dropout 0.5.

The oracle is one uninterrupted 1 node x 2 processes run: every run below ends with its weights (max abs
diff <= 1e-6) after
- a SIGKILL of everything (torchrun's agent, the trainers) mid-epoch and a re-run;
- one worker SIGKILLed under ``torchrun --max-restarts 1`` (the group restarts and resumes);
- SIGTERM to the process group of two trainers with DataLoader workers (each rank saves and exits 0);
- two simulated nodes (two torchrun agents, c10d rendezvous on 127.0.0.1) started by
  ``tools/slurm/train.sbatch`` under a fake ``srun``/``scontrol``, stopped by Slurm's USR1 warning,
  requeued, and resumed by the same script.
One elastic run has no such oracle: two agents with ``--nnodes 1:2`` lose one node mid-epoch, and the other
finishes the run on its own (resumed on 1 process, the world-size warning given).
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import pytest
import torch

from cgd_video.engine.checkpoint import load_checkpoint

from _train_helpers import PYTHON, REPO, subprocess_env, tiny_opts, write_tiny_lists

# One xdist worker runs the whole module, so the uninterrupted reference run is made once.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("multinode")]

SBATCH = REPO / "tools" / "slurm" / "train.sbatch"
TOTAL_STEPS = 8  # 8 training videos / 2 processes / batch 1 = 4 steps per epoch, 2 epochs
STEP_SLEEP = 0.3  # seconds added after every step of the runs that get interrupted
TIMEOUT = 240


@pytest.fixture(scope="module")
def lists(synthetic_dataset, tmp_path_factory):
    return write_tiny_lists(synthetic_dataset, tmp_path_factory.mktemp("lists"))


def _opts(lists: Path, dataset: Path, out: Path, **extra) -> List[str]:
    """A checkpoint after every step, so that an interruption lands after a known iteration."""
    return tiny_opts(lists, dataset, out, **{"TRAIN.BATCH_SIZE": 1, **extra})


def _unsaved(opts: List[str]) -> List[str]:
    """The same run with only the final checkpoint (the uninterrupted and resumed runs: their step
    checkpoints are never read, and a reference that saved none shows that saving changes nothing)."""
    return [*opts, "TRAIN.CHECKPOINT_ITERS", "0"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train_args(opts: List[str], slow: bool = False, rc_file: Optional[Path] = None) -> List[str]:
    """The real CLI, or with ``slow``/``rc_file`` the same entry point with test hooks (a sleep after every
    step so a signal lands mid-epoch; each rank's exit status written to ``rc_file.<rank>``)."""
    if not (slow or rc_file):
        return [str(REPO / "tools" / "train.py"), "--cfg", "synthetic_cgd", *opts]
    hooks = ["--sleep", str(STEP_SLEEP)] if slow else []
    hooks += ["--rc-file", str(rc_file)] if rc_file else []
    return [str(Path(__file__).with_name("_train_with_hooks.py")), *hooks, "--cfg", "synthetic_cgd", *opts]


def _env() -> Dict[str, str]:
    # torchrun shares its rendezvous TCPStore with the workers by default; a restarted group then reads
    # the previous round's keys and fails to connect (pytorch/pytorch#135712). README, "Multi-node".
    return {**subprocess_env(), "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}


_LAUNCHED: List[subprocess.Popen] = []


def _launch(cmd: List[str], env: Dict[str, str], **popen) -> subprocess.Popen:
    """Popen with pipes, remembered so that nothing it started outlives the test (see ``_reap``)."""
    popen.setdefault("start_new_session", "process_group" not in popen)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)
    _LAUNCHED.append(proc)
    return proc


def _torchrun(opts: List[str], *launcher: str, slow: bool = False, rc_file: Optional[Path] = None
              ) -> subprocess.Popen:
    return _launch([PYTHON, "-m", "torch.distributed.run", *launcher, *_train_args(opts, slow, rc_file)], _env())


def _children(pid: int) -> List[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _kill_tree(pid: int, sig: int = signal.SIGKILL) -> None:
    """``pid`` and every descendant (torchrun starts each worker in a session of its own)."""
    todo, tree = [pid], []
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(_children(p))
    for p in tree:
        try:
            os.kill(p, sig)
        except ProcessLookupError:
            pass


def _finish(proc: subprocess.Popen, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            _kill_tree(proc.pid)
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.fixture(autouse=True)
def _reap():
    """A test that fails half-way leaves no trainer running (torchrun's workers would outlive a killed agent)."""
    yield
    while _LAUNCHED:
        proc = _LAUNCHED.pop()
        if proc.poll() is None:
            _kill_tree(proc.pid)
            proc.wait()


def _iteration(ckpt: Path) -> int:
    """The checkpoint's iteration, -1 before the first one (memory-mapped: the weights are not read)."""
    try:
        return int(torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)["iteration"])
    except FileNotFoundError:
        return -1


def _wait_for_checkpoint(procs: List[subprocess.Popen], ckpt: Path, at_least: int) -> int:
    deadline = time.time() + TIMEOUT
    while (it := _iteration(ckpt)) < at_least:
        for p in procs:
            if p.poll() is not None:
                pytest.fail(f"training ended before it could be interrupted:\n{p.stderr.read()[-3000:]}")
        if time.time() > deadline:
            pytest.fail(f"no checkpoint at iteration >= {at_least} within {TIMEOUT} s")
        time.sleep(0.05)
    return it


def _max_diff(a: Path, b: Path) -> float:
    wa, wb = load_checkpoint(a)["model"], load_checkpoint(b)["model"]
    assert wa.keys() == wb.keys()
    return max((wa[k].double() - wb[k].double()).abs().max().item() for k in wa if wa[k].is_floating_point())


def _assert_same_weights_as(reference: Path, out: Path) -> None:
    ckpt = out / "checkpoints" / "last.pt"
    assert _iteration(ckpt) == TOTAL_STEPS
    diff = _max_diff(reference, ckpt)
    assert diff <= 1e-6, f"final weights differ from the uninterrupted 2-process run by {diff}"


@pytest.fixture(scope="module")
def reference(lists, synthetic_dataset, tmp_path_factory) -> Path:
    """``last.pt`` of an uninterrupted 1 node x 2 processes run."""
    out = tmp_path_factory.mktemp("reference")
    run = _finish(_torchrun(_unsaved(_opts(lists, synthetic_dataset, out)), "--standalone", "--nproc_per_node", "2"))
    assert run.returncode == 0, run.stderr[-4000:]
    assert "2 processes" in run.stderr
    ckpt = out / "checkpoints" / "last.pt"
    assert _iteration(ckpt) == TOTAL_STEPS
    return ckpt


def _resume_to_end(opts: List[str]) -> subprocess.CompletedProcess:
    run = _finish(_torchrun(_unsaved(opts), "--standalone", "--nproc_per_node", "2"))
    assert run.returncode == 0, run.stderr[-4000:]
    assert "resumed from" in run.stderr
    return run


def test_sigkill_of_the_group_then_rerun_matches_uninterrupted(reference, lists, synthetic_dataset, tmp_path):
    opts = _opts(lists, synthetic_dataset, tmp_path)
    ckpt = tmp_path / "checkpoints" / "last.pt"
    proc = _torchrun(opts, "--standalone", "--nproc_per_node", "2", slow=True)
    _wait_for_checkpoint([proc], ckpt, at_least=1)
    _kill_tree(proc.pid)  # the agent, both trainers and everything under them at once: a lost node
    _finish(proc)
    killed_at = _iteration(ckpt)
    assert 1 <= killed_at < 4, f"the kill must land inside epoch 1 (checkpoint at iteration {killed_at})"
    _resume_to_end(opts)
    _assert_same_weights_as(reference, tmp_path)


def _worker_with_rank(agent: int, rank: int) -> Optional[int]:
    for pid in _children(agent):
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in env:
            return pid
    return None


def test_torchrun_max_restarts_resumes_after_a_worker_is_killed(reference, lists, synthetic_dataset, tmp_path):
    opts = _opts(lists, synthetic_dataset, tmp_path)
    ckpt = tmp_path / "checkpoints" / "last.pt"
    proc = _torchrun(opts, "--standalone", "--nproc_per_node", "2", "--max-restarts", "1", slow=True)
    killed_at = _wait_for_checkpoint([proc], ckpt, at_least=2)
    worker = _worker_with_rank(proc.pid, rank=1)
    assert worker is not None, "rank 1's process was not found among torchrun's children"
    os.kill(worker, signal.SIGKILL)
    run = _finish(proc)
    assert run.returncode == 0, run.stderr[-4000:]
    assert killed_at < TOTAL_STEPS and "resumed from" in run.stderr  # the restarted group resumed
    _assert_same_weights_as(reference, tmp_path)


def _direct_ranks(opts: List[str], world: int, slow: bool) -> List[subprocess.Popen]:
    """``world`` trainers started without torchrun (as ``srun`` per GPU would), all in one new process group."""
    env = {**subprocess_env(), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()),
           "WORLD_SIZE": str(world), "LOCAL_WORLD_SIZE": str(world)}
    procs: List[subprocess.Popen] = []
    for rank in range(world):
        procs.append(_launch([PYTHON, *_train_args(opts, slow)],
                             {**env, "RANK": str(rank), "LOCAL_RANK": str(rank)},
                             process_group=procs[0].pid if procs else 0))
    return procs


def test_sigterm_to_the_process_group_saves_exits_zero_and_resumes_exactly(
        reference, lists, synthetic_dataset, tmp_path):
    opts = _opts(lists, synthetic_dataset, tmp_path, **{"DATALOADER.NUM_WORKERS": 1})
    ckpt = tmp_path / "checkpoints" / "last.pt"
    # 1) two trainers and their DataLoader workers in one process group (Slurm, `kill -- -PGID`)
    ranks = _direct_ranks(opts, world=2, slow=True)
    _wait_for_checkpoint(ranks, ckpt, at_least=1)
    os.killpg(ranks[0].pid, signal.SIGTERM)
    done = [_finish(p) for p in ranks]
    for rank, run in enumerate(done):
        assert run.returncode == 0, f"rank {rank}:\n{run.stderr[-3000:]}"
        assert "killed by signal" not in run.stderr
    stopped_at = _iteration(ckpt)
    assert 1 <= stopped_at < TOTAL_STEPS
    assert "SIGTERM" in done[0].stdout
    # 2) resumed to the end
    _resume_to_end(opts)
    _assert_same_weights_as(reference, tmp_path)


FAKE_SRUN = """#!{python}
# Fake srun: runs the command once per node (SLURM_NNODES) on this machine and forwards SIGTERM to them,
# as srun forwards signals to its tasks. With FAKE_SRUN_HOOKS, tools/train.py becomes the test launcher
# (the same entry point) with those hook arguments (a sleep after every step, each rank's exit status).
import os, shlex, signal, subprocess, sys
args = sys.argv[1:]
while args[0].startswith("-"):
    args.pop(0)
if os.environ.get("FAKE_SRUN_HOOKS"):
    i = next(i for i, a in enumerate(args) if a.endswith("tools/train.py"))
    args[i:i + 1] = [{hooks!r}, *shlex.split(os.environ["FAKE_SRUN_HOOKS"])]
procs = [subprocess.Popen(args) for _ in range(int(os.environ["SLURM_NNODES"]))]
signal.signal(signal.SIGTERM, lambda *_: [p.send_signal(signal.SIGTERM) for p in procs])
sys.exit(max(p.wait() for p in procs))
"""

FAKE_SCONTROL = """#!/bin/sh
case "$1" in
    show) echo 127.0.0.1 ;;  # scontrol show hostnames NODELIST: every "node" is this machine
    requeue) echo "requeue $2" >> "$FAKE_SCONTROL_LOG" ;;
esac
"""


def _sbatch_env(tmp_path: Path, **extra: str) -> Dict[str, str]:
    """A fake 2-node Slurm job on this machine (job 4242): fake ``scontrol`` and ``srun`` first on PATH,
    then the venv (``torchrun``)."""
    fake = tmp_path / "fakebin"
    fake.mkdir(exist_ok=True)
    (fake / "srun").write_text(FAKE_SRUN.format(python=sys.executable,
                                                hooks=str(Path(__file__).with_name("_train_with_hooks.py"))))
    (fake / "scontrol").write_text(FAKE_SCONTROL)
    for f in ("srun", "scontrol"):
        (fake / f).chmod(0o755)
    env = _env()
    env.update(PATH=f"{fake}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
               SLURM_JOB_ID="4242", SLURM_NNODES="2", SLURM_JOB_NODELIST="node[1-2]", GPUS_PER_NODE="1",
               FAKE_SCONTROL_LOG=str(tmp_path / "scontrol.log"), **extra)
    env.pop("SLURM_SUBMIT_DIR", None)
    return env


def test_the_module_runs_on_one_xdist_worker(request):
    """``make test`` runs ``--dist loadgroup``; pytest 9.2 with pytest-xdist 3.8 silently drops the group
    (the reference run was then made on both workers), so ``constraints.txt`` pins pytest 9.1.1."""
    if not request.config.getoption("loadgroup", default=False):
        pytest.skip("not an xdist worker under --dist loadgroup")
    assert request.node.nodeid.endswith("@multinode")

def test_sbatch_script_is_valid_bash():
    subprocess.run(["bash", "-n", str(SBATCH)], check=True, timeout=30)
    if shutil.which("shellcheck"):
        lint = subprocess.run(["shellcheck", str(SBATCH)], capture_output=True, text=True, timeout=60)
        assert lint.returncode == 0, lint.stdout


def test_sbatch_dry_run_prints_the_command_every_node_runs(tmp_path):
    env = _sbatch_env(tmp_path, DRY_RUN="1", MASTER_PORT="29999")
    run = subprocess.run(["bash", str(SBATCH)], env=env, capture_output=True, text=True, timeout=30)
    assert run.returncode == 2 and run.stderr.startswith("usage:")
    outside = {k: v for k, v in env.items() if k != "SLURM_JOB_NODELIST"}
    run = subprocess.run(["bash", str(SBATCH), "--cfg", "x"], env=outside, capture_output=True, text=True, timeout=30)
    assert run.returncode == 2 and run.stderr.startswith("error: not inside a Slurm job")
    args = ["--cfg", "synthetic_cgd", "OUTPUT_DIR", str(tmp_path / "a dir"), "SOLVER.STEPS", "[1]"]
    run = subprocess.run(["bash", str(SBATCH), *args], env=env, capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stderr
    assert shlex.split(run.stdout) == [
        "env", "TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1", "torchrun", "--nnodes", "2", "--nproc_per_node", "1",
        "--max-restarts", "1", "--rdzv_backend", "c10d", "--rdzv_endpoint", "127.0.0.1:29999",
        "--rdzv_id", "cgd_video_4242", str(REPO / "tools" / "train.py"), *args]


def test_sbatch_on_two_simulated_nodes_requeues_on_usr1_and_resumes_exactly(
        reference, lists, synthetic_dataset, tmp_path):
    out, rc_file = tmp_path / "out", tmp_path / "rc"
    ckpt = out / "checkpoints" / "last.pt"
    opts = _opts(lists, synthetic_dataset, out, **{"DATALOADER.NUM_WORKERS": 1})
    job_args = ["bash", str(SBATCH), "--cfg", "synthetic_cgd", *opts]
    # 1) the job's two nodes (two torchrun agents, c10d rendezvous) train; Slurm's time-limit warning
    #    (--signal=B:USR1@90) reaches the batch shell only. It sends SIGTERM to srun -> torchrun agents ->
    #    each trainer's process group (DataLoader worker included): every rank saves and exits 0, and the
    #    job requeues itself.
    env = _sbatch_env(tmp_path, MASTER_PORT=str(_free_port()),
                      FAKE_SRUN_HOOKS=f"--sleep {STEP_SLEEP} --rc-file {rc_file}")
    job = _launch(job_args, env)
    _wait_for_checkpoint([job], ckpt, at_least=1)
    os.kill(job.pid, signal.SIGUSR1)
    first = _finish(job)
    assert first.returncode == 0, first.stderr[-4000:]
    assert "2 processes" in first.stderr  # world size 2 from 2 nodes x 1 process
    assert [Path(f"{rc_file}.{r}").read_text() for r in (0, 1)] == ["0", "0"], first.stderr[-4000:]
    assert "killed by signal" not in first.stderr
    assert (tmp_path / "scontrol.log").read_text() == "requeue 4242\n"
    stopped_at = _iteration(ckpt)
    assert 1 <= stopped_at < TOTAL_STEPS
    # 2) the requeued job runs the same script with the same arguments and resumes to the end
    env = _sbatch_env(tmp_path, MASTER_PORT=str(_free_port()))
    second = _finish(_launch(job_args, env))
    assert second.returncode == 0, second.stderr[-4000:]
    assert "resumed from" in second.stderr
    assert (tmp_path / "scontrol.log").read_text() == "requeue 4242\n"  # no second requeue
    _assert_same_weights_as(reference, out)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_elastic_run_loses_a_node_and_finishes_on_the_other(lists, synthetic_dataset, tmp_path):
    """README "Elastic": two agents (``--nnodes 1:2``, c10d rendezvous on 127.0.0.1, one process each).
    The second node is lost mid-epoch (its agent and trainer SIGKILLed). The first node's trainer fails on
    its next collective, its agent restarts the group (``--max-restarts 1``), the rendezvous closes with
    the one node left, and the run resumes from ``last.pt`` on 1 process and finishes both epochs, with
    the warning that says it is no longer bit-identical."""
    out = tmp_path / "out"
    ckpt = out / "checkpoints" / "last.pt"
    opts = _opts(lists, synthetic_dataset, out)
    port = _free_port()
    launcher = ["--nnodes", "1:2", "--nproc_per_node", "1", "--max-restarts", "1", "--rdzv_backend", "c10d",
                "--rdzv_endpoint", f"127.0.0.1:{port}", "--rdzv_id", "node_loss",
                "--rdzv_conf", "join_timeout=60,last_call_timeout=15,keep_alive_interval=1,keep_alive_max_attempt=2"]
    first = _torchrun(opts, *launcher, slow=True)
    deadline = time.time() + 60
    while not _listening(port):  # the first agent hosts the rendezvous store: it must be the one that stays
        assert first.poll() is None and time.time() < deadline, "the first agent did not start its store"
        time.sleep(0.1)
    second = _torchrun(opts, *launcher, slow=True)
    lost_at = _wait_for_checkpoint([first, second], ckpt, at_least=1)
    _kill_tree(second.pid)  # node 2 is gone: agent and trainer at once
    _finish(second)
    assert lost_at < 4, f"the node must be lost inside epoch 1 (checkpoint at iteration {lost_at})"
    run = _finish(first)
    assert run.returncode == 0, run.stderr[-4000:]
    assert "2 processes" in run.stderr and "resumed from" in run.stderr
    assert "resuming with 1 processes instead of 2" in run.stderr
    final = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert final["world_size"] == 1 and final["iteration"] == 2 * final["steps_per_epoch"] == 16
