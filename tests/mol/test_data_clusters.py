"""Cluster cutting and body frames."""

import numpy as np
import pytest

from kflow_mol.data.clusters import body_frame, cut_cluster, cut_clusters, min_intermolecular_distance
from kflow_mol.data.crystals import Crystal, perceive_molecules, read_cif
from kflow_mol.data.start_states import random_rotation

METHANE = np.array([[0, 0, 0], [0.63, 0.63, 0.63], [-0.63, -0.63, 0.63], [-0.63, 0.63, -0.63], [0.63, -0.63, -0.63]])


def _cubic_methane(length=10.0):
    cell = np.eye(3) * length
    return perceive_molecules(Crystal("cubic", "test", np.array([6, 1, 1, 1, 1]), (METHANE / length) % 1.0, cell))


def test_simple_cubic_cluster_has_exact_shells():
    cluster = cut_cluster(_cubic_methane(10.0), center=0)
    assert cluster.positions.shape == (17, 5, 3)
    expected = [0.0] + [10.0] * 6 + [10 * np.sqrt(2)] * 10  # self, 6 faces, 10 of the 12 edges
    assert np.allclose(cluster.distances, expected)
    centroids = cluster.positions.mean(axis=1)
    assert np.allclose(np.linalg.norm(centroids - centroids[0], axis=1), expected)
    contact = cut_cluster(_cubic_methane(10.0), center=0, criterion="contact")
    centroid_distances = np.linalg.norm(contact.positions.mean(1) - contact.positions[0].mean(0), axis=1)
    assert np.allclose(np.sort(centroid_distances), expected)


def test_cluster_size_and_criterion_are_configurable(data_cod_folder):
    molecular = perceive_molecules(read_cif(data_cod_folder / "7105573.cif"))
    for criterion in ("centroid", "contact"):
        cluster = cut_cluster(molecular, 0, num_mols=25, criterion=criterion)
        assert cluster.positions.shape[0] == 25 and cluster.distances[0] == 0
        assert np.all(np.diff(cluster.distances) >= -1e-9)
        assert min_intermolecular_distance(cluster.positions) > 1.0
    with pytest.raises(ValueError, match="criterion"):
        cut_cluster(molecular, 0, criterion="nearest")


def test_z_prime_two_gives_a_cluster_per_independent_molecule(data_cod_folder):
    molecular = perceive_molecules(read_cif(data_cod_folder / "2006528.cif"))
    clusters = cut_clusters(molecular)
    assert [c.center for c in clusters] == molecular.independent and len(clusters) == 2
    assert not np.allclose(clusters[0].distances, clusters[1].distances)


def test_body_frame_is_a_property_of_the_shape():
    rng = np.random.default_rng(3)
    points = rng.normal(size=(12, 3)) * [3.0, 2.0, 1.0]
    rotation, centroid, body = body_frame(points)
    assert np.allclose(rotation @ rotation.T, np.eye(3)) and np.isclose(np.linalg.det(rotation), 1.0)
    assert np.allclose(body @ rotation.T + centroid, points)
    assert np.allclose(body.mean(0), 0) and np.allclose(np.diag(body.T @ body), sorted(np.diag(body.T @ body))[::-1])
    turn = random_rotation(rng)
    _, _, moved_body = body_frame(points @ turn.T + [4.0, -2.0, 7.0])
    assert np.allclose(moved_body, body, atol=1e-9)


def test_body_frame_of_a_planar_molecule_is_right_handed():
    benzene = np.array([[np.cos(a), np.sin(a), 0.0] for a in np.arange(6) * np.pi / 3]) * 1.39
    rotation, _, body = body_frame(benzene)
    assert np.isclose(np.linalg.det(rotation), 1.0)
    assert np.allclose(body[:, 2], 0, atol=1e-9)
