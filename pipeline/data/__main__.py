"""python -m pipeline.data {add,use,restore} (pipeline/data/add.py; restore: pipeline/data/restore.py)."""
import sys

from .add import main

sys.exit(main())
