"""Auth, the beta header, the error envelope, and routes that are not implemented."""

from __future__ import annotations

import anthropic
import httpx
import pytest

from conftest import API_KEY, BASE_URL, BETA, assert_api_error, assert_raw_error, make_client, uniq


def test_bad_api_key_is_401(client):
    bad = make_client(api_key="sk-bridle-not-a-real-key")
    with pytest.raises(anthropic.AuthenticationError) as ei:
        bad.beta.agents.list()
    assert_api_error(ei.value, 401, "authentication_error")


def test_bearer_auth(client):
    ok = anthropic.Anthropic(base_url=BASE_URL, api_key=None, auth_token=API_KEY, max_retries=0)
    ok.beta.agents.list(limit=1)
    bad = anthropic.Anthropic(base_url=BASE_URL, api_key=None, auth_token="nope", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as ei:
        bad.beta.environments.list()
    assert_api_error(ei.value, 401, "authentication_error")


@pytest.mark.parametrize("path", ["/v1/agents", "/v1/environments", "/v1/sessions", "/v1/vaults"])
def test_missing_key_is_401(path):
    r = httpx.get(BASE_URL + path, headers={"anthropic-beta": BETA})
    assert_raw_error(r, 401, "authentication_error")


@pytest.mark.parametrize("path", ["/v1/agents", "/v1/environments", "/v1/sessions", "/v1/vaults"])
def test_missing_beta_header_is_400(path):
    r = httpx.get(BASE_URL + path, headers={"x-api-key": API_KEY})
    err = assert_raw_error(r, 400, "invalid_request_error")
    assert "beta" in err["message"].lower() or BETA in err["message"], err


def test_wrong_beta_header_is_400():
    r = httpx.get(BASE_URL + "/v1/agents", headers={"x-api-key": API_KEY, "anthropic-beta": "files-api-2025-04-14"})
    assert_raw_error(r, 400, "invalid_request_error")


def test_beta_header_in_a_list_is_accepted(client):
    # The SDK joins extra betas in front of managed-agents-2026-04-01 with commas.
    page = client.beta.agents.list(limit=1, betas=["files-api-2025-04-14"])
    assert isinstance(page.data, list)
    r = httpx.get(BASE_URL + "/v1/agents", headers={"x-api-key": API_KEY,
                                                    "anthropic-beta": f"files-api-2025-04-14, {BETA}"})
    assert r.status_code == 200, r.text


def test_beta_query_marker_optional(raw):
    # The SDKs append ?beta=true; raw HTTP examples leave it off. Both work.
    assert raw.get("/v1/agents").status_code == 200
    assert raw.get("/v1/agents?beta=true").status_code == 200


def test_healthz_needs_no_auth():
    assert httpx.get(BASE_URL + "/healthz").status_code == 200


def test_unknown_route_is_404_envelope(raw):
    assert_raw_error(raw.get("/v1/definitely-not-a-route"), 404, "not_found_error")


def test_error_envelope_on_validation(client):
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.agents.create(name="", model="claude-sonnet-4-6")
    assert_api_error(ei.value, 400, "invalid_request_error")
    # The SDK surfaces the request id.
    assert ei.value.request_id and ei.value.request_id.startswith("req_")


def test_success_responses_carry_request_id(raw):
    r = raw.get("/v1/agents")
    assert r.status_code == 200
    assert r.headers.get("request-id", "").startswith("req_"), dict(r.headers)


# Routes the SDK has but Bridle does not implement (threads, self-hosted work, ...), and session
# resources naming files that do not exist: each must be a clear 4xx in the envelope, never a 5xx.


def test_unimplemented_session_subresources(client, session):
    # (threads.list answers with the primary thread, see test_multiagent.py; an unknown thread is a 404.)
    calls = [
        lambda: client.beta.sessions.resources.add(session.id, type="file", file_id="file_011CNha8iCJcU1wXNR6q4V8w"),
        lambda: client.beta.sessions.threads.retrieve("sthr_011CZkZVWa6oIjw0rgXZpnBt", session_id=session.id),
    ]
    for call in calls:
        with pytest.raises(anthropic.APIStatusError) as ei:
            call()
        assert 400 <= ei.value.status_code < 500, ei.value
        assert_api_error(ei.value, ei.value.status_code)


def test_unimplemented_environment_work(client, environment):
    with pytest.raises(anthropic.APIStatusError) as ei:
        client.beta.environments.work.list(environment.id)
    assert 400 <= ei.value.status_code < 500
    assert_api_error(ei.value, ei.value.status_code)


def test_session_create_with_bad_resources_or_outcomes_is_clear(client, agent, environment):
    for kw in (
        {"resources": [{"type": "file", "file_id": "file_011CNha8iCJcU1wXNR6q4V8w"}]},
        {"initial_events": [{"type": "user.define_outcome", "description": "d",
                             "rubric": {"type": "file", "file_id": "file_011CNha8iCJcU1wXNR6q4V8w"}}]},
    ):
        with pytest.raises(anthropic.APIStatusError) as ei:
            client.beta.sessions.create(agent=agent.id, environment_id=environment.id, title=uniq("t"), **kw)
        assert 400 <= ei.value.status_code < 500
        assert_api_error(ei.value, ei.value.status_code)


@pytest.mark.parametrize("case", ["401 bad key", "400 no beta header", "404 unknown route", "405 wrong method"])
def test_rejected_request_with_body_keeps_connection_usable(case):
    """A request refused before its body is read (auth, beta header, routing) must not break
    the keep-alive connection: the next request on it gets an answer, not a disconnect."""
    headers = {"x-api-key": API_KEY, "anthropic-beta": BETA}
    method, path = "POST", "/v1/vaults"
    if case.startswith("401"):
        headers["x-api-key"] = "not-a-key"
    elif case.startswith("400"):
        del headers["anthropic-beta"]
    elif case.startswith("404"):
        path = "/v1/no-such-route"
    else:
        method = "PUT"
    body = {"display_name": "x" * 4000}
    broken = 0
    with httpx.Client(base_url=BASE_URL, timeout=10.0) as c:
        for _ in range(150):
            r = c.request(method, path, json=body, headers=headers)
            assert 400 <= r.status_code < 500, r.text
            try:
                ok = c.get("/v1/agents?limit=1", headers={"x-api-key": API_KEY, "anthropic-beta": BETA})
                assert ok.status_code == 200
            except httpx.TransportError:
                broken += 1
    assert broken == 0, f"{broken} of 150 follow-up requests hit a closed connection ({case})"
