"""The server without a browser: token, path rules, read-only mode, layers in RAS, the CLI."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import nibabel as nib
import numpy as np
import pytest

from known_geometry import AFFINES
from synthct.errors import SynthctError
from synthct.io import read_volume, write_volume
from synthct.view import discover, start_server
from synthct.view.catalogue import layer_role
from synthct.volume import CTVolume
from view_helpers import SphereCase, serving


def request(server: object, path: str, *, method: str = "GET", body: bytes | None = None,
            token: str | None = "auto") -> tuple[int, bytes]:  # fmt: skip
    """Send ``path`` exactly as given (no normalisation), with the server's token by default."""
    host, port = server.server_address[:2]  # type: ignore[attr-defined]
    headers = {}
    if token == "auto":
        headers["X-Synthct-Token"] = server.token  # type: ignore[attr-defined]
    elif token is not None:
        headers["X-Synthct-Token"] = token
    connection = http.client.HTTPConnection(host, port, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.fixture(scope="module")
def small_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("small")
    rng = np.random.default_rng(1)
    ct = CTVolume(rng.normal(40, 10, (12, 10, 8)).astype(np.float32), AFFINES["oblique"])
    (folder / "case-a").mkdir()
    write_volume(ct, folder / "case-a" / "ct.nii.gz")
    (folder / "notes.txt").write_text("hello", encoding="utf-8")
    (folder.parent / "secret.txt").write_text("outside", encoding="utf-8")
    return folder


def test_requests_without_the_right_token_get_403(small_folder: Path) -> None:
    with serving(small_folder) as server:
        for path in ("/", "/api/catalogue", "/files/notes.txt", "/static/viewer.js"):
            assert request(server, path, token=None)[0] == 403
            assert request(server, path, token="wrong")[0] == 403
        assert request(server, "/", token=None)[1].find(b"token") >= 0
        assert request(server, "/")[0] == 200
        assert request(server, f"/files/notes.txt?token={server.token}", token=None) == (
            200,
            b"hello",
        )


@pytest.mark.parametrize(
    "path",
    [
        "/files/../secret.txt",
        "/files/%2e%2e/secret.txt",
        "/files/case-a/../../secret.txt",
        "/../secret.txt",
        "/files//etc/passwd",
        "/files/%2Fetc%2Fpasswd",
        "/files/..%2fsecret.txt",
        "/static/../../../../etc/passwd",
        "/api/volume/0/..%2f..%2fsecret",
    ],
)
def test_dotdot_and_absolute_paths_get_404(small_folder: Path, path: str) -> None:
    with serving(small_folder) as server:
        status, body = request(server, path)
        assert status == 404, body
        assert b"outside" not in body and b"root:" not in body


def test_a_link_out_of_the_folder_gets_404(small_folder: Path) -> None:
    link = small_folder / "link.txt"
    if not link.exists():
        link.symlink_to(small_folder.parent / "secret.txt")
    with serving(small_folder) as server:
        assert request(server, "/files/link.txt")[0] == 404


def test_read_only_unless_edit(small_folder: Path) -> None:
    with serving(small_folder) as server:
        status, body = request(server, "/api/annotation/0", method="POST", body=b"{}")
        assert status == 403
        assert b"--edit" in body
        assert json.loads(request(server, "/api/catalogue")[1])["edit"] is False
    with serving(small_folder, edit=True) as server:
        assert json.loads(request(server, "/api/catalogue")[1])["edit"] is True
        # edit mode still checks the request: an empty annotation is refused with a reason
        status, body = request(server, "/api/annotation/0", method="POST", body=b"{}")
        assert status == 422
        assert b"no lesion" in body


@pytest.mark.parametrize("name", sorted(AFFINES))
def test_layers_are_nifti_in_ras_with_the_same_voxels(tmp_path: Path, name: str) -> None:
    rng = np.random.default_rng(2)
    ct = CTVolume(np.rint(rng.normal(40, 100, (9, 7, 5))).astype(np.float32), AFFINES[name])
    write_volume(ct, tmp_path / "ct.nii.gz")
    with serving(tmp_path) as server:
        status, data = request(server, "/api/volume/0/ct.nii")
    assert status == 200
    image = nib.Nifti1Image.from_bytes(data)
    ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ read_volume(tmp_path / "ct.nii.gz").affine
    np.testing.assert_allclose(image.affine, ras, atol=1e-5)
    np.testing.assert_allclose(image.get_qform(), ras, atol=1e-5)
    assert int(image.header["sform_code"]) == 1 and int(image.header["qform_code"]) == 1
    np.testing.assert_array_equal(np.asarray(image.dataobj), ct.array)
    # a point in LPS lands on the same voxel through the RAS affine
    lps = ct.affine @ [3, 2, 1, 1]
    ras_point = [-lps[0], -lps[1], lps[2], 1.0]
    np.testing.assert_allclose(np.linalg.inv(image.affine) @ ras_point, [3, 2, 1, 1], atol=1e-5)


def test_catalogue_of_a_validation_and_audit_run(phantom_run: Path) -> None:
    catalogue = discover([phantom_run])
    (case,) = catalogue.cases
    assert case.case_id == "case-000"
    for layer in ("ct", "sct", "mr_echo1", "mr_echo2", "difference", "lesions", "flags"):
        assert layer in case.layers, sorted(case.layers)
    assert case.ordered_layers()[0].name == "ct"
    (lesion,) = case.lesions
    assert lesion["ct_visible"] is True and lesion["sct_visible"] is False
    assert None not in lesion["centre_lps_mm"]
    assert any(s.startswith("validation") for s in case.sources)
    assert any(s.startswith("audit") for s in case.sources)


def test_layer_roles_from_file_names() -> None:
    assert layer_role(Path("sct_total_sd.nii.gz")) == ("total_sd", "scalar")
    assert layer_role(Path("case_epistemic_sd.nii")) == ("epistemic_sd", "scalar")
    assert layer_role(Path("flag_regions.nii.gz")) == ("flags", "label")
    assert layer_role(Path("lesion_labels.nii.gz")) == ("lesions", "label")
    assert layer_role(Path("mr_echo-2.nii.gz")) == ("mr", "mr")
    assert layer_role(Path("sct_lesions_as_csf.nii.gz")) == ("sct", "sct")
    assert layer_role(Path("ct.nii.gz")) == ("ct", "ct")


def test_nothing_to_view_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SynthctError, match="found no image"):
        discover([tmp_path])
    with pytest.raises(SynthctError, match="no such file"):
        discover([tmp_path / "missing"])


def test_a_taken_port_is_a_clear_error(small_folder: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SynthctError, match=f"port {port} .* already in use") as info:
            start_server(discover([small_folder]), port=port)
        assert "--port 0" in str(info.value)


def test_cli_refuses_another_host_without_the_flag(small_folder: Path) -> None:
    from typer.testing import CliRunner

    from synthct.cli import app

    result = CliRunner().invoke(
        app, ["view", str(small_folder), "--host", "0.0.0.0", "--no-browser"]
    )
    assert result.exit_code == 2
    assert "--allow-remote" in result.output


def test_cli_serves_and_stops_cleanly_on_ctrl_c(small_folder: Path, tmp_path: Path) -> None:
    # Ctrl-C as in a terminal: a run started in the background (`cmd &` in a script, nohup)
    # inherits SIGINT ignored, and Python then installs no KeyboardInterrupt handler, so the
    # child gets SIGINT's default disposition back before it starts. Output goes to files and
    # the server process itself is waited for.
    out_path, err_path = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with out_path.open("w") as out_file, err_path.open("w") as err_file:
        process = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "synthct"),
                "view",
                str(small_folder),
                "--port",
                "0",
                "--no-browser",
            ],
            stdout=out_file,
            stderr=err_file,
            text=True,
            env={**os.environ, "COLUMNS": "200"},
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
    try:
        line = ""
        deadline = time.monotonic() + 60
        while "token=" not in line and time.monotonic() < deadline:
            time.sleep(0.1)
            line = next((t for t in out_path.read_text().splitlines() if "token=" in t), "")
        url = urlsplit(line.split("open ", 1)[1].strip())
        connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
        connection.request("GET", f"/api/catalogue?{url.query}")
        assert connection.getresponse().status == 200
        connection.close()
        assert url.hostname == "127.0.0.1"
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    out, err = out_path.read_text(), err_path.read_text()
    assert process.returncode == 0, err
    assert "stopped" in out
    assert "Traceback" not in err


def _result_json(folder: Path, run: str, case_id: str, sct: Path, ct: Path) -> None:
    """A minimal `synthct validate` case record (what the catalogue reads of it)."""
    record = folder / run / "cases" / case_id / "result.json"
    record.parent.mkdir(parents=True)
    row = {"lesion_id": 1, "roi_center_l_mm": 1.0, "roi_center_p_mm": 2.0, "roi_center_s_mm": 3.0}
    payload = {
        "fingerprint": {"case": {"case_id": case_id, "ct": str(ct), "sct": str(sct), "mri": []}},
        "result": {"lesion_rows": [row], "audit_flags": []},
    }
    record.write_text(json.dumps(payload), encoding="utf-8")


def test_catalogue_of_a_demo_like_folder(tmp_path: Path) -> None:
    """Several validation runs of one case and synthesis SD maps beside each sCT."""
    ct = CTVolume(np.zeros((4, 4, 4), np.float32), AFFINES["lps"])
    (tmp_path / "cohort").mkdir()
    write_volume(ct, tmp_path / "cohort" / "ct.nii.gz")
    for method in ("product_like", "lesion_aware"):
        folder = tmp_path / "sct" / method
        folder.mkdir(parents=True)
        write_volume(ct, folder / "case-000.nii.gz")
        write_volume(ct, folder / "case-000_total_sd.nii.gz", overwrite=True)
        _result_json(
            tmp_path, f"validation/{method}", "case-000", folder / "case-000.nii.gz",
            tmp_path / "cohort" / "ct.nii.gz",
        )  # fmt: skip
    (case,) = discover([tmp_path]).cases
    names = [layer.name for layer in case.ordered_layers()]
    assert names == [
        "ct",
        "sct_lesion_aware",
        "sct_product_like",
        "difference_lesion_aware",
        "difference_product_like",
        "total_sd_lesion_aware",
        "total_sd_product_like",
    ]
    assert len(case.lesions) == 2
    assert case.lesions[0]["centre_lps_mm"] == [1.0, 2.0, 3.0]
    # a synthesis output folder alone: one case per sCT, its SD maps beside it
    (alone,) = discover([tmp_path / "sct" / "product_like"]).cases
    assert alone.case_id == "case-000"
    assert [layer.name for layer in alone.ordered_layers()] == ["sct", "total_sd"]


def test_a_point_with_radius_is_saved_and_validated(
    sphere_case: SphereCase, tmp_path: Path
) -> None:
    folder = tmp_path / "sphere"
    shutil.copytree(sphere_case.folder, folder)
    radius = sphere_case.diameter_mm / 2
    body = {"points": [{"center_lps_mm": list(sphere_case.centre_lps_mm), "radius_mm": radius,
                        "name": "placed"}]}  # fmt: skip
    with serving(folder, edit=True) as server:
        status, answer = request(
            server, "/api/annotation/0", method="POST", body=json.dumps(body).encode()
        )
        assert status == 200, answer
        saved = json.loads(answer)
        status, answer = request(server, "/api/validate/0", method="POST", body=b"{}")
        assert status == 200, answer
    labels = read_volume(folder / saved["label_map"])
    assert labels.geometry.is_close(read_volume(folder / "ct.nii.gz").geometry)
    mask = np.asarray(labels.array) == 1
    expected = 4 / 3 * np.pi * radius**3 / sphere_case.spacing_mm**3
    assert abs(mask.sum() - expected) / expected < 0.1
    (point,) = saved["points"]
    np.testing.assert_allclose(point["center_lps_mm"], sphere_case.centre_lps_mm, atol=0.5)
    assert saved["lesion_points"].count(",") == 3
    (row,) = json.loads(answer)["lesions"]
    assert row["lesion_name"] == "placed" and row["source"] == "annotation"
    assert abs(row["ct_diameter_axial_mm"] - sphere_case.diameter_mm) <= sphere_case.spacing_mm
