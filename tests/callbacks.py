"""A callback used by tests that drive the real CLI in a subprocess (importable there via PYTHONPATH)."""

import os
import signal
import time

import lightning as L

MARKER = "lit_vir-test: waiting for a signal at step"
SIGNALS = (signal.SIGTERM, signal.SIGINT)


class WaitForSignal(L.Callback):
    """At `step`, print `MARKER` and block until a SIGTERM or SIGINT has been handled.

    A test that sends the signal when it reads the marker then knows the run is still mid-epoch: the run
    cannot take another step before the handler (Lightning's SIGTERM flag, Python's KeyboardInterrupt) has
    run, however loaded the machine is. The handler in place is wrapped so that, once it has run, it writes
    a byte to a pipe this callback is blocked reading; no sleeping, no polling.
    """

    def __init__(self, step: int = 3, once: str | None = None) -> None:
        """`once`: a file made the first time the run blocks; while it exists, the callback does nothing (a run
        resumed from a checkpoint taken before `step` then passes it)."""
        self.step = step
        self.once = once

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step != self.step:
            return
        if self.once is not None:
            if os.path.exists(self.once):
                return
            open(self.once, "w").close()
        read_end, write_end = os.pipe()
        handlers = {number: signal.getsignal(number) for number in SIGNALS}

        def handle_then_release(number, frame) -> None:
            try:
                handlers[number](number, frame)  # may raise KeyboardInterrupt: released all the same
            finally:
                os.write(write_end, b"1")

        for number, handler in handlers.items():
            if not callable(handler):
                raise RuntimeError(f"WaitForSignal: {signal.Signals(number).name} has no Python handler ({handler})")
            signal.signal(number, handle_then_release)
        try:
            print(f"{MARKER} {self.step}", flush=True)
            os.read(read_end, 1)
        finally:
            for number, handler in handlers.items():
                signal.signal(number, handler)
            os.close(read_end)
            os.close(write_end)


class Rendezvous(L.Callback):
    """At the start of training, wait until `parties` processes have reached this point (each leaves a file named
    after its pid in `folder`): runs in several processes are then known to overlap, however loaded the machine."""

    def __init__(self, folder: str, parties: int = 2) -> None:
        self.folder = folder
        self.parties = parties

    def on_train_start(self, trainer, pl_module) -> None:
        os.makedirs(self.folder, exist_ok=True)
        open(os.path.join(self.folder, str(os.getpid())), "w").close()
        while len(os.listdir(self.folder)) < self.parties:
            time.sleep(0.1)


class FailAtStep(L.Callback):
    """Raise a RuntimeError after optimiser step `step`: a run that stops mid-epoch on an error, in process."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            raise RuntimeError(f"lit_vir-test: stopped at step {self.step}")
