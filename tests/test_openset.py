"""Open-set classifiers on synthetic features: few shots, rejection scores, thresholds, persistence."""

from __future__ import annotations

import math

import numpy as np
import pytest

from imgorigin.attribution.openset import (
    _LINEAR_FITS,
    KNN_TEMPERATURE,
    REJECTIONS,
    KNNClassifier,
    LinearProbe,
    OpenSetClassifier,
    _rejection_arrays,
    _rejection_score,
)
from imgorigin.attribution.spec import BackboneSpec
from imgorigin.metrics import auroc, closed_set_accuracy

DIM = 16
CENTRES = np.random.default_rng(0).normal(0, 2.0, (6, DIM))  # classes a, b, c, d known; 4 and 5 unknown


def blobs(shots: int, seed: int, classes: str = "abcd") -> tuple[np.ndarray, np.ndarray]:
    """``shots`` points per class around that class's centre (unit noise)."""
    rng = np.random.default_rng(seed)
    x = np.concatenate([CENTRES["abcdef".index(c)] + rng.normal(0, 1, (shots, DIM)) for c in classes])
    return x, np.repeat(np.array(list(classes)), shots)


X_TEST, Y_TEST = blobs(100, seed=1)
X_UNKNOWN, _ = blobs(100, seed=2, classes="ef")
FAST_CS = (1e-4, 1e-2, 1.0, 1e2)


@pytest.mark.parametrize("shots", [1, 5, 10])
@pytest.mark.parametrize(
    "make",
    [lambda r: LinearProbe(Cs=FAST_CS, rejection=r), lambda r: KNNClassifier(rejection=r)],
    ids=["linear", "knn"],
)
def test_few_shot_attribution_and_rejection(make, shots):
    x, y = blobs(shots, seed=3)
    clf = make("knn").fit(x, y)
    assert closed_set_accuracy(Y_TEST, clf.predict_closed_set(X_TEST)) >= 0.97
    assert auroc(clf.score_samples(X_TEST), clf.score_samples(X_UNKNOWN)) >= 0.97
    assert clf.predict_proba(X_TEST).shape == (400, 4)
    np.testing.assert_allclose(clf.predict_proba(X_TEST).sum(axis=1), 1.0)
    if shots == 1:
        assert "single image" in clf.selection_ and clf.threshold_ == -math.inf
        assert set(clf.predict(X_UNKNOWN)) <= set("abcd")  # no threshold: nothing rejected until one is set
        with pytest.raises(ValueError, match="single image"):
            clf.set_accept_rate(0.9)
    else:
        assert "held out as unknown" in clf.selection_
        predicted = clf.predict(np.concatenate([X_TEST, X_UNKNOWN]))
        assert np.mean(predicted[:400] == Y_TEST) >= 0.8  # most knowns accepted and right
        assert np.mean(predicted[400:] == "unknown") >= 0.8  # most unknowns rejected


def test_threshold_accepts_the_stated_fraction_of_validation_scores():
    x, y = blobs(10, seed=4)
    clf = LinearProbe(Cs=FAST_CS, rejection="mahalanobis").fit(x, y)
    scores = np.sort(clf.validation_scores_)
    assert len(scores) == 40  # out-of-fold: every known training image scored by a model that did not see it
    assert clf.threshold_ == scores[2]  # floor(5 % of 40) = 2 lowest rejected
    assert np.mean(clf.validation_scores_ >= clf.threshold_) == 0.95
    clf.set_accept_rate(0.5)
    assert clf.threshold_ == scores[20] and clf.accept_rate == 0.5
    # on fresh known images the acceptance is close to the stated rate
    x50, y50 = blobs(50, seed=5)
    fitted = LinearProbe(Cs=FAST_CS, rejection="mahalanobis").fit(x50, y50)
    assert abs(np.mean(fitted.score_samples(X_TEST) >= fitted.threshold_) - 0.95) < 0.04


def test_class_p_values_by_hand():
    x, y = blobs(10, seed=4)
    clf = LinearProbe(Cs=FAST_CS, rejection="maxlogit").fit(x, y)
    assert clf.validation_labels_.tolist() == np.unique(y, return_inverse=True)[1].tolist()
    queries = X_TEST[[0, 150, 399]]  # most likely classes a, b, d
    top, scores = clf.decision_function(queries).argmax(axis=1), clf.score_samples(queries)
    for i in range(3):  # p = (1 + #{held-out scores of the image's class <= its score}) / (10 + 1)
        held = clf.validation_scores_[clf.validation_labels_ == top[i]]
        assert clf.class_p_values(queries)[i] == (1 + np.sum(held <= scores[i])) / 11
    # a per-class threshold: about the stated fraction of fresh images of every class is accepted
    x50, y50 = blobs(50, seed=5)
    p = LinearProbe(Cs=FAST_CS, rejection="maxlogit").fit(x50, y50).class_p_values(X_TEST)
    for c in "abcd":
        assert abs(np.mean(p[np.char.equal(Y_TEST, c)] > 0.05) - 0.95) <= 0.06, c
    assert (clf.class_p_values(X_UNKNOWN) < clf.class_p_values(X_TEST).mean()).mean() > 0.8
    clf.validation_labels_ = None  # saved by an older version: all classes' scores, the global threshold
    pooled = clf.class_p_values(queries)
    assert pooled[0] == (1 + np.sum(clf.validation_scores_ <= scores[0])) / 41
    clf.validation_scores_ = None
    assert clf.class_p_values(queries).tolist() == [1.0, 1.0, 1.0]


def test_all_rejection_scores_rank_knowns_above_unknowns():
    x, y = blobs(20, seed=6)
    for rejection in REJECTIONS:
        clf = LinearProbe(Cs=(1.0,), rejection=rejection).fit(x, y)
        known, unknown = clf.score_samples(X_TEST), clf.score_samples(X_UNKNOWN)
        assert auroc(known, unknown) > 0.85, rejection
    logits = clf.decision_function(X_TEST[:3])
    np.testing.assert_allclose(
        LinearProbe(Cs=(1.0,), rejection="energy").fit(x, y).score_samples(X_TEST[:3]),
        np.log(np.exp(logits).sum(axis=1)),
    )


def test_knn_votes_by_hand():
    # a at (1, 0) twice, b at (0, 1) twice (cosine ignores length); k = 2.  Query (5, 0): both a images at
    # similarity 1 are the neighbours -> votes a = 2 e^(1/0.07), b = 0 -> probabilities (1, 0)
    x = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [0.0, 3.0]])
    clf = KNNClassifier(ks=(2,), rejection="maxlogit").fit(x, np.array(["a", "a", "b", "b"]))
    assert clf.param_ == 2
    proba = clf.predict_proba(np.array([[5.0, 0.0], [1.0, 0.2]]))
    np.testing.assert_allclose(proba[0], [1.0, 0.0], atol=1e-300)
    # (1, 0.2): cos to a = 0.9806, to b = 0.1961; k = 2 takes both a -> votes a = 2 exp(0.9806 / 0.07)
    assert clf.score_samples(np.array([[1.0, 0.2]]))[0] == pytest.approx(
        math.log(2) + 0.98058 / KNN_TEMPERATURE, abs=1e-4
    )


def test_validation_unknowns_and_two_classes():
    x, y = blobs(10, seed=7, classes="ab")
    clf = LinearProbe(Cs=FAST_CS).fit(x, y)
    assert "closed-set validation accuracy" in clf.selection_
    with_unknowns = LinearProbe(Cs=FAST_CS).fit(x, y, X_unknown=blobs(5, seed=8, classes="e")[0])
    assert "given unknowns" in with_unknowns.selection_
    assert [r["param"] for r in with_unknowns.validation_] == list(FAST_CS)
    # two classes keep a softmax over two logits, equal to scikit-learn's binary probabilities
    from sklearn.linear_model import LogisticRegression

    mean, scale = x.mean(axis=0), x.std(axis=0)
    reference = LogisticRegression(C=clf.param_, solver="newton-cg", max_iter=1000).fit((x - mean) / scale, y)
    np.testing.assert_allclose(
        clf.predict_proba(X_TEST[:5]), reference.predict_proba((X_TEST[:5] - mean) / scale), atol=1e-6
    )


def test_score_is_open_set_accuracy():
    x, y = blobs(10, seed=9)
    clf = KNNClassifier(rejection="knn").fit(x, y)
    labels = np.concatenate([Y_TEST, np.full(200, "e")])  # any label outside the classes means "unknown"
    features = np.concatenate([X_TEST, X_UNKNOWN])
    expected = np.mean(clf.predict(features) == np.where(np.isin(labels, list("abcd")), labels, "unknown"))
    assert clf.score(features, labels) == pytest.approx(expected) and expected > 0.85


@pytest.mark.parametrize(
    "make",
    [lambda: LinearProbe(Cs=FAST_CS, rejection="mahalanobis"), lambda: KNNClassifier(rejection="energy")],
    ids=["linear", "knn"],
)
def test_save_and_load_round_trip(make, tmp_path):
    x, y = blobs(5, seed=10)
    spec = BackboneSpec("spectrum", "spectrum-v1", "grid", "spectrum-pre")
    clf = make().fit(x, y, backbone=spec, train_dir="train", skipped=[("bad.png", "not an image")])
    clf.save(tmp_path / "clf")
    assert sorted(p.name for p in (tmp_path / "clf").iterdir()) == ["classifier.json", "weights.safetensors"]
    loaded = OpenSetClassifier.load(tmp_path / "clf")
    assert type(loaded) is type(clf) and type(loaded).load(tmp_path / "clf").kind == clf.kind
    assert loaded.backbone_ == spec and loaded.training_ == clf.training_ and list(loaded.classes_) == list("abcd")
    assert loaded.training_.train_counts == {c: int((y == c).sum()) for c in "abcd"}
    assert loaded.training_.errors == (("bad.png", "not an image"),)
    assert loaded.threshold_ == clf.threshold_ and loaded.selection_ == clf.selection_
    np.testing.assert_array_equal(loaded.predict_proba(X_TEST), clf.predict_proba(X_TEST))
    np.testing.assert_array_equal(loaded.score_samples(X_UNKNOWN), clf.score_samples(X_UNKNOWN))
    np.testing.assert_array_equal(loaded.predict(X_UNKNOWN), clf.predict(X_UNKNOWN))
    np.testing.assert_array_equal(loaded.class_p_values(X_UNKNOWN), clf.class_p_values(X_UNKNOWN))
    loaded.set_accept_rate(0.8)  # the validation scores travel with the classifier
    assert loaded.threshold_ >= clf.threshold_


def test_input_checks():
    x, y = blobs(3, seed=11, classes="ab")
    with pytest.raises(ValueError, match="reserved"):
        LinearProbe().fit(x, np.where(y == "a", "unknown", y))
    with pytest.raises(ValueError, match="two known classes"):
        LinearProbe().fit(x[:3], y[:3])
    with pytest.raises(ValueError, match="rejection"):
        LinearProbe(rejection="odin")


def test_mahalanobis_low_rank_form_equals_the_explicit_shrunk_precision():
    from sklearn.covariance import ledoit_wolf

    from imgorigin.attribution.openset import _fit_mahalanobis, _mahalanobis_score

    rng = np.random.default_rng(12)
    for n, dim in [(30, 50), (200, 20)]:  # fewer and more images than dimensions
        x = rng.normal(size=(n, dim)) * rng.uniform(0.1, 3, dim)
        y = np.arange(n) % 3
        means = np.stack([x[y == c].mean(axis=0) for c in range(3)])
        covariance, _ = ledoit_wolf(x - means[y], assume_centered=True)
        precision = np.linalg.inv(covariance + 1e-6 * np.mean((x - means[y]) ** 2) * np.eye(dim))
        queries = rng.normal(size=(7, dim))
        explicit = -np.min([np.einsum("nd,de,ne->n", queries - m, precision, queries - m) for m in means], axis=0)
        np.testing.assert_allclose(_mahalanobis_score(_fit_mahalanobis(x, y, 3), queries), explicit, rtol=1e-10)


def test_relative_mahalanobis_by_hand():
    # Euclidean geometry (no covariance axes): background distance minus the nearest class's
    euclid = {"inverse_a": np.array([1.0]), "basis": np.zeros((2, 1)), "weights": np.zeros(1)}
    arrays = {"means": np.array([[1.0, 0.0], [0.0, 3.0]]), **euclid}
    arrays |= {f"background.{k}": v for k, v in {**euclid, "means": np.array([[0.0, 1.0]])}.items()}
    x = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 3.0]])
    # [0,0]: 1 - min(1, 9) = 0; [2,0]: 5 - min(1, 13) = 4; [0,3]: 4 - min(10, 0) = 4
    np.testing.assert_allclose(_rejection_score("rel-mahalanobis", arrays, x, None), [0.0, 4.0, 4.0])


def test_relative_mahalanobis_fit_matches_dense_ledoit_wolf():
    from sklearn.covariance import LedoitWolf

    x, y = blobs(10, seed=7)
    labels = np.unique(y, return_inverse=True)[1]
    arrays = _rejection_arrays("rel-mahalanobis", x, labels, 4)

    def dense(centred: np.ndarray, points: np.ndarray) -> np.ndarray:
        cov = LedoitWolf(assume_centered=True).fit(centred).covariance_
        cov += 1e-6 * np.mean(centred**2) * np.eye(DIM)
        return np.einsum("nd,de,ne->n", points, np.linalg.inv(cov), points)

    means = np.stack([x[labels == c].mean(axis=0) for c in range(4)])
    within = np.stack([dense(x - means[labels], X_TEST - m) for m in means], axis=1)
    background = dense(x - x.mean(axis=0), X_TEST - x.mean(axis=0))
    got = _rejection_score("rel-mahalanobis", arrays, X_TEST, None)
    np.testing.assert_allclose(got, background - within.min(axis=1), rtol=1e-6, atol=1e-6)


def test_class_knn_by_hand():
    bank = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-1.0, 0.0]])
    arrays = _rejection_arrays("class-knn", bank, np.array([0, 0, 1, 1]), 2)
    # leave-one-out nearest distances: class 0: 1 - 0.8 = 0.2 for both; class 1: 1 - 0 = 1 for both
    np.testing.assert_allclose(arrays["scales"], [0.2, 1.0])
    x = np.array([[1.0, 0.0], [-0.6, 0.8], [0.0, -1.0]])
    # [1,0]: class 0 at distance 0 -> 0; [-0.6,0.8]: class 1 at 1 - 0.8 = 0.2 -> 0.2 (class 0: 1 / 0.2 = 5);
    # [0,-1]: class 0 nearest 1 - 0 = 1 -> 5, class 1 nearest 1 - 0 = 1 -> 1
    np.testing.assert_allclose(_rejection_score("class-knn", arrays, x, None), [0.0, -0.2, -1.0], atol=1e-12)
    single = _rejection_arrays("class-knn", bank[:3], np.array([0, 0, 1]), 2)
    np.testing.assert_allclose(single["scales"], [0.2, 0.2])  # a one-image class takes the others' mean


@pytest.mark.parametrize("rejection", ["rel-mahalanobis", "class-knn"])
def test_class_conditional_rejections_fit_save_and_load(rejection, tmp_path):
    x, y = blobs(10, seed=3)
    clf = KNNClassifier(rejection=rejection).fit(x, y)
    assert auroc(clf.score_samples(X_TEST), clf.score_samples(X_UNKNOWN)) >= 0.97
    clf.save(tmp_path / "clf")
    again = OpenSetClassifier.load(tmp_path / "clf")
    np.testing.assert_array_equal(again.score_samples(X_TEST), clf.score_samples(X_TEST))
    assert again.digest() == clf.digest()


def test_linear_fits_are_remembered_and_identical():
    x, y = blobs(10, seed=8)
    first = LinearProbe(Cs=FAST_CS, rejection="msp").fit(x, y)
    assert len(_LINEAR_FITS) > 0
    _LINEAR_FITS.clear()
    fresh = LinearProbe(Cs=FAST_CS, rejection="msp").fit(x, y)
    remembered = LinearProbe(Cs=FAST_CS, rejection="energy").fit(x, y)  # the same fits, from the memo
    np.testing.assert_array_equal(first.state_[0]["coef"], fresh.state_[0]["coef"])
    np.testing.assert_array_equal(remembered.state_[0]["coef"], fresh.state_[0]["coef"])
