"""The Skills API through the official SDK (`client.beta.skills` and `.versions`): create from
files, retrieve, list, versions (create, list, retrieve, download, delete), delete; bad uploads;
agents that reference skills (pinned versions; Anthropic's prebuilt skills refused)."""

from __future__ import annotations

import io
import zipfile

import anthropic
import pytest

from conftest import assert_api_error, parse_ts, uniq


def skill_md(name: str | None, description: str = "Convert units. Use when the user asks to convert units.") -> bytes:
    front = (f"name: {name}\n" if name else "") + f"description: {description}\n"
    return f"---\n{front}---\n# Units\nRun `python scripts/convert.py`.\n".encode()


def files(name: str, md: bytes | None = None, extra: bytes = b"print('converted')\n") -> list:
    return [(f"{name}/SKILL.md", md if md is not None else skill_md(name)), (f"{name}/scripts/convert.py", extra)]


@pytest.fixture
def skill(client: anthropic.Anthropic):
    name = uniq("units").lower().replace("_", "-")
    s = client.beta.skills.create(files=files(name))
    yield s, name
    try:
        client.beta.skills.delete(s.id)
    except anthropic.NotFoundError:
        pass


def test_create_retrieve_list_and_delete(client: anthropic.Anthropic, skill) -> None:
    s, name = skill
    assert s.id.startswith("skill_") and s.type == "skill"
    assert s.source == "custom"
    assert s.display_name == name, "the display name defaults to the front matter's name"
    assert s.latest_version_id.isdigit(), "a version id is its epoch timestamp (microseconds)"
    parse_ts(s.created_at)
    got = client.beta.skills.retrieve(s.id)
    assert got.id == s.id and got.latest_version_id == s.latest_version_id
    ids = [x.id for x in client.beta.skills.list(limit=1000)]
    assert s.id in ids
    assert list(client.beta.skills.list(source="anthropic")) == [], "no Anthropic skills are served here"
    deleted = client.beta.skills.delete(s.id)
    assert deleted.id == s.id and deleted.type == "skill_deleted"
    with pytest.raises(anthropic.NotFoundError) as e:
        client.beta.skills.retrieve(s.id)
    assert_api_error(e.value, 404, "not_found_error")


def test_display_name_and_versions(client: anthropic.Anthropic) -> None:
    name = uniq("fmt").lower().replace("_", "-")
    s = client.beta.skills.create(files=files(name), display_name="Formatting helper")
    try:
        assert s.display_name == "Formatting helper"
        first = s.latest_version_id
        v1 = client.beta.skills.versions.retrieve(first, skill_id=s.id)
        assert v1.name == name and v1.skill_id == s.id and v1.type == "skill_version"
        assert v1.description.startswith("Convert units.")
        v2 = client.beta.skills.versions.create(
            s.id, files=files(name, skill_md(name, "Version two. Use always."), b"print(2)\n"))
        assert int(v2.id) > int(first)
        assert client.beta.skills.retrieve(s.id).latest_version_id == v2.id
        listed = [v.id for v in client.beta.skills.versions.list(s.id)]
        assert listed == [v2.id, first], "newest first"
        raw = client.beta.skills.versions.download(v2.id, skill_id=s.id).read()
        with zipfile.ZipFile(io.BytesIO(raw)) as z:
            assert sorted(z.namelist()) == [f"{name}/SKILL.md", f"{name}/scripts/convert.py"]
            assert z.read(f"{name}/scripts/convert.py") == b"print(2)\n"
            assert b"Version two." in z.read(f"{name}/SKILL.md")
        # A version of another skill's name is refused; so is deleting the only version.
        with pytest.raises(anthropic.BadRequestError) as e:
            client.beta.skills.versions.create(s.id, files=files("other-name"))
        assert "never changes" in assert_api_error(e.value, 400, "invalid_request_error")["message"]
        gone = client.beta.skills.versions.delete(v2.id, skill_id=s.id)
        assert gone.type == "skill_version_deleted" and gone.id == v2.id
        assert client.beta.skills.retrieve(s.id).latest_version_id == first, "the newest left is the latest"
        with pytest.raises(anthropic.BadRequestError) as e:
            client.beta.skills.versions.delete(first, skill_id=s.id)
        assert "only version" in assert_api_error(e.value, 400)["message"]
        with pytest.raises(anthropic.NotFoundError):
            client.beta.skills.versions.retrieve("123", skill_id=s.id)
    finally:
        client.beta.skills.delete(s.id)


@pytest.mark.parametrize("upload, want", [
    ([("a-skill/notes.txt", b"x")], "SKILL.md"),
    ([("a-skill/SKILL.md", skill_md("a-skill")), ("b-skill/x.txt", b"x")], "same top-level directory"),
    ([("SKILL.md", skill_md("a-skill"))], "top-level directory"),
    ([("a-skill/SKILL.md", b"no front matter")], "front matter"),
    ([("a-skill/SKILL.md", skill_md("Not_Kebab"))], "kebab-case"),
    ([("a-skill/SKILL.md", skill_md("a-skill", ""))], "description"),
    ([("a-skill/../SKILL.md", skill_md("a-skill"))], ".."),
])
def test_bad_uploads_are_refused(client: anthropic.Anthropic, upload, want) -> None:
    before = {s.id for s in client.beta.skills.list(limit=1000)}
    with pytest.raises(anthropic.BadRequestError) as e:
        client.beta.skills.create(files=upload)
    assert want in assert_api_error(e.value, 400, "invalid_request_error")["message"]
    assert {s.id for s in client.beta.skills.list(limit=1000)} == before, "a refused upload stored a skill"


def test_agents_pin_custom_skills_and_refuse_anthropic_ones(client: anthropic.Anthropic, skill) -> None:
    s, _ = skill
    agent = client.beta.agents.create(name=uniq("a"), model="claude-sonnet-4-6",
                                      skills=[{"type": "custom", "skill_id": s.id}])
    assert [(k.type, k.skill_id, k.version) for k in agent.skills] == [("custom", s.id, s.latest_version_id)], \
        "an unpinned skill is pinned to its latest version"
    for bad, want in [
        ({"type": "anthropic", "skill_id": "xlsx"}, "cannot be fetched"),
        ({"type": "custom", "skill_id": "skill_doesnotexist"}, "no skill"),
        ({"type": "custom", "skill_id": s.id, "version": "1"}, "no version"),
    ]:
        with pytest.raises(anthropic.BadRequestError) as e:
            client.beta.agents.create(name=uniq("a"), model="claude-sonnet-4-6", skills=[bad])
        assert want in assert_api_error(e.value, 400, "invalid_request_error")["message"], bad
    with pytest.raises(anthropic.BadRequestError):
        client.beta.agents.create(name=uniq("a"), model="claude-sonnet-4-6",
                                  skills=[{"type": "custom", "skill_id": s.id}] * 2)
