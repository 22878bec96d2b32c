"""Race day on a real MariaDB source: a card taken before the results, predictions from the
same feature-set code and history as training, and the same features once the day is stored."""

import base64
import datetime as dt
import hashlib
import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dagster import instance_for_test, materialize
from sklearn.metrics import log_loss

from feature_assets.cli.predict import NO_RACES
from feature_assets.defs.predictions import prediction_results, predictions
from feature_assets.defs.resources import SlackAlerts, SourceDatabase, TrainingStorage
from feature_assets.feature_sets import registered_sets
from feature_assets.io import cards, synthetic
from feature_assets.io.source import SourceLocation, connect
from feature_assets.io.storage import DailyParquetStorage
from feature_assets.training import data, inline_chart, model, predict
from tests.conftest import FIRST_DAY, fresh_mysql_database
from tests.helpers import (
    CHROMIUM,
    CHROMIUM_ARGS,
    FakeSlack,
    command_env,
    dagster_services,
    feature_assets_command,
    materialize_days,
    train_small_model,
)
from tests.tcp_proxy import TcpProxy, proxied_url

DAYS = 40
RACE_DAY = (FIRST_DAY + dt.timedelta(days=DAYS - 1)).isoformat()
BEFORE = (FIRST_DAY + dt.timedelta(days=DAYS - 2)).isoformat()
RESULTS = ["finish_position", "start_timing"]


def _predict(instance, source_url: str, storage: str, snapshot: str = "", day: str = RACE_DAY):
    training = TrainingStorage(storage_url=storage, optuna_url="sqlite://")
    return materialize(
        [predictions],
        partition_key=day,
        instance=instance,
        resources={"source": SourceDatabase(url=source_url), "training": training},
        run_config={"ops": {"predictions": {"config": {"card_snapshot": snapshot}}}},
        raise_on_error=False,
    )


def _write_results(url: str, entries: pd.DataFrame) -> None:
    from feature_assets.io.source import SourceLocation

    rows = [
        (int(f) if pd.notna(f) else None, float(s) if pd.notna(s) else None, int(r), int(lane))
        for r, lane, f, s in entries[["race_id", "lane", *RESULTS]].itertuples(index=False)
    ]
    connection = connect(SourceLocation.from_url(url))
    try:
        with connection.cursor() as cursor:
            cursor.executemany(
                "UPDATE race_entries SET finish_position = %s, start_timing = %s"
                " WHERE race_id = %s AND lane = %s",
                rows,
            )
        connection.commit()
    finally:
        connection.close()


@pytest.fixture(scope="module")
def race_day(mysql_server, tmp_path_factory):
    """Days before RACE_DAY stored and a model trained on them; RACE_DAY in MariaDB as its
    card (odds, exhibition times, no results); a prediction made; then its results written
    and the day stored by a run, as the daily run does."""
    folder = tmp_path_factory.mktemp("race_day")
    storage = str(folder / "parquet")
    generated = synthetic.generate(FIRST_DAY, days=DAYS, races_per_day=6, seed=21)
    on_day = generated.entries["race_date"] == pd.Timestamp(RACE_DAY)
    card_source = generated.entries.copy()
    card_source.loc[on_day, "finish_position"] = pd.NA
    card_source.loc[on_day, "start_timing"] = np.nan
    lake = DailyParquetStorage(storage)
    with fresh_mysql_database(mysql_server) as url, instance_for_test() as instance:
        synthetic.load(url, synthetic.SyntheticData(generated.races, card_source, {}))
        sets = list(registered_sets())
        first = FIRST_DAY.isoformat()
        assert materialize_days(url, storage, instance, sets, first, BEFORE).success
        train_small_model(lake, FIRST_DAY, dt.date.fromisoformat(BEFORE))
        first_run = _predict(instance, url, storage)
        assert first_run.success
        first_card = cards.snapshot_ids(lake, RACE_DAY)
        first_bytes = lake.read_file(f"{cards.TABLE}/race_date={RACE_DAY}/{first_card[0]}.parquet")
        predicted = lake.read_days(predict.TABLE, [RACE_DAY])
        second_run = _predict(instance, url, storage)
        _write_results(url, generated.entries[on_day])
        assert materialize_days(url, storage, instance, sets, RACE_DAY, RACE_DAY).success
        yield {
            "lake": lake,
            "url": url,
            "storage": storage,
            "instance": instance,
            "predicted": predicted,
            "first_card": first_card,
            "first_bytes": first_bytes,
            "second_run": second_run,
            "entries": generated.entries[on_day],
            "first_run": first_run,
        }


def test_probabilities_sum_to_one_per_race_with_ranks_and_expected_returns(race_day):
    rows = race_day["predicted"]
    assert len(rows) == len(race_day["entries"]) and rows["race_id"].nunique() == 6
    sums = rows.groupby("race_id")["win_probability"].sum()
    assert np.allclose(sums, 1.0, atol=1e-12)
    assert (rows["win_probability"] > 0).all()
    for _, race in rows.groupby("race_id"):
        best = race.loc[race["win_probability"].idxmax()]
        assert best["rank"] == 1 and race["rank"].max() <= len(race)
    expected = rows["win_probability"] * rows["win_odds"] - 1
    assert np.allclose(rows["expected_return"], expected, equal_nan=True)
    assert rows["win_odds"].notna().any()


def test_each_row_names_the_card_the_model_and_the_code_versions(race_day):
    rows, lake = race_day["predicted"], race_day["lake"]
    text = lake.read_file(predict.MODEL_PATH)
    assert set(rows["model_sha256"]) == {hashlib.sha256(text).hexdigest()[:16]}
    assert set(rows["card_snapshot"]) == {race_day["first_card"][0]}
    versions = json.loads(rows["feature_versions"].iloc[0])
    assert versions == {s.name: s.code_version for s in registered_sets()}


def test_card_snapshots_are_kept_apart_and_never_overwritten(race_day):
    lake = race_day["lake"]
    assert race_day["second_run"].success
    ids = cards.snapshot_ids(lake, RACE_DAY)
    assert len(ids) == 2 and ids[0] == race_day["first_card"][0] and ids[0] < ids[1]
    path = f"{cards.TABLE}/race_date={RACE_DAY}/{ids[0]}.parquet"
    assert lake.read_file(path) == race_day["first_bytes"]
    card = cards.read(lake, RACE_DAY, ids[0])
    assert card.entries["finish_position"].isna().all()
    assert card.entries["start_timing"].isna().all()
    assert len(card.entries) == len(race_day["entries"])
    # taken before the results; the raw day stored afterwards holds them
    raw = lake.read_days("raw_race_entries", [RACE_DAY])
    assert raw["finish_position"].notna().any()
    with pytest.raises(FileExistsError):
        cards.store(lake, card)


def test_features_stored_after_the_results_equal_those_the_prediction_used(race_day):
    rows, lake = race_day["predicted"], race_day["lake"]
    sets = list(registered_sets())
    names = data.feature_columns(sets)
    for feature_set in sets:
        stored = lake.read_days(feature_set.name, [RACE_DAY]).sort_values(["race_id", "lane"])
        used = rows.sort_values(["race_id", "lane"])
        assert len(stored) == len(used)
        for column in feature_set.columns:
            pd.testing.assert_series_equal(
                stored[column].reset_index(drop=True),
                used[names[(feature_set.name, column)]].reset_index(drop=True),
                check_names=False,
                check_dtype=False,
            )


def test_predictions_equal_a_direct_scoring_of_the_stored_features(race_day):
    lake = race_day["lake"]
    stored = data.assemble(lake, list(registered_sets()), [RACE_DAY], lambda day: "test")
    loaded = predict.load_model(lake)
    booster_scores = loaded.booster.predict(model.feature_matrix(stored, loaded.features))
    stored["score"] = loaded.calibration.apply(booster_scores)
    assert loaded.calibration != model.Calibration()  # the stored one, not the identity
    stored["direct"] = stored["score"] / stored.groupby("race_id")["score"].transform("sum")
    both = race_day["predicted"].merge(stored, on=["race_id", "lane"])
    assert len(both) == len(stored)
    assert np.allclose(both["win_probability"], both["direct"], rtol=1e-12, atol=0)


def test_a_day_whose_history_is_not_stored_fails_naming_the_days(race_day, tmp_path):
    empty = str(tmp_path / "empty")
    lake = DailyParquetStorage(empty)
    lake.write_file(predict.MODEL_PATH, race_day["lake"].read_file(predict.MODEL_PATH))
    lake.write_file(predict.MODEL_INFO_PATH, race_day["lake"].read_file(predict.MODEL_INFO_PATH))
    result = _predict(race_day["instance"], race_day["url"], empty)
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    text = failure.step_failure_data.user_failure_data.description
    assert text.startswith(f"{RACE_DAY}: the history of the prediction lacks")
    assert f"{FIRST_DAY}..." in text and "feature-assets backfill --range" in text
    assert lake.stored_days(predict.TABLE) == []


def _copied_lake(race_day, tmp_path) -> tuple[str, DailyParquetStorage]:
    copy = tmp_path / "lake"
    shutil.copytree(race_day["storage"], copy)
    return str(copy), DailyParquetStorage(str(copy))


def _failure_text(result) -> str:
    [failure] = [e for e in result.all_events if e.is_step_failure]
    return failure.step_failure_data.user_failure_data.description


def _silently_damaged(data: bytes) -> bytes:
    """`data` with one bit flipped where, read without page checksums, the file still reads
    whole but holds other values (the damage a checksum must catch)."""
    whole = pq.read_table(pa.BufferReader(data))
    for at in range(4, len(data) - 8):  # between the magic bytes
        damaged = bytearray(data)
        damaged[at] ^= 0x01
        try:
            read = pq.read_table(pa.BufferReader(bytes(damaged)))
        except (OSError, ValueError, pa.ArrowException):
            continue
        if not read.equals(whole):
            return bytes(damaged)
    raise AssertionError("no silent damage found")


def test_a_damaged_card_fails_naming_it_and_the_stored_predictions_stay(race_day, tmp_path):
    storage, lake = _copied_lake(race_day, tmp_path)
    snapshot = race_day["first_card"][0]
    path = tmp_path / "lake" / cards.TABLE / f"race_date={RACE_DAY}" / f"{snapshot}.parquet"
    path.write_bytes(_silently_damaged(path.read_bytes()))
    before = lake.read_file(f"{predict.TABLE}/race_date={RACE_DAY}/data.parquet")
    result = _predict(race_day["instance"], race_day["url"], storage, snapshot=snapshot)
    assert not result.success
    text = _failure_text(result)
    assert text.startswith(f"{RACE_DAY}: race card snapshot {snapshot} of {RACE_DAY} is damaged")
    assert f"feature-assets predict --day {RACE_DAY}" in text
    assert lake.read_file(f"{predict.TABLE}/race_date={RACE_DAY}/data.parquet") == before


def test_a_damaged_model_fails_instead_of_scoring_with_other_numbers(race_day, tmp_path):
    storage, lake = _copied_lake(race_day, tmp_path)
    text = lake.read_file(predict.MODEL_PATH).decode()
    # a changed digit of a split threshold still parses: only the recorded hash tells
    at = text.index("threshold=") + len("threshold=")
    digit = next(i for i in range(at, len(text)) if text[i] in "123456789")
    changed = text[:digit] + str(int(text[digit]) % 9 + 1) + text[digit + 1 :]
    lake.write_file(predict.MODEL_PATH, changed.encode())
    result = _predict(race_day["instance"], race_day["url"], storage)
    assert not result.success
    text = _failure_text(result)
    assert f"{RACE_DAY}: the stored win model" in text and "materialise win_model again" in text
    assert len(cards.snapshot_ids(lake, RACE_DAY)) == 2  # no card taken for a run that fails


def test_a_source_link_that_keeps_dropping_fails_naming_the_day(race_day, tmp_path):
    storage, lake = _copied_lake(race_day, tmp_path)
    before = lake.read_file(f"{predict.TABLE}/race_date={RACE_DAY}/data.parquet")
    location = SourceLocation.from_url(race_day["url"])
    with TcpProxy(location.host, location.port) as proxy:
        proxy.cut_after_bytes(2_000, times=100)  # every read loses the link mid-rows
        result = _predict(race_day["instance"], proxied_url(race_day["url"], proxy), storage)
    assert not result.success
    text = _failure_text(result)
    assert text.startswith(f"{RACE_DAY}: ") and "Lost connection" in text
    assert f"reading day {RACE_DAY}" in text
    assert len(cards.snapshot_ids(lake, RACE_DAY)) == 2  # no new card, half read or not
    assert lake.read_file(f"{predict.TABLE}/race_date={RACE_DAY}/data.parquet") == before


@pytest.mark.e2e
def test_the_demo_then_predict_prints_each_race_and_results_arrive(tmp_path):
    """The README's race day: the demo leaves today's and tomorrow's cards in the source,
    `predict` takes today's and prints each race, `demo --results` writes today's results."""
    today = dt.datetime.now(dt.timezone(dt.timedelta(hours=9))).date()
    first = today - dt.timedelta(days=40)
    env = command_env(tmp_path, FEATURE_ASSETS_START_DATE=first.isoformat())
    demo = feature_assets_command(env, "demo", "--races-per-day", "5")
    assert demo.returncode == 0, demo.stderr[-3000:]
    assert f"feature-assets demo --results {today}" in demo.stdout
    home = tmp_path / "dagster_home"
    source = home / "data" / "demo.sqlite"
    with sqlite3.connect(source) as connection:
        days = connection.execute(
            "SELECT DATE(r.race_date), COUNT(*), SUM(e.finish_position IS NULL),"
            " SUM(e.win_odds IS NOT NULL) FROM race_entries e"
            " JOIN races r ON r.race_id = e.race_id GROUP BY DATE(r.race_date)"
        ).fetchall()
    card_days = [day for day, entries, unresulted, _ in days if unresulted == entries]
    assert card_days == [str(today), str(today + dt.timedelta(days=1))]
    assert all(odds > 0 for day, _, _, odds in days if day in card_days)

    no_model = feature_assets_command(env, "predict")
    assert no_model.returncode == 1 and "no win model is stored" in no_model.stderr
    train_small_model(
        DailyParquetStorage(str(home / "data" / "parquet")), first, today - dt.timedelta(days=1)
    )
    predicted = feature_assets_command(env, "predict")
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    assert predicted.stdout.startswith(f"{today}: 5 races, card ")
    assert predicted.stdout.count("\nvenue ") == 5
    assert "lane  racer   prob rank   odds  exp.ret" in predicted.stdout
    _replay_yesterday(env, home, demo.stdout, today - dt.timedelta(days=1))
    _predict_a_day_without_races(env, source, today - dt.timedelta(days=2))

    results = feature_assets_command(env, "demo", "--results", str(today))
    assert results.returncode == 0, results.stderr[-3000:]
    with sqlite3.connect(source) as connection:
        left = connection.execute(
            "SELECT COUNT(*) FROM race_entries e JOIN races r ON r.race_id = e.race_id"
            " WHERE DATE(r.race_date) = ? AND e.finish_position IS NOT NULL",
            (str(today),),
        ).fetchone()[0]
    assert left > 0
    again = feature_assets_command(env, "demo", "--results", "2001-01-01")
    assert again.returncode == 2 and "holds no results of 2001-01-01" in again.stderr


def _predict_a_day_without_races(env, source: Path, day: dt.date) -> None:
    with sqlite3.connect(source) as connection:
        connection.execute(
            "DELETE FROM race_entries WHERE race_id IN"
            " (SELECT race_id FROM races WHERE DATE(race_date) = ?)",
            (str(day),),
        )
        connection.execute("DELETE FROM races WHERE DATE(race_date) = ?", (str(day),))
    predicted = feature_assets_command(env, "predict", "--day", str(day))
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    assert predicted.stdout.startswith(f"{day}: 0 races, card ")
    assert predicted.stdout.rstrip().endswith(NO_RACES)


def _replay_yesterday(env, home: Path, demo_output: str, yesterday: dt.date) -> None:
    """The demo's "Replay now" lines, run as printed: yesterday's card (no results) is
    predicted and measured against the stored day at once, without waiting for midnight."""
    replay = demo_output.split("Replay now:", 1)[1].splitlines()
    predict_line, measure_line = replay[0].split("(")[0].split(), replay[1].split()
    assert predict_line == ["feature-assets", "predict", "--day", str(yesterday)]
    predicted = feature_assets_command(env, *predict_line[1:])
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    measured = subprocess.run(
        measure_line, env=env, cwd=home.parent, capture_output=True, text=True, timeout=300
    )
    assert measured.returncode == 0, measured.stderr[-3000:]
    lake = DailyParquetStorage(str(home / "data" / "parquet"))
    stored = lake.read_days(predict.TABLE, [str(yesterday)])
    outcomes = lake.read_days("prediction_results", [str(yesterday)])
    with sqlite3.connect(home / "data" / "demo.sqlite") as connection:
        winners = connection.execute(
            "SELECT e.race_id, e.lane FROM race_entries e JOIN races r ON r.race_id = e.race_id"
            " WHERE DATE(r.race_date) = ? AND e.finish_position = 1",
            (str(yesterday),),
        ).fetchall()
    assert stored["card_snapshot"].nunique() == 1 and stored["race_id"].nunique() == 5
    won = outcomes.loc[outcomes["won"], ["race_id", "lane"]].itertuples(index=False)
    assert sorted(map(tuple, won)) == sorted(winners)


def _measure(race_day, storage: str, alerts, day: str = RACE_DAY, instance=None):
    training = TrainingStorage(storage_url=storage, optuna_url="sqlite://")
    return materialize(
        [prediction_results],
        partition_key=day,
        instance=instance or race_day["instance"],
        resources={"training": training, "alerts": alerts},
        raise_on_error=False,
    )


def test_results_beside_predictions_measure_the_day_as_sklearn_does(race_day, fake_slack):
    alerts = SlackAlerts(token="xoxb-test", channel="C1", api_url=fake_slack)
    result = _measure(race_day, race_day["storage"], alerts)
    assert result.success
    rows = race_day["lake"].read_days("prediction_results", [RACE_DAY])
    truth = race_day["predicted"].merge(race_day["entries"][["race_id", "lane", "finish_position"]])
    truth = truth[truth.groupby("race_id")["finish_position"].transform(lambda f: (f == 1).any())]
    winners = truth.groupby("race_id")["finish_position"].agg(lambda f: int((f == 1).sum()))
    assert len(rows) == len(truth)  # a dead heat for 1st: two winners
    assert rows.groupby("race_id")["won"].sum().to_dict() == winners.to_dict()
    [materialization] = result.asset_materializations_for_node("prediction_results")
    metadata = materialization.metadata
    expected = log_loss(truth["finish_position"].eq(1), truth["win_probability"])
    # stored at full precision: equal to sklearn's up to float summation order
    assert metadata["log_loss_day"].value == pytest.approx(expected, rel=1e-12)
    assert metadata["log_loss_so_far"].value == pytest.approx(expected, rel=1e-12)
    assert "log_loss_backtest" in metadata and "| log_loss |" in metadata["figures"].value
    picks = race_day["predicted"].query("rank == 1").drop_duplicates("race_id")
    shown = [record.data["probability"] for record in metadata["picks_and_winners"].value.records]
    assert shown == picks["win_probability"].astype(float).tolist()  # not rounded
    for plot in ("cumulative_return", "rolling_log_loss", "reliability"):
        chart = metadata[plot].value
        assert chart.startswith("![") and "](data:image/svg+xml," in chart
        assert len(chart) < inline_chart.INLINE_LIMIT  # so the UI shows it in the row
    assert metadata["drift"].value == "none" and FakeSlack.received == []


def test_tomorrows_card_waits_for_todays_results_that_its_features_read(race_day, tmp_path):
    """The features of D read D-1's results, as training did: before today has ended in
    Tokyo, tomorrow cannot be predicted with them, and no card is taken for nothing."""
    storage, lake = _copied_lake(race_day, tmp_path)
    today = dt.datetime.now(dt.timezone(dt.timedelta(hours=9))).date()
    tomorrow = str(today + dt.timedelta(days=1))
    result = _predict(race_day["instance"], race_day["url"], storage, day=tomorrow)
    assert not result.success
    assert _failure_text(result) == (
        f"{tomorrow}: its features read the results of {today}, which has not ended in Tokyo"
        f" (training read them too); predict {tomorrow} once the daily run has stored {today}"
    )
    assert cards.snapshot_ids(lake, tomorrow) == []


def test_a_day_without_races_is_predicted_and_measured_empty_without_an_alert(
    race_day, tmp_path, fake_slack
):
    """A real calendar has days without racing: the scheduled prediction of such a day and
    its measure succeed with nothing in them (no failed run, no alert) and keep the card."""
    storage, lake = _copied_lake(race_day, tmp_path)
    day_off = (dt.date.fromisoformat(RACE_DAY) + dt.timedelta(days=1)).isoformat()
    alerts = SlackAlerts(token="xoxb-test", channel="C1", api_url=fake_slack)
    with instance_for_test() as instance:
        predicted = _predict(instance, race_day["url"], storage, day=day_off)
        assert predicted.success, _failure_text(predicted)
        [card_id] = cards.snapshot_ids(lake, day_off)
        [stored] = predicted.asset_materializations_for_node("predictions")
        assert stored.metadata["card_snapshot"].value == card_id
        assert stored.metadata["races"].value == 0
        assert lake.read_days(predict.TABLE, [day_off]).empty
        sets = list(registered_sets())
        assert materialize_days(race_day["url"], storage, instance, sets, day_off, day_off).success
        assert lake.read_days("raw_races", [day_off]).empty
        assert _measure(race_day, storage, alerts, instance=instance).success  # the day before
        measured = _measure(race_day, storage, alerts, day=day_off, instance=instance)
        assert measured.success, _failure_text(measured)
    [materialization] = measured.asset_materializations_for_node("prediction_results")
    metadata = materialization.metadata
    assert "| races | 0 | " in metadata["figures"].value
    assert metadata["days_so_far"].value == 1  # RACE_DAY: a day off is no race day
    assert metadata["model_sha256"].value == "-" and FakeSlack.received == []


# an <img> as the browser decoded it, drawn on a canvas and read back: (its src, a PNG of it)
REDRAWN = """image => image.decode().then(() => {
    const canvas = document.createElement("canvas");
    canvas.width = image.naturalWidth;
    canvas.height = image.naturalHeight;
    canvas.getContext("2d").drawImage(image, 0, 0);
    return [image.src, canvas.toDataURL("image/png")];
})"""


def _pixels(data_url: str) -> np.ndarray:
    from PIL import Image

    png = base64.b64decode(data_url.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGBA"))


@pytest.mark.e2e
def test_the_ui_shows_the_days_picks_beside_the_winners_with_figures_and_plots(
    race_day, fake_slack, tmp_path
):
    """The day's page of `prediction_results` in Dagster's own UI, served by dagster-webserver
    and opened in Chromium, everything inline in its row: the figures, each race's pick beside
    its winner (a table), and the three charts, drawn by the browser (the UI's Markdown
    sanitiser keeps their `data:` sources)."""
    from playwright.sync_api import sync_playwright

    alerts = SlackAlerts(token="xoxb-test", channel="C1", api_url=fake_slack)
    measured = _measure(race_day, race_day["storage"], alerts)
    assert measured.success
    [materialization] = measured.asset_materializations_for_node("prediction_results")
    metadata = materialization.metadata
    home = Path(race_day["instance"].root_directory)
    with open(home / "dagster.yaml", "a") as config:
        config.write("nux:\n  enabled: false\n")  # no newsletter dialog over the page
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEATURE_ASSETS_")}
    env["DAGSTER_HOME"] = str(home)
    env["FEATURE_ASSETS_PREDICT_START_DATE"] = FIRST_DAY.isoformat()  # RACE_DAY's partition
    with dagster_services(env, tmp_path, "webserver") as port, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1400})
        page.goto(
            f"http://127.0.0.1:{port}/assets/prediction_results"
            f"?view=partitions&partition={RACE_DAY}"
        )

        def row(label: str):
            return page.locator("tr").filter(has=page.get_by_text(label, exact=True))

        row("log_loss_day").wait_for(timeout=60_000)
        for name in ("log_loss_day", "log_loss_so_far", "top_pick_hit_rate_day"):
            assert row(name).locator("td").nth(1).inner_text() == str(metadata[name].value)
        figures = row("figures").inner_text()  # under 1,000 characters: inline
        assert "backtest (test split, final odds)" in figures and "top_pick_return" in figures

        picks = row("picks_and_winners")  # a table: inline whatever its length
        header = picks.locator("thead th").all_inner_texts()
        cells = [tr.split("\t") for tr in picks.locator("tbody tr").all_inner_texts()]
        races = [dict(zip(header, race, strict=True)) for race in cells]
        entries = race_day["entries"]
        winners = entries[entries["finish_position"] == 1]["lane"].astype(int)
        assert sorted(int(race["winner_lane"]) for race in races) == sorted(winners)
        for race in races:
            assert race["pick_won"] == str(race["pick_lane"] == race["winner_lane"]).lower()

        for plot in ("cumulative_return", "rolling_log_loss", "reliability"):
            assert row(plot).get_by_text("[Show Markdown]").count() == 0, f"{plot} is not inline"
            source, drawn = row(plot).locator("img").evaluate(REDRAWN)
            assert unquote(source) == unquote(metadata[plot].value.split("](", 1)[1][:-1])
            pixels = _pixels(drawn)
            assert pixels.shape[:2] == (132, 366), plot  # the chart's own size, decoded
            series = np.all(pixels[..., :3] == (0x1F, 0x77, 0xB4), axis=-1) & (pixels[..., 3] > 0)
            assert series.sum() > 20, f"{plot}: its series is not drawn"
        browser.close()


def test_a_live_log_loss_outside_the_backtest_range_is_posted(race_day, fake_slack, monkeypatch):
    """A backtest whose every day scored a log loss of 0.01: one live day is far outside."""
    lake = race_day["lake"]
    info = json.loads(lake.read_file(predict.MODEL_INFO_PATH))
    info["backtest"]["daily"] = {
        day: [n, 0.01 * n] for day, (n, _) in info["backtest"]["daily"].items()
    }
    copy = race_day["storage"] + "-drift"
    shutil.copytree(race_day["storage"], copy)
    DailyParquetStorage(copy).write_file(predict.MODEL_INFO_PATH, json.dumps(info).encode())
    monkeypatch.setenv("FEATURE_ASSETS_DRIFT_DAYS", "1")
    alerts = SlackAlerts(token="xoxb-test", channel="C1", api_url=fake_slack)
    result = _measure(race_day, copy, alerts)
    assert result.success
    [(_, _, fields)] = FakeSlack.received
    assert fields["channel"] == "C1"
    assert f"{RACE_DAY}: log loss of the last 1 race days is" in fields["text"]
    assert "outside the backtest's 0.0100...0.0100" in fields["text"]


def test_the_latest_day_is_measured_once_both_its_prediction_and_results_are_stored():
    from dagster import AssetKey, AssetMaterialization, evaluate_automation_conditions

    from feature_assets.definitions import defs
    from feature_assets.partitions import daily_partitions

    results = AssetKey("prediction_results")
    day = daily_partitions.get_last_partition_key()  # yesterday in Tokyo, the daily run's
    before = (dt.date.fromisoformat(day) - dt.timedelta(days=1)).isoformat()
    with instance_for_test() as instance:

        def stored(asset: str, partition: str) -> None:
            instance.report_runless_asset_event(AssetMaterialization(asset, partition=partition))

        stored("predictions", day)  # in the morning of the race day; its results not yet in
        stored("raw_race_entries", before)  # a day stored but never predicted
        tick = evaluate_automation_conditions(defs=defs, instance=instance)
        assert tick.total_requested == 0
        stored("raw_race_entries", day)  # the daily run the next morning
        tick = evaluate_automation_conditions(defs=defs, instance=instance, cursor=tick.cursor)
        assert tick.total_requested == 1
        assert tick.get_requested_partitions(results) == {day}


@pytest.mark.e2e
def test_the_schedule_predicts_the_tokyo_day_and_is_off_unless_a_cron_is_set(tmp_path):
    from dagster import DefaultScheduleStatus, build_schedule_context

    from feature_assets.definitions import defs
    from feature_assets.defs.predictions import predict_today

    assert predict_today.default_status == DefaultScheduleStatus.STOPPED
    late_evening_utc = dt.datetime(2025, 3, 1, 23, 30, tzinfo=dt.UTC)  # 08:30 on 2 March in Tokyo
    context = build_schedule_context(
        scheduled_execution_time=late_evening_utc, repository_def=defs.get_repository_def()
    )
    request = predict_today.evaluate_tick(context).run_requests[0]
    assert request.partition_key == "2025-03-02"
    code = (
        "from feature_assets.definitions import defs\n"
        "s = defs.resolve_schedule_def('predict_today')\n"
        "print(s.cron_schedule, s.default_status.value, s.execution_timezone)\n"
    )
    env = command_env(tmp_path, FEATURE_ASSETS_PREDICT_CRON="15 7 * * *")
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert run.stdout.split("\n")[0] == "15 7 * * * RUNNING Asia/Tokyo", run.stderr[-2000:]
    env["FEATURE_ASSETS_PREDICT_CRON"] = "at dawn"
    bad = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert bad.returncode != 0 and "FEATURE_ASSETS_PREDICT_CRON: invalid cron" in bad.stderr
