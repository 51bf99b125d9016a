"""Server tests share crafted traces (tests/server/crafted.py); make that module importable
under --import-mode=importlib, where test directories are not put on sys.path."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
