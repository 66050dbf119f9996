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


def test_certs_command_issues_a_folder_per_node(tmp_path, capsys):
    c = tmp_path / "c"
    assert main(["cluster", "certs", str(c), "--worker", "node00", "--worker", "node01",
                 "--client", "dispatcher"]) == 0
    out = capsys.readouterr().out
    assert f"lcp worker --tls-dir {c / 'node00'} --name node00" in out
    assert sorted(p.name for p in (c / "node01").iterdir()) == ["ca.pem", "worker-key.pem",
                                                                 "worker.pem"]
    assert sorted(p.name for p in c.iterdir() if p.is_dir()) == ["dispatcher", "node00",
                                                                 "node01", "scheduler"]
    assert main(["cluster", "certs", str(c), "--worker", "node02"]) == 0       # added later
    assert (c / "node02" / "worker.pem").is_file()
    assert main(["cluster", "certs", str(c), "--worker", "node00"]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["cluster", "certs", str(c)]) == 2
    assert "name the nodes to add" in capsys.readouterr().err


@pytest.mark.parametrize("args,message", [
    (["cluster", "scheduler", "--host", "0.0.0.0"], "pass --tls-dir DIR"),
    (["worker", "--scheduler", "tcp://127.0.0.1:1", "--host", "0.0.0.0"], "pass --tls-dir DIR"),
    (["worker", "--scheduler", "tcp://192.0.2.1:8786"], "cannot reach a worker on loopback"),
    (["worker", "--scheduler", "tls://127.0.0.1:1"], "needs --tls-dir"),
    (["cluster", "run", "m.json", "x.npy", "-o", "y.npy", "--scheduler",
      "tcp://192.0.2.1:8786"], "pass --tls-dir DIR"),
    (["cluster", "bench", "--scheduler", "tcp://192.0.2.1:8786"], "pass --tls-dir DIR"),
])
def test_plain_tcp_beyond_loopback_needs_tls_or_insecure(args, message, capsys):
    """Nothing listens on or talks plain TCP to another address unless told --insecure."""
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def _start(args, pattern, log, timeout=60.0):
    """Start ``lcp ARGS``; wait for a stderr line containing ``pattern``; (process, line)."""
    import re
    import subprocess
    import sys
    import time

    f = open(log, "wb")
    p = subprocess.Popen([sys.executable, "-m", "lcp.sw.cli", *args], stdout=f,
                         stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(pattern, log.read_text(errors="replace"))
        if m:
            return p, m
        if p.poll() is not None:
            break
        time.sleep(0.1)
    _stop(p)
    raise AssertionError(f"lcp {' '.join(args)}: no {pattern!r}:\n{log.read_text()}")


def _stop(p):
    import os
    import signal
    import subprocess
    try:
        os.killpg(p.pid, signal.SIGTERM)
        p.wait(timeout=20)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()


def _listening(pid):
    """Addresses the process ``pid`` and its children listen on."""
    import psutil
    procs = [psutil.Process(pid)]
    procs += procs[0].children(recursive=True)
    return {(c.laddr.ip, c.laddr.port) for p in procs for c in p.net_connections("inet")
            if c.status == psutil.CONN_LISTEN}


def test_default_worker_and_scheduler_listen_only_on_loopback(tmp_path):
    import ipaddress
    sched, m = _start(["cluster", "scheduler", "--port", "0"],
                      r"lcp scheduler at (tcp://\S+)", tmp_path / "s.log")
    try:
        worker, _ = _start(["worker", "--scheduler", m.group(1), "--name", "w0"],
                           r"lcp worker w0 at tcp://", tmp_path / "w.log")
        try:
            for pid, what, least in ((sched.pid, "scheduler", 2), (worker.pid, "worker", 3)):
                addrs = _listening(pid)
                assert len(addrs) >= least, (what, addrs)   # comm + HTTP (+ nanny)
                assert all(ipaddress.ip_address(ip).is_loopback for ip, _ in addrs), (what,
                                                                                      addrs)
        finally:
            _stop(worker)
    finally:
        _stop(sched)


def test_insecure_says_what_it_exposes(tmp_path):
    sched, m = _start(["cluster", "scheduler", "--port", "0", "--host", "0.0.0.0",
                       "--insecure"], r"lcp scheduler at", tmp_path / "s.log")
    _stop(sched)
    assert "without TLS or authentication: anyone who reaches this port can run any code on " \
           "every worker" in (tmp_path / "s.log").read_text()


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
