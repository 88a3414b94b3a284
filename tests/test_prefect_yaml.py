"""prefect.yaml names flows and parameters that exist."""

from __future__ import annotations

import importlib
import inspect

import yaml

from .conftest import REPO


def test_deployments_point_at_real_flows() -> None:
    document = yaml.safe_load((REPO / "prefect.yaml").read_text())

    names = []
    for deployment in document["deployments"]:
        path, _, function = deployment["entrypoint"].partition(":")
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        flow = getattr(module, function)
        accepted = set(inspect.signature(flow.fn).parameters)
        given = set(deployment.get("parameters", {}))
        for trigger in deployment.get("triggers", []):
            given |= set(trigger.get("parameters", {}))
        assert given <= accepted, f"{deployment['name']} passes unknown parameters"
        names.append(deployment["name"])

    assert names == ["drift-check", "apply", "on-prediction-finished", "on-prediction-failed"]
