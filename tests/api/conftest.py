"""Fixtures for the catalog API tests: a second merchant with its own key, and JSON helpers."""

from __future__ import annotations

import json

import pytest
from rest_framework.test import APIClient

from catalog.services import api_key_create
from tests.factories import MerchantFactory


@pytest.fixture
def other_merchant(db):
    return MerchantFactory(name="Rival Labs")


@pytest.fixture
def other_client(other_merchant) -> APIClient:
    _, raw_key = api_key_create(merchant=other_merchant, name="rival key")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    return client


class JsonClient:
    """APIClient calls with JSON bodies, returning (status, parsed body)."""

    def __init__(self, client: APIClient):
        self.client = client

    def _call(self, method: str, path: str, body=None, **query):
        kwargs = {}
        if body is not None:
            kwargs = {"data": json.dumps(body), "content_type": "application/json"}
        if query:
            if method == "get":
                kwargs["data"] = query
            else:
                path = path + "?" + "&".join(f"{k}={v}" for k, v in query.items())
        response = getattr(self.client, method)(path, **kwargs)
        data = response.json() if response.content and response["Content-Type"].startswith("application/json") else None
        return response.status_code, data

    def get(self, path, **query):
        return self._call("get", path, **query)

    def post(self, path, body=None):
        return self._call("post", path, body)

    def patch(self, path, body=None):
        return self._call("patch", path, body)

    def delete(self, path):
        return self._call("delete", path)


@pytest.fixture
def api(api_client) -> JsonClient:
    return JsonClient(api_client)


@pytest.fixture
def rival(other_client) -> JsonClient:
    return JsonClient(other_client)
