"""keras-tuner's distributed mode with timeouts, so that no process waits forever, and its state
files written crash-safe; the one module that uses keras-tuner's private API (:data:`PRIVATE_API`).

Roles come from keras-tuner's environment variables (``KERASTUNER_ORACLE_IP``,
``KERASTUNER_ORACLE_PORT``, ``KERASTUNER_TUNER_ID``): the chief (an id containing
``chief``) serves the oracle over gRPC (:func:`serve`) until every trial has ended and
every worker that asked for trials has been told the search is over (at most `grace`
seconds after the last trial ended), or until `timeout` seconds have passed. A worker's
oracle is keras-tuner's ``OracleClient`` made by :func:`worker_client`: every call to the
chief times out after `timeout` seconds (instead of an hour), and an IDLE answer is
followed by a pause of `poll` seconds (keras-tuner asks again at once, in a busy loop).

:func:`check_private_api` resolves every private name this module uses and raises
:class:`ImportError` naming the first one a keras-tuner release has moved or removed.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import time
from concurrent import futures
from typing import Any

import grpc
import keras_tuner

from kerasnas import io
from kerasnas.errors import RunError, SettingError

__all__ = [
    "PRIVATE_API",
    "ChiefLost",
    "ChiefUnreachable",
    "DistributedError",
    "check_private_api",
    "chief_address",
    "role",
    "safe_state_files",
    "serve",
    "wait_for_chief",
    "worker_client",
]

# every private keras-tuner name used here: module path, then attribute path
PRIVATE_API: tuple[tuple[str, str], ...] = (
    ("keras_tuner.src.protos", "get_service_grpc"),
    ("keras_tuner.src.distribute.oracle_chief", "OracleServicer"),
    ("keras_tuner.src.distribute.oracle_client", "OracleClient"),
    ("keras_tuner.src.distribute.oracle_client", "OracleClient.create_trial"),
    ("keras_tuner.src.distribute.utils", "has_chief_oracle"),
    ("keras_tuner.src.distribute.utils", "is_chief_oracle"),
    ("keras_tuner.src.utils", "save_json"),
    ("keras_tuner.src.utils", "load_json"),
)
# private attributes of keras-tuner objects used here
PRIVATE_ATTRIBUTES = ("Oracle._retry_queue", "OracleClient._oracle", "OracleClient.stub")


class DistributedError(RunError):
    """A distributed search could not finish: the message says which process and why."""

    exit_code = 1


class ChiefUnreachable(DistributedError):
    """A worker got no answer from the chief oracle within its timeout."""


@functools.cache
def _private(module: str, attribute: str) -> Any:
    """keras-tuner's private `module`.`attribute`; ImportError naming it when missing."""
    try:
        obj: Any = importlib.import_module(module)
        for part in attribute.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        raise ImportError(
            f"keras-tuner {keras_tuner.__version__} has no {module}.{attribute}, which "
            f"kerasnas' distributed search uses ({e}); install a keras-tuner release that "
            "kerasnas supports (setup.py)"
        ) from None
    return obj


def check_private_api() -> None:
    """Resolves every name of :data:`PRIVATE_API`; ImportError naming the first missing one."""
    for module, attribute in PRIVATE_API:
        _private(module, attribute)


def role() -> str | None:
    """None (one process), ``"chief"`` or ``"worker"``, from keras-tuner's environment
    variables; SettingError when they are incomplete."""
    try:
        if not _private("keras_tuner.src.distribute.utils", "has_chief_oracle")():
            return None
    except RuntimeError as e:  # keras-tuner names the missing variable
        raise SettingError(str(e).replace('"', "")) from None
    is_chief = _private("keras_tuner.src.distribute.utils", "is_chief_oracle")()
    return "chief" if is_chief else "worker"


def safe_state_files() -> None:
    """Makes keras-tuner's state files (``oracle.json``, ``trial.json``, build configs) crash
    safe: each is written to a temporary file and renamed into place, so a killed search
    leaves the previous complete file (keras-tuner writes them in place), and a file that
    cannot be parsed is a SettingError naming it instead of a bare JSON error. Replaces
    ``keras_tuner.src.utils.save_json``/``load_json``, which keras-tuner looks up at each
    call; idempotent."""
    utils = importlib.import_module("keras_tuner.src.utils")
    save, load = (
        _private("keras_tuner.src.utils", "save_json"),
        _private("keras_tuner.src.utils", "load_json"),
    )
    if getattr(utils.save_json, "kerasnas", False):
        return

    def save_json(path: str, obj: Any) -> str:
        if "://" in str(path):  # a remote filesystem: keras-tuner's own writer
            return save(path, obj)
        text = json.dumps(obj)
        io.write_text(path, text)
        return text

    def load_json(path: str) -> Any:
        try:
            return load(path)
        except ValueError as e:  # json.JSONDecodeError
            raise SettingError(
                f"{{resume}}: keras-tuner's state file {path} is damaged ({e}); "
                "{overwrite} starts afresh"
            ) from None

    save_json.kerasnas = load_json.kerasnas = True
    utils.save_json, utils.load_json = save_json, load_json


def chief_address() -> str:
    """``host:port`` of the chief oracle."""
    return f"{os.environ['KERASTUNER_ORACLE_IP']}:{os.environ['KERASTUNER_ORACLE_PORT']}"


def wait_for_chief(timeout: float) -> None:
    """Blocks until the chief oracle accepts connections; ChiefUnreachable after `timeout`."""
    channel = grpc.insecure_channel(chief_address())
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout)
    except grpc.FutureTimeoutError:
        raise ChiefUnreachable(
            f"worker {os.environ['KERASTUNER_TUNER_ID']}: no chief at {chief_address()} "
            f"within {timeout:g} s"
        ) from None
    finally:
        channel.close()


class _TimeoutStub:
    """The chief's gRPC stub with every call's timeout replaced by ours."""

    def __init__(self, stub: Any, timeout: float):
        self._stub = stub
        self._timeout = timeout

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._stub, name)

        def call(request: Any, **kwargs: Any) -> Any:
            kwargs["timeout"] = self._timeout
            return method(request, **kwargs)

        return call


@functools.cache
def _worker_client_class() -> type:
    base = _private("keras_tuner.src.distribute.oracle_client", "OracleClient")

    class WorkerClient(base):
        """keras-tuner's ``OracleClient`` with a timeout per call and a pause after IDLE."""

        def __init__(self, oracle: keras_tuner.Oracle, timeout: float, poll: float):
            super().__init__(oracle)
            self.stub = _TimeoutStub(self.stub, timeout)
            self._poll = poll

        def create_trial(self, tuner_id: str) -> keras_tuner.engine.trial.Trial:
            trial = super().create_trial(tuner_id)
            if trial.status == keras_tuner.engine.trial.TrialStatus.IDLE:
                time.sleep(self._poll)
            return trial

        def heartbeat(self, trial_id: str) -> None:
            """Tells the chief this worker still runs `trial_id` (a GetTrial call, which
            the chief's :func:`serve` records); ChiefLost when the chief does not answer."""
            try:
                self.get_trial(trial_id)
            except grpc.RpcError as e:
                raise ChiefLost(e.code().name) from None

    return WorkerClient


class ChiefLost(RunError, keras_tuner.errors.FatalError):
    """A worker's heartbeat got no answer: the search stops (keras-tuner does not record
    a fatal error as a failed trial). The message is the gRPC status."""


def worker_client(oracle: Any, timeout: float, poll: float) -> Any:
    """A worker's oracle with our timeouts (see the module doc). `oracle` is the tuner's
    oracle: keras-tuner wraps the real one in an ``OracleClient`` in a worker; anything
    else is returned unchanged."""
    base = _private("keras_tuner.src.distribute.oracle_client", "OracleClient")
    if not isinstance(oracle, base):
        return oracle
    return _worker_client_class()(oracle._oracle, timeout, poll)


def _search_done(oracle: keras_tuner.Oracle, servicer: Any) -> bool:
    started_all = oracle.max_trials is not None and len(oracle.trials) >= oracle.max_trials
    return (
        (servicer.stop_triggered or started_all)
        and not oracle.ongoing_trials
        and not oracle._retry_queue
    )


def _record_activity(servicer: Any, seen: dict[str, float]) -> None:
    """Wraps the servicer's trial calls so that ``seen[trial_id]`` is the monotonic time of
    the last call about that trial (a worker's heartbeat is a GetTrial call), and so that a
    worker asking for a trial once every trial has been handed out is told to wait (IDLE),
    not to stop, while other workers still run theirs: one of those may die and its trial
    come back (:func:`_requeue_silent`)."""
    oracle = servicer.oracle
    trial_module = keras_tuner.engine.trial

    def wrap(name: str) -> None:
        method = getattr(servicer, name)

        def call(request: Any, context: Any) -> Any:
            response = method(request, context)
            if name == "CreateTrial" and _wait_instead_of_stop(oracle, response.trial):
                servicer.stop_triggered = False
                oracle.tuner_ids.add(request.tuner_id)
                response.trial.status = trial_module.TrialStatus.to_proto(
                    trial_module.TrialStatus.IDLE
                )
                return response
            trial = response.trial if name == "CreateTrial" else getattr(request, "trial", None)
            trial_id = trial.trial_id if trial is not None else request.trial_id
            if trial_id:
                seen[trial_id] = time.monotonic()
            return response

        setattr(servicer, name, call)

    for name in ("CreateTrial", "UpdateTrial", "EndTrial", "GetTrial"):
        wrap(name)


@keras_tuner.synchronized
def _wait_instead_of_stop(oracle: keras_tuner.Oracle, trial: Any) -> bool:
    """True when `trial` (a proto) says STOPPED but other trials are still running."""
    stopped = keras_tuner.engine.trial.TrialStatus.to_proto(
        keras_tuner.engine.trial.TrialStatus.STOPPED
    )
    return trial.status == stopped and bool(oracle.ongoing_trials or oracle._retry_queue)


@keras_tuner.synchronized
def _requeue_silent(oracle: keras_tuner.Oracle, seen: dict[str, float], limit: float) -> list:
    """Hands the trials whose worker has been silent for over `limit` seconds back to the
    oracle's retry queue (another worker gets them) and forgets those workers; returns the
    trial ids. Runs under the oracle's lock."""
    now = time.monotonic()
    requeued = []
    for tuner_id, trial in list(oracle.ongoing_trials.items()):
        if now - seen.get(trial.trial_id, now) > limit:
            oracle.ongoing_trials.pop(tuner_id)
            oracle.tuner_ids.discard(tuner_id)
            oracle._retry_queue.append(trial.trial_id)
            requeued.append(trial.trial_id)
    return requeued


def serve(
    oracle: keras_tuner.Oracle,
    save: Any,
    timeout: float,
    grace: float,
    silence: float | None = None,
    log: Any = print,
) -> bool:
    """The chief: serves `oracle` until the search is done and the workers are told, or
    until `timeout` seconds; `save()` is called before and after. A trial whose worker has
    not been heard of for `silence` seconds (default `timeout`; workers report after every
    epoch) is handed to another worker. Returns True when it timed out."""
    address = chief_address()
    servicer = _private("keras_tuner.src.distribute.oracle_chief", "OracleServicer")(oracle)
    seen: dict[str, float] = {}
    _record_activity(servicer, seen)
    silence = timeout if silence is None else silence
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    grpc_service = _private("keras_tuner.src.protos", "get_service_grpc")()
    grpc_service.add_OracleServicer_to_server(servicer, server)
    try:
        port = server.add_insecure_port(address)
    except RuntimeError:
        port = 0
    if not port:
        raise DistributedError(f"chief: cannot listen on {address}")
    save()
    server.start()
    deadline = time.monotonic() + timeout
    done_at = None
    try:
        while True:
            time.sleep(0.1)
            for trial_id in _requeue_silent(oracle, seen, silence):
                log(
                    f"chief: trial {trial_id}: no word from its worker for {silence:g} s; "
                    "handed out again"
                )
            now = time.monotonic()
            if _search_done(oracle, servicer):
                done_at = done_at or now
                if not oracle.tuner_ids or now - done_at > grace:
                    return False
            else:
                done_at = None
            if now > deadline:
                return True
    finally:
        server.stop(grace=1.0).wait()
        save()
