"""Asset metadata leads with rounded headline figures with units; timings and raw JSON fold into one entry each."""

from __future__ import annotations

from pathlib import Path

import dagster
from dagster import MetadataValue

from spaceport_dagster.assets.headline import arrange, rounded
from spaceport_dagster.assets.stage_asset import published_paths
from spaceport_dagster.run_events import HEADLINE_FIGURES_KEY, flat_metadata
from spaceport_dagster.stages.ui_metadata import timings_markdown


def test_sogs_bundle_leads_with_size_ratio_and_psnr() -> None:
    reported = {
        "splats": MetadataValue.int(48213), "ply_bytes": MetadataValue.int(2_755_000),
        "bundle_bytes": MetadataValue.int(181_700), "ratio": MetadataValue.float(15.165016265487992),
        "psnr_decoded_db": MetadataValue.float(23.04), "psnr_drop_db": MetadataValue.float(0.0213),
        "seconds": MetadataValue.json({"encode": 0.8}), "timings": MetadataValue.json({"kmeans": 0.3}),
        "file_bytes": MetadataValue.json({"means_l.webp": 1000}), "roundtrip": MetadataValue.json({"a": 1}),
        "roundtrip_table": MetadataValue.md("| a |\n|---|\n| 1 |"), "seconds_total": MetadataValue.float(1.23456),
    }
    out = arrange("sogs_bundle", reported)
    keys = list(out)
    assert keys[:4] == ["size", "PSNR", "Gaussians", "ran on"]
    assert out["size"].value == "181.7 kB, 15.2x smaller than the PLY"
    assert out["PSNR"].value == "23.0 dB decoded (-0.02 dB against the PLY)"
    assert out["Gaussians"].value == "48,213"
    # the figures the headline shows are not repeated as rows: one JSON entry keeps them by key, rounded
    assert not {"splats", "bundle_bytes", "ratio", "psnr_decoded_db", "psnr_drop_db"} & set(out)
    assert out[HEADLINE_FIGURES_KEY].value == {"splats": 48213, "bundle_bytes": 181_700, "ratio": 15.17,
                                               "psnr_decoded_db": 23.04, "psnr_drop_db": 0.0213}
    assert flat_metadata(out)["ratio"] == 15.17 and flat_metadata(out)["ply_bytes"] == 2_755_000
    assert out["timings (s)"].value == {"seconds": {"encode": 0.8}, "timings": {"kmeans": 0.3},
                                        "seconds_total": 1.235}
    assert out["details"].value == {"file_bytes": {"means_l.webp": 1000}, "roundtrip": {"a": 1}}
    assert len(out) == 9  # 4 headline + 1 table + ply_bytes + headline figures + timings + details


def test_splat_model_and_sfm_headlines() -> None:
    splat = arrange("splat_model", {"psnr": 23.1234, "baseline_psnr": 17.8, "ssim": 0.7123, "alpha_mean": 0.987,
                                    "gaussians": 120345, "ply_bytes": 28_400_000, "steps": 300, "views": 4,
                                    "device": "cpu"})
    assert splat["PSNR"].value == "23.1 dB against 17.8 dB baseline (+5.3 dB) on 4 test views"
    assert splat["coverage"].value == "98.7 % (mean alpha)"
    assert splat["PLY"].value == "28.4 MB" and splat["training"].value == "300 steps on cpu"
    assert splat["ran on"].value == "this machine, cpu"
    sfm = arrange("sparse_reconstruction", {"registered": "28/28", "points": 13231, "georegistered": True,
                                            "georegistration_residual_m": 0.4321,
                                            "mean_reprojection_error_px": 0.81234})
    assert [sfm[k].value for k in ("registered photos", "3D points", "reprojection error", "georegistration")] == [
        "28/28", "13,231", "0.81 px", "GPS, 0.43 m residual"]
    remote = arrange("splat_model", {"sagemaker_job_name": "demo-train-1a2b", "sagemaker_job_kind": "training",
                                     "sagemaker_instance_type": "ml.g5.xlarge", "sagemaker_estimated_cost_usd": 0.0412})
    assert remote["ran on"].value == "SageMaker training demo-train-1a2b on ml.g5.xlarge, about $0.041"
    assert rounded(15.165016265487992) == 15.17 and rounded(0.0) == 0.0


def test_paths_into_staging_point_at_the_published_artifact(tmp_path: Path) -> None:
    staging = tmp_path / "sogs_bundle.tmp-123"
    metadata = {"bundle": MetadataValue.path(str(staging / "demo.sog")), "other": MetadataValue.path("/elsewhere")}
    out = published_paths(metadata, staging, "/home/artifacts/demo/sogs_bundle/")
    assert out["bundle"].value == "/home/artifacts/demo/sogs_bundle/demo.sog"
    assert out["other"].value == "/elsewhere"


def test_timings_table_has_no_empty_code_span() -> None:
    table = timings_markdown({"features": 2.0, "undistort": 0.0})
    assert "| undistort | 0.0 | 0 % |  |" in table and "``" not in table


def test_pictures_the_ui_shows_inline_come_right_after_the_headline() -> None:
    tiny = "![curve](data:image/svg+xml;base64,PHN2Zy8+)"
    big = "![previews](data:image/jpeg;base64," + "A" * 2000 + ")"
    out = arrange("splat_model", {"psnr": 20.0, "timings": MetadataValue.md("| step | seconds |"),
                                  "previews": MetadataValue.md(big), "training_curve": MetadataValue.md(tiny),
                                  "gaussians": 5000})
    keys = list(out)
    assert keys.index("training_curve") == keys.index("ran on") + 1
    assert keys.index("training_curve") < min(keys.index("timings"), keys.index("previews"))


def test_a_published_sogs_bundle_leads_with_the_viewer_command() -> None:
    from spaceport_dagster.assets.sogs_bundle import with_viewer_link

    published = with_viewer_link("demo", {"size": MetadataValue.text("181.7 kB"), "published": True})
    assert list(published)[0] == "view"
    assert published["view"].value.startswith("`spaceport view demo` serves it in the browser and prints its address")
    assert "http" not in published["view"].value  # no fixed address that may not be the viewer's
    rejected = {"size": MetadataValue.text("181.7 kB"), "published": False}
    assert with_viewer_link("demo", rejected) == rejected  # nothing to view: the bundle was not published


def test_where_it_ran_is_a_valid_materialisation_tag() -> None:
    from dagster import DagsterInstance, asset, materialize

    from spaceport_dagster.assets.headline import ran_on_tag
    from spaceport_dagster.assets.splat_model import splat_model

    assert ran_on_tag({"device": "CPU (2 threads)"}) == "local-cpu"
    assert ran_on_tag({"device": "NVIDIA H200"}) == "local-cuda"
    assert ran_on_tag({"points": 10}) == "local"
    assert ran_on_tag({"sagemaker_job_name": "demo-train-1", "sagemaker_instance_type": "ml.g5.xlarge",
                       "device": "NVIDIA A10G"}) == "sagemaker-ml.g5.xlarge"
    assert "gpu" not in splat_model.specs_by_key[splat_model.key].kinds  # a CPU run is not a GPU asset

    @asset
    def trained():  # noqa: ANN202 - a local annotation would not resolve under `from __future__ import annotations`
        return dagster.MaterializeResult(tags={"spaceport/ran_on": ran_on_tag({"device": "CPU (2 threads)"})})

    result = materialize([trained], instance=DagsterInstance.ephemeral())
    assert result.asset_materializations_for_node("trained")[0].tags["spaceport/ran_on"] == "local-cpu"
