import pytest

from segue.errors import ConfigError
from segue.settings import load_settings


def test_defaults_then_file_then_env_then_overrides(tmp_path):
    config = tmp_path / "segue.yaml"
    config.write_text("port: 9000\nsources:\n  - name: default\n    write_key: from-file\n")
    env = {"SEGUE_PORT": "9100", "SEGUE_WRITE_KEY": "from-env", "SEGUE_DATA": "/d"}
    s = load_settings(config, env, {"port": 9200, "host": None})
    assert s.port == 9200
    assert s.host == "127.0.0.1"
    assert s.data == "/d"
    assert [(x.name, x.write_key) for x in s.sources] == [("default", "from-env")]
    assert s.identity.limits == {"user_id": 1}


def test_every_problem_is_reported(tmp_path):
    config = tmp_path / "segue.yaml"
    config.write_text("sources:\n  - {name: a}\n  - {name: a}\nmax_message_bytes: 999999999\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(config, {})
    assert len(caught.value.problems) == 2
    config.write_text("prot: 1\n")
    with pytest.raises(ConfigError, match="prot"):
        load_settings(config, {})


def test_overload_section_partial_budgets_and_every_problem(tmp_path):
    config = tmp_path / "segue.yaml"
    config.write_text("overload:\n  decide: {max_in_flight: 8}\n  log_backlog: 500\n")
    s = load_settings(config, {})
    assert (s.overload.decide.max_in_flight, s.overload.decide.queue) == (8, 32)
    assert s.overload.collect.max_in_flight == 32  # the other budgets keep their defaults
    assert s.overload.log_backlog == 500
    config.write_text(
        "overload:\n  retry_after_s: 0\n  queue_target_ms: 500\n"
        "  admin: {max_in_flight: 0}\n  log_stall_s: 0\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(config, {})
    assert [p.split()[0] for p in caught.value.problems] == [
        "overload.retry_after_s",
        "overload.queue_target_ms",
        "overload.admin:",
        "overload.log_stall_s",
    ]
