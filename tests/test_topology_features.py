"""Topological features of weight matrices (studies/topology/topology.py)."""
import math
import subprocess

import numpy as np
import pytest
import torch
from ripser import ripser

from studies.topology import topology as T
from tests.helpers import module_command, subprocess_env
from tools.common import ToolError

torch.set_num_threads(1)


# ---------------------------------------------------------------- neural persistence

def test_neural_persistence_of_a_hand_computed_2x2_matrix():
    # Edges by descending |w|: r0c0=1 (merge, pers 0), r1c1=.75 (merge, .25), r0c1=.5 (merge, .5), r1c0=.25 (cycle).
    w = np.array([[1.0, 0.5], [0.25, 0.75]])
    assert np.allclose(T.neural_persistence_values(w), [0.0, 0.25, 0.5])
    value, norm = T.neural_persistence(w, p=2)
    assert value == pytest.approx(math.sqrt(0.25 ** 2 + 0.5 ** 2))
    # The paper's bound: (w_max - w_min) * (|V| - 1)^(1/p) with normalised weights 1 and .25, |V| = 4.
    assert norm == pytest.approx(value / (0.75 * math.sqrt(3)))


def test_neural_persistence_ignores_sign_and_scale():
    w = np.array([[1.0, 0.5], [0.25, 0.75]])
    signed = np.array([[-3.0, 1.5], [-0.75, 2.25]])  # 3 * w with signs flipped
    assert T.neural_persistence(signed) == pytest.approx(T.neural_persistence(w))


def test_neural_persistence_of_a_single_row_is_a_star():
    # A 1x3 matrix is a star: every edge merges; normalised weights 1, .5, .25 -> persistence 0, .5, .75.
    w = np.array([[2.0, -1.0, 0.5]])
    assert np.allclose(T.neural_persistence_values(w), [0.0, 0.5, 0.75])
    assert T.neural_persistence(w, p=1)[0] == pytest.approx(1.25)


def test_normalised_neural_persistence_reaches_its_bound_and_stays_in_unit_interval():
    # One big weight and all others equal: every merge but the first dies at w_min -> NP = bound * sqrt((n-2)/(n-1)).
    w = np.full((3, 4), 0.1)
    w[0, 0] = 1.0
    value, norm = T.neural_persistence(w)
    assert value == pytest.approx(0.9 * math.sqrt(5))
    assert norm == pytest.approx(math.sqrt(5 / 6))
    rng = np.random.default_rng(1)
    for shape in [(5, 7), (64, 16), (1, 1)]:
        assert 0.0 <= T.neural_persistence(rng.standard_normal(shape))[1] <= 1.0


def test_prim_and_union_find_give_the_same_persistence():
    rng = np.random.default_rng(0)
    mats = [rng.standard_normal((40, 23)), rng.integers(-3, 4, size=(17, 9)).astype(float)]  # second has ties
    dead = rng.standard_normal((30, 12))
    dead[5] = 0.0  # a dead row joins only at weight 0
    mats.append(dead)
    for w in mats:
        assert np.allclose(T.neural_persistence_values(w, "prim"), T.neural_persistence_values(w, "kruskal"))


def test_all_zero_matrix_has_persistence_one_everywhere():
    assert np.allclose(T.neural_persistence_values(np.zeros((2, 3))), np.ones(4))


# ---------------------------------------------------------------- Vietoris-Rips

def test_h0_total_persistence_of_hand_computed_point_sets():
    line = np.array([[0.0], [1.0], [3.0], [6.0]])
    assert T.rips_features(line, use_ripser=False)["h0_total"] == pytest.approx(1 + 2 + 3)
    square = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    f = T.rips_features(square, use_ripser=False)
    assert f["h0_total"] == pytest.approx(3.0)
    assert f["h0_count"] == 3 and f["h0_max"] == pytest.approx(1.0)


def test_h0_total_persistence_equals_scipy_minimum_spanning_tree():
    from scipy.sparse.csgraph import minimum_spanning_tree
    from scipy.spatial.distance import cdist

    rng = np.random.default_rng(3)
    for n, d in [(50, 3), (120, 64), (200, 512)]:
        x = rng.standard_normal((n, d))
        expected = minimum_spanning_tree(cdist(x, x)).sum()
        got = T.rips_features(x, use_ripser=False)["h0_total"]
        assert got == pytest.approx(expected, rel=1e-9)


def test_h0_matches_ripser_death_times():
    x = np.random.default_rng(4).standard_normal((80, 10))
    deaths = ripser(x, maxdim=0)["dgms"][0][:, 1]
    deaths = np.sort(deaths[np.isfinite(deaths)])
    ours = np.sort(T.mst_edge_lengths(T.distance_matrix(x)))
    assert np.allclose(ours, deaths, atol=1e-5)


def test_h1_of_a_noisy_circle_has_one_long_lived_loop():
    rng = np.random.default_rng(5)
    theta = rng.uniform(0, 2 * np.pi, 100)
    x = np.c_[np.cos(theta), np.sin(theta)] + rng.normal(0, 0.05, (100, 2))
    f = T.rips_features(x)
    dgm = ripser(x, maxdim=1)["dgms"][1]
    life = np.sort(dgm[:, 1] - dgm[:, 0])[::-1]
    assert life[0] > 1.0 and life[1] < 0.3  # one loop, the rest noise
    assert f["h1_max"] == pytest.approx(life[0], rel=1e-5)
    assert f["h1_count"] == len(life) and f["h1_total"] > f["h1_max"]


def test_subsampling_is_deterministic_and_bounded():
    w = np.random.default_rng(0).standard_normal((500, 8))
    a, b = T.subsample_rows(w, 200, 7), T.subsample_rows(w, 200, 7)
    assert a.shape == (200, 8) and np.array_equal(a, b)
    assert not np.array_equal(a, T.subsample_rows(w, 200, 8))
    assert T.subsample_rows(w, 0, 0).shape == (500, 8)


# ---------------------------------------------------------------- state dicts

def _tiny_state_dict(layers=2, dim=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    sd = {"tok_emb.weight": torch.randn(32, dim, generator=g)}
    for i in range(layers):
        sd[f"blocks.{i}.attn.c_q.weight"] = torch.randn(dim, dim, generator=g)
        sd[f"blocks.{i}.attn.c_k.weight"] = torch.randn(dim // 2, dim, generator=g)
        sd[f"blocks.{i}.mlp.fc.weight"] = torch.randn(4 * dim, dim, generator=g)
        sd[f"blocks.{i}.attn_scale"] = torch.ones(dim)
        sd[f"blocks.{i}.resid_mix"] = torch.ones(2, dim)  # 2-D, but a control tensor, not a weight matrix
        sd[f"blocks.{i}.attn.rope_ids"] = torch.zeros(4, 4, dtype=torch.long)
    return sd


def test_matrices_are_the_2d_float_block_tensors_with_their_layer():
    picked = T.select_matrices(_tiny_state_dict(layers=2))
    assert [(n, l) for n, l, _ in picked] == [
        ("blocks.0.attn.c_k.weight", "0"), ("blocks.0.attn.c_q.weight", "0"), ("blocks.0.mlp.fc.weight", "0"),
        ("blocks.1.attn.c_k.weight", "1"), ("blocks.1.attn.c_q.weight", "1"), ("blocks.1.mlp.fc.weight", "1")]
    with_emb = T.select_matrices(_tiny_state_dict(layers=1), include_embedding=True)
    assert with_emb[-1][:2] == ("tok_emb.weight", "emb")


def test_checkpoint_features_summarise_per_layer_and_model():
    sd = _tiny_state_dict(layers=2)
    feats = T.checkpoint_features(sd, max_points=20, use_ripser=False, include_embedding=True)
    assert len(feats["matrices"]) == 7 and set(feats["layers"]) == {"0", "1", "emb"}
    blocks = [r for r in feats["matrices"] if r["layer"] != "emb"]
    assert feats["model"]["np_norm"] == pytest.approx(np.mean([r["np_norm"] for r in blocks]))
    layer0 = [r for r in blocks if r["layer"] == "0"]
    assert feats["layers"]["0"]["h0_total"] == pytest.approx(np.mean([r["h0_total"] for r in layer0]))
    fc = next(r for r in feats["matrices"] if r["name"] == "blocks.0.mlp.fc.weight")
    assert fc["h0_count"] == 19  # 64 rows subsampled to 20 points
    assert fc["np"] == pytest.approx(T.neural_persistence(sd["blocks.0.mlp.fc.weight"].numpy())[0])
    assert math.isnan(feats["model"]["h1_total"])  # H1 was switched off


def test_a_state_dict_without_blocks_is_an_error():
    with pytest.raises(ToolError):
        T.checkpoint_features({"w": torch.zeros(3, 3)})


@pytest.mark.slow
def test_features_cli_reports_a_missing_checkpoint_in_one_line():
    r = subprocess.run(module_command("studies.topology.topology", "features", "/nonexistent.ckpt"),
                       env=subprocess_env(), capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert r.stderr.strip().startswith("error:") and len(r.stderr.strip().splitlines()) == 1
