"""The models parse the API's documented and recorded JSON examples."""

from __future__ import annotations

import json

from replicate_tasks.models import Account, Deployment, Hardware, Model, ModelVersion, Page

# Examples from Replicate's OpenAPI description and from responses recorded by
# the official Python client's test cassettes.
ACCOUNT = (
    '{"type":"organization","username":"acme","name":"Acme Corp, Inc.",'
    '"github_url":"https://github.com/acme"}'
)
HARDWARE = (
    '[{"sku":"cpu","name":"CPU"},{"sku":"gpu-t4","name":"Nvidia T4 GPU"},'
    '{"sku":"gpu-a40-small","name":"Nvidia A40 GPU"},'
    '{"sku":"gpu-a40-large","name":"Nvidia A40 (Large) GPU"}]'
)
DEPLOYMENT = """{"owner":"acme","name":"my-app-image-generator",
 "current_release":{"number":1,"model":"stability-ai/sdxl",
  "version":"da77bc59ee60423279fd632efb4795ab731d9e3ca9705ef3341091fb989b7eaf",
  "created_at":"2024-02-15T16:32:57.018467Z",
  "created_by":{"type":"organization","username":"acme","name":"Acme Corp, Inc.",
                "avatar_url":"https://cdn.replicate.com/avatars/acme.png",
                "github_url":"https://github.com/acme"},
  "configuration":{"hardware":"gpu-t4","min_instances":1,"max_instances":5}}}"""


def test_account() -> None:
    account = Account.model_validate_json(ACCOUNT)

    assert account.type == "organization"
    assert account.username == "acme"
    assert account.name == "Acme Corp, Inc."
    assert account.github_url == "https://github.com/acme"
    assert account.avatar_url is None


def test_hardware_list() -> None:
    items = [Hardware.model_validate(item) for item in json.loads(HARDWARE)]

    assert [item.sku for item in items] == ["cpu", "gpu-t4", "gpu-a40-small", "gpu-a40-large"]
    assert items[3].name == "Nvidia A40 (Large) GPU"


def test_deployment_flat_reads() -> None:
    deployment = Deployment.model_validate_json(DEPLOYMENT)

    assert deployment.ref == "acme/my-app-image-generator"
    assert deployment.release_number == 1
    assert deployment.model == "stability-ai/sdxl"
    assert deployment.version.startswith("da77bc59")
    assert deployment.hardware == "gpu-t4"
    assert deployment.min_instances == 1
    assert deployment.max_instances == 5
    assert deployment.release.created_at is not None
    assert deployment.release.created_at.microsecond == 18467
    assert deployment.release.created_by is not None
    assert deployment.release.created_by.avatar_url == "https://cdn.replicate.com/avatars/acme.png"


def test_deployment_has_no_invented_fields() -> None:
    deployment = Deployment.model_validate_json(DEPLOYMENT)

    assert set(Deployment.model_fields) == {"owner", "name", "current_release"}
    assert not hasattr(deployment, "status")


def test_unknown_fields_are_kept() -> None:
    data = json.loads(DEPLOYMENT)
    data["new_field"] = {"added": "later"}
    data["current_release"]["configuration"]["region"] = "us-east"

    deployment = Deployment.model_validate(data)
    dumped = deployment.model_dump(mode="json")

    assert dumped["new_field"] == {"added": "later"}
    assert dumped["current_release"]["configuration"]["region"] == "us-east"


def test_created_by_without_name() -> None:
    data = json.loads(DEPLOYMENT)
    del data["current_release"]["created_by"]["name"]

    deployment = Deployment.model_validate(data)

    assert deployment.release.created_by is not None
    assert deployment.release.created_by.name is None


def test_deployment_without_release() -> None:
    deployment = Deployment.model_validate({"owner": "acme", "name": "empty"})

    assert deployment.current_release is None
    try:
        _ = deployment.version
    except ValueError as error:
        assert str(error) == "deployment acme/empty has no current release"
    else:
        raise AssertionError("reading the version of a deployment with no release must fail")


def test_deployment_page() -> None:
    text = json.dumps(
        {
            "next": "https://api.replicate.com/v1/deployments?cursor=cD0yMDIz",
            "previous": None,
            "results": [json.loads(DEPLOYMENT)],
        }
    )

    page = Page[Deployment].model_validate_json(text)

    assert page.next == "https://api.replicate.com/v1/deployments?cursor=cD0yMDIz"
    assert page.previous is None
    assert page.results[0].name == "my-app-image-generator"


def test_model_with_null_latest_version() -> None:
    data = {
        "url": "https://replicate.com/mattt/empty",
        "owner": "mattt",
        "name": "empty",
        "description": None,
        "visibility": "public",
        "github_url": None,
        "paper_url": None,
        "license_url": None,
        "run_count": 0,
        "cover_image_url": None,
        "default_example": None,
        "latest_version": None,
    }

    model = Model.model_validate(data)

    assert model.ref == "mattt/empty"
    assert model.latest_version is None
    assert model.run_count == 0


def test_model_version() -> None:
    data = {
        "id": "5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa",
        "created_at": "2022-04-26T19:29:04.418669Z",
        "cog_version": "0.3.0",
        "openapi_schema": {"components": {"schemas": {"Input": {"type": "object"}}}},
    }

    version = ModelVersion.model_validate(data)

    assert version.id.startswith("5c7d5dc6")
    assert version.cog_version == "0.3.0"
    assert version.openapi_schema == data["openapi_schema"]
