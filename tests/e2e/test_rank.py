"""Rank/Reward over HTTP against a real server: flows, deferred activation, default reward,
errors, and learning a context-dependent best action through the public API."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.e2e.server import ADMIN_KEY, PUBLISHABLE_KEY, SegueServer

pytestmark = pytest.mark.e2e

WAIT_S = 1.5
DEFAULT_REWARD = 0.25
ACTIONS = [
    {"id": "news", "features": [{"topic": "news", "length": 0.3}]},
    {"id": "sport", "features": [{"topic": "sport"}]},
    {"id": "music", "features": []},
]
CONTEXT = [{"time": "morning"}, {"user": {"tier": "gold", "age": 34}}]


@pytest.fixture(scope="module")
def rank_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SegueServer]:
    root: Path = tmp_path_factory.mktemp("segue-rank")
    config = root / "segue.yaml"
    config.write_text(
        f"rank:\n  reward_wait_s: {WAIT_S}\n  default_reward: {DEFAULT_REWARD}\n"
        "  reward_min: 0.0\n  reward_max: 1.0\n"
    )
    server = SegueServer(root / "data", args=["--config", str(config)]).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def client(rank_server: SegueServer) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {PUBLISHABLE_KEY}"}
    with httpx.Client(base_url=rank_server.url, headers=headers, timeout=30.0) as c:
        yield c


def rank(client: httpx.Client, **body: Any) -> dict[str, Any]:
    response = client.post("/v1/rank", json={"actions": ACTIONS, **body})
    assert response.status_code == 200, response.text
    return dict(response.json())


def wait_learned(client: httpx.Client, event_id: str, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        event = client.get(f"/v1/rank/{event_id}").json()
        if event["learned"] or time.monotonic() > deadline:
            return dict(event)
        time.sleep(0.05)


def test_rank_answers_a_ranking_with_probabilities_and_the_action_to_show(client):
    body = rank(client, context_features=CONTEXT, excluded_actions=["sport"])
    assert len(body["event_id"]) == 32
    ranking = body["ranking"]
    assert [r["id"] for r in ranking][-1] == "sport"
    assert {r["id"] for r in ranking} == {"news", "sport", "music"}
    assert ranking[-1]["probability"] == 0.0
    assert sum(r["probability"] for r in ranking) == pytest.approx(1.0)
    assert min(r["probability"] for r in ranking[:2]) >= 0.1  # the ε floor, 0.2 / 2
    assert body["reward_action_id"] == ranking[0]["id"] != "sport"


def test_reward_is_learned_promptly_and_the_latest_reward_wins(client):
    event_id = f"evt-{uuid.uuid4().hex}"
    body = rank(client, event_id=event_id, context_features=CONTEXT)
    assert body["event_id"] == event_id
    first = client.post(f"/v1/rank/{event_id}/reward", json={"value": 0.2})
    assert first.status_code == 200, first.text
    second = client.post(f"/v1/rank/{event_id}/reward", json={"value": 7})  # clamped
    assert second.json()["reward"] == 1.0
    event = wait_learned(client, event_id, timeout=WAIT_S * 0.9)  # before the wait is over
    assert event["learned"]
    assert event["reward"] == 1.0
    assert event["reward_action_id"] == body["reward_action_id"]
    late = client.post(f"/v1/rank/{event_id}/reward", json={"value": 0.5})
    assert late.status_code == 409
    assert late.json()["code"] == "conflict"


def test_an_activated_event_without_reward_learns_the_default_after_the_wait(client):
    event_id = rank(client, context_features=CONTEXT)["event_id"]
    time.sleep(WAIT_S * 0.5)
    assert not client.get(f"/v1/rank/{event_id}").json()["learned"]
    event = wait_learned(client, event_id, timeout=WAIT_S + 5)
    assert event["learned"]
    assert event["reward"] == DEFAULT_REWARD
    assert event["rewarded_at"] is None
    too_late = client.post(f"/v1/rank/{event_id}/reward", json={"value": 1.0})
    assert too_late.status_code == 409


def test_deferred_events_learn_only_when_activated(client):
    never = rank(client, context_features=CONTEXT, defer_activation=True)["event_id"]
    shown = rank(client, context_features=CONTEXT, defer_activation=True)["event_id"]
    assert client.post(f"/v1/rank/{never}/reward", json={"value": 1.0}).status_code == 200
    assert client.post(f"/v1/rank/{shown}/reward", json={"value": 0.75}).status_code == 200
    activated = client.post(f"/v1/rank/{shown}/activate")
    assert activated.status_code == 200
    assert activated.json()["activated"] is True
    assert wait_learned(client, shown)["reward"] == 0.75
    time.sleep(WAIT_S + 1.0)
    event = client.get(f"/v1/rank/{never}").json()
    assert (event["activated"], event["learned"]) == (False, False)
    late = client.post(f"/v1/rank/{never}/activate")
    assert late.status_code == 409


def test_errors(client, rank_server):
    event_id = rank(client)["event_id"]
    duplicate = client.post("/v1/rank", json={"event_id": event_id, "actions": ACTIONS})
    assert duplicate.status_code == 409
    assert duplicate.json()["field"] == "$.event_id"
    for path in ("/v1/rank/unknown/reward", "/v1/rank/unknown/activate", "/v1/rank/unknown"):
        kwargs: dict[str, Any] = {"json": {"value": 1.0}} if path.endswith("reward") else {}
        method = client.get if path == "/v1/rank/unknown" else client.post
        response = method(path, **kwargs)
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"
    bad = [
        ({"actions": []}, "$.actions"),
        ({"actions": [{"features": []}]}, "$.actions[0]"),
        ({"actions": [{"id": "a"}, {"id": "a"}]}, "$.actions[1].id"),
        ({"actions": ACTIONS, "excluded_actions": ["zzz"]}, "$.excluded_actions[0]"),
        ({"actions": ACTIONS, "context_features": ["morning"]}, "$.context_features[0]"),
        ({"actions": ACTIONS, "defer_activation": "yes"}, "$.defer_activation"),
        ({"actions": ACTIONS, "surprise": 1}, "$"),
    ]
    for body, field in bad:
        response = client.post("/v1/rank", json=body)
        assert response.status_code == 400, (body, response.text)
        problem = response.json()
        assert problem["field"] == field, (body, problem)
        assert problem["code"] in ("invalid_request", "invalid_input")
    not_json = client.post("/v1/rank", content=b"{nope")
    assert not_json.status_code == 400
    assert not_json.json()["code"] == "invalid_json"
    for value in ('"high"', "null", "1e999"):
        response = client.post(
            f"/v1/rank/{event_id}/reward",
            content=b'{"value": ' + value.encode() + b"}",
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 400, value
        assert response.json()["field"] == "$.value", value
    anonymous = httpx.post(rank_server.url + "/v1/rank", json={"actions": ACTIONS})
    assert anonymous.status_code == 401
    admin = httpx.post(
        rank_server.url + "/v1/rank",
        json={"actions": ACTIONS},
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
    )
    assert admin.status_code == 200


def test_learns_a_context_dependent_best_action_through_the_api(client):
    """Three segments with a different best action each; Bernoulli clicks."""
    rng = np.random.default_rng(2024)
    actions = [
        {"id": f"offer-{name}", "features": [{"offer": {"kind": name}}]}
        for name in ("discount", "bundle", "shipping")
    ]
    p_click = np.array([[0.6, 0.2, 0.1], [0.1, 0.5, 0.2], [0.2, 0.1, 0.6]])
    optimal = []
    for _ in range(1500):
        segment = int(rng.integers(3))
        context = [{"user": {"segment": f"seg-{segment}"}}, {"device": ["web", "app"][segment % 2]}]
        response = client.post("/v1/rank", json={"context_features": context, "actions": actions})
        body = response.json()
        chosen = [a["id"] for a in actions].index(body["reward_action_id"])
        optimal.append(chosen == int(np.argmax(p_click[segment])))
        clicked = rng.random() < p_click[segment, chosen]
        reward = client.post(
            f"/v1/rank/{body['event_id']}/reward", json={"value": 1.0 if clicked else 0.0}
        )
        assert reward.status_code == 200
    recent = sum(optimal[-300:]) / 300
    assert recent >= 0.7, recent
    assert recent > sum(optimal[:300]) / 300
