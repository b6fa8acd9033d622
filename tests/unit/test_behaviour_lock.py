"""The processor's behaviour stage changes the shared item models only under their lock.

Decide reads the models on the event loop and the saver encodes them a step at a time
between the processor's events (``Decisioning._encode_models``); both take the lock, so
neither may see an event half applied.
"""

import threading
from typing import Any

from segue.core.events import Event, to_event
from segue.core.model import LogRecord
from segue.features import ItemModels
from segue.processor.behaviour import BehaviourStage

T = 1_714_521_600.0


class _Watched(ItemModels):
    """Item models that note whether the stage's lock was held at each change."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()
        self.held: list[bool] = []

    def apply_parsed(self, *args: Any, **kwargs: Any) -> Any:
        self.held.append(self.lock.locked())  # every change of the models goes through here
        return super().apply_parsed(*args, **kwargs)


def _track(name: str, **props: Any) -> Event:
    return to_event(
        {"type": "track", "messageId": "m", "userId": "u", "event": name, "properties": props}
    )


def test_folding_and_aggregate_counting_hold_the_models_lock() -> None:
    models = _Watched()
    stage = BehaviourStage(models, lock=models.lock)

    def record(offset: int) -> LogRecord:  # log offsets start at 1
        return LogRecord(offset, "web", f"m{offset}", T, "u", b"")

    landed = [
        (record(1), _track("Product Viewed", product_id="i1"), "p1", T),
        (record(2), _track("Product Viewed", product_id="i2"), "p1", T + 1),
        (
            record(3),
            _track("Order Completed", order_id="o1", products=[{"product_id": "i2"}]),
            "p1",
            T + 2,
        ),
    ]
    stage.fold({}, landed, {})
    stage.count_unattached([(_track("Product Viewed", product_id="i3"), T + 3)])
    assert models.held == [True, True, True, True]
    assert not models.lock.locked()
    assert [pid for pid, _ in models.top(3, now=T + 3)][:1] == ["i2"]
