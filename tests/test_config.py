"""ServerConfig: defaults < TOML < HARKEN_* < command line; errors name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from harken.config import DEFAULT_THINK, ModelMap, ServerConfig, load_config, replace
from harken.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "harken.toml"
    path.write_text(text)
    return path


def test_defaults() -> None:
    config = load_config()
    assert config == ServerConfig()
    assert config.port == 8765 and config.host == "127.0.0.1"
    assert config.max_sessions == 1000 and config.max_frame_bytes == 1 << 20
    assert config.hard_frame_bytes > config.max_frame_bytes
    assert config.providers == "embedded" and config.open_mode
    assert config.idle_timeout == 30 and config.function_call_timeout == 60
    assert config.max_duration == 7200 and config.duration_warning == 6900
    assert ("deepgram/aura-*", "tts-default") in config.models.speak


def test_precedence(tmp_path: Path) -> None:
    path = write(tmp_path, 'port = 1000\nhost = "0.0.0.0"\nstrict = true\nidle_timeout = 5\n')
    env = {"HARKEN_PORT": "2000", "HARKEN_IDLE_TIMEOUT": "7.5", "PATH": "/bin"}
    config = load_config(path, env, {"port": 3000, "host": None})
    assert config.port == 3000  # command line wins
    assert config.host == "0.0.0.0"  # None on the command line leaves the file's value
    assert config.idle_timeout == 7.5  # environment beats the file
    assert config.strict is True


def test_env_values() -> None:
    env = {
        "HARKEN_API_KEYS": " k1, k2 ,,",
        "HARKEN_STRICT": "yes",
        "HARKEN_PROVIDERS": "testing",
        "HARKEN_ALLOW_LOOPBACK_FUNCTIONS": "1",
        "HARKEN_MAX_SESSIONS": "5",
    }
    config = load_config(None, env)
    assert config.api_keys == ("k1", "k2") and not config.open_mode
    assert config.strict and config.allow_loopback_functions
    assert config.providers == "testing" and config.max_sessions == 5


def test_model_map_layers(tmp_path: Path) -> None:
    path = write(tmp_path, '[models.think]\n"acme/*" = "llm-big"\n')
    env = {"HARKEN_MODELS_SPEAK": "acme/voice-*=tts-two, other/x=tts-three"}
    config = load_config(path, env)
    assert config.models.think[0] == ("acme/*", "llm-big")
    assert config.models.think[1:] == DEFAULT_THINK
    assert config.models.speak[:2] == (("acme/voice-*", "tts-two"), ("other/x", "tts-three"))
    replaced = load_config(path, {"HARKEN_REPLACE_DEFAULT_MODELS": "true"})
    assert replaced.models.think == (("acme/*", "llm-big"),)
    assert replaced.models.listen == ()


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"HARKEN_PORT": "abc"}, "port"),
        ({"HARKEN_PORT": "70000"}, "port"),
        ({"HARKEN_STRICT": "maybe"}, "strict"),
        ({"HARKEN_IDLE_TIMEOUT": "-1"}, "idle_timeout"),
        ({"HARKEN_IDLE_TIMEOUT": "nan"}, "idle_timeout"),
        ({"HARKEN_PROVIDERS": "cloud"}, "providers"),
        ({"HARKEN_LOG_LEVEL": "loud"}, "log_level"),
        ({"HARKEN_MAX_FRAME_BYTES": "0"}, "max_frame_bytes"),
        ({"HARKEN_DURATION_WARNING": "9000"}, "duration_warning"),
        ({"HARKEN_MODELS_THINK": "nonsense"}, "models.think"),
        ({"HARKEN_HARD_FRAME_BYTES": "10"}, "hard_frame_bytes"),
    ],
)
def test_bad_env_names_the_key(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError, match=f"(?i){fragment}"):
        load_config(None, env)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("port = 'x'", "port"),
        ("colour = 'blue'", "colour"),
        ("api_keys = 5", "api_keys"),
        ("api_keys = [1]", r"api_keys\[0\]"),
        ("[models.sing]\n'a/b' = 'c'", "models.sing"),
        ("[models.think]\n'nopattern' = 'c'", "models.think"),
        ("port = ", "not valid TOML"),
    ],
)
def test_bad_file_names_the_key(tmp_path: Path, text: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        load_config(write(tmp_path, text))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")


def test_replace_validates() -> None:
    assert replace(ServerConfig(), port=0).port == 0
    with pytest.raises(ConfigError, match="max_sessions"):
        replace(ServerConfig(), max_sessions=0)


def test_model_map_routes() -> None:
    assert ModelMap().routes("listen")[0] == ("deepgram/nova-3", "stt-default")


def test_embedded_model_choices() -> None:
    config = load_config(None, {}, {})
    assert (config.stt_model, config.stt_multilingual_model) == ("whisper-base", "whisper-base")
    assert load_config(None, {}, {"stt_multilingual_model": ""}).stt_multilingual_model == ""
    assert load_config(None, {}, {"fallback_voice": ""}).fallback_voice == ""
    with pytest.raises(ConfigError, match="stt_multilingual_model: unknown stt model 'piper-joe'"):
        load_config(None, {}, {"stt_multilingual_model": "piper-joe"})
    with pytest.raises(ConfigError, match="stt_model: unknown stt model ''"):
        load_config(None, {}, {"stt_model": ""})


def test_turn_detection_settings_are_checked() -> None:
    default = load_config(None, {})
    assert (default.turn_detection, default.eot_text_threshold, default.eager_eot_threshold) == (
        "auto",
        0.3,
        None,
    )
    assert load_config(None, {"HARKEN_EAGER_EOT_THRESHOLD": "0.4"}).eager_eot_threshold == 0.4
    config = load_config(None, {"HARKEN_TURN_DETECTION": "semantic", "HARKEN_EOT_THRESHOLD": "0.8"})
    assert (config.turn_detection, config.eot_threshold, config.turn_model) == (
        "semantic",
        0.8,
        "smart-turn-v3.2",
    )
    for env, words in (
        ({"HARKEN_TURN_DETECTION": "vibes"}, "turn_detection"),
        ({"HARKEN_EOT_THRESHOLD": "1.5"}, "eot_threshold"),
        ({"HARKEN_TURN_DETECTION": "semantic", "HARKEN_TURN_MODEL": ""}, "needs a turn_model"),
        ({"HARKEN_TURN_MODEL": "whisper-base"}, "unknown turn model"),
        ({"HARKEN_EOT_TIMEOUT_MS": "100"}, "eot_timeout_ms"),
        ({"HARKEN_EOT_TEXT_THRESHOLD": "-0.1"}, "eot_text_threshold"),
        ({"HARKEN_EAGER_EOT_THRESHOLD": "2"}, "eager_eot_threshold"),
        ({"HARKEN_EOT_FLOOR_MS": "2000"}, "eot_floor_ms"),
    ):
        with pytest.raises(ConfigError, match=words):
            load_config(None, env)
