"""Two seeded rounds of tools/chaos.py, the randomized crash-and-concurrency harness
(docs/robustness.md, "A randomized harness"): each a `datapool run` over a changed folder of real
media, killed with SIGKILL after one of its commit's renames (past the commit point, so the
killed run's journal is left for the next open to finish). After each kill the harness checks that
`datapool verify` reports only that journal, that `datapool status` finishes the commit, that
verify then passes, and that the pool's CSV, ledger and runs.json equal those of the same run
completed on a copy of the pool; the second round is the run after a kill. The harness itself is
run by hand for many rounds (`python tools/chaos.py --seed S --rounds N`)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _chaos():
    spec = importlib.util.spec_from_file_location("datapool_chaos", ROOT / "tools" / "chaos.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_runs_killed_after_their_commit_point_end_as_complete_runs(tmp_path, capsys):
    chaos = _chaos()
    rc = chaos.main(
        [
            "--seed", "5", "--rounds", "2", "--backend", "local", "--work", str(tmp_path / "w"),
            "--ops", "run", "--modes", "kill-point", "--kill-at", "renamed:*",
        ]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0, out
    # both rounds killed a run at a rename and found it complete, not merely not reached
    rounds = [line for line in out.splitlines() if line.startswith("round ")]
    assert len(rounds) == 2, out
    assert all("-> after renamed:" in line for line in rounds), out
