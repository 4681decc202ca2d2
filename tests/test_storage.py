"""One set of object-store options, spelled for delta-rs and for fsspec."""

from __future__ import annotations

import pytest

from pixels.storage import delta_options, fsspec_options


def test_fsspec_spelling_becomes_delta_rs_spelling(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ALLOW_HTTP", raising=False)
    opts = {"key": "k", "secret": "s", "token": "t", "endpoint_url": "http://127.0.0.1:9000"}
    assert delta_options("s3://b/t", {**opts, "client_kwargs": {"region_name": "eu-west-1"}}) == {
        "AWS_REGION": "eu-west-1",
        "AWS_ACCESS_KEY_ID": "k",
        "AWS_SECRET_ACCESS_KEY": "s",
        "AWS_SESSION_TOKEN": "t",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
        "AWS_ALLOW_HTTP": "true",  # the user named a plain-HTTP endpoint
    }
    https = delta_options("s3://b/t", {"endpoint_url": "https://s3.example.org", "anon": True})
    assert https == {"AWS_ENDPOINT_URL": "https://s3.example.org", "AWS_SKIP_SIGNATURE": "true"}
    # delta-rs names pass as given; fsspec-only options have no delta-rs meaning
    assert delta_options("s3://b/t", {"AWS_REGION": "x", "config_kwargs": {"a": 1}}) == {
        "AWS_REGION": "x"
    }
    assert delta_options("/local/table", {"key": "k"}) is None


def test_the_two_spellings_round_trip(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ALLOW_HTTP", raising=False)
    given = {"key": "k", "secret": "s", "endpoint_url": "http://h:1"}
    spelled = delta_options("s3://b/t", given)
    assert delta_options("s3://b/t", spelled) == spelled  # CatalogTable keeps this spelling
    assert fsspec_options("s3://b/t", spelled) == given
    assert fsspec_options("s3://b/t", {"AWS_REGION": "r"}) == {
        "client_kwargs": {"region_name": "r"}
    }
    assert fsspec_options("file:///x", spelled) == {}
