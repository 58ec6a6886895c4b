# SPDX-License-Identifier: BSD-3-Clause
"""Builds as time-limited jobs, run on a Dask job graph.

``run_tool`` runs one tool (yosys, nextpnr, ecppack, icepack) under a wall-clock limit: past
it, the tool's whole process group is killed, what it had written is removed and a
``BuildTimeout`` names the stage, the seed and the limit. nextpnr's router can stall for many
minutes on a congested design (``research/toolchain.md`` section 6); a stall then fails in one
line instead of hanging.

``run_builds`` submits builds to a ``dask.distributed`` cluster (``connect``: a
``LocalCluster`` on this machine, or an existing scheduler), one task per stage and job::

    prepare (elaborate, write the plan) -> synth (yosys) -> pnr seed s (nextpnr), per seed
                                                          -> finish (pick a seed, pack)

The stage functions are ``boards.build``'s (``prepare_build``, ``synthesize``,
``place_route``, ``finish_build``); they report stage starts and ends through ``emit`` (Dask's
``log_event`` on a worker, a local sink otherwise), which ``Progress`` shows on stderr.
"""

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from ..host.errors import InputError, TernedgeError

__all__ = ["BuildError", "BuildTimeout", "DASK_EXTRA", "run_tool", "kill_running", "emit",
           "Progress", "connect", "run_builds"]

#: the pyproject extra that installs Dask
DASK_EXTRA = "dask"
#: the topic of the stage events (``distributed.Worker.log_event``)
EVENT_TOPIC = "ternedge.build"
#: seconds to wait for an existing scheduler (``--scheduler``) to answer
SCHEDULER_CONNECT_S = 10
#: seconds between SIGTERM and SIGKILL of a tool past its limit
KILL_GRACE_S = 3


class BuildError(TernedgeError):
    """A build stage failed (a tool exited non-zero, or no seed met timing)."""


class BuildTimeout(BuildError):
    """A tool ran past its wall-clock limit and was killed."""


# tools now running (pid -> Popen), so an interrupted build can kill them all
_running = {}
_running_lock = threading.Lock()


def _kill_group(proc):
    """SIGTERM, then SIGKILL, to the process group ``proc`` leads (``start_new_session``),
    which holds the tool and every child it started."""
    for sig, wait in ((signal.SIGTERM, KILL_GRACE_S), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            break
        try:
            proc.wait(timeout=wait)
            if sig == signal.SIGTERM:
                # the leader is gone; children that ignored SIGTERM still get SIGKILL
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            break
        except subprocess.TimeoutExpired:
            continue
    proc.wait()


def kill_running():
    """Kill every tool this process is running (an interrupted build)."""
    with _running_lock:
        procs = list(_running.values())
    for proc in procs:
        _kill_group(proc)


def _remove(paths):
    for path in paths:
        path = Path(path)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _last_error(text: str) -> str:
    """The tool's own error line (``ERROR: ...``), else its last non-empty line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if "ERROR" in line.upper()]
    return (errors or lines or ["(no output)"])[-1][:300]


def _what(stage: str, seed) -> str:
    return stage if seed is None else f"{stage}, seed {seed}"


def run_tool(argv, cwd, *, env=None, stage: str, limit_s: float, seed=None, outputs=(),
             output_name: str | None = None) -> float:
    """Run ``argv`` in ``cwd`` for at most ``limit_s`` seconds; return the seconds it took.

    stdout and stderr go to ``cwd/<output_name>`` (default ``<tool>.out``). Past the limit the
    tool's process group is killed, ``outputs`` (paths; directories are removed whole) are
    removed and ``BuildTimeout`` is raised; a non-zero exit removes them too and raises
    ``BuildError`` with the tool's error line. ``stage`` and ``seed`` name the run in both.
    """
    cwd = Path(cwd)
    tool = Path(argv[0]).name
    out_path = cwd / (output_name or f"{tool}.out")
    start = time.monotonic()
    with open(out_path, "wb") as out:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        with _running_lock:
            _running[proc.pid] = proc
        try:
            try:
                code = proc.wait(timeout=limit_s)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                _remove([*outputs, out_path])
                minutes = limit_s / 60
                fix = ("try other --seeds or a longer --timeout-min" if seed is not None
                       else "give it a longer --timeout-min")
                raise BuildTimeout(
                    f"{tool} ({_what(stage, seed)}) ran past its {minutes:g}-minute limit and "
                    f"was killed, its partial outputs removed; {fix}") from None
            except BaseException:
                _kill_group(proc)      # interrupted: never leave the tool running
                _remove(outputs)
                raise
        finally:
            with _running_lock:
                _running.pop(proc.pid, None)
    if code != 0:
        message = _last_error(out_path.read_text(errors="replace"))
        _remove(outputs)
        raise BuildError(f"{tool} ({_what(stage, seed)}) failed (exit {code}): {message}; "
                         f"see {out_path}")
    return time.monotonic() - start


# ---- progress ----

#: where ``emit`` sends events outside a Dask worker (the ``Progress`` entered last)
_local_sink = None


def emit(job: str, stage: str, state: str, **info):
    """Report that ``stage`` of ``job`` has ``state`` ("start", "done" or "failed")."""
    event = {"job": job, "stage": stage, "state": state, "time": time.time(), **info}
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        worker = None
    if worker is not None:
        worker.log_event(EVENT_TOPIC, event)
    elif _local_sink is not None:
        _local_sink(event)


class Progress:
    """Which job is in which stage, and for how long, on ``stream`` (stderr).

    On a terminal, one tqdm line per job, redrawn every second; otherwise one plain line per
    stage start and end (logs stay readable).
    """

    def __init__(self, stream=None, *, live: bool | None = None):
        self.stream = sys.stderr if stream is None else stream
        self.live = self.stream.isatty() if live is None else live
        self.start = time.time()
        self._lock = threading.Lock()
        self._jobs = {}        # job -> {"start": t, "stages": {stage: t}, "state": str}
        self._bars = {}
        self._stop = threading.Event()
        self._ticker = None

    def __call__(self, event):
        with self._lock:
            job = self._jobs.setdefault(event["job"], {"start": event["time"], "stages": {},
                                                       "state": "running"})
            stage, state = event["stage"], event["state"]
            if state == "start":
                job["stages"][stage] = event["time"]
            else:
                began = job["stages"].pop(stage, event["time"])
                if stage == "finish" or (state == "failed" and stage in ("prepare", "synth")):
                    job["state"] = "done" if state == "done" else "failed"
            if self.live:
                self._draw(event["job"])
            else:
                elapsed = event["time"] - self.start
                took = "" if state == "start" else f" after {event['time'] - began:.0f} s"
                print(f"[{elapsed:7.0f} s] {event['job']}: {stage} {state}{took}",
                      file=self.stream, flush=True)

    def _line(self, name):
        job = self._jobs[name]
        stages = ", ".join(job["stages"]) or ("done" if job["state"] == "done" else
                                              "failed" if job["state"] == "failed"
                                              else "queued")
        return f"{name}: {stages}"

    def _draw(self, name):
        from tqdm import tqdm

        if name not in self._bars:
            self._bars[name] = tqdm(total=None, file=self.stream, position=len(self._bars),
                                    bar_format="{desc} [{elapsed}]", leave=True)
            self._bars[name].start_t = self._jobs[name]["start"]
        bar = self._bars[name]
        bar.set_description_str(self._line(name), refresh=True)
        if self._jobs[name]["state"] != "running":
            bar.close()

    def _tick(self):
        while not self._stop.wait(1.0):
            with self._lock:
                for name, bar in self._bars.items():
                    if self._jobs[name]["state"] == "running":
                        bar.refresh()

    def __enter__(self):
        global _local_sink
        _local_sink = self
        if self.live:
            self._ticker = threading.Thread(target=self._tick, daemon=True)
            self._ticker.start()
        return self

    def __exit__(self, *exc):
        global _local_sink
        _local_sink = None
        self._stop.set()
        with self._lock:
            for bar in self._bars.values():
                bar.close()
        return False


# ---- the Dask cluster and the job graph ----

def _distributed():
    try:
        import distributed
    except ImportError:
        raise InputError(f"parallel seeds, --sweep and --scheduler run on Dask "
                         f"(dask.distributed), which is not installed: "
                         f"pip install -e '.[{DASK_EXTRA}]'") from None
    return distributed


def default_workers() -> int:
    """Concurrent tool runs of the default ``LocalCluster``: this machine's cores (each
    nextpnr and yosys run is single-threaded)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


class connect:
    """``with connect(scheduler, workers) as client``: a ``distributed.Client`` on the
    scheduler at ``scheduler`` (an address), or on a new in-process ``LocalCluster`` with one
    worker of ``workers`` threads (default ``default_workers()``). The tools run as
    subprocesses, so threads run them in parallel; ``processes=False`` keeps the cluster
    light (no worker processes to start and import into)."""

    def __init__(self, scheduler: str | None = None, workers: int | None = None):
        self.scheduler, self.workers = scheduler, workers
        self.cluster = self.client = None

    def __enter__(self):
        import logging

        distributed = _distributed()
        if self.scheduler is not None:
            try:
                self.client = distributed.Client(self.scheduler, timeout=SCHEDULER_CONNECT_S)
            except (OSError, ValueError, TypeError) as exc:
                why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise InputError(f"cannot reach the Dask scheduler at {self.scheduler!r} "
                                 f"({why}); "
                                 f"start one (dask scheduler) or leave out --scheduler to build "
                                 f"on this machine") from None
        else:
            self.cluster = distributed.LocalCluster(
                n_workers=1, threads_per_worker=self.workers or default_workers(),
                processes=False, dashboard_address=":0", silence_logs=logging.CRITICAL)
            self.client = distributed.Client(self.cluster)
        return self.client

    def __exit__(self, *exc):
        kill_running()
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()
        return False


def _call(function, kwargs):
    return function(**kwargs)


def run_builds(client, jobs, *, progress=None, stages=None):
    """Submit ``jobs`` as one job graph to ``client``; return ``[(result, error), ...]`` in
    ``jobs``' order (``error`` a one-line message, or None).

    ``jobs``: a list of ``(name, options, seeds)``; each job is ``prepare(job=name,
    **options)`` -> ``synth(spec)`` -> ``pnr(spec, seed)`` for each of ``seeds`` (in parallel)
    -> ``finish(spec, runs)``. ``stages``: the four stage functions (default
    ``boards.build``'s; tests pass cheap stand-ins). A failure of one job does not stop the
    others. ``progress`` (a ``Progress``) receives the stages' events.
    """
    if stages is None:
        from . import build

        stages = (build.prepare_build, build.synthesize, build.place_route, build.finish_build)
    prepare, synth, pnr, finish = stages
    _distributed()
    if progress is not None:
        client.subscribe_topic(EVENT_TOPIC, lambda event: progress(event[1]))
    finals = []
    for index, (name, options, seeds) in enumerate(jobs):
        key = f"{name}-{index}"
        spec = client.submit(_call, prepare, {"job": name, **options}, key=f"prepare-{key}")
        synthesized = client.submit(synth, spec, key=f"synth-{key}")
        runs = [client.submit(pnr, synthesized, seed, key=f"pnr-{key}-seed-{seed}")
                for seed in seeds]
        finals.append(client.submit(finish, synthesized, runs, key=f"finish-{key}"))
    results = []
    try:
        for future in finals:
            try:
                results.append((future.result(), None))
            except (TernedgeError, ValueError) as exc:
                results.append((None, str(exc)))
            except (RuntimeError, OSError) as exc:
                results.append((None, f"{type(exc).__name__}: {exc}"))
    finally:
        if progress is not None:
            time.sleep(0.2)           # let the last events arrive
            client.unsubscribe_topic(EVENT_TOPIC)
    return results
