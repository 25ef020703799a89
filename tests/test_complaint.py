"""The complaint model: its run-time features against scikit-learn, its file format, training, labels, and
what it decides (only complaints are paged as complaints)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from monitor import complaint, train
from monitor.config import load_config
from monitor.store import AlertRecord
from monitor.mention import Engagement, Mention
from monitor.pipeline import Pipeline
from monitor.sentiment import SentimentScorer
from monitor.source import Poll
from monitor.store import Store
from tests.conftest import ROOT, SHARED_DATA

ANGRY = ["terrible", "worst", "refund", "never again", "furious", "broken", "charged me twice", "no answer",
         "waited", "hours", "lost my bag", "awful", "useless", "cancelled", "still waiting", "rude"]
HAPPY = ["thanks", "great", "love", "fast", "helpful", "amazing", "perfect", "wonderful", "kind", "smooth",
         "brilliant", "enjoyed", "happy", "sorted", "quick", "friendly"]
PLAIN = ["the", "my", "order", "flight", "today", "app", "support", "I", "was", "it", "and", "with", "a", "on",
         "@acme", "https://t.co/x1", "#travel", "Ünïcode", "café", "😂", "  ", "\n", "x", "aa", "AB"]


def generated_texts(n: int, seed: int) -> list[tuple[str, int]]:
    """Texts with a known lean, from words chosen at random: the model must learn them, and the run-time path must
    give scikit-learn's exact answer on them whatever they hold (repeats, short words, emoji, links, newlines)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.random() < 0.4
        words = rng.choices(ANGRY if label else HAPPY, k=rng.randint(1, 4)) + rng.choices(PLAIN, k=rng.randint(0, 12))
        rng.shuffle(words)
        rows.append((" ".join(words), int(label)))
    return rows


@pytest.fixture(scope="module")
def mini_data(tmp_path_factory) -> Path:
    """A miniature shared-data folder, every source in its published format, so training runs anywhere."""
    root = tmp_path_factory.mktemp("shared") / "data"
    texts = generated_texts(600, seed=7)
    chunks = [texts[i::6] for i in range(6)]
    ge = root / "goemotions"
    ge.mkdir(parents=True)
    names = ["admiration", "anger", "neutral"]
    (ge / "labels.txt").write_text("\n".join(names) + "\n")
    (ge / "sentiment_dict.json").write_text(json.dumps({"positive": ["admiration"], "negative": ["anger"],
                                                          "ambiguous": []}))
    for split, rows in (("train", chunks[0]), ("dev", chunks[1])):
        (ge / f"{split}.tsv").write_text("".join(f"{t.replace(chr(10), ' ')}\t{1 if y else 0}\tid{i}\n"
                                                  for i, (t, y) in enumerate(rows)))
    xed = root / "xed_en"
    xed.mkdir()
    (xed / "en-annotated.tsv").write_text("".join(f"{t.replace(chr(10), ' ')}\t{'1, 6' if y else '5'}\n"
                                                   for t, y in chunks[2]))
    (xed / "neu_en.txt").write_text("9\tA plain line.\n9\tAnother one.\n")
    vader = root / "vader_groundtruth"
    vader.mkdir()
    for k, name in enumerate(("tweets", "amazonReviewSnippets", "movieReviewSnippets", "nytEditorialSnippets")):
        rows = chunks[3][k::4]
        (vader / f"{name}_GroundTruth.txt").write_text(
            "".join(f"{i}\t{-2.0 if y else 1.5}\t{t.replace(chr(10), ' ')}\r\n" for i, (t, y) in enumerate(rows)))
    uci = root / "uci_sentiment_labelled_sentences"
    uci.mkdir()
    (uci / "yelp_labelled.txt").write_text("".join(f"{t.replace(chr(10), ' ')}\t{0 if y else 1}\n"
                                                   for t, y in chunks[4]))
    care = root / "ibm_twitter_customer_care"
    care.mkdir()
    (care / "dev.json").write_text(json.dumps([{"dialogHeader": {"company": "acme"}, "dialogContent": [
        {"message": t, "tweet_ID": str(i), "datetime": "2017-10-31T22:10:47"}]} for i, (t, y) in enumerate(chunks[5])
        if y]))
    return root


@pytest.fixture(scope="module")
def small_model(mini_data, tmp_path_factory):
    frame = train.shared_examples(mini_data)
    fitted = train.fit(frame, word_features=2000, char_features=3000)
    path = tmp_path_factory.mktemp("model") / "small.npz"
    train.export(fitted, path, meta={"version": "test"})
    return fitted, path


def test_run_time_probabilities_are_scikit_learns(small_model):
    fitted, path = small_model
    model = complaint.ComplaintModel.load(path)
    texts = [t for t, _ in generated_texts(400, seed=99)] + [
        "", " ", "a", "I  x", "@Acme https://t.co/x   hello\n\nworld!!", "refund refund refund refund",
        "x" * 6000 + " terrible"]
    scorer = SentimentScorer()
    readings = [scorer.score(t) for t in texts]
    # The run-time model reads the first MAX_CHARS characters; so does the oracle here.
    oracle = fitted.predict([t[:complaint.MAX_CHARS] for t in texts],
                            np.array([complaint.sentiment_features(r) for r in readings]))
    ours = np.array(model.probabilities(texts, readings))
    assert np.abs(oracle - ours).max() < 1e-6  # float32 weights on disk
    assert len(set(np.round(ours, 6))) > 50, "the probabilities vary with the words"


def test_model_file_is_arrays_only_and_versioned(small_model, tmp_path):
    _, path = small_model
    with zipfile.ZipFile(path) as archive:
        assert all(name.endswith(".npy") for name in archive.namelist())
    with np.load(path, allow_pickle=False) as arrays:  # raises if any array needed pickle
        meta = json.loads(arrays["meta"].tobytes())
        assert all(arrays[k].dtype != object for k in arrays.files)
    assert meta["format"] == complaint.FORMAT and meta["format_version"] == complaint.FORMAT_VERSION
    assert meta["version"] == "test" and meta["sentiment_features"] == list(complaint.SENTIMENT_FEATURES)

    foreign = tmp_path / "other.npz"
    np.savez(foreign, meta=np.frombuffer(json.dumps({"format": "something else"}).encode(), dtype=np.uint8))
    with pytest.raises(ValueError, match="not a complaint model"):
        complaint.ComplaintModel.load(foreign)


def test_training_learns_the_lean_and_weighs_each_source_alike(mini_data, small_model):
    fitted, path = small_model
    frame = train.shared_examples(mini_data)
    assert set(frame["source"]) == {"goemotions", "xed", "vader_tweets", "vader_amazonReviewSnippets",
                                    "vader_movieReviewSnippets", "vader_nytEditorialSnippets", "uci",
                                    "customer_care"}
    weights = pd.Series(train.source_weights(frame["source"])).groupby(frame["source"].to_numpy()).sum()
    others = weights.drop("customer_care")
    assert np.allclose(others, others.iloc[0]) and weights["customer_care"] == pytest.approx(others.iloc[0] / 4)
    model = complaint.ComplaintModel.load(path)
    scorer = SentimentScorer()
    held_out = generated_texts(200, seed=1234)
    probabilities = [model.probability(t, scorer.score(t)) for t, _ in held_out]
    from sklearn.metrics import roc_auc_score
    assert roc_auc_score([y for _, y in held_out], probabilities) > 0.9


def test_train_command_reports_cross_validated_auc_per_source_and_writes_the_model(mini_data, tmp_path,
                                                                                    write_config):
    out = tmp_path / "model.npz"
    result = subprocess.run([sys.executable, "-m", "monitor.cli", "--config", str(write_config()), "train",
                             "--data", str(mini_data), "--out", str(out), "--folds", "2"],
                            capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("cross-validated ROC AUC")]
    assert {line.split()[5] for line in lines} >= {"goemotions", "xed", "uci", "vader_tweets"}
    assert all(0.5 < float(line.split()[-1]) <= 1 for line in lines)
    model = complaint.ComplaintModel.load(out)
    assert model.meta["seed"] == train.SEED and model.meta["examples"] == len(train.shared_examples(mini_data))

    missing = subprocess.run([sys.executable, "-m", "monitor.cli", "--config", str(write_config()), "train",
                              "--data", str(tmp_path / "nowhere"), "--out", str(out)],
                             capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert missing.returncode == 2 and "no training data" in missing.stderr


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="needs ../shared/data")
def test_the_shipped_model_is_what_train_writes(tmp_path):
    shipped = complaint.ComplaintModel.load(complaint.shipped_model_path())
    out = tmp_path / "again.npz"
    train.train(out=out, data=SHARED_DATA, folds=0, log=lambda line: None)
    with np.load(out, allow_pickle=False) as again, np.load(complaint.shipped_model_path(), allow_pickle=False) as ship:
        assert sorted(again.files) == sorted(ship.files)
        for name in again.files:
            if again[name].dtype == np.uint8:  # vocabulary and metadata: the very same bytes
                assert again[name].tobytes() == ship[name].tobytes(), name
            else:
                assert np.allclose(again[name], ship[name], rtol=1e-5, atol=1e-6), name
    assert shipped.meta["seed"] == train.SEED


def _mention(source_id: str, text: str, *, score: int = 1, minutes_old: float = 30) -> Mention:
    now = datetime.now(timezone.utc)
    return Mention(source="reddit", source_id=source_id, url=f"https://reddit.example/{source_id}", title="",
                   text=text, author="someone", place="r/test", created_at=now - timedelta(minutes=minutes_old),
                   fetched_at=now, engagement=Engagement(score=score, comments=0))


def test_label_and_train_local_and_the_daemon_picks_the_new_model_up(mini_data, write_config, tmp_path, caplog):
    path = write_config({"complaint": {"model": "team-model.npz"}})
    config = load_config(path)
    store = Store(config.store_path)
    pipeline = Pipeline(config=config, store=store)
    texts = generated_texts(40, seed=5)
    pipeline.process("reddit", Poll(mentions=[_mention(f"m{i}", f"Acme {t}") for i, (t, _) in enumerate(texts)]))
    ids = {r["source_id"]: r["id"] for r in store.query("SELECT id, source_id FROM mentions")}
    assert pipeline.scorer.complaint.path == complaint.shipped_model_path()

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "monitor.cli", "--config", str(path), *args],
                              capture_output=True, text=True, cwd=ROOT, timeout=300)

    first = cli("label", str(ids["m0"]), "complaint" if texts[0][1] else "not")
    assert first.returncode == 0 and "1 labels stored" in first.stdout, first.stderr
    csv = tmp_path / "labels.csv"
    csv.write_text("mention_id,label\n" + "".join(f"{ids[f'm{i}']},{'complaint' if y else 'not'}\n"
                                                  for i, (_, y) in enumerate(texts) if i) + "999999,not\n")
    imported = cli("label", "--import", str(csv), "--by", "analyst")
    assert imported.returncode == 1 and f"{len(texts) - 1} labels stored" in imported.stdout
    assert "no mention 999999" in imported.stderr
    labels = store.labelled()
    assert len(labels) == len(texts) and {r.label for r in labels} == {0, 1}

    trained = cli("train", "--local", "--data", str(mini_data), "--folds", "0")
    assert trained.returncode == 0, trained.stderr
    report = next(line for line in trained.stdout.splitlines() if line.startswith("held-out local labels"))
    assert "ROC AUC before" in report and "after" in report
    assert (config.base_dir / "team-model.npz").exists()
    assert complaint.ComplaintModel.load(config.base_dir / "team-model.npz").meta["sources"]["local"] == len(texts)

    with caplog.at_level("INFO", logger="complaint_monitor"):
        pipeline.process("reddit", Poll(mentions=[_mention("next", "Acme refund now, furious")]))
    assert pipeline.scorer.complaint.path == config.base_dir / "team-model.npz"
    assert any("complaint model" in r.getMessage() and "loaded" in r.getMessage() for r in caplog.records)
    store.close()


def test_only_complaints_are_paged_as_complaints_and_viral_praise_is_opt_in(write_config, tmp_path):
    # Growth points on demand, so the praise spreads exactly as far as the complaint does.
    pack = tmp_path / "growth.yaml"
    pack.write_text("rules:\n  - {name: growing, when: score >= 1000, virality: 80}\n")
    config = load_config(write_config({
        "rules": [*(str(p) for p in sorted((ROOT / "rules").glob("*.yaml"))), str(pack)],
        "responders": [{"email": "oncall@test.local", "min_priority": "P3"},
                       {"email": "social@test.local", "min_priority": "P1", "viral_min_priority": "P2"}],
    }))
    store = Store(config.store_path)
    pipeline = Pipeline(config=config, store=store)
    praise = "Shout-out to the Acme crew on my Honolulu flight, amazing service, thank you!"
    # The same complaint twice: one spreads, one does not.
    angry = "Acme my order still hasn't arrived, can someone help?"
    pipeline.process("reddit", Poll(mentions=[_mention("praise", praise, score=5000),
                                              _mention("angry", angry, score=5000),
                                              _mention("quiet", angry, score=1)]))
    rows = {r["source_id"]: r for r in store.query("SELECT * FROM mentions")}
    assert not rows["praise"]["is_complaint"] and rows["praise"]["priority"] == "P4"
    assert rows["praise"]["virality"] >= 75
    assert rows["angry"]["is_complaint"] and rows["angry"]["complaint"] > rows["praise"]["complaint"]
    assert rows["angry"]["priority"] == "P1" and rows["quiet"]["is_complaint"]
    assert rows["quiet"]["priority"] > rows["angry"]["priority"], "spread raises a complaint's priority"
    alerts = {(store.mention(a.mention_id).source_id, a.recipient): a
              for a in map(AlertRecord.from_row, store.query("SELECT * FROM alerts"))}
    assert ("praise", "oncall@test.local") not in alerts, "praise is never a complaint alert"
    assert alerts[("praise", "social@test.local")].about == "viral"
    assert alerts[("angry", "oncall@test.local")].about == "complaint"
    assert ("quiet", "social@test.local") not in alerts  # a P1-only responder for complaints

    from monitor.alert import render_alert
    viral, _ = render_alert(store, alerts[("praise", "social@test.local")], config)
    assert str(viral["Subject"]).startswith("[Viral P1]")
    body = viral.get_body(("plain",)).get_content()
    assert "Not a complaint" in body and "Take responsibility" not in body
    angry_mail, _ = render_alert(store, alerts[("angry", "oncall@test.local")], config)
    angry_body = angry_mail.get_body(("plain",)).get_content()
    assert str(angry_mail["Subject"]).startswith("[P1]") and "Take responsibility" in angry_body
    assert f"Complaint: {rows['angry']['complaint']:.2f}" in angry_body
    store.close()
