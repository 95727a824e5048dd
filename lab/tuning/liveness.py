"""Which worker of a distributed search is alive, and what becomes of the trial of one that is not.

keras-tuner's calls name the worker only when it asks for a trial (CreateTrial); while it trains, nothing it
sends says who it is. So each worker also calls Beat, a method of our own served beside keras-tuner's
OracleServicer on the chief's port, with its tuner ID and its trial. On the chief (`Requeueing`, an oracle mixin):

- a trial whose worker has been silent for `silence` seconds goes back to keras-tuner's retry queue, which
  create_trial serves first; the next worker trains it again from the checkpoints in its trial folder;
- a worker asking for a trial while other workers' trials run is answered IDLE (keras-tuner's "ask again"), not
  STOPPED: any of those trials may come back to the queue, so it waits, polling, instead of ending;
- the silent worker, back with the same ID, gets the next trial from the queue or a new one: its old trial is no
  longer its own (keras-tuner would give it back, and two workers would train it);
- a result that arrives for a trial already ended is ignored (a worker also drops its own results when the chief
  says the trial is no longer its, see `Requeueable`).
"""
from __future__ import annotations

import json
import threading
import time

from core.frameworks import kt

SERVICE, METHOD = "lab.tuning.Liveness", "Beat"
HEARTBEAT_S = 10  # a worker's sign of life to the chief, at most this far apart
POLL_S = 2.0  # how often a waiting worker asks the chief again
MAX_REQUEUES = 3  # a trial whose workers fell silent this many times fails instead of killing a fourth


def beat_interval(silence: float) -> float:
    """Several beats within the silence that requeues a trial, so that one late beat does not."""
    return min(HEARTBEAT_S, silence / 4)


class Requeueing:
    """Oracle mixin, before _Bookkeeping: named heartbeats, the requeue of a silent worker's trial, and waiting
    workers. `clock` is time.monotonic, or a test's fake. `silence` None: never requeue (a search in one process)."""

    clock = staticmethod(time.monotonic)

    def init_liveness(self, silence: float | None) -> None:
        self.silence = silence
        self.seen: dict[str, float] = {}  # tuner ID -> its last call
        self.retried: dict[str, list[str]] = {}  # trial ID -> the workers that fell silent while training it

    @kt.synchronized
    def beat(self, tuner_id: str, trial_id: str | None) -> bool:
        """A worker's sign of life; whether `trial_id` (if given) is still its own."""
        self.seen[tuner_id] = self.clock()
        self.last_contact = time.monotonic()  # _Bookkeeping's: the chief's last resort when every worker is gone
        held = self.ongoing_trials.get(tuner_id)
        return trial_id is None or (held is not None and held.trial_id == trial_id)

    @kt.synchronized
    def create_trial(self, tuner_id):
        self.requeue_silent()  # before the caller counts as seen: a worker back from the dead lost its trial
        self.seen[tuner_id] = self.clock()
        trial = super().create_trial(tuner_id)
        if trial.status == kt.engine.trial.TrialStatus.STOPPED and self._may_come_back(tuner_id):
            self.tuner_ids.add(tuner_id)  # keras-tuner forgets a worker it told to stop
            trial.status = kt.engine.trial.TrialStatus.IDLE
        return trial

    def _may_come_back(self, tuner_id: str) -> bool:
        """Whether another worker's running trial may still come back to the queue (the search has not stopped
        for time or failures, which end it whatever runs)."""
        if self.failed_out or self.stopped_for_time:
            return False
        return any(worker != tuner_id for worker in self.ongoing_trials)

    def requeue_silent(self) -> None:
        if self.silence is None:
            return
        now = self.clock()
        for tuner_id, trial in list(self.ongoing_trials.items()):
            quiet = now - self.seen.setdefault(tuner_id, now)  # unseen (a reloaded chief): from now
            if quiet > self.silence:
                self._requeue(tuner_id, trial, quiet)

    def _requeue(self, tuner_id: str, trial, quiet: float) -> None:
        del self.ongoing_trials[tuner_id]
        self.tuner_ids.discard(tuner_id)  # the chief does not wait for it at the end; it is added back if it calls
        self._started.pop(trial.trial_id, None)  # _Bookkeeping records the next worker and its time
        lost = self.retried.setdefault(trial.trial_id, [])
        lost.append(tuner_id)
        if len(lost) >= MAX_REQUEUES:
            trial.status = kt.engine.trial.TrialStatus.FAILED
            trial.message = f"its workers fell silent {len(lost)} times while training it ({', '.join(lost)})"
            self.end_trial(trial)
            return
        self._retry_queue.append(trial.trial_id)
        print(f"chief: {tuner_id} silent for {quiet:.0f} s; its trial {trial.trial_id} goes back to the queue",
              flush=True)
        self.save()

    @kt.synchronized
    def update_trial(self, trial_id, metrics, step=0):
        if trial_id in self.end_order:  # late: the trial was requeued and another worker ended it
            return self.trials[trial_id]
        return super().update_trial(trial_id, metrics, step=step)

    @kt.synchronized
    def end_trial(self, trial):
        if trial.trial_id in self.end_order:
            print(f"chief: a late result for trial {trial.trial_id}, which has ended, is ignored", flush=True)
            return
        if trial.trial_id in self._retry_queue:  # a requeued trial that its silent worker finished after all
            self._retry_queue.remove(trial.trial_id)
        super().end_trial(trial)

    def get_state(self):
        return {**super().get_state(), "retried": self.retried}

    def set_state(self, state):
        super().set_state(state)
        self.retried.update(state.get("retried", {}))


def serve_beats(server, oracle) -> None:
    """Beat on the chief's gRPC server, beside keras-tuner's OracleServicer."""
    import grpc

    def beat(request: dict, context) -> dict:
        return {"holds": oracle.beat(request["tuner_id"], request.get("trial_id"))}

    handler = grpc.unary_unary_rpc_method_handler(beat, request_deserializer=_decode, response_serializer=_encode)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {METHOD: handler}),))


class Heartbeat:
    """A worker's Beat: every `interval` s in a thread while it searches, and on demand (`holds`)."""

    def __init__(self, address: str, tuner_id: str, interval: float):
        import grpc

        self.tuner_id, self.interval, self.trial_id = tuner_id, interval, None
        self.channel = grpc.insecure_channel(address)
        self.call = self.channel.unary_unary(f"/{SERVICE}/{METHOD}", request_serializer=_encode,
                                             response_deserializer=_decode)
        self.stop = threading.Event()

    def holds(self, trial_id: str | None) -> bool:
        """Whether the chief still counts `trial_id` as this worker's; True when it cannot say (restarting)."""
        import grpc

        try:
            return self.call({"tuner_id": self.tuner_id, "trial_id": trial_id}, timeout=30)["holds"]
        except (grpc.RpcError, ValueError):  # ValueError: the channel closed as the search ended
            return True  # the worker's own calls wait for the chief, or say it is gone

    def __enter__(self):
        def beat():
            warned = None
            while not self.stop.wait(self.interval):
                trial_id = self.trial_id
                if not self.holds(trial_id) and warned != trial_id:
                    warned = trial_id
                    print(f"worker {self.tuner_id}: the chief gave trial {trial_id} to another worker while this "
                          "one was silent; its result here will be dropped", flush=True)

        threading.Thread(target=beat, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.channel.close()


class Requeueable:
    """A worker's oracle client: polls while the chief answers IDLE, tells the heartbeat its trial, and drops the
    results of a trial that the chief has meanwhile given to another worker."""

    def __init__(self, client, heartbeat: Heartbeat):
        self.client, self.heartbeat = client, heartbeat

    def __getattr__(self, name):
        return getattr(self.client, name)

    def create_trial(self, tuner_id):
        trial = self.client.create_trial(tuner_id)
        running = trial.status == kt.engine.trial.TrialStatus.RUNNING
        self.heartbeat.trial_id = trial.trial_id if running else None
        if trial.status == kt.engine.trial.TrialStatus.IDLE:
            time.sleep(POLL_S)
        return trial

    def update_trial(self, trial_id, metrics, step=0):
        if self.heartbeat.holds(trial_id):
            return self.client.update_trial(trial_id, metrics, step=step)
        return None  # keras-tuner's tuner does not read it

    def end_trial(self, trial):
        if self.heartbeat.holds(trial.trial_id):
            return self.client.end_trial(trial)
        print(f"worker {self.heartbeat.tuner_id}: trial {trial.trial_id} went to another worker while this one was "
              "silent; its result here is dropped", flush=True)


def _encode(message: dict) -> bytes:
    return json.dumps(message).encode()


def _decode(data: bytes) -> dict:
    return json.loads(data)
