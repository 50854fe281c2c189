"""Puts the project root on ``sys.path``, so that a benchmark run as ``python bench/NAME.py`` can
use the scripted OpenAI-compatible server the tests use (``tests.openai_server``)."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
