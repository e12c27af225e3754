"""Tests for escx.registry: registration, lookup messages and entry-point plug-ins."""

from __future__ import annotations

import warnings

import pytest
from torch import nn

import escx.registry as registry_module
from escx.config import check_class_names, registries
from escx.registry import Registry, RegistryError, load_all, load_plugins


class Widget(nn.Module):
    """Base class of a throwaway registry kind."""


def _widget_class(name: str, module: str) -> type:
    """A ``Widget`` subclass that claims to live in ``module`` (as a plug-in's class would)."""
    return type(name, (Widget,), {"__module__": module, "__doc__": f"{name} from {module}."})


@pytest.fixture
def widgets() -> Registry:
    return Registry("widget", Widget)


# ---------------------------------------------------------------- registration


def test_register_stores_the_class_under_its_name(widgets: Registry) -> None:
    cls = widgets.register(_widget_class("Sprocket", "pkg_a.parts"))
    assert widgets.get("Sprocket") is cls
    assert "Sprocket" in widgets and "Gear" not in widgets and 3 not in widgets
    assert list(widgets) == ["Sprocket"] and len(widgets) == 1
    assert widgets.items() == [("Sprocket", cls)]


def test_a_dotted_path_resolves_by_its_last_part(widgets: Registry) -> None:
    cls = widgets.register(_widget_class("Sprocket", "pkg_a.parts"))
    assert widgets.get("pkg_a.parts.Sprocket") is cls
    assert "pkg_a.parts.Sprocket" in widgets


def test_registering_the_same_class_again_is_harmless(widgets: Registry) -> None:
    # Re-importing a module (e.g. importlib.reload in a notebook) re-runs its decorators.
    cls = _widget_class("Sprocket", "pkg_a.parts")
    widgets.register(cls)
    assert widgets.register(cls) is cls
    assert len(widgets) == 1


def test_two_classes_with_one_name_fail_naming_both_modules(widgets: Registry) -> None:
    widgets.register(_widget_class("Sprocket", "plugin_alpha.parts"))
    with pytest.raises(RegistryError) as info:
        widgets.register(_widget_class("Sprocket", "plugin_beta.gears"))
    message = str(info.value)
    assert "plugin_alpha.parts" in message and "plugin_beta.gears" in message
    assert "Sprocket" in message and "\n" not in message
    assert widgets.get("Sprocket").__module__ == "plugin_alpha.parts"  # the first one is kept


def test_a_class_of_the_wrong_kind_is_refused(widgets: Registry) -> None:
    with pytest.raises(RegistryError, match="must subclass Widget"):
        widgets.register(type("Stranger", (nn.Module,), {}))
    with pytest.raises(RegistryError, match="must subclass Widget"):
        widgets.register(lambda: None)  # type: ignore[arg-type]


def test_unregister_removes_a_name(widgets: Registry) -> None:
    widgets.register(_widget_class("Sprocket", "pkg_a.parts"))
    widgets.unregister("Sprocket")
    widgets.unregister("Sprocket")  # unknown names are ignored
    assert "Sprocket" not in widgets and len(widgets) == 0


# ---------------------------------------------------------------- unknown names


def test_unknown_name_is_one_line_with_a_suggestion_and_the_valid_names(
    widgets: Registry,
) -> None:
    widgets.register(_widget_class("Sprocket", "pkg_a.parts"))
    widgets.register(_widget_class("Flywheel", "pkg_a.parts"))
    with pytest.raises(RegistryError) as info:
        widgets.get("Sprockett")
    message = str(info.value)
    assert "\n" not in message
    assert "unknown widget 'Sprockett'" in message
    assert "did you mean 'Sprocket'" in message
    assert "Flywheel, Sprocket" in message


def test_unknown_name_without_a_close_match_still_lists_the_valid_names(
    widgets: Registry,
) -> None:
    widgets.register(_widget_class("Sprocket", "pkg_a.parts"))
    message = widgets.unknown_message("Zzz")
    assert message == "unknown widget 'Zzz'. Valid widget names: Sprocket"
    assert "(none registered)" in Registry("gizmo", Widget).unknown_message("Zzz")


def test_real_registries_suggest_the_closest_component() -> None:
    quantizers = registries()["quantizer"]
    with pytest.raises(RegistryError, match="did you mean 'CrossScaleRVQ'"):
        quantizers.get("CrossScaleRVQQ")
    with pytest.raises(RegistryError, match="did you mean 'SwinEncoder'"):
        registries()["encoder"].get("SwinEncodr")


# ---------------------------------------------------------------- built-ins and plug-ins


def test_every_kind_has_built_in_components_that_subclass_its_base() -> None:
    for kind, registry in registries().items():
        assert len(registry) > 0, f"no built-in {kind}"
        for name, cls in registry.items():
            assert cls.__name__ == name and issubclass(cls, registry.base)
            assert (cls.__doc__ or "").strip(), f"{kind} {name} needs a docstring for `escx list`"


class FakeEntryPoint:
    """Stands in for ``importlib.metadata.EntryPoint``: ``load()`` runs ``action``."""

    def __init__(self, name: str, action) -> None:
        self.name, self.value, self.action = name, f"{name}_pkg.escx_plugin", action
        self.loaded = False

    def load(self):
        self.loaded = True
        return self.action()


def test_a_failing_plugin_warns_and_the_others_still_load(
    monkeypatch: pytest.MonkeyPatch, widgets: Registry
) -> None:
    def broken():
        raise ImportError("No module named 'missing_dependency'")

    def good():
        widgets.register(_widget_class("PluginWidget", "good_pkg.escx_plugin"))

    entries = [
        FakeEntryPoint("before", lambda: None),
        FakeEntryPoint("broken", broken),
        FakeEntryPoint("good", good),
    ]
    groups = []

    def fake_entry_points(*, group: str):
        groups.append(group)
        return entries

    monkeypatch.setattr(registry_module, "entry_points", fake_entry_points)
    monkeypatch.setattr(registry_module, "_plugins_loaded", False)
    with pytest.warns(UserWarning) as record:
        loaded = load_plugins()
    assert groups == ["escx.plugins"]
    assert loaded == ["before", "good"]
    assert all(entry.loaded for entry in entries)
    assert "PluginWidget" in widgets
    (warning,) = record
    text = str(warning.message)
    assert "'broken'" in text and "broken_pkg.escx_plugin" in text
    assert "missing_dependency" in text and "\n" not in text


def test_load_all_reads_plugins_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def fake_entry_points(*, group: str):
        calls.append(group)
        return [FakeEntryPoint("broken", lambda: 1 / 0)]

    monkeypatch.setattr(registry_module, "entry_points", fake_entry_points)
    monkeypatch.setattr(registry_module, "_plugins_loaded", False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_all()
        load_all()
    assert calls == ["escx.plugins"]
    assert len(caught) == 1 and "ZeroDivisionError" in str(caught[0].message)
    assert "CrossScaleRVQ" in registries()["quantizer"]  # built-ins still loaded


# ---------------------------------------------------------------- a registered dummy component


@pytest.fixture
def dummy_quantizer():
    """A quantizer registered for one test only (the built-in table is restored after)."""
    quantizers = registries()["quantizer"]
    base = registries()["quantizer"].get("ProductVQ")
    cls = type(
        "DummyTestQuantizer",
        (base,),
        {"__module__": "dummy_plugin.quantizers", "__doc__": "A dummy quantizer for tests."},
    )
    quantizers.register(cls)
    yield cls
    quantizers.unregister("DummyTestQuantizer")
    assert "DummyTestQuantizer" not in quantizers


def test_a_registered_component_is_accepted_in_configs(dummy_quantizer: type) -> None:
    config = {
        "model": {"codec": {"init_args": {"quantizer": {"class_path": "DummyTestQuantizer"}}}}
    }
    check_class_names(config)  # no error
    config["model"]["codec"]["init_args"]["quantizer"]["class_path"] = "DummyTestQuantizr"
    with pytest.raises(ValueError, match="did you mean 'DummyTestQuantizer'"):
        check_class_names(config)


def test_a_registered_component_is_listed(
    dummy_quantizer: type, capsys: pytest.CaptureFixture
) -> None:
    from escx.cli import main

    assert main(["list", "quantizer"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any("DummyTestQuantizer" in ln and "A dummy quantizer for tests." in ln for ln in lines)
