"""The name a served model goes by, from the environment alone (the web process may not have the file)."""

from __future__ import annotations

import pytest

from inference.runtime.catalog import served_model_name


def test_a_file_served_by_path_goes_by_its_own_name_not_the_default_model() -> None:
    assert served_model_name({"GPTOSS_MODEL_PATH": "/models/house-oss-v2.gguf"}) == "house-oss-v2"
    assert served_model_name({"GPTOSS_MODEL": "gpt-oss-20b", "GPTOSS_MODEL_PATH": "/m/mine.gguf"}) == "mine"


def test_split_files_are_named_without_their_shard_suffix() -> None:
    path = "/models/big-oss-mxfp4-00001-of-00003.gguf"
    assert served_model_name({"GPTOSS_MODEL_PATH": path}) == "big-oss-mxfp4"


def test_an_explicit_name_wins_and_without_a_path_the_model_is_its_own_name() -> None:
    env = {"GPTOSS_MODEL_NAME": "team-oss", "GPTOSS_MODEL_PATH": "/m/x.gguf"}
    assert served_model_name(env) == "team-oss"
    assert served_model_name({"GPTOSS_MODEL": "tiny"}) == "tiny"
    assert served_model_name({}) == "gpt-oss-20b"


def test_a_name_a_queue_cannot_carry_is_refused_with_an_example() -> None:
    with pytest.raises(ValueError, match="GPTOSS_MODEL_NAME=my-gpt-oss"):
        served_model_name({"GPTOSS_MODEL_NAME": "my model"})


def test_a_name_longer_than_a_conversation_can_store_is_refused_or_shortened() -> None:
    """A 150-character name passed every check, then every new conversation failed to save."""
    with pytest.raises(ValueError, match="at most 100 characters"):
        served_model_name({"GPTOSS_MODEL_NAME": "a" * 150})
    with pytest.raises(ValueError, match="GPTOSS_MODEL=tiny"):
        served_model_name({"GPTOSS_MODEL": "my model"})
    assert served_model_name({"GPTOSS_MODEL_PATH": "/m/" + "b" * 300 + ".gguf"}) == "b" * 100


def test_a_files_suffix_is_dropped_whatever_its_case() -> None:
    assert served_model_name({"GPTOSS_MODEL_PATH": "/m/House-OSS.GGUF"}) == "House-OSS"
