"""The top-level commands of `sdlens`: each one's name and help, said once.

The typer app registers every command and command group with its help from here, and `sdlens --help` prints this
table without importing typer, rich or any command module: typer would build every command's parameters and import
its rich help renderer first, several times the cost of the interpreter (bench/analyze.py times both).
"""

from __future__ import annotations

import shutil
import textwrap

__all__ = ["APP_HELP", "COMMAND_HELP", "top_level_help"]

APP_HELP = "Measure, evaluate and train around epistemic verbalization in self-distilled reasoning LLMs."

# In the order `sdlens --help` lists them. The first paragraph is the command's line in that list; the whole text
# heads `sdlens COMMAND --help`.
COMMAND_HELP: dict[str, str] = {
    "analyze": (
        "Epistemic verbalization in trace files: E per response (the paper's number), per 1k tokens, share of\n"
        "responses with any hedge, median / p90, per word, where in the response hedges fall, grouped by any key."
        "\n\nExample: sdlens analyze outputs.jsonl --by correct --measures reflection,revisions"
    ),
    "compare": (
        "Two runs side by side: E, hedges per 1k, share with any, length and each word, with bootstrap 95% CIs\n"
        "over problems, the ratio B/A, and a verdict on whether hedging fell significantly."
        "\n\nExample: sdlens compare base.jsonl sdpo.jsonl"
    ),
    "grade": (
        "Grade every response against its gold answer (math-verify by default)."
        "\n\nThe output keeps every input field and adds `extracted`, `correct`, `grader` and `grade_error` (null, "
        "or why\nthe answer could not be judged: a timeout...)."
        "\n\nExample: sdlens grade samples.jsonl -o graded.jsonl"
    ),
    "metrics": (
        "avg@n, unbiased pass@k, maj@k and any-correct@n with bootstrap 95% CIs."
        '\n\navg@n is the paper\'s main number and any-correct@n what it prints as "Pass@16". CIs are over '
        "problems;\nalso per source, and response / thinking lengths in tokens."
        "\n\nExample: sdlens metrics graded.jsonl --k 1,4,16"
    ),
    "eval": "Generate, grade and measure a model on a benchmark; resumable (rerun the same command after a crash).",
    "train": "Train with TRL's SDPO / GRPO / SFT trainers and the paper's presets (docs/train.md).",
    "monitor": "Per-step hedging statistics of a run and the suppression detector's verdict (docs/monitor.md).",
    "report": (
        "Write a self-contained report.html (tables with CIs, figures, hedge-highlighted traces) and report.md."
        "\n\nExample: sdlens report runs/sec3   |   sdlens report run.jsonl -o run_report"
    ),
    "probe": (
        "Teacher-forced scoring of existing traces with and without a privileged context: per token\n"
        "log p(y_t | x, c, y_<t) - log p(y_t | x, y_<t), summarised per hedge word, for hedges vs other tokens, and "
        "by\nposition."
        "\n\nExample: sdlens probe --model smollm2-135m --data traces.jsonl --context hint --json"
    ),
    "graders": "Inspect and compare graders.",
    "benchmarks": "The data sets shipped with sdlens.",
    "models": "Model utilities.",
    "experiment": "The paper's controlled experiments: richer-context (section 3), guided-sft (4), coverage (5-6).",
    "lab": "The CPU model organism: watch self-distillation silence doubt on a laptop.",
}


def top_level_help(width: int | None = None) -> str:
    """`sdlens --help`: usage, the app's help and each command's first paragraph, laid out as click lays out plain
    help (wrapped to the terminal, at most 80 columns) but with each command's line whole, as typer's rich help
    shows it."""
    width = width or min(shutil.get_terminal_size().columns, 80)
    name_width = max(map(len, COMMAND_HELP))
    lines = ["Usage: sdlens [OPTIONS] COMMAND [ARGS]...", ""]
    lines += textwrap.wrap(APP_HELP, width, initial_indent="  ", subsequent_indent="  ")
    lines += ["", "Options:", "  --help  Show this message and exit.", "", "Commands:"]
    hanging = " " * (name_width + 4)
    for name, text in COMMAND_HELP.items():
        first = " ".join(text.split("\n\n")[0].split())
        lead = f"  {name:<{name_width}}  "
        lines += textwrap.wrap(first, max(width, len(lead) + 20), initial_indent=lead, subsequent_indent=hanging)
    lines += ["", "Run 'sdlens COMMAND --help' for a command's options."]
    return "\n".join(lines) + "\n"
