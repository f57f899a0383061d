"""A seed sweep: one training per seed, each run's models scored on every evaluation corpus, through submitit.

A sweep folder holds one run folder per seed, ``<sweep>/<config name>_seed<seed>``, and submitit's job
logs in ``<sweep>/submitit``. Each seed is one job (`SeedJob`) that runs the project's own commands, so a
sweep's run is exactly a run made by hand:

1. ``scripts/train.py``: a fresh run, or ``--resume`` of an unfinished one (killed, timed out, preempted);
   a finished run (``run_info.json`` says so) is left alone;
2. ``scripts/evaluate.py --json`` for ``best.pth`` and ``swa.pth`` on the config's own eval set and on each
   `Evaluation`, into ``<run>/evaluation/<model>_<corpus>.json`` (scores beside it); a JSON already there is
   not made again, and an interrupted corpus scoring continues where it stopped.

Rerunning a sweep therefore trains nothing that is finished and resumes what is not. A run folder that holds
a run of another config (the config file was edited since: its hash in ``run_info.json`` differs) stops the
sweep before any job starts, so that no result is reported under a config that did not produce it. Launching is
submitit's: its local executor (one job after another, or one per GPU at a time) or SLURM (a job array;
a job that times out or is preempted is requeued by submitit and resumes).
"""
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import models  # noqa: F401  (registers the architectures whose configs load_config validates)
from utils.config import load_config
from utils.errors import InputError, report_error
from utils.experiments.provenance import (MODELS, REPO_ROOT, RUN_INFO, config_sha256, evaluation_file,
                              read_run_info)
from utils.engine.training import CHECKPOINT

LAUNCHERS = ("local", "slurm")


@dataclass(frozen=True)
class Evaluation:
    """A corpus to score every run's models on (scripts/evaluate.py --corpus ... --database_path ... --keys ...)."""
    corpus: str
    database: str
    keys: str
    subset: str | None = None


@dataclass(frozen=True)
class SeedJob:
    """Train one seed of a config into `run_dir` (or resume it), then score its models. Picklable: submitit
    sends it to the job's process."""
    config: str
    seed: int
    run_dir: str
    evaluations: tuple[Evaluation, ...] = ()
    device: str | None = None
    python: str = sys.executable

    def __call__(self) -> str:
        try:
            return self.train_and_evaluate(Path(self.run_dir))
        except InputError as e:  # raised here, not by a command: the launcher shows this line as the job's error
            report_error(e)
            raise RuntimeError(f"seed {self.seed}: {e}") from None

    def train_and_evaluate(self, run_dir: Path) -> str:
        self.train(run_dir)
        targets = self.targets()
        for model in MODELS:
            weights = run_dir / "weights" / f"{model}.pth"
            if not weights.is_file():  # no epoch was good enough for the weight average
                print(f"note: {weights} does not exist; not evaluated", flush=True)
                continue
            for evaluation in targets:
                out = evaluation_file(run_dir, model, evaluation.corpus)
                if not out.is_file():
                    self.run(self.evaluate_command(weights, evaluation, out))
        return str(run_dir)

    def train(self, run_dir: Path) -> None:
        problem = self.stale_run()
        if problem:
            raise InputError(problem)
        info = read_run_info(run_dir)
        if info is not None and info["finished"]:
            print(f"{run_dir}: finished on {info['finished']}; not trained again", flush=True)
            return
        resume = (run_dir / CHECKPOINT).is_file()
        command = [self.python, "scripts/train.py", "--config", self.config, "--output_dir", str(run_dir)]
        command += ["--resume"] if resume else ["--seed", str(self.seed)]
        self.run(command + (["--device", self.device] if self.device else []))

    def stale_run(self) -> str | None:
        """Why the run folder's results are not this job's (another config under the same file name, another
        seed), or None. A folder with neither a checkpoint nor a finished run holds no result: a fresh start
        replaces it."""
        run_dir = Path(self.run_dir)
        info = read_run_info(run_dir)
        if info is None or not (info["finished"] or (run_dir / CHECKPOINT).exists()):
            return None
        now = config_sha256(load_config(self.config))
        if info["config_sha256"] != now:
            return (f"{run_dir} holds a run of another config: {run_dir / RUN_INFO} records config sha256 "
                    f"{info['config_sha256'][:12]}, and {self.config} now gives {now[:12]} (the file was changed); "
                    "its results would pass for the new config's. Sweep the new config into another --sweep_dir, "
                    "or move that run folder away to train it again")
        if info["seed"] != self.seed:
            return f"{run_dir} holds a run of seed {info['seed']}, not {self.seed}; move it away"
        return None

    def targets(self) -> list[Evaluation]:
        """The config's own eval set (database_path; named by its corpus), then the listed corpora; a listed
        corpus of the same name replaces the own set."""
        own, listed = Evaluation(load_config(self.config).corpus, "", ""), list(self.evaluations)
        return listed if any(e.corpus == own.corpus for e in listed) else [own, *listed]

    def evaluate_command(self, weights: Path, evaluation: Evaluation, out: Path) -> list[str]:
        folder = out.parent
        command = [self.python, "scripts/evaluate.py", "--config", str(folder.parent / "config.json"),
                   "--model_path", str(weights), "--output_dir", str(folder), "--json", str(out)]
        if evaluation.keys:  # another corpus, with its keys
            command += ["--corpus", evaluation.corpus, "--database_path", evaluation.database,
                        "--keys", evaluation.keys, "--resume"]
            command += ["--subset", evaluation.subset] if evaluation.subset else []
        else:
            command += ["--eval_set", "eval"]
        return command + (["--device", self.device] if self.device else [])

    def run(self, command: list[str]) -> None:
        print("$ " + " ".join(command), flush=True)
        process = subprocess.Popen(command, cwd=REPO_ROOT)
        try:
            status = process.wait()
        except BaseException:  # the job is cancelled (SIGINT from the launcher): stop the command with it
            process.terminate()  # a run keeps its last checkpoint, and its lock names a process that is gone
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
            raise
        if status != 0:
            raise RuntimeError(f"seed {self.seed}: {command[1]} exited with status {status}")

    def checkpoint(self):
        """submitit calls this on a timeout or preemption: requeue the same job, which then resumes."""
        import submitit
        return submitit.helpers.DelayedSubmission(self)


def run_dir_name(config: Path, seed: int) -> str:
    return f"{config.stem}_seed{seed}"


def seed_jobs(configs: list[Path], seeds: list[int], sweep_dir: Path, evaluations: tuple[Evaluation, ...] = (),
              device: str | None = None) -> list[SeedJob]:
    """One job per config and seed, each into its own run folder of the sweep."""
    if len(set(seeds)) < len(seeds):
        raise InputError(f"--seeds: repeated seed in {seeds}")
    stems = [c.stem for c in configs]
    if len(set(stems)) < len(stems):
        raise InputError(f"--config: two configs share a file name ({', '.join(map(str, configs))}); their run "
                         "folders would collide")
    for config in configs:
        load_config(config)  # a bad config stops the sweep now, not in every job
    if sweep_dir.exists() and not sweep_dir.is_dir():
        raise InputError(f"--sweep_dir {sweep_dir} is a file, not a folder")
    jobs = [SeedJob(str(config.resolve()), seed, str((sweep_dir / run_dir_name(config, seed)).resolve()),
                    evaluations, device) for config in configs for seed in seeds]
    for job in jobs:  # a damaged run record or a stale run stops the sweep before any job starts
        problem = job.stale_run()
        if problem:
            raise InputError(problem)
    return jobs


def submitit_module():
    try:
        import submitit
    except ImportError:
        raise InputError("scripts/sweep.py launches through submitit: pip install submitit") from None
    return submitit


def launch_local(jobs: list[SeedJob], folder: Path, gpus: int, timeout_min: int) -> list[str]:
    """Run the jobs with submitit's local executor: one at a time, or one per GPU at a time. Waits for
    all; returns a line per failed job. Ctrl-C or SIGTERM stops the running jobs and their commands, then
    raises KeyboardInterrupt."""
    submitit = submitit_module()
    executor = submitit.LocalExecutor(folder=folder)
    queue, running, failures = list(jobs), {}, []  # running: submitit job -> (SeedJob, GPU index)
    slots = max(gpus, 1)
    stop_on_sigterm = signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops the jobs as Ctrl-C does
    try:
        while queue or running:
            while queue and len(running) < slots:
                busy = {gpu for _, gpu in running.values()}
                gpu = next((g for g in range(gpus) if g not in busy), None)
                executor.update_parameters(timeout_min=timeout_min, gpus_per_node=int(gpu is not None),
                                           **({"visible_gpus": [gpu]} if gpu is not None else {}))
                seed_job = queue.pop(0)
                job = executor.submit(seed_job)
                running[job] = (seed_job, gpu)
                print(f"seed {seed_job.seed}: started{'' if gpu is None else f' on GPU {gpu}'} "
                      f"(log {job.paths.stdout})", flush=True)
            for job in [j for j in running if j.done()]:
                seed_job, _ = running.pop(job)
                failures += _outcome(job, seed_job)
            time.sleep(0.5)
    except KeyboardInterrupt:
        for job in running:
            _stop(job)
        deadline = time.time() + 30
        while any(not job.done() for job in running) and time.time() < deadline:
            time.sleep(0.2)
        raise
    finally:
        signal.signal(signal.SIGTERM, stop_on_sigterm)
    return failures


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _stop(job) -> None:
    """Stop a local job and the command it runs. submitit's local job is a controller process (its job id
    is the controller's process id) that runs the job in a child process: SIGINT to that child stops the
    command (`SeedJob.run`) and then the job, and the controller ends on its own. (`job.cancel()` sends SIGINT
    to the controller, which prints a traceback of its own; it is the fallback where /proc cannot say.)"""
    try:
        controller = int(job.job_id)
        children = Path(f"/proc/{controller}/task/{controller}/children").read_text().split()
    except (OSError, ValueError):
        children = []
    for child in children:
        try:
            os.kill(int(child), signal.SIGINT)
        except OSError:  # already gone
            pass
    if not children:
        job.cancel()


def launch_slurm(jobs: list[SeedJob], folder: Path, timeout_min: int, wait: bool, **slurm) -> list[str]:
    """Submit the jobs to SLURM as one job array (submitit's AutoExecutor); wait for them if asked."""
    submitit = submitit_module()
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
    executor.update_parameters(timeout_min=timeout_min, name="aasist_sweep",
                               **{k: v for k, v in slurm.items() if v is not None})
    with executor.batch():
        submitted = [executor.submit(j) for j in jobs]
    for job, seed_job in zip(submitted, jobs):
        print(f"seed {seed_job.seed}: SLURM job {job.job_id} (log {job.paths.stdout})", flush=True)
    if not wait:
        return []
    return [line for job, seed_job in zip(submitted, jobs) for line in _outcome(job, seed_job)]


def _outcome(job, seed_job: SeedJob) -> list[str]:
    try:
        job.result()
    except Exception as e:  # submitit's FailedJobError / UncompletedJobError
        print(f"seed {seed_job.seed}: FAILED (log {job.paths.stderr})", flush=True)
        return [f"seed {seed_job.seed} ({Path(seed_job.config).name}) failed: {_job_error(job.paths.stderr, e)} "
                f"(log: {job.paths.stderr})"]
    print(f"seed {seed_job.seed}: done ({seed_job.run_dir})", flush=True)
    return []


def _job_error(stderr: Path, exc: Exception) -> str:
    """The last `error: ...` line a command of the job printed (train.py, evaluate.py), else what submitit says."""
    try:
        lines = Path(stderr).read_text(errors="replace").splitlines()
    except OSError:
        lines = []
    errors = [line.split("error: ", 1)[1] for line in lines if line.startswith("error: ")]
    if errors:
        return errors[-1]
    # submitit's message: "Job (task=0) failed during processing with trace:", the traceback between two lines
    # of dashes, then where the logs are. The traceback's last line says what went wrong.
    parts = str(exc).split("-" * 22)
    lines = [line.strip() for line in (parts[1] if len(parts) >= 3 else parts[0]).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


def importable_here() -> None:
    """Jobs unpickle `SeedJob` in a new process: let it import this repository's packages from anywhere."""
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    if str(REPO_ROOT) not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *filter(None, paths)])
