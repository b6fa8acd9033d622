import pytest

from segue.core.events import to_event
from segue.errors import ConfigError, InvalidEvent
from segue.ingest.plans import TrackingPlan

ORDER = {
    "type": "object",
    "properties": {"order_id": {"type": "string"}, "total": {"type": "number", "minimum": 0}},
    "required": ["order_id"],
}


def track(event, **props):
    message = {
        "type": "track",
        "messageId": "m",
        "userId": "u",
        "event": event,
        "properties": props,
    }
    return to_event(message), message


def test_planned_event_that_breaks_its_schema_is_refused_with_the_path():
    plan = TrackingPlan("accept", {"Order Completed": ORDER})
    with pytest.raises(InvalidEvent) as caught:
        plan.apply(*track("Order Completed", order_id="1", total=-3))
    assert caught.value.code == "plan_violation"
    assert caught.value.field == "$.properties.total"


@pytest.mark.parametrize("mode", ["accept", "drop_properties"])
def test_unplanned_events_pass_unless_quarantine(mode):
    plan = TrackingPlan(mode, {"Order Completed": ORDER})
    _event, message = plan.apply(*track("Something Else", x=1))
    assert message["properties"] == {"x": 1}


def test_quarantine_mode_refuses_unplanned_events_and_properties():
    plan = TrackingPlan("quarantine", {"Order Completed": ORDER})
    with pytest.raises(InvalidEvent) as caught:
        plan.apply(*track("Something Else"))
    assert caught.value.code == "unplanned_event"
    with pytest.raises(InvalidEvent) as caught:
        plan.apply(*track("Order Completed", order_id="1", coupon="X"))
    assert caught.value.code == "unplanned_property"
    assert caught.value.field == "$.properties.coupon"


def test_drop_properties_removes_undeclared_ones_from_event_and_message():
    plan = TrackingPlan("drop_properties", {"Order Completed": ORDER})
    event, message = plan.apply(*track("Order Completed", order_id="1", total=5, coupon="X"))
    assert message["properties"] == {"order_id": "1", "total": 5}
    assert event.properties == {"order_id": "1", "total": 5}


def test_identify_traits_plan_applies_only_when_declared():
    plan = TrackingPlan("quarantine", {})
    message = {"type": "identify", "messageId": "m", "userId": "u", "traits": {"a": 1}}
    _event, out = plan.apply(to_event(message), message)
    assert out is message


def test_every_config_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as caught:
        TrackingPlan("strict", {"A": {"type": "nonsense"}})
    assert len(caught.value.problems) == 2
