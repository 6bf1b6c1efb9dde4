"""The annotation task of a real (tiny) Decoy MNIST run: what it selects and serves, the oracles
from the command line writing the expected masks, resuming a store, fine-tuning on a store's
decisions, and the one-line refusals."""
import re
import time

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from pyro_ebnn.annotate import AnnotationTask, create_app, oracle_answer
from pyro_ebnn.annotate.selection import predictive_entropy
from pyro_ebnn.annotate.session import page_token
from pyro_ebnn.cli import cli
from pyro_ebnn.data import ImageSet, load_dataset, load_image_folder, with_masks
from pyro_ebnn.data.store import FeedbackStore
from pyro_ebnn.experiment.config import load_config
from pyro_ebnn.experiment.feedback import open_store, store_fingerprint
from pyro_ebnn.experiment.protocol import prepare_split, training_indices
from pyro_ebnn.experiment.rundir import read_metrics
from pyro_ebnn.experiment.runs import train
from pyro_ebnn.explain.regions import Regions

from image_fixtures import write_folder

#: a tiny run: 300 train+val images in 3 folds (200 train), 100 test images, one epoch
TINY = {"max_train_images": 300, "max_test_images": 100, "epochs": 1, "eval_samples": 2, "batch_size": 64,
        "num_folds": 3, "finetune_epochs": 1, "patience": None}
POOL, SAMPLES = 40, 3


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("annotate") / "run"
    train(load_config("configs/decoy_mnist_corners.yaml", TINY), out, progress=False)
    return out


@pytest.fixture(scope="module")
def data(run):
    """(config, train+val images, the run's training indices) as the run sees them."""
    cfg = load_config(str(run / "config.yaml"))
    trainval, sets = load_dataset(cfg)
    return cfg, trainval, training_indices(cfg, trainval, sets)


def _annotate(run, store, *options):
    return CliRunner().invoke(cli, ["annotate", "--run", str(run), "--store", str(store), "--pool", str(POOL),
                                    "--samples", str(SAMPLES), *options])


def test_the_task_serves_the_page_from_the_runs_training_images(run, data, tmp_path, capsys):
    cfg, trainval, train_idx = data
    task = AnnotationTask(run, pool=POOL, samples=SAMPLES, seed=3)
    assert len(task.pool) == POOL and set(task.pool) <= set(train_idx)          # never a validation image
    assert np.array_equal(task.pool, AnnotationTask(run, pool=POOL, seed=3).pool)  # the seed fixes the pool
    assert not np.array_equal(task.pool, AnnotationTask(run, pool=POOL, seed=4).pool)
    chosen = task.select("explanation", 4)
    assert len(set(chosen)) == 4 and set(chosen) <= set(task.pool)
    # the page over the real task: each image's first request computes its explanation and regions
    with open_store(tmp_path / "s.sqlite", cfg, trainval, "alice") as store:
        client = create_app(task, store).test_client()
        assert client.get("/api/items").get_json()["progress"]["total"] == 4
        seconds = []
        for index in chosen:
            t0 = time.perf_counter()
            item = client.get(f"/api/items/{index}").get_json()
            for png in ("image.png", "heatmap.png"):
                assert client.get(f"/api/items/{index}/{png}").status_code == 200
            seconds.append(time.perf_counter() - t0)
            assert item["prediction"]["label"] == int(trainval.labels[index]) and len(item["segments"]) == 28 * 28
    for index in chosen:
        assert np.array_equal(task.image(index)[..., 0], trainval[index][0][0].numpy())
        p = task.prediction(index)
        assert sum(p["probs"]) == pytest.approx(1, abs=1e-5) and p["label"] == int(trainval.labels[index])
        assert p["predicted"] == int(np.argmax(p["probs"])) and 0 <= p["mutual_information"] <= p["entropy"]
        heat = task.heatmap(index)
        assert heat.shape == (28, 28) and heat.min() >= 0
        segments, ids = task.regions(index)
        assert segments.shape == (28, 28) and set(ids) <= set(np.unique(segments).tolist())
    with capsys.disabled():
        print(f"\n  real task (LeNet, 28 px): first request of an image (item, image, heat map) "
              f"{1000 * np.median(seconds):.0f} ms median, {1000 * max(seconds):.0f} ms at most")


def test_entropy_takes_the_most_uncertain_pool_images_and_resumes_with_the_next(run, tmp_path):
    task = AnnotationTask(run, pool=POOL, samples=SAMPLES)
    first = task.select("entropy", 5)
    entropy = dict(zip(task.pool.tolist(), predictive_entropy(task._quantity("entropy"))))
    others = [entropy[i] for i in task.pool.tolist() if i not in first]
    assert min(entropy[i] for i in first) >= max(others)
    second = task.select("entropy", 5, answered=first)
    assert not set(first) & set(second)
    ranked = sorted(task.pool.tolist(), key=lambda i: (-entropy[i], i))
    assert set(first) | set(second) == set(ranked[:10])


def test_oracle_truth_from_the_cli_writes_exactly_the_datasets_masks(run, data, tmp_path):
    cfg, trainval, train_idx = data
    res = _annotate(run, tmp_path / "s.sqlite", "--budget", "6", "--select", "bald", "--oracle", "truth")
    assert res.exit_code == 0, res.output
    assert "oracle truth answered 6 images: 6 irrelevant, 0 accepted, 0 skipped" in res.output
    with open_store(tmp_path / "s.sqlite", cfg, trainval, "oracle:truth") as store:
        answers = store.answers()
    assert len(answers) == 6 and set(answers) <= set(train_idx)
    for index, answer in answers.items():
        assert answer.decision == "irrelevant"
        assert np.array_equal(answer.mask, trainval[index][2][0].numpy())   # the four corners of that image


def test_oracle_candidates_marks_only_the_candidate_regions_that_touch_the_decoy(run, data, tmp_path):
    cfg, trainval, _ = data
    res = _annotate(run, tmp_path / "s.sqlite", "--budget", "8", "--oracle", "candidates", "--seed", "1")
    assert res.exit_code == 0, res.output
    task = AnnotationTask(run, pool=POOL, samples=SAMPLES, seed=1)
    with open_store(tmp_path / "s.sqlite", cfg, trainval, "oracle:candidates") as store:
        answers = store.answers()
    assert len(answers) == 8
    for index, answer in answers.items():
        found, truth = task.candidates(index), trainval[index][2][0].numpy()
        touching = [i for i in found.ids if truth[found.segments == i].any()]
        if touching:
            assert answer.decision == "irrelevant" and np.array_equal(answer.mask, found.mask(touching))
        else:
            assert answer.decision == "accepted" and answer.mask is None


def test_the_candidates_oracle_by_hand():
    segments = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]])
    regions = Regions(segments, np.array([0, 1, 3]), np.zeros((4, 4)), (3,), None)
    truth = np.zeros((4, 4), bool)
    truth[1, 1] = truth[2, 1] = True                            # touches segment 0 (a candidate) and 2 (not one)
    decision, mask = oracle_answer("candidates", truth, regions)
    assert decision == "irrelevant" and np.array_equal(mask, segments == 0)
    truth[:] = False
    truth[3, 0] = True                                          # only segment 2, which is no candidate
    assert oracle_answer("candidates", truth, regions) == ("accepted", None)
    assert oracle_answer("candidates", np.zeros((4, 4), bool), regions) == ("accepted", None)


def test_running_again_selects_images_not_answered_yet(run, data, tmp_path):
    cfg, trainval, _ = data
    for _ in range(2):
        res = _annotate(run, tmp_path / "s.sqlite", "--budget", "7", "--oracle", "truth")
        assert res.exit_code == 0, res.output
    assert "(7 answered by oracle:truth before)" in res.output
    with open_store(tmp_path / "s.sqlite", cfg, trainval, "oracle:truth") as store:
        assert len(store.answers()) == 14 and len(store.history()) == 14     # 14 images, none asked twice
    res = _annotate(run, tmp_path / "s.sqlite", "--budget", str(POOL - 13), "--oracle", "truth")
    assert res.exit_code == 2 and "--budget 27 is not between 1 and the 26 pool images left" in res.output


def test_a_restarted_page_keeps_its_token_and_images_until_they_are_answered(run, data, tmp_path, monkeypatch):
    cfg, trainval, _ = data
    served = []
    monkeypatch.setattr("pyro_ebnn.annotate.session.serve",
                        lambda task, store, **kwargs: served.append((list(task.indices), kwargs)))
    store = tmp_path / "s.sqlite"
    outputs = []
    for _ in range(2):
        res = _annotate(run, store, "--budget", "4", "--select", "entropy", "--annotator", "ann")
        assert res.exit_code == 0, res.output
        outputs.append(res.output)
    (first, started), (again, restarted) = served
    assert first == again and started["token"] == restarted["token"] == page_token(store)
    assert re.search(r"loading the run .* … \d+\.\d s\n", outputs[0])
    assert "ranking 40 pool images by entropy" in outputs[0]
    assert "explaining the first image" in outputs[0] and "ranking" not in outputs[1]
    assert "resumed the unfinished selection of 4 pool images by entropy (4 without an answer" in outputs[1]
    assert f"--store {store} --budget 4 --select entropy --pool 40 --samples 3 --annotator ann" \
        in started["start_command"]
    with open_store(store, cfg, trainval, "ann") as answers:
        for index in first:
            answers.record(index, "skipped")
    res = _annotate(run, store, "--budget", "4", "--select", "entropy", "--annotator", "ann")
    assert res.exit_code == 0 and "selected 4 of 40 pool images" in res.output
    assert not set(served[-1][0]) & set(first)                        # all answered: new images


#: the mask of the stores below: not the decoy, which proves where a run's masks come from
MARKED = np.zeros((28, 28), bool)
MARKED[10:14, 10:14] = True


def _store(path, cfg, trainval, irrelevant, others=()):
    """A store that marks MARKED on the images ``irrelevant`` and answers ``others`` ((index, decision))."""
    with open_store(path, cfg, trainval, "bob") as store:
        for index in irrelevant:
            store.record(int(index), "irrelevant", MARKED)
        for index, decision in others:
            store.record(int(index), decision)


def test_finetune_on_a_store_uses_its_decisions_and_counts_them(run, data, tmp_path):
    cfg, trainval, train_idx = data
    val_image = int(np.setdiff1d(np.arange(len(trainval)), train_idx)[0])   # an image this fold validates on
    _store(tmp_path / "s.sqlite", cfg, trainval, [*train_idx[:3], val_image],
           [(train_idx[3], "accepted"), (train_idx[4], "accepted"), (train_idx[5], "skipped")])
    split = prepare_split(cfg, feedback=tmp_path / "s.sqlite")
    masks = split.train.masks[:, 0].numpy()
    assert masks[:3].all(axis=0).sum() == 16 and np.array_equal(masks[0], MARKED)
    assert not masks[3:].any() and split.train.has_mask.sum() == 3
    res = CliRunner().invoke(cli, ["finetune", "--run", str(run), "--feedback", str(tmp_path / "s.sqlite"),
                                   "--out", str(tmp_path / "ft")])
    assert res.exit_code == 0, res.output
    assert "feedback: 3 irrelevant, 2 accepted, 1 skipped" in res.output
    m = read_metrics(tmp_path / "ft")
    assert (m["feedback_irrelevant"], m["feedback_accepted"], m["feedback_skipped"]) == (3, 2, 1)
    assert m["feedback_not_in_train"] == 1 and m["n_train_with_mask"] == 3 and m["mode"] == "feedback"
    assert m["feedback_store"] == str((tmp_path / "s.sqlite").resolve())
    assert m["config"]["finetune_feedback"] == str(tmp_path / "s.sqlite")


def test_train_on_a_store_takes_its_masks_in_place_of_the_datasets(run, data, tmp_path):
    """``train --feedback``: a network trained from scratch on what an annotator marked (the
    retraining route when a start model reads the shortcut too deeply to fine-tune away)."""
    cfg, trainval, train_idx = data
    _store(tmp_path / "s.sqlite", cfg, trainval, train_idx[:4], [(train_idx[4], "accepted")])
    with_store = load_config(str(run / "config.yaml"), {"mode": "feedback", "feedback_store": str(tmp_path / "s.sqlite")})
    split = prepare_split(with_store, progress=False)
    assert split.train.has_mask.sum() == 4 and np.array_equal(split.train.masks[0, 0].numpy(), MARKED)
    load_config(str(run / "config.yaml"), {"mode": "augment", "feedback_store": str(tmp_path / "s.sqlite")})  # reads masks
    res = CliRunner().invoke(cli, ["train", "--config", str(run / "config.yaml"), "--mode", "feedback", "--feedback",
                                   str(tmp_path / "s.sqlite"), "--out", str(tmp_path / "t")])
    assert res.exit_code == 0, res.output
    assert "feedback: 4 irrelevant, 1 accepted, 0 skipped" in res.output
    m = read_metrics(tmp_path / "t")
    assert m["n_train_with_mask"] == 4 and m["feedback_irrelevant"] == 4 and m["mode"] == "feedback"
    (tmp_path / "s.sqlite").rename(tmp_path / "moved.sqlite")       # evaluating the run does not read the store
    res = CliRunner().invoke(cli, ["evaluate", "--run", str(tmp_path / "t"), "--out", str(tmp_path / "e"),
                                   "--max-images", "20", "--figure-images", "2"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(cli, ["train", "--config", str(run / "config.yaml"), "--mode", "none", "--feedback",
                                   str(tmp_path / "moved.sqlite"), "--out", str(tmp_path / "none")])
    assert res.exit_code == 2 and "reads no masks" in res.output and not (tmp_path / "none").exists()


def test_a_store_of_another_dataset_is_refused_in_one_line(run, data, tmp_path):
    cfg, trainval, _ = data
    other = store_fingerprint(load_config("configs/decoy_mnist_position.yaml", TINY), trainval.labels.numpy())
    FeedbackStore(tmp_path / "other.sqlite", other, (28, 28)).record(0, "accepted")
    for command in (["finetune", "--run", str(run), "--feedback", str(tmp_path / "other.sqlite"), "--out",
                     str(tmp_path / "ft")],
                    ["annotate", "--run", str(run), "--store", str(tmp_path / "other.sqlite"), "--budget", "2",
                     "--pool", "10", "--oracle", "truth"]):
        res = CliRunner().invoke(cli, command)
        assert res.exit_code == 2 and "was made for another dataset" in res.output
        assert len(res.output.strip().splitlines()) <= 2 and "Traceback" not in res.output
    assert not (tmp_path / "ft" / "metrics.json").exists()


def test_finetune_refuses_a_missing_store_and_one_without_training_answers(run, data, tmp_path):
    cfg, trainval, train_idx = data
    res = CliRunner().invoke(cli, ["finetune", "--run", str(run), "--feedback", str(tmp_path / "none.sqlite"),
                                   "--out", str(tmp_path / "ft")])
    assert res.exit_code == 2 and "no feedback store at" in res.output
    assert not (tmp_path / "none.sqlite").exists()
    with open_store(tmp_path / "s.sqlite", cfg, trainval, "bob") as store:
        store.record(int(train_idx[0]), "skipped")
    res = CliRunner().invoke(cli, ["finetune", "--run", str(run), "--feedback", str(tmp_path / "s.sqlite"),
                                   "--out", str(tmp_path / "ft")])
    assert res.exit_code == 2 and "holds no mask or accepted explanation of this run's training images" in res.output


def test_serving_off_loopback_without_a_token_is_refused_before_any_work(run, tmp_path):
    t0 = time.perf_counter()
    res = CliRunner().invoke(cli, ["annotate", "--run", str(run), "--store", str(tmp_path / "s.sqlite"),
                                   "--budget", "2", "--host", "0.0.0.0"])
    assert res.exit_code == 2 and "pass --token" in res.output
    assert time.perf_counter() - t0 < 1 and not (tmp_path / "s.sqlite").exists()


def test_other_masks_on_a_set_read_from_disk(tmp_path):
    trainval, _ = load_image_folder(write_folder(tmp_path / "photos"), 8, 3)
    assert trainval.has_mask.any()
    mark = np.zeros((8, 8), bool)
    mark[:2, :2] = True
    replaced = with_masks(trainval, {1: mark})
    assert replaced.has_mask.tolist() == [i == 1 for i in range(len(trainval))]
    assert torch.equal(replaced[1][2][0], torch.from_numpy(mark)) and not replaced[0][2].any()
    assert torch.equal(replaced[1][0], trainval[1][0])
    sub = replaced.subset([3, 1])
    assert sub.has_mask.tolist() == [False, True] and torch.equal(sub[1][2][0], torch.from_numpy(mark))
    in_memory = with_masks(ImageSet(torch.zeros(2, 1, 8, 8), torch.tensor([0, 1]), torch.ones(2, 1, 8, 8), 2),
                           {0: mark})
    assert in_memory.has_mask.tolist() == [True, False]


def test_the_proposals_are_chosen_per_task_and_the_candidates_oracle_uses_them(run, data, tmp_path):
    from pyro_ebnn.explain.regions import blob_regions, candidate_regions
    cfg, trainval, _ = data
    blobs, thesis = AnnotationTask(run, pool=POOL, samples=SAMPLES), AnnotationTask(run, pool=POOL, samples=SAMPLES,
                                                                                     proposals="thesis")
    for index in blobs.pool[:3].tolist():
        gradcam, saliency = blobs._explained(index)
        image = trainval[index][0]
        expected = {"blobs": blob_regions(image, gradcam, saliency), "thesis": candidate_regions(image, gradcam, saliency)}
        for task, name in ((blobs, "blobs"), (thesis, "thesis")):
            segments, ids = task.regions(index)
            np.testing.assert_array_equal(segments, expected[name].segments)
            assert ids == expected[name].ids.tolist()
        assert len(blobs.regions(index)[1]) >= 1                               # every image gets a proposal
    with pytest.raises(Exception, match="blobs, thesis"):
        AnnotationTask(run, pool=POOL, proposals="slic")
    res = _annotate(run, tmp_path / "s.sqlite", "--budget", "4", "--oracle", "candidates", "--proposals", "thesis")
    assert res.exit_code == 0, res.output
    with open_store(tmp_path / "s.sqlite", cfg, trainval, "oracle:candidates") as store:
        for index, answer in store.answers().items():
            found, truth = thesis.candidates(index), trainval[index][2][0].numpy()
            touching = [i for i in found.ids if truth[found.segments == i].any()]
            assert (answer.decision == "irrelevant") == bool(touching)
            if touching:
                assert np.array_equal(answer.mask, found.mask(touching))


def test_the_mean_explanation_per_predicted_class(run):
    task = AnnotationTask(run, pool=POOL, samples=SAMPLES)
    maps, counts = task.class_heatmaps()
    predicted = task._pool_probs().mean(0).argmax(-1)
    assert maps.shape == (10, 28, 28) and counts.tolist() == np.bincount(predicted, minlength=10).tolist()
    sums = maps.reshape(10, -1).sum(1)
    # each image's map scaled to sum 1 (an image whose explanation is 0 everywhere adds 0)
    assert ((sums[counts > 0] > 0.5) & (sums[counts > 0] <= 1 + 1e-5)).all()
    assert (sums[counts == 0] == 0).all() and (maps >= 0).all()
    assert task.class_heatmaps() is task.class_heatmaps()                # computed once


def test_finetune_reads_propagated_masks_like_the_annotators_own(run, data, tmp_path):
    cfg, trainval, train_idx = data
    marked, other = np.zeros((28, 28), bool), np.zeros((28, 28), bool)
    marked[10:14, 10:14] = True
    other[0:3, 0:3] = True
    members = [int(i) for i in train_idx[:4]]
    with open_store(tmp_path / "s.sqlite", cfg, trainval, "bob") as store:
        store.record(members[1], "irrelevant", other)                  # its own answer comes first
        answer, _ = store.record_propagated((members[0], marked), [(i, marked, "place", 1.0, {"group": "c0g0"})
                                                                   for i in members])
    split = prepare_split(cfg, feedback=tmp_path / "s.sqlite")
    masks = split.train.masks[:, 0].numpy()
    assert np.array_equal(masks[0], marked) and np.array_equal(masks[1], other)
    assert np.array_equal(masks[2], marked) and np.array_equal(masks[3], marked)
    assert split.feedback["feedback_irrelevant"] == 4 and split.feedback["feedback_propagated"] == 2
    with open_store(tmp_path / "s.sqlite", cfg, trainval, "bob") as store:
        store.undo(answer.row)
    split = prepare_split(cfg, feedback=tmp_path / "s.sqlite")
    assert split.train.has_mask.sum() == 1 and split.feedback["feedback_propagated"] == 0
