"""The ranking objective: one LightGBM query group per race, trials judged by NDCG@1, and
probabilities as a softmax per race fitted on the validation period."""

import numpy as np
import optuna
import pytest

from feature_assets.training import model, search
from tests.helpers import SMALL_FEATURES, SMALL_PARAMS


def test_a_ranking_dataset_has_one_group_per_race(feature_table):
    rows = feature_table[feature_table["split"] == "train"]
    built = model.dataset(rows, SMALL_FEATURES, objective="lambdarank").construct()
    sizes = rows.groupby("race_id", sort=False).size().to_numpy()
    assert np.array_equal(np.diff(built.get_field("group")), sizes)


def test_a_ranking_model_gives_calibrated_probabilities_per_race(feature_table):
    final = model.train_final(feature_table, SMALL_FEATURES, SMALL_PARAMS, 1, 7, "lambdarank")
    assert final.calibration.kind == "softmax" and final.calibration.slope > 0
    test = feature_table[feature_table["split"] == "test"]
    p = model.race_probabilities(final.booster, test, SMALL_FEATURES, final.calibration)
    assert np.allclose(p.groupby(test["race_id"]).sum(), 1.0) and (p > 0).all()
    assert 0 < final.test["top_pick_hit_rate"] < 1 and 0 < final.test["log_loss"] < 1
    binary = model.train_final(feature_table, SMALL_FEATURES, SMALL_PARAMS, 1, 7)
    assert binary.calibration.kind == "platt"
    assert final.booster.params["objective"] == "lambdarank"


def test_a_ranking_search_maximises_ndcg_and_keeps_its_objective(feature_table, tmp_path):
    storage = search.open_storage(f"sqlite:///{tmp_path / 'studies.sqlite'}", 30)
    study = search.start_search(storage, "rank", 3, 1, "table-1", "lambdarank")
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE
    train = model.dataset(
        feature_table[feature_table["split"] == "train"], SMALL_FEATURES, objective="lambdarank"
    )
    validation = model.dataset(
        feature_table[feature_table["split"] == "validation"],
        SMALL_FEATURES,
        reference=train,
        objective="lambdarank",
    )
    objective = search.win_objective(train, validation, 1, 7, "worker", "lambdarank")
    assert search.run_trials(storage, "rank", objective) == 3
    loaded = optuna.load_study(study_name="rank", storage=storage)
    assert search.objective_of(loaded) == "lambdarank" and 0 < loaded.best_value <= 1
    with pytest.raises(search.SearchError, match="tunes the lambdarank objective, not binary"):
        search.start_search(storage, "rank", 1, 1, "table-1", "binary")


def test_the_walk_forward_backtest_takes_the_ranking_objective(feature_table):
    from feature_assets.training import walk_forward as wf

    test = feature_table["split"] == "test"
    months = wf.walk_forward(
        feature_table, SMALL_FEATURES, SMALL_PARAMS, 20, 1, 7, test, "lambdarank"
    )
    for month in months:
        assert np.allclose(month.rows.groupby("race_id")["win_probability"].sum(), 1.0)
    assert sum(len(m.rows) for m in months) == int(test.sum())
