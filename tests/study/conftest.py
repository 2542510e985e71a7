import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent))  # lets these tests import tests/small_project.py
