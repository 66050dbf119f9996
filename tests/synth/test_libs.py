"""Cell libraries: found where expected, parsed right, clear errors when missing."""

from pathlib import Path

import pytest

from lcp.synth.libs import LibraryError, get_library

REPO = Path(__file__).resolve().parents[2]
ASAP7 = REPO.parent / "shared" / "pdk" / "asap7"
OSU = Path("/usr/share/qflow/tech/osu018/osu018_stdcells.lib")

needs_osu = pytest.mark.skipif(not OSU.exists(), reason="qflow-tech-osu018 not installed")
needs_asap7 = pytest.mark.skipif(not ASAP7.is_dir(), reason="../shared/pdk/asap7 not present")


@needs_osu
def test_osu018_cells():
    lib = get_library("osu018")
    c = lib.cells
    assert c["INVX1"].area == 16.0 and c["INVX1"].outputs == {"Y": "(!A)"}
    dff = c["DFFPOSX1"]
    assert dff.ff_data_pin() == "D" and dff.ff_output() == ("Q", False)
    assert dff.inputs["CLK"] > 0 and lib.voltage == 1.8 and lib.time_unit_ps == 1000


@needs_asap7
def test_asap7_cells_and_qn_flops():
    lib = get_library("asap7", ASAP7)
    assert len(lib.liberty) == 5 and all(p.suffix == ".lib" for p in lib.liberty)
    assert all(ASAP7 not in p.parents for p in lib.liberty)   # decompressed into the cache
    c = lib.cells
    assert c["INVx1_ASAP7_75t_R"].area == pytest.approx(0.04374)
    qn = c["DFFHQNx1_ASAP7_75t_R"]
    # ff (IQN, IQNN) { next_state: "!D" } and QN = IQN: the output carries D inverted
    assert qn.ff_output() == ("QN", True)
    assert c["DFFHQx4_ASAP7_75t_R"].ff_output() == ("Q", False)
    assert "DFFHQx4_ASAP7_75t_R" in lib.dff_dont_use


def test_missing_asap7_folder(tmp_path):
    with pytest.raises(LibraryError, match=r"ASAP7 library folder .*nope does not exist"):
        get_library("asap7", tmp_path / "nope")


def test_asap7_folder_without_files(tmp_path):
    with pytest.raises(LibraryError, match="lacks asap7sc7p5t_AO"):
        get_library("asap7", tmp_path)


def test_missing_osu018(tmp_path):
    with pytest.raises(LibraryError, match="qflow-tech-osu018"):
        get_library("osu018", tmp_path)


def test_unknown_library():
    with pytest.raises(LibraryError, match="unknown cell library 'tsmc'"):
        get_library("tsmc")
