"""A callback used by tests that drive the real CLI in a subprocess (importable there via PYTHONPATH)."""

import os
import signal

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

    def __init__(self, step: int = 3) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step != self.step:
            return
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
