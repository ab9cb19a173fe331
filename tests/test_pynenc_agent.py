"""The pynenc agent's setting (proto/pynenc_agent.py), fast and without pynenc: TASKTRAIL_AGENT names
tasktrail's web address or switches the agent on from TASKTRAIL_ENDPOINT's host; a wrong value is said
clearly and starts no agent, without stopping the app. The live agent: tests/test_commands_pynenc.py."""
import logging
from types import SimpleNamespace

import pytest

from tasktrail.proto import pynenc_agent
from tasktrail.proto.pynenc_agent import agent_url


@pytest.mark.parametrize("setting", [None, "", "off", "0", "false", "No"])
def test_unset_or_off_starts_no_agent(setting):
    assert agent_url(setting, "http://127.0.0.1:4317") is None


@pytest.mark.parametrize("setting, endpoint, url", [
    ("http://tasktrail:9000/", None, "http://tasktrail:9000"),
    ("https://tt.example.com/base", "http://x:4317", "https://tt.example.com/base"),
    ("on", "http://10.0.0.5:4317", "http://10.0.0.5:8000"),
    ("true", "127.0.0.1:4317", "http://127.0.0.1:8000"),          # a gRPC endpoint written without a scheme
    ("1", "http://[::1]:4318", "http://[::1]:8000"),
])
def test_the_web_address(setting, endpoint, url):
    assert agent_url(setting, endpoint) == url


@pytest.mark.parametrize("setting, endpoint, message", [
    ("on", None, "TASKTRAIL_ENDPOINT, which is unset"),
    ("tasktrail:8000", "http://x:4317", "must be tasktrail's web address"),
    ("maybe", "http://x:4317", "must be tasktrail's web address"),
])
def test_a_wrong_setting_is_named(setting, endpoint, message):
    with pytest.raises(ValueError, match=message):
        agent_url(setting, endpoint)


def test_a_wrong_setting_is_logged_and_the_app_goes_on(monkeypatch, caplog):
    monkeypatch.setenv("TASKTRAIL_AGENT", "tasktrail:8000")
    with caplog.at_level(logging.ERROR, logger="tasktrail.pynenc"):
        assert pynenc_agent.install(SimpleNamespace(endpoint="http://x:4317", token=None)) is None
    assert "tasktrail agent not started: TASKTRAIL_AGENT must be tasktrail's web address" in caplog.text
