"""A lane: one consumer group over a source's change topics, run on its own thread.

An outage (the broker, the warehouse) is retried with backoff and nothing is committed meanwhile.
Anything else that escapes the loop is a bug in our code or a broken dependency, not bad data:
the lane stops and keeps the error, and the bridge stops loudly (nothing after the lane's last
commit was committed, so nothing is lost).
"""

from __future__ import annotations

import logging
import threading

from cdc.consume.backoff import Backoff
from cdc.consume.loop import ConsumerService
from cdc.ports import ChangeStream

log = logging.getLogger(__name__)


class Lane:
    def __init__(self, name: str, stream: ChangeStream, service: ConsumerService) -> None:
        self.name = name
        self.stream = stream
        self.service = service
        self.error: str | None = None  # the outage being retried, if any
        self.failure: BaseException | None = None  # what stopped the lane for good
        self.stopping = threading.Event()
        self.epoch = self.wanted_epoch = 0  # broker truncations seen / asked for (see cdc.truncation)
        service.stop_on(self.stopping)
        self.thread = threading.Thread(target=self._consume, name=f"{name}-consumer", daemon=True)

    def start(self) -> None:
        self.thread.start()

    @property
    def failed(self) -> bool:
        return self.failure is not None

    def _consume(self) -> None:
        backoff = Backoff()
        try:
            while not self.stopping.is_set():
                if self.epoch != self.wanted_epoch:
                    wanted = self.wanted_epoch
                    self.service.rewind()
                    self.epoch = wanted
                self.error = self.service.run_once_or_back_off(backoff, self.stopping, f"{self.name} consumer")
        except BaseException as e:  # not an outage: a bug or a broken dependency stops the lane, loudly
            self.failure = e
            log.error("%s consumer stopped: %s", self.name, e, exc_info=True)

    def stop(self, timeout: float = 30.0) -> None:
        """Let the current batch finish (or its retry give up), then close the consumer."""
        self.stopping.set()
        if self.thread.is_alive():
            self.thread.join(timeout)
        self.stream.close()
