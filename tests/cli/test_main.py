import subprocess
import sys

from convssl.cli import main


def test_help_lists_every_verb_with_a_purpose(capsys):
    assert main([]) == 2
    out = capsys.readouterr().out
    for verb in ["prepare", "tokenizer", "pretrain", "evaluate", "finetune", "serve", "feedback"]:
        assert verb in out


def test_module_entry_point_runs():
    result = subprocess.run([sys.executable, "-m", "convssl", "--version"], capture_output=True, text=True)
    assert result.returncode == 0
    assert result.stdout.startswith("convssl ")
