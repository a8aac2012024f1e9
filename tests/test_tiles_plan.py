"""Tiles without training: the partition of a grid survey, the choice of K, the merge rule, the tile spec."""

from __future__ import annotations

import numpy as np
import pytest

from spaceport_dagster.stages.colmap_io import Camera, Image, Model, Points3D
from spaceport_dagster.stages.evaluation import split_indices
from spaceport_dagster.stages.ply import GaussianCloud
from spaceport_dagster.stages.tiles.merge import merge_clouds
from spaceport_dagster.stages.tiles.partition import TileOptions, choose_tile_count, partition, tile_megapixels
from spaceport_dagster.stages.tiles.spec import Cell, TileSpec


def grid_survey(cols: int = 12, rows: int = 8, spacing: float = 10.0, footprint: float = 30.0,
                width: int = 1600, height: int = 1200, seed: int = 0) -> Model:
    """A nadir grid of `cols` x `rows` photos over flat ground; each observes the points within its footprint."""
    rng = np.random.default_rng(seed)
    lo, hi = -footprint / 2, np.array([cols, rows]) * spacing + footprint / 2
    xy = rng.uniform(lo, hi, (6000, 2))
    xyz = np.column_stack([xy, rng.normal(0, 0.2, len(xy))])
    ids = np.arange(1, len(xyz) + 1)
    images, tracks = {}, np.zeros(len(xyz), np.int64)
    for i in range(cols * rows):
        centre = np.array([(i % cols) * spacing, (i // cols) * spacing])
        seen = np.all(np.abs(xy - centre) <= footprint / 2, axis=1)
        tracks += seen
        # looking straight down from 40 m: camera z is world -z (depth positive for the ground)
        rotation_qvec = np.array([0.0, 1.0, 0.0, 0.0])  # 180 degrees about x
        tvec = -np.array([[1, 0, 0], [0, -1, 0], [0, 0, -1]]) @ np.array([*centre, 40.0])
        images[i + 1] = Image(i + 1, f"img_{i:04d}.jpg", 1, rotation_qvec, tvec, np.zeros((seen.sum(), 2)), ids[seen])
    cameras = {1: Camera(1, "PINHOLE", width, height, np.array([1000.0, 1000.0, width / 2, height / 2]))}
    return Model(cameras, images, Points3D(ids, xyz, np.zeros((len(xyz), 3), np.uint8), np.zeros(len(xyz)), tracks))


@pytest.mark.parametrize("k", [2, 3, 4, 7])
def test_core_cells_cover_the_plane_once_and_no_tile_trains_a_test_view(k: int) -> None:
    model = grid_survey()
    tiles = partition(model, k, TileOptions(test_every=8))
    assert [t.index for t in tiles] == list(range(1, k + 1)) and all(t.count == k for t in tiles)
    probe = np.random.default_rng(1).uniform(-1000, 1000, (20000, 2))  # far beyond the survey too
    owners = np.stack([t.core.contains(probe) for t in tiles])
    assert (owners.sum(axis=0) == 1).all()  # every ground point in exactly one core cell
    names = sorted(im.name for im in model.images.values())
    test = {names[i] for i in split_indices(len(names), 8)[1]}
    assert len(test) == 12
    for tile in tiles:
        assert tile.photos and not test & set(tile.photos)
        # the expanded cell holds the core
        inside = tile.core.contains(probe)
        assert tile.expanded.contains(probe[inside]).all()
    # balanced by SfM density times track length: no tile twice the weight of another on a uniform grid
    weights = [model.points.track_lengths[t.core.contains(model.points.xyz)].sum() for t in tiles]
    assert max(weights) < 2.0 * min(weights)
    used = set().union(*(t.photos for t in tiles))
    assert used == set(names) - test  # every training photo trains some tile


def test_four_tiles_on_a_square_site_are_a_two_by_two_grid() -> None:
    tiles = partition(grid_survey(cols=10, rows=10), 4, TileOptions())
    open_sides = [sum(v is None for v in t.core.as_list()) for t in tiles]
    assert open_sides == [2, 2, 2, 2]  # each a corner: open on two sides, closed on two


def test_the_pixel_budget_sets_k_and_parallel_gpus_split_a_large_survey() -> None:
    model = grid_survey()  # 96 photos, 84 training ones, 1.92 MP each at 1600x1200: 161 MP
    options = TileOptions(max_long_side=1600)
    one = choose_tile_count(model, options, budget_megapixels=200, slots=1, min_photos_per_tile=150)
    assert one.count == 1 and one.train_megapixels == pytest.approx(84 * 1.92)
    budget = choose_tile_count(model, options, budget_megapixels=60, slots=1, min_photos_per_tile=150)
    assert budget.count >= 3
    assert max(tile_megapixels(model, partition(model, budget.count, options), options)) <= 60
    spread = choose_tile_count(model, options, budget_megapixels=200, slots=4, min_photos_per_tile=20)
    assert spread.count == 4 and "parallel" in spread.reason
    few = choose_tile_count(model, options, budget_megapixels=200, slots=4, min_photos_per_tile=150)
    assert few.count == 1  # four GPUs, but 84 photos are not worth splitting
    with pytest.raises(ValueError, match="cannot be tiled so that every tile fits 1 MP"):
        choose_tile_count(model, options, budget_megapixels=1, slots=1, min_photos_per_tile=150)


def cloud(means: np.ndarray, scale: float = 0.01) -> GaussianCloud:
    n = len(means)
    return GaussianCloud(means.astype(np.float32), np.zeros((n, 3), np.float32), np.zeros((n, 15, 3), np.float32),
                         np.zeros(n, np.float32), np.full((n, 3), np.log(scale), np.float32),
                         np.tile(np.float32([1, 0, 0, 0]), (n, 1)))


def test_merge_keeps_each_tiles_core_and_trims_footprints_past_the_margin() -> None:
    left = TileSpec(1, 2, Cell(xmax=0.0), Cell(xmax=1.0), ["a"])
    right = TileSpec(2, 2, Cell(xmin=0.0), Cell(xmin=-1.0), ["b"])
    a = cloud(np.array([[-2.0, 0, 0], [-0.1, 0, 0], [0.5, 0, 0], [-0.2, 5, 0]]))
    a.scales[3] = np.log(0.5)  # 3 sigma = 1.5: from x=-0.2 it reaches x=1.3, past the expanded cell's x=1
    b = cloud(np.array([[-0.5, 0, 0], [0.0, 0, 0], [3.0, 0, 0]]))
    merged, stats = merge_clouds([a, b], [left, right])
    assert sorted(merged.means[:, 0].tolist()) == pytest.approx([-2.0, -0.1, 0.0, 3.0])
    assert [(t.trained, t.kept, t.outside_core, t.seam_trimmed) for t in stats.tiles] == [(4, 2, 1, 1), (3, 2, 1, 0)]
    kept, _ = merge_clouds([a, b], [left, right], seam="keep")
    assert len(kept) == 5
    with pytest.raises(ValueError, match="different SH degrees"):
        merge_clouds([a, GaussianCloud(b.means, b.sh0, np.zeros((3, 3, 3), np.float32), b.opacities, b.scales,
                                       b.quats)], [left, right])


def test_tile_spec_round_trips_and_refuses_bad_specs() -> None:
    spec = TileSpec(2, 4, Cell(0.0, None, None, 5.0), Cell(-1.0, None, None, 6.0), ["x.jpg"])
    assert TileSpec.from_dict(spec.as_dict()) == spec
    with pytest.raises(ValueError, match="outside 1..4"):
        TileSpec.from_dict({**spec.as_dict(), "index": 5})
    with pytest.raises(ValueError, match="lacks 'core'"):
        TileSpec.from_dict({k: v for k, v in spec.as_dict().items() if k != "core"})
    with pytest.raises(ValueError, match=r"a cell is \[xmin, xmax, ymin, ymax\]"):
        Cell.from_list([0.0, 1.0])


def test_merging_the_tile_files_streams_the_same_splat_as_merging_in_memory(tmp_path) -> None:
    from spaceport_dagster.stages.ply import read_ply, write_ply
    from spaceport_dagster.stages.tiles.merge import merge_files

    left = TileSpec(1, 2, Cell(xmax=0.0), Cell(xmax=1.0), ["a"])
    right = TileSpec(2, 2, Cell(xmin=0.0), Cell(xmin=-1.0), ["b"])
    rng = np.random.default_rng(3)
    a, b = cloud(rng.uniform(-3, 1, (500, 3))), cloud(rng.uniform(-1, 3, (400, 3)))
    a.scales[:50] = np.log(0.5)  # some footprints past the margin
    write_ply(tmp_path / "a.ply", a)
    write_ply(tmp_path / "b.ply", b)
    expected, expected_stats = merge_clouds([a, b], [left, right])
    stats, size = merge_files([(left, tmp_path / "a.ply"), (right, tmp_path / "b.ply")], tmp_path / "m.ply",
                              chunk_rows=64)
    merged = read_ply(tmp_path / "m.ply")
    assert stats == expected_stats and any(t.seam_trimmed for t in stats.tiles)
    assert size == (tmp_path / "m.ply").stat().st_size
    np.testing.assert_array_equal(merged.means, expected.means)
    np.testing.assert_array_equal(merged.scales, expected.scales)
