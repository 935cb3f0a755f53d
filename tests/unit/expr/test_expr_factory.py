from __future__ import annotations

import pytest

from junctionbox.errors import ConfigurationError, ExpressionCompileError
from junctionbox.expr import (
    ExpressionCache,
    JsonataTransformer,
    Limits,
    ScriptTransformer,
    SimpleTransformer,
    TransformationMode,
    Transformer,
    compile_transformer,
)


def test_factory_builds_each_mode_behind_one_interface() -> None:
    payload = {"a": {"b": "x"}}
    built = [
        compile_transformer("SIMPLE", [{"sourceField": "a.b", "targetField": "out"}]),
        compile_transformer("script", "return {out: payload.a.b}", limits=Limits(time_limit=0.1)),
        compile_transformer(TransformationMode.JSONATA, '{"out": a.b}'),
    ]
    assert [type(t) for t in built] == [SimpleTransformer, ScriptTransformer, JsonataTransformer]
    for transformer in built:
        assert isinstance(transformer, Transformer)
        assert transformer.transform(payload) == {"out": "x"}


def test_unknown_mode_and_wrong_config_shape_are_400s() -> None:
    with pytest.raises(ExpressionCompileError) as info:
        compile_transformer("XSLT", "x")
    assert info.value.problems[0].loc == ("transformationMode",)
    with pytest.raises(ExpressionCompileError, match="list of field mappings"):
        compile_transformer("SIMPLE", "a.b")
    with pytest.raises(ExpressionCompileError, match="expression text"):
        compile_transformer("SCRIPT", [])


def test_default_locations_follow_seed_field_names() -> None:
    with pytest.raises(ExpressionCompileError) as info:
        compile_transformer("SCRIPT", "let x = ;")
    assert info.value.problems[0].loc == ("transformScript",)
    with pytest.raises(ExpressionCompileError) as info:
        compile_transformer("SIMPLE", [{"sourceField": "a"}], loc=("body", "requestFieldMappings"))
    assert info.value.problems[0].loc == ("body", "requestFieldMappings", 0, "targetField")


def test_limits_are_validated() -> None:
    with pytest.raises(ConfigurationError):
        Limits(time_limit=0)
    with pytest.raises(ConfigurationError):
        Limits(memory_limit=1000)


def test_cache_compiles_once_per_key_and_evicts_least_recently_used() -> None:
    cache = ExpressionCache(maxsize=2)
    builds: list[str] = []

    def build(source: str) -> Transformer:
        builds.append(source)
        return compile_transformer("JSONATA", source)

    first = cache.get_or_compile(("int_1", 1), lambda: build("a"))
    assert cache.get_or_compile(("int_1", 1), lambda: build("a")) is first
    cache.get_or_compile(("int_2", 1), lambda: build("b"))
    cache.get_or_compile(("int_1", 1), lambda: build("a"))  # refresh int_1
    cache.get_or_compile(("int_3", 1), lambda: build("c"))  # evicts int_2
    cache.get_or_compile(("int_2", 1), lambda: build("b"))
    assert builds == ["a", "b", "c", "b"]
    assert len(cache) == 2
    assert cache.hits == 2
    assert cache.misses == 4


def test_cache_does_not_store_failures() -> None:
    cache = ExpressionCache()
    for _ in range(2):
        with pytest.raises(ExpressionCompileError):
            cache.get_or_compile("k", lambda: compile_transformer("JSONATA", "{"))
    assert len(cache) == 0
