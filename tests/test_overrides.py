"""The one `key=value` override parser, used by training (`--config_overrides`) and the benchmark."""

import pytest

from tevit_hf.commands.benchmark import BenchmarkSettings, apply_overrides
from tevit_hf.overrides import parse_overrides
from tevit_hf.training.model_setup import parse_config_overrides


def test_values_are_json_literals_with_a_string_fallback():
    parsed = parse_overrides('a=1, b=[1, 2,3],c=gelu,d=true,e=None,f={"x": [1, 2]},g=0.5,h="q,r"')
    assert parsed == {"a": 1, "b": [1, 2, 3], "c": "gelu", "d": True, "e": None, "f": {"x": [1, 2]}, "g": 0.5,
                      "h": "q,r"}  # fmt: skip
    assert parse_overrides(["a=1", "b=x=y"]) == {"a": 1, "b": "x=y"}
    assert parse_overrides('{"a": [1]}') == {"a": [1]}
    assert parse_overrides(None) == parse_overrides("") == {}
    assert parse_overrides("a=1", parse_values=False) == {"a": "1"}


def test_training_and_benchmark_use_it():
    assert parse_config_overrides("hidden_size=64,backbone_depths=[1, 2,1,1]") == {
        "hidden_size": 64,
        "backbone_depths": [1, 2, 1, 1],
    }
    assert apply_overrides(BenchmarkSettings(), "height=64,compile=1").height == 64


def test_bad_items_are_named():
    with pytest.raises(ValueError, match=r"--config_overrides: 'oops' is not of the form key=value"):
        parse_config_overrides("a=1,oops")
    with pytest.raises(ValueError, match="'=3'"):
        parse_overrides("=3", option="--config-override")
    with pytest.raises(ValueError, match="not a JSON object"):
        parse_overrides("{a: 1}")
