"""HiGHS MILP solves in a child process, so a deadline holds even where HiGHS does not look at
its clock.

Measured on issue 12's 474-pool model (27,403 columns, HiGHS 1.16): after feasibility jump finds
a plan, conflict propagation in the root node ran 21 s without checking `time_limit` (given 5 s,
HiGHS returned after 23.5 s), and its sub-MIPs did the same. The only stop that always works is
to end the process, so a large solve with a limit runs in a worker process:

- the parent sends the model (`highs.getLp()` arrays), the options and a start plan;
- the worker streams every improving plan and the dual bound as it goes;
- if the worker has not answered by the limit plus its grace, the parent kills it and keeps the
  best plan it was sent (status: time limit), and starts a new worker for the next solve.

This file is also the worker's program: run by path with `python -I`, it imports only the
standard library, numpy and highspy (not the `solver` package, which pulls in pyomo).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pickle
import queue
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import highspy
import numpy as np

# HiGHS that honours its limit returns within the grace (measured: 0.2 s past 26.7 s on 27,403
# columns); a worker that has not answered by then is killed
GRACE_S = 0.25
GRACE_SHARE = 0.02  # of the limit
# at most this share of the limit: the strategy keeps 10 % of its limit for what follows, so
# under a short limit (1 s: 0.27 s of grace) the worker is killed sooner and its plans stand
MAX_GRACE_SHARE = 0.05
MAX_FRAME_BYTES = 1 << 30  # a model of millions of nonzeros is far below it
EXIT_WAIT_S = 2.0  # for the exit code of a worker that closed its output
MIN_TIME_LIMIT_S = 0.01  # HiGHS needs a positive limit
BOUND_REPORT_INTERVAL_S = 0.25  # the worker reports a better dual bound at most this often
_HEADER = struct.Struct(">Q")
_TIME_LIMIT_STATUS = int(highspy.HighsModelStatus.kTimeLimit)
_SOLUTION_FEASIBLE = 2  # HighsInfo.primal_solution_status: 0 none, 1 infeasible, 2 feasible
_AUTO_THREADS = 0  # HiGHS's `threads` default: as many as it sees fit


@dataclass(frozen=True)
class HighsOutcome:
    """What a solve ended with: HiGHS's status and info, and the plan (column values)."""

    model_status: int  # int(highspy.HighsModelStatus)
    primal_solution_status: int  # 2: a feasible plan is in `col_value`
    objective: float | None
    dual_bound: float | None
    mip_node_count: int
    col_value: list[float] | None
    seconds: float
    killed: bool = False  # the worker overran its limit and was stopped

    @property
    def status(self) -> highspy.HighsModelStatus:
        return highspy.HighsModelStatus(self.model_status)


def model_arrays(highs: highspy.Highs) -> dict[str, Any]:
    """The model loaded in `highs` as plain arrays (what `load_model` rebuilds)."""
    lp = highs.getLp()
    matrix = lp.a_matrix_
    return {
        "num_col": lp.num_col_,
        "num_row": lp.num_row_,
        "sense": int(lp.sense_),
        "offset": lp.offset_,
        "format": int(matrix.format_),  # column-wise or row-wise (pyomo builds rows)
        "col_cost": np.asarray(lp.col_cost_, dtype=np.float64),
        "col_lower": np.asarray(lp.col_lower_, dtype=np.float64),
        "col_upper": np.asarray(lp.col_upper_, dtype=np.float64),
        "row_lower": np.asarray(lp.row_lower_, dtype=np.float64),
        "row_upper": np.asarray(lp.row_upper_, dtype=np.float64),
        "start": np.asarray(matrix.start_, dtype=np.int32),
        "index": np.asarray(matrix.index_, dtype=np.int32),
        "value": np.asarray(matrix.value_, dtype=np.float64),
        "integrality": np.asarray([int(kind) for kind in lp.integrality_], dtype=np.uint8),
    }


def load_model(highs: highspy.Highs, arrays: dict[str, Any]) -> None:
    lp = highspy.HighsLp()
    lp.num_col_ = arrays["num_col"]
    lp.num_row_ = arrays["num_row"]
    lp.sense_ = highspy.ObjSense(arrays["sense"])
    lp.offset_ = arrays["offset"]
    lp.col_cost_ = arrays["col_cost"]
    lp.col_lower_ = arrays["col_lower"]
    lp.col_upper_ = arrays["col_upper"]
    lp.row_lower_ = arrays["row_lower"]
    lp.row_upper_ = arrays["row_upper"]
    lp.a_matrix_.format_ = highspy.MatrixFormat(arrays["format"])
    lp.a_matrix_.num_col_ = arrays["num_col"]
    lp.a_matrix_.num_row_ = arrays["num_row"]
    lp.a_matrix_.start_ = arrays["start"]
    lp.a_matrix_.index_ = arrays["index"]
    lp.a_matrix_.value_ = arrays["value"]
    if len(arrays["integrality"]):
        lp.integrality_ = [highspy.HighsVarType(int(kind)) for kind in arrays["integrality"]]
    _check(highs.passModel(lp), "passModel")


def set_start(highs: highspy.Highs, col_value: list[float]) -> None:
    """Give HiGHS a plan (column values) as its first incumbent."""
    solution = highspy.HighsSolution()
    solution.col_value = col_value
    solution.value_valid = True
    highs.setSolution(solution)


def _check(status: highspy.HighsStatus, what: str) -> None:
    if status == highspy.HighsStatus.kError:
        raise RuntimeError(f"HiGHS {what} failed")


def _write_frame(stream: BinaryIO, message: Any) -> None:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(body)) + body)
    stream.flush()


def _read_frame(stream: BinaryIO) -> Any:
    """The next message, or None at the end of the stream."""
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack(header)
    if size > MAX_FRAME_BYTES:
        raise ValueError(f"a frame of {size} bytes (at most {MAX_FRAME_BYTES})")
    body = stream.read(size)
    if len(body) < size:
        return None
    return pickle.loads(body)


# --- the worker process ---------------------------------------------------------------------


_scheduler_threads: list[int] = []  # the thread count HiGHS's scheduler runs with, once started


def _use_threads(threads: int) -> None:
    """Restart HiGHS's thread scheduler if it runs with another thread count.

    HiGHS starts one scheduler per process at its first run and refuses (an error status) a run
    asking for another count; a reused worker may be asked for 1 thread, then the default.
    """
    if _scheduler_threads and _scheduler_threads[0] != threads:
        highspy.Highs.resetGlobalScheduler(True)
    _scheduler_threads[:] = [threads]


def _solve_request(request: dict[str, Any], send: Any) -> dict[str, Any]:
    """Solve one request in this process (HighsOutcome fields), sending progress messages."""
    started = time.perf_counter()
    _use_threads(int(request["options"].get("threads", _AUTO_THREADS)))
    highs = highspy.Highs()
    _check(highs.setOptionValue("output_flag", False), "setOptionValue")
    load_model(highs, request["model"])
    for name, value in request["options"].items():
        _check(highs.setOptionValue(name, value), f"option {name}")
    if request["ends_at"] is not None:
        # the limit counts from the parent's send (CLOCK_MONOTONIC: one clock for every process)
        time_left_s = max(MIN_TIME_LIMIT_S, request["ends_at"] - time.monotonic())
        _check(highs.setOptionValue("time_limit", time_left_s), "option time_limit")
    if request.get("start") is not None:
        set_start(highs, list(request["start"]))
    last_bound = {"value": -highspy.kHighsInf, "at": 0.0}

    def improving(event: Any) -> None:
        data = event.data_out
        send(("plan", float(data.objective_function_value), list(data.mip_solution)))

    def interrupt(event: Any) -> None:
        bound = float(event.data_out.mip_dual_bound)
        now = time.perf_counter()
        if bound > last_bound["value"] and now - last_bound["at"] >= BOUND_REPORT_INTERVAL_S:
            last_bound.update(value=bound, at=now)
            send(("bound", bound))

    highs.cbMipImprovingSolution.subscribe(improving)
    highs.cbMipInterrupt.subscribe(interrupt)
    highs.run()
    info = highs.getInfo()
    solution = highs.getSolution()
    feasible = info.primal_solution_status == _SOLUTION_FEASIBLE
    # plain values: this module is `__main__` here, its classes do not unpickle in the parent
    return {
        "model_status": int(highs.getModelStatus()),
        "primal_solution_status": int(info.primal_solution_status),
        "objective": float(info.objective_function_value) if feasible else None,
        "dual_bound": float(info.mip_dual_bound),
        "mip_node_count": int(info.mip_node_count),
        "col_value": list(solution.col_value) if feasible else None,
        "seconds": time.perf_counter() - started,
    }


def serve(requests: BinaryIO, replies: BinaryIO) -> None:
    """Answer requests until the input ends: progress frames, then ("done", outcome)."""
    lock = threading.Lock()  # HiGHS may call back from its worker threads

    def send(message: Any) -> None:
        with lock:
            _write_frame(replies, message)

    while (request := _read_frame(requests)) is not None:
        try:
            send(("done", _solve_request(request, send)))
        except Exception as error:
            send(("error", f"{type(error).__name__}: {error}"))


def _worker_main() -> None:
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    # HiGHS prints its banner on stdout: keep the reply stream for frames only
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    serve(sys.stdin.buffer, replies)


# --- the parent side ------------------------------------------------------------------------


class WorkerError(RuntimeError):
    """The worker process failed (not a solver answer)."""


@dataclass(frozen=True)
class Request:
    """One solve for a worker: the model's arrays, HiGHS options, a start plan and a limit."""

    model: dict[str, Any]
    options: dict[str, Any]
    start: list[float] | None
    time_limit_s: float | None  # None: no limit (the worker is waited for)


def request_for(
    highs: highspy.Highs,
    options: dict[str, Any],
    start: list[float] | None,
    time_limit_s: float | None,
) -> Request:
    """A request for the model loaded in `highs` as it is now."""
    return Request(model_arrays(highs), options, start, time_limit_s)


class _Worker:
    """One worker process, with a thread that puts what it sends in the shared inbox."""

    def __init__(self, command: Sequence[str], inbox: queue.Queue[tuple[_Worker, Any]]) -> None:
        self.process = subprocess.Popen(
            list(command), stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        self.inbox = inbox
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        try:
            while (message := _read_frame(self.process.stdout)) is not None:
                self.inbox.put((self, message))
        except (OSError, ValueError, pickle.UnpicklingError) as error:
            self.inbox.put((self, ("error", f"unreadable reply: {error}")))
        finally:
            self.inbox.put((self, None))

    def alive(self) -> bool:
        return self.process.poll() is None

    def send(self, request: dict[str, Any]) -> None:
        _write_frame(self.process.stdin, request)

    def stop(self) -> None:
        if self.alive():
            self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            with contextlib.suppress(OSError):
                stream.close()


@dataclass
class _Job:
    """A request sent to one worker, and what the worker has said about it so far."""

    request: Request
    wait_until: float | None
    best: tuple[float, list[float]] | None = None
    bound: float | None = None
    outcome: HighsOutcome | None = None


WORKER_COMMAND: tuple[str, ...] = (sys.executable, "-I", str(Path(__file__).resolve()))
_workers: list[_Worker] = []
_inbox: queue.Queue[tuple[_Worker, Any]] = queue.Queue()
_worker_lock = threading.Lock()


def _ready_workers(count: int, command: Sequence[str]) -> list[_Worker]:
    """`count` live workers running `command` (stopped or foreign ones replaced)."""
    for index, worker in enumerate(_workers):
        if not worker.alive() or worker.process.args != list(command):
            worker.stop()
            _workers[index] = _Worker(command, _inbox)
    while len(_workers) < count:
        _workers.append(_Worker(command, _inbox))
    return _workers[:count]


def shutdown() -> None:
    """Stop the worker processes (started again by the next isolated solve)."""
    with _worker_lock:
        for worker in _workers:
            worker.stop()
        _workers.clear()


atexit.register(shutdown)


def solve_isolated(
    highs: highspy.Highs,
    options: dict[str, Any],
    *,
    start: list[float] | None,
    time_limit_s: float | None,
    command: Sequence[str] | None = None,
) -> HighsOutcome:
    """Solve the model loaded in `highs` in a worker, waiting at most the limit and its grace.

    A worker that has not answered in time is killed; the outcome is then a time limit with the
    best plan it sent.
    """
    request = request_for(highs, options, start, time_limit_s)
    return solve_many([request], command=command)[0]


def solve_many(
    requests: Sequence[Request], command: Sequence[str] | None = None
) -> list[HighsOutcome]:
    """Solve the requests at once, one worker each (the MIP search is mostly serial).

    Several at once share the cores: each gets its share of threads (237 pools, 80 layers,
    S = 8, the two tie searches side by side on 2 cores: 30.7 s with HiGHS's default threads,
    22.3 s with one each; one search alone is ~15 % faster with the default).
    """
    started = time.perf_counter()
    threads = max(1, _cores() // len(requests)) if len(requests) > 1 else None
    now = time.monotonic()
    jobs: dict[_Worker, _Job] = {}
    with _worker_lock:
        try:
            workers = _ready_workers(len(requests), command or WORKER_COMMAND)
        except OSError as error:  # no interpreter, no processes left, ...
            raise WorkerError(f"no HiGHS worker could start: {error}") from error
        for worker, request in zip(workers, requests, strict=True):
            limit = request.time_limit_s
            ends_at = None if limit is None else now + limit
            wait_until = None if limit is None else now + limit + grace_s(limit)
            options = dict(request.options)
            if threads is not None:
                options["threads"] = threads
            message = {
                "model": request.model,
                "options": options,
                "start": request.start,
                "ends_at": ends_at,
            }
            try:
                worker.send(message)
            except OSError as error:
                _stop_all(workers)
                raise WorkerError(f"a HiGHS worker did not take the model: {error}") from error
            jobs[worker] = _Job(request, wait_until)
        try:
            _collect(jobs, started)
        except WorkerError:
            _stop_all(workers)
            raise
    return [jobs[worker].outcome for worker in workers]


def grace_s(limit_s: float) -> float:
    """How long past its limit a worker may take to answer before it is killed."""
    return min(GRACE_S + GRACE_SHARE * limit_s, MAX_GRACE_SHARE * limit_s)


def _cores() -> int:
    """CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _collect(jobs: dict[_Worker, _Job], started: float) -> None:
    """Read the workers' messages until every job is done; kill a worker past its wait."""
    while True:
        now = time.monotonic()
        for worker, job in jobs.items():
            if job.outcome is None and job.wait_until is not None and now >= job.wait_until:
                worker.stop()  # overran: HiGHS is somewhere that does not check its clock
                job.outcome = _killed_outcome(job, time.perf_counter() - started)
        pending = [job for job in jobs.values() if job.outcome is None]
        if not pending:
            return
        waits = [job.wait_until for job in pending if job.wait_until is not None]
        try:
            worker, message = _inbox.get(timeout=min(waits) - now if waits else None)
        except queue.Empty:
            continue
        job = jobs.get(worker)
        if job is None or job.outcome is not None:
            continue  # from a worker stopped earlier
        if message is None:
            raise WorkerError(f"a HiGHS worker ended (exit {_exit_code(worker)})")
        kind = message[0]
        if kind == "done":
            job.outcome = HighsOutcome(**message[1])
        elif kind == "error":
            raise WorkerError(f"a HiGHS worker failed: {message[1]}")
        elif kind == "plan" and (job.best is None or message[1] < job.best[0]):
            job.best = (message[1], message[2])
        elif kind == "bound":
            job.bound = message[1] if job.bound is None else max(job.bound, message[1])


def _exit_code(worker: _Worker) -> int | None:
    """The exit code of a worker whose output has ended (it may take a moment to exit)."""
    try:
        return worker.process.wait(timeout=EXIT_WAIT_S)
    except subprocess.TimeoutExpired:
        return None


def _stop_all(workers: Sequence[_Worker]) -> None:
    for worker in workers:
        worker.stop()


def _killed_outcome(job: _Job, seconds: float) -> HighsOutcome:
    best, request = job.best, job.request
    if best is None and request.start is not None:
        # HiGHS takes the start as its first plan when it beats the objective bound
        objective = _objective(request.model, request.start)
        if objective < request.options.get("objective_bound", highspy.kHighsInf):
            best = (objective, request.start)
    return HighsOutcome(
        model_status=_TIME_LIMIT_STATUS,
        primal_solution_status=_SOLUTION_FEASIBLE if best is not None else 0,
        objective=None if best is None else best[0],
        dual_bound=job.bound,
        mip_node_count=0,
        col_value=None if best is None else best[1],
        seconds=seconds,
        killed=True,
    )


def _objective(arrays: dict[str, Any], col_value: list[float]) -> float:
    return float(arrays["offset"] + np.dot(arrays["col_cost"], np.asarray(col_value)))


if __name__ == "__main__":
    _worker_main()
