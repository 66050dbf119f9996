"""The command line: lcp cluster run/certs, lcp worker/scheduler argument checks, and the
root check of lcp cluster emulate."""

import numpy as np
import pytest

from lcp.sw.cli import main

from .conftest import int_inputs


@pytest.fixture(scope="module")
def ir_file(zoo, tmp_path_factory):
    from lcp.ir import save
    d = tmp_path_factory.mktemp("cli")
    j, _ = save(zoo["lenet5_s4"], d / "lenet5_s4")
    return j


def test_cluster_run_writes_the_golden_output(ir_file, zoo, tmp_path, capsys):
    m = zoo["lenet5_s4"]
    x = (int_inputs(m, 3) / 255.0).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    assert main(["run", str(ir_file), str(tmp_path / "x.npy"), "-o",
                 str(tmp_path / "ref.npy")]) == 0
    for strategy in ("lcp", "hidp"):
        rc = main(["cluster", "run", str(ir_file), str(tmp_path / "x.npy"), "-o",
                   str(tmp_path / f"{strategy}.npy"), "--strategy", strategy, "--workers", "2"])
        assert rc == 0
        np.testing.assert_array_equal(np.load(tmp_path / f"{strategy}.npy"),
                                      np.load(tmp_path / "ref.npy"))
    assert "[exact," in capsys.readouterr().out


@pytest.mark.parametrize("args,message", [
    (["--strategy", "magic"], "--strategy 'magic'"),
    (["--encoding", "jpeg"], "--encoding 'jpeg'"),
    (["--workers", "0"], "--workers must be >= 1"),
])
def test_cluster_run_rejects_bad_options(ir_file, tmp_path, capsys, args, message):
    np.save(tmp_path / "x.npy", np.zeros((1, 1, 28, 28), np.float32))
    rc = main(["cluster", "run", str(ir_file), str(tmp_path / "x.npy"), "-o",
               str(tmp_path / "y.npy"), *args])
    assert rc == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_cluster_run_rejects_bad_input(ir_file, tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 28, 28), np.float32))
    rc = main(["cluster", "run", str(ir_file), str(tmp_path / "x.npy"), "-o",
               str(tmp_path / "y.npy")])
    assert rc == 2 and "does not match the model input" in capsys.readouterr().err


def test_certs_command(tmp_path, capsys):
    assert main(["cluster", "certs", str(tmp_path / "c")]) == 0
    assert (tmp_path / "c" / "client-key.pem").is_file()
    assert main(["cluster", "certs", str(tmp_path / "c")]) == 2
    assert "exists" in capsys.readouterr().err


def test_worker_rejects_bad_resources(capsys):
    rc = main(["worker", "--scheduler", "tcp://127.0.0.1:1", "--resources", "fpga"])
    assert rc == 2 and "--resources" in capsys.readouterr().err


def test_emulate_without_root_says_so(monkeypatch, capsys):
    import os
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    rc = main(["cluster", "emulate", "--nodes", "2"])
    err = capsys.readouterr().err
    assert rc == 2 and "need root" in err


def test_bench_rejects_unknown_family_and_run(capsys):
    assert main(["cluster", "bench", "--family", "vgg99"]) == 2
    assert "--family 'vgg99'" in capsys.readouterr().err
    assert main(["cluster", "bench", "--run", "nope"]) == 2
    assert "--run 'nope'" in capsys.readouterr().err
