"""Prefect tasks, one per Replicate API operation.

Each task opens a client from the environment (`REPLICATE_API_TOKEN`, and
`REPLICATE_BASE_URL` when set), makes one call and returns the parsed result.
The token is never a task parameter, so it never appears in a run's
parameters, results or logs.

The client already retries transient failures (429, 502-504, lost
connections where repeating is safe), so the tasks have no retries of their
own: Prefect retries on top would multiply the calls. No task caches its
result, because each one reads or changes live state.

Example:
    ```python
    from prefect import flow
    from replicate_tasks.tasks import get_deployment

    @flow
    def show(owner: str, name: str) -> None:
        deployment = get_deployment(owner, name)
        print(deployment.version)
    ```
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from .client import Replicate
from .credentials import client_from_environment
from .models import Account, Deployment, Hardware, Model, ModelVersion, Prediction

__all__ = [
    "cancel_prediction",
    "create_deployment",
    "create_deployment_prediction",
    "create_prediction",
    "delete_deployment",
    "get_account",
    "get_deployment",
    "get_model",
    "get_model_version",
    "get_prediction",
    "list_deployments",
    "list_hardware",
    "update_deployment",
    "wait_for_prediction",
]


def _client() -> Replicate:
    return client_from_environment(logger=get_run_logger())


@task(name="Get Replicate account", cache_policy=NO_CACHE, retries=0)
def get_account() -> Account:
    """Return the account that owns the API token."""
    with _client() as client:
        return client.accounts.current()


@task(name="List Replicate hardware", cache_policy=NO_CACHE, retries=0)
def list_hardware() -> list[Hardware]:
    """Return the hardware SKUs that deployments can use."""
    with _client() as client:
        return client.hardware.list()


@task(
    name="Get Replicate deployment",
    task_run_name="get-deployment-{owner}-{name}",
    cache_policy=NO_CACHE,
    retries=0,
)
def get_deployment(owner: str, name: str) -> Deployment:
    """Return one deployment; NotFoundError if it does not exist."""
    with _client() as client:
        return client.deployments.get(owner, name)


@task(name="List Replicate deployments", cache_policy=NO_CACHE, retries=0)
def list_deployments() -> list[Deployment]:
    """Return every deployment of the token's account, from all pages."""
    with _client() as client:
        return client.deployments.list_all()


@task(
    name="Create Replicate deployment",
    task_run_name="create-deployment-{name}",
    cache_policy=NO_CACHE,
    retries=0,
)
def create_deployment(
    name: str,
    model: str,
    version: str,
    *,
    hardware: str,
    min_instances: int,
    max_instances: int,
) -> Deployment:
    """Create a deployment owned by the token's account and return it."""
    logger = get_run_logger()
    logger.info("Creating deployment %s of %s:%s on %s", name, model, version[:12], hardware)
    with _client() as client:
        deployment = client.deployments.create(
            name,
            model,
            version,
            hardware=hardware,
            min_instances=min_instances,
            max_instances=max_instances,
        )
    logger.info("Created deployment %s at release %d", deployment.ref, deployment.release_number)
    return deployment


@task(
    name="Update Replicate deployment",
    task_run_name="update-deployment-{owner}-{name}",
    cache_policy=NO_CACHE,
    retries=0,
)
def update_deployment(
    owner: str,
    name: str,
    *,
    version: str | None = None,
    hardware: str | None = None,
    min_instances: int | None = None,
    max_instances: int | None = None,
) -> Deployment:
    """Change a deployment and return it at its new release."""
    logger = get_run_logger()
    with _client() as client:
        deployment = client.deployments.update(
            owner,
            name,
            version=version,
            hardware=hardware,
            min_instances=min_instances,
            max_instances=max_instances,
        )
    logger.info("Updated deployment %s to release %d", deployment.ref, deployment.release_number)
    return deployment


@task(
    name="Delete Replicate deployment",
    task_run_name="delete-deployment-{owner}-{name}",
    cache_policy=NO_CACHE,
    retries=0,
)
def delete_deployment(owner: str, name: str) -> None:
    """Delete a deployment; Replicate allows it only after 15 minutes offline and unused."""
    with _client() as client:
        client.deployments.delete(owner, name)
    get_run_logger().info("Deleted deployment %s/%s", owner, name)


@task(
    name="Get Replicate model",
    task_run_name="get-model-{owner}-{name}",
    cache_policy=NO_CACHE,
    retries=0,
)
def get_model(owner: str, name: str) -> Model:
    """Return a model; NotFoundError if it does not exist or is not visible."""
    with _client() as client:
        return client.models.get(owner, name)


@task(
    name="Get Replicate model version",
    task_run_name="get-model-version-{model}",
    cache_policy=NO_CACHE,
    retries=0,
)
def get_model_version(model: str, version_id: str) -> ModelVersion:
    """Return one version of `model` (`owner/name`); NotFoundError if it does not exist."""
    with _client() as client:
        return client.models.versions.get(model, version_id)


@task(name="Create Replicate prediction", cache_policy=NO_CACHE, retries=0)
def create_prediction(
    version: str | None = None,
    input: Mapping[str, Any] | None = None,
    *,
    model: str | None = None,
    webhook: str | None = None,
    webhook_events_filter: Sequence[str] | None = None,
    wait: bool | int | None = None,
    cancel_after: str | float | None = None,
) -> Prediction:
    """Create a prediction of a version (`id` or `owner/model:id`) or official `model`.

    Never retried once the request may have reached Replicate: a repeat would
    run the model twice.
    """
    with _client() as client:
        prediction = client.predictions.create(
            version,
            input,
            model=model,
            webhook=webhook,
            webhook_events_filter=webhook_events_filter,
            wait=wait,
            cancel_after=cancel_after,
        )
    get_run_logger().info("Created prediction %s (%s)", prediction.id, prediction.status)
    return prediction


@task(
    name="Create Replicate deployment prediction",
    task_run_name="create-prediction-{deployment}",
    cache_policy=NO_CACHE,
    retries=0,
)
def create_deployment_prediction(
    deployment: str,
    input: Mapping[str, Any],
    *,
    webhook: str | None = None,
    webhook_events_filter: Sequence[str] | None = None,
    wait: bool | int | None = None,
    cancel_after: str | float | None = None,
) -> Prediction:
    """Create a prediction on a deployment (`owner/name`), which runs its pinned version."""
    with _client() as client:
        prediction = client.deployments.predictions.create(
            deployment,
            input,
            webhook=webhook,
            webhook_events_filter=webhook_events_filter,
            wait=wait,
            cancel_after=cancel_after,
        )
    get_run_logger().info(
        "Created prediction %s on %s (%s)", prediction.id, deployment, prediction.status
    )
    return prediction


@task(
    name="Get Replicate prediction",
    task_run_name="get-prediction-{id}",
    cache_policy=NO_CACHE,
    retries=0,
)
def get_prediction(id: str) -> Prediction:
    with _client() as client:
        return client.predictions.get(id)


@task(
    name="Cancel Replicate prediction",
    task_run_name="cancel-prediction-{id}",
    cache_policy=NO_CACHE,
    retries=0,
)
def cancel_prediction(id: str) -> Prediction:
    """Cancel a prediction; one that already finished is returned unchanged."""
    with _client() as client:
        prediction = client.predictions.cancel(id)
    get_run_logger().info("Prediction %s is %s", prediction.id, prediction.status)
    return prediction


@task(
    name="Wait for Replicate prediction",
    task_run_name="wait-for-prediction-{id}",
    cache_policy=NO_CACHE,
    retries=0,
)
def wait_for_prediction(
    id: str, timeout: float | None = 900.0, interval: float = 1.0
) -> Prediction:
    """Poll a prediction until it succeeds, fails, is canceled or aborted.

    The polls are plain client calls inside this one task run, not a task run
    each. Returns the final prediction whatever its status; WaitTimeoutError
    after `timeout` seconds (None waits on).
    """
    logger = get_run_logger()
    with client_from_environment(logger=logger) as client:
        prediction = client.predictions.wait(id, timeout=timeout, interval=interval)
    logger.info("Prediction %s ended %s", prediction.id, prediction.status)
    return prediction
