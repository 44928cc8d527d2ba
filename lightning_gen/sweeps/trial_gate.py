"""When a sweep worker may start a trial, so that exactly ``--trials`` finish across workers and sweep processes.

Optuna's ``MaxTrialsCallback`` stops a study once ``--trials`` are done; by then the workers that finished earlier
have started extra trials. :class:`TrialGate` makes a worker whose trial ended wait while the trials in flight would
bring the study to ``--trials``: it starts the next one as soon as one of them fails, and stops when they are done.

In flight means running in a live process. A database storage knows that from Optuna's heartbeats: a killed
process's trial turns stale and Optuna re-queues it (``RetryHeartbeatStaleTrialCallback``). Optuna keeps no
heartbeats in a journal file, so there each running trial's sweep process stamps the trial's ``alive_at`` user
attribute every heartbeat, and a trial silent for two heartbeats is failed and re-queued here, through the same
Optuna callback; its retry resumes the trial's run from ``last.ckpt``.
"""

from __future__ import annotations

import subprocess
import time
from typing import Any

DONE_STATE_NAMES = ("COMPLETE", "PRUNED")  # a trial that counts towards ``--trials``
ALIVE_AT = "alive_at"  # journal storage: unix time the trial's sweep process last said it runs


class TrialGate:
    """Admit trials while the study needs them (thread-safe for one process's workers).

    Args:
        study: The study.
        trials: Trials the study needs (complete or pruned).
        heartbeat_s: Seconds between heartbeats; a trial silent for two is dead.
        poll_s: Seconds between looks at the study while waiting.
    """

    def __init__(self, study: Any, trials: int, heartbeat_s: float, poll_s: float = 1.0) -> None:
        from optuna.storages._heartbeat import is_heartbeat_enabled

        self.study, self.trials, self.heartbeat_s, self.poll_s = study, trials, heartbeat_s, poll_s
        self.optuna_heartbeats = is_heartbeat_enabled(study._storage)
        self.mine: set[int] = set()  # numbers of the trials this process started

    def admit(self, trial: Any) -> bool:
        """Whether ``trial`` (just started by a worker) should run: earlier trials in flight leave room for it."""
        self.mine.add(trial.number)
        self._beat(trial)
        return self._needed(before=trial.number)

    def after_trial(self, study: Any, trial: Any) -> None:
        """Optuna callback: wait while the trials in flight may complete the study; stop it once it is complete."""
        if not self._needed():
            study.stop()

    def wait(self, trial: Any, proc: subprocess.Popen) -> int:
        """Wait for the trial's process, stamping the trial alive every heartbeat (journal storage); its exit code."""
        while True:
            try:
                return proc.wait(timeout=self.heartbeat_s)
            except subprocess.TimeoutExpired:
                self._beat(trial)

    def _beat(self, trial: Any) -> None:
        if not self.optuna_heartbeats:
            trial.set_user_attr(ALIVE_AT, time.time())

    def _needed(self, before: int | None = None) -> bool:
        """Wait until one more trial (``before``: this one, with only earlier trials in flight) is needed, or the
        study is complete (False)."""
        while True:
            self._retry_dead()
            trials = self.study.get_trials(deepcopy=False)
            done = sum(t.state.name in DONE_STATE_NAMES for t in trials)
            in_flight = sum(
                t.state.name == "RUNNING" and (before is None or t.number < before) and self._alive(t) for t in trials
            )
            if done >= self.trials:
                return False
            if done + in_flight < self.trials:
                return True
            time.sleep(self.poll_s)

    def _alive(self, trial: Any) -> bool:
        if self.optuna_heartbeats or trial.number in self.mine:
            return True  # Optuna fails stale trials itself (below)
        stamp = trial.user_attrs.get(ALIVE_AT) or trial.datetime_start.timestamp()
        return time.time() - stamp < 2 * self.heartbeat_s

    def _retry_dead(self) -> None:
        """Fail the running trials of dead processes and queue their retries."""
        import optuna
        from optuna.exceptions import UpdateFinishedTrialError
        from optuna.storages import RetryHeartbeatStaleTrialCallback
        from optuna.trial import TrialState

        if self.optuna_heartbeats:
            optuna.storages.fail_stale_trials(self.study)
            return
        storage = self.study._storage
        for trial in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if self._alive(trial):
                continue
            try:
                if not storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):
                    continue
            except UpdateFinishedTrialError:
                continue  # another process failed it first
            RetryHeartbeatStaleTrialCallback(max_retry=3)(self.study, storage.get_trial(trial._trial_id))
