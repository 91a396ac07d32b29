"""The OpenAPI schema validates, and every documented GET answers as its schema says; errors are RFC 9457
problem documents in the words the pages use."""

from __future__ import annotations

import io
import json
import re
from typing import Any

import jsonschema
import pytest
from django.core.management import call_command
from django.test import Client

from accounts.models import User
from domains.models import DefineAllowance, Grant, Host, StoragePool
from storage.models import UploadSession
from tests.conftest import TEST_DOMAIN_UUID, client_for
from tests.support.api import (
    FINISHED_JOB_ID,
    api_test_defaults,  # noqa: F401 - a fixture
    bearer,
    finished_migration,
)

# A value for each path parameter a documented GET takes: objects the fixtures below make.
UPLOAD_ID = 4444
PATH_VALUES = {"host_name": "embedded", "uuid": TEST_DOMAIN_UUID, "job_id": str(FINISHED_JOB_ID),
               "pool": "default-pool", "name": "tina.qcow2", "session_id": str(UPLOAD_ID), "network": "default",
               "allowance_id": "77"}


def test_the_schema_validates_without_warnings(tmp_path):
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"),
                 stderr=io.StringIO())
    assert "/api/v1/domains/" in (tmp_path / "schema.yaml").read_text()


def _nullable_to_json_schema(node: Any) -> Any:
    """OpenAPI 3.0's `nullable: true` as JSON Schema says it (jsonschema knows no `nullable`)."""
    if isinstance(node, list):
        return [_nullable_to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: _nullable_to_json_schema(value) for key, value in node.items() if key != "nullable"}
    if node.get("nullable"):
        return {"anyOf": [converted, {"type": "null"}]}
    return converted


@pytest.fixture
def schema() -> dict[str, Any]:
    response = Client().get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    return json.loads(response.content)


@pytest.fixture
def admin_api(admin_user: User, embedded_host: Host, tenant_user: User, tenant_grant: Grant, hypervisor) -> Client:
    finished_migration(actor=admin_user, source=embedded_host)
    UploadSession.objects.create(pk=UPLOAD_ID, host=embedded_host, pool="default-pool", volume="tina.qcow2",
                                 total_bytes=10, owner=admin_user)
    allowance = DefineAllowance.objects.create(pk=int(PATH_VALUES["allowance_id"]), user=tenant_user)
    allowance.pools.add(StoragePool.objects.create(host=embedded_host, name="default-pool"))
    return bearer(admin_user, name="walker")


def test_every_documented_get_answers_as_its_schema_says(schema: dict[str, Any], admin_api: Client):
    components = _nullable_to_json_schema(schema["components"])
    walked = []
    for template, operations in schema["paths"].items():
        if "get" not in operations:
            continue
        path = re.sub(r"\{(\w+)\}", lambda match: PATH_VALUES[match.group(1)], template)
        response = admin_api.get(path)
        documented = operations["get"]["responses"]
        assert str(response.status_code) in documented, (path, response.status_code, response.content[:300])
        media_type = response["Content-Type"].split(";")[0]
        body_schema = documented[str(response.status_code)]["content"][media_type]["schema"]
        jsonschema.validate(json.loads(response.content),
                            {**_nullable_to_json_schema(body_schema), "components": components})
        walked.append((template, response.status_code))
    assert ("/api/v1/domains/", 200) in walked
    assert ("/api/v1/domains/{host_name}/{uuid}/", 200) in walked
    assert ("/api/v1/migrations/{job_id}/", 200) in walked
    assert ("/api/v1/domains/{host_name}/{uuid}/agent/", 409) in walked  # a problem document, as documented
    assert ("/api/v1/hosts/{host_name}/pools/{pool}/", 200) in walked
    assert ("/api/v1/uploads/{session_id}/", 200) in walked
    assert ("/api/v1/hosts/{host_name}/networks/{network}/", 200) in walked
    assert ("/api/v1/allowances/{allowance_id}/", 200) in walked
    # test:///default has no storage streams: its refusal is a documented problem.
    assert ("/api/v1/hosts/{host_name}/pools/{pool}/volumes/{name}/download/", 502) in walked
    assert len(walked) >= 11


VM = f"/api/v1/domains/embedded/{TEST_DOMAIN_UUID}"


def test_problems_use_the_pages_words(tenant_user: User, other_tenant_user: User, tenant_grant: Grant):
    """The same refusals as the pages, as problem documents: a field's error under its name."""
    page = client_for(tenant_user)
    api = bearer(tenant_user, name="words")

    bad_name = api.post(f"{VM}/snapshots/", {"name": "not a slug!"}, content_type="application/json")
    assert bad_name.status_code == 400
    assert bad_name["Content-Type"] == "application/problem+json"
    problem = bad_name.json()
    page_answer = page.post(f"/domains/embedded/{TEST_DOMAIN_UUID}/snapshots/", {"name": "not a slug!"}, follow=True)
    [message] = problem["errors"]["name"]
    assert message in page_answer.content.decode().replace("&#x27;", "'")
    assert message in problem["detail"]

    api.post(f"{VM}/actions/pause/")
    again = api.post(f"{VM}/actions/pause/")
    assert (again.status_code, again.json()["detail"]) == (409, "Pause is not possible while the machine is paused.")

    not_owner = api.delete(f"{VM}/")
    assert (not_owner.status_code, not_owner.json()["detail"]) == (
        403, "Only its owner, an operator or an admin may delete this machine.")

    hidden = bearer(other_tenant_user).get(f"{VM}/")
    missing = api.get("/api/v1/domains/embedded/00000000-0000-0000-0000-000000000001/")
    assert hidden.status_code == missing.status_code == 404
    assert hidden.content == missing.content

    nowhere = api.get("/api/v1/nowhere/")
    assert (nowhere.status_code, nowhere["Content-Type"]) == (404, "application/problem+json")
    assert nowhere.json() == missing.json()

    unknown = api.get("/api/v1/domains/", {"frobnicate": ""})
    assert (unknown.status_code, unknown.json()["detail"]) == (400, "Unknown option: frobnicate.")
