"""scripts/sgd_service_split.py: whole services leave the training files and become their own set."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from convssl.data.readers import read_inputs

REPO = Path(__file__).resolve().parents[1]


def test_held_back_services_leave_training_and_form_a_readable_set(tmp_path, shared_data):
    sgd = shared_data / "sgd" / "train"
    subprocess.run([sys.executable, str(REPO / "scripts" / "sgd_service_split.py"), "--sgd", str(sgd),
                    "--files", "1-2", "--services", "Restaurants_1,Events_2", "--out", str(tmp_path)],
                   check=True, cwd=REPO, timeout=120)
    originals = [d for n in (1, 2) for d in json.loads((sgd / f"dialogues_{n:03d}.json").read_text())]
    kept = [d for n in (1, 2) for d in json.loads((tmp_path / "train" / f"dialogues_{n:03d}.json").read_text())]
    held = json.loads((tmp_path / "heldback" / "dialogues_001.json").read_text())
    services = {"Restaurants_1", "Events_2"}
    assert held and kept
    assert all(services & set(d["services"]) for d in held)
    assert not any(services & set(d["services"]) for d in kept)
    assert sorted(d["dialogue_id"] for d in kept + held) == sorted(d["dialogue_id"] for d in originals)
    # convssl evaluate's response task reads the held-back folder with the ordinary readers
    assert len(read_inputs([str(tmp_path / "heldback")]).dialogues) == len(held)
