"""The rule fields sources declare: known to a rule book when the source is installed, typed, checked on load,
carried by the facts, and read by real rules end to end (local Mastodon server -> store -> rule fired -> explain)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from monitor.config import ConfigError, Thresholds, load_config
from monitor.mention import Mention
from monitor.rules import FIELDS, DeclaredField, RuleBook, RuleFields
from monitor.score import Scorer
from monitor.sentiment import SentimentScorer

ROOT = Path(__file__).resolve().parent.parent


def _pack(tmp_path, when: str, name: str = "boosted") -> Path:
    pack = tmp_path / "mine.yaml"
    pack.write_text(f"rules:\n  - name: {name}\n    when: '{when}'\n    urgency: 25\n", encoding="utf-8")
    return pack


def _config(write_config, pack: Path, sources: dict):
    return load_config(write_config({"rules": [str(pack)], "sources": sources}))


MASTODON = {"mastodon": {"instances": [{"url": "http://127.0.0.1:9"}]}}
HACKERNEWS = {"hackernews": {"api_url": "http://127.0.0.1:9"}}


def test_every_installed_sources_fields_load_and_a_truly_unknown_one_fails_naming_pack_rule_and_field(
        tmp_path, write_config):
    pack = _pack(tmp_path, 'source == "mastodon" and reblogs >= 10 and instance != ""')
    book = RuleBook.from_config(_config(write_config, pack, MASTODON))
    assert [r.name for r in book.rules] == ["boosted"]
    declared = {f.name: (f.type, sorted(f.sources)) for f in book.fields.declared}
    # The configured source's fields first, then every other installed source's (Reddit's and RSS's own too).
    assert [f.name for f in book.fields.declared][:3] == ["instance", "favourites", "reblogs"]
    assert (declared["subreddit"], declared["feed"], declared["reblogs"]) == (
        ("string", ["reddit"]), ("string", ["rss"]), ("integer", ["mastodon"]))
    assert not {"subreddit", "feed"} & set(FIELDS)  # Reddit's and RSS's, not the core's
    # The same pack with a config that does not read Mastodon loads too, and never fires on another source's
    # mention: the field reads its type's empty value there.
    elsewhere = RuleBook.from_config(_config(write_config, pack, HACKERNEWS))
    scorer = Scorer(rules=elsewhere, sentiment=SentimentScorer(), thresholds=Thresholds())
    story = Mention(source="hackernews", source_id="1", url="", title="", text="Acme", brand="Acme",
                    extra={"reblogs": 50, "instance": "x"})
    scores = scorer.score(story)
    assert (scores.facts["reblogs"], scores.facts["instance"], scores.verdict.fired) == (0.0, "", [])
    # A field no installed source declares is refused at load, not at 3 a.m.
    with pytest.raises(ConfigError) as err:
        RuleBook.from_config(_config(write_config, _pack(tmp_path, "reblogz >= 10"), HACKERNEWS))
    message = str(err.value)
    assert str(pack) in message and "'boosted'" in message and "unknown field 'reblogz'" in message, message
    assert "did you mean 'reblogs'?" in message, message


@pytest.mark.parametrize("when, field", [
    ('reblogs > "3"', "'reblogs' (integer, declared by source mastodon)"),
    ("instance =~ 3", "'instance' (string, declared by source mastodon)"),
    ("instance == 3", "'instance' (string, declared by source mastodon)"),
    ('reblogs != "ten"', "'reblogs' (integer, declared by source mastodon)"),
    ('score == "high"', "'score' (float, a core field)"),
])
def test_a_field_compared_with_the_wrong_type_fails_at_load_naming_pack_rule_and_field(tmp_path, write_config,
                                                                                       when, field):
    pack = _pack(tmp_path, when.replace("'", "''"), name="typed")
    with pytest.raises(ConfigError) as err:
        RuleBook.from_config(_config(write_config, pack, MASTODON))
    message = str(err.value)
    assert str(pack) in message and "rule 'typed'" in message and field in message, message


def test_a_declared_field_may_not_shadow_a_core_field():
    with pytest.raises(ConfigError, match="'score' is a core rule field already"):
        RuleFields([DeclaredField("score", "integer", "points", frozenset({"mine"}))])


def test_facts_carry_declared_fields_for_their_source_and_empty_values_for_others(tmp_path, write_config):
    pack = _pack(tmp_path, "reblogs >= 2")
    config = _config(write_config, pack, {**MASTODON, "bluesky": {}})
    scorer = Scorer(rules=RuleBook.from_config(config), sentiment=SentimentScorer(), thresholds=Thresholds())
    toot = Mention(source="mastodon", source_id="1", url="", title="", text="Acme lost it", brand="Acme",
                   extra={"instance": "social.test", "favourites": 3, "reblogs": 2})
    post = Mention(source="bluesky", source_id="2", url="", title="", text="Acme lost it", brand="Acme",
                   extra={"langs": ["en", "de"], "likes": 4, "reblogs": 9})  # not Bluesky's field: not read
    odd = Mention(source="mastodon", source_id="3", url="", title="", text="Acme", brand="Acme",
                  extra={"instance": 7, "reblogs": "many"})  # wrong types from a source: empty, never an error
    declared = ["instance", "favourites", "reblogs", "langs", "likes", "reposts", "quotes"]
    facts = [{k: scorer.score(m).facts[k] for k in declared} for m in (toot, post, odd)]
    assert facts == [
        {"instance": "social.test", "favourites": 3.0, "reblogs": 2.0, "langs": (), "likes": 0.0, "reposts": 0.0,
         "quotes": 0.0},
        {"instance": "", "favourites": 0.0, "reblogs": 0.0, "langs": ("en", "de"), "likes": 4.0, "reposts": 0.0,
         "quotes": 0.0},
        {"instance": "", "favourites": 0.0, "reblogs": 0.0, "langs": (), "likes": 0.0, "reposts": 0.0,
         "quotes": 0.0},
    ]
    assert [scorer.score(m).verdict.fired for m in (toot, post, odd)] == [["boosted"], [], []]
    assert set(scorer.rules.fields.defaults()) == set(scorer.score(toot).facts)


def test_every_rule_field_is_one_of_the_sources_extra_keys_with_its_type():
    from monitor.source import available_sources, declared_fields
    for name, entry in available_sources().items():
        cls = entry.load()
        extra = declared_fields(cls, "extra_keys")
        for key, spec in declared_fields(cls, "rule_fields").items():
            assert extra.get(key) == spec, f"{name}: rule field {key!r} is not the extra key of that name"


def test_a_mastodon_rule_fires_on_a_stored_mention_and_explain_shows_it(tmp_path, write_config):
    from monitor.app import Monitor
    from tests.servers.mastodon import MastodonServer

    pack = tmp_path / "mastodon.yaml"
    pack.write_text(
        "rules:\n"
        "  - name: boosted-on-our-instance\n"
        "    description: boosted on an instance we watch\n"
        "    when: 'source == \"mastodon\" and instance =~ \"^127\\\\.0\\\\.0\\\\.1:\" and reblogs >= 5'\n"
        "    urgency: 20\n    virality: 15\n    tags: [boosted]\n", encoding="utf-8")
    with MastodonServer() as social:
        boosted = social.add_status("<p>Acme lost my parcel, no refund</p>", acct="carol", reblogs=6, favourites=1,
                                    created=time.time() - 600)
        quiet = social.add_status("<p>Acme lost my parcel too</p>", acct="dan", reblogs=4, created=time.time() - 600)
        path = write_config({"rules": [str(pack)], "sources": {"mastodon": {"instances": [{"url": social.url}]}}})
        monitor = Monitor.from_config(load_config(path))
        try:
            [report] = monitor.poll_all()
            rows = {r["source_id"]: r for r in monitor.store.query("SELECT id, source_id, reasons, tags FROM mentions")}
        finally:
            monitor.close()
    assert report.errors == []
    assert set(rows) == {boosted["uri"], quiet["uri"]}
    fired = {sid: [r["name"] for r in json.loads(row["reasons"]) if r["kind"] == "rule"] for sid, row in rows.items()}
    assert "boosted-on-our-instance" in fired[boosted["uri"]]
    assert "boosted-on-our-instance" not in fired[quiet["uri"]]
    assert json.loads(rows[boosted["uri"]]["tags"]) == ["boosted"]
    explained = subprocess.run([sys.executable, "-m", "monitor.cli", "--config", str(path), "explain",
                                str(rows[boosted["uri"]]["id"])], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert explained.returncode == 0, explained.stderr
    assert "rule boosted-on-our-instance: urgency +20, virality +15 (boosted on an instance we watch)" in explained.stdout
    # Its growth signals in Mastodon's own units (EngagementMap): 7 favourites + boosts over the first quarter hour.
    assert "score_velocity = 28 (28 favourites + boosts/hour since posted; virality +" in explained.stdout


def test_two_sources_declaring_one_field_with_two_types_is_a_config_error(tmp_path, write_config, monkeypatch):
    # A third party's source, installed as pip leaves one (its module and its entry point on sys.path), that names
    # a rule field as Mastodon does but with another type.
    site = tmp_path / "site"
    (site / "boosts_elsewhere").mkdir(parents=True)
    (site / "boosts_elsewhere" / "__init__.py").write_text(
        "from pydantic import BaseModel\n"
        "from monitor.source import SourceField\n\n\n"
        "class Elsewhere:\n"
        "    class Settings(BaseModel):\n"
        "        interval: float = 60\n"
        "    extra_keys = {'reblogs': SourceField('string', 'who boosted it')}\n"
        "    rule_fields = extra_keys\n", encoding="utf-8")
    dist = site / "boosts_elsewhere-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: boosts-elsewhere\nVersion: 0.1\n", encoding="utf-8")
    (dist / "entry_points.txt").write_text("[complaint_monitor.sources]\nelsewhere = boosts_elsewhere:Elsewhere\n",
                                           encoding="utf-8")
    monkeypatch.syspath_prepend(str(site))
    with pytest.raises(ConfigError) as err:
        RuleBook.from_config(_config(write_config, _pack(tmp_path, "score > 1"), {**MASTODON, "elsewhere": {}}))
    assert "rule field 'reblogs' is of type string here but integer in sources.mastodon" in str(err.value)
    # Alone, its own field is a string to its rules.
    book = RuleBook.from_config(_config(write_config, _pack(tmp_path, 'reblogs == "ann"'), {"elsewhere": {}}))
    declared = {f.name: (f.type, sorted(f.sources)) for f in book.fields.declared}
    # Mastodon's other fields still load (installed); its clashing `reblogs` is left out, not an error.
    assert (declared["reblogs"], declared["instance"]) == (("string", ["elsewhere"]), ("string", ["mastodon"]))
    # Two installed sources the config does not read disagree on the type: the name is nobody's.
    with pytest.raises(ConfigError, match="unknown field 'reblogs'"):
        RuleBook.from_config(_config(write_config, _pack(tmp_path, "reblogs >= 1"), HACKERNEWS))
