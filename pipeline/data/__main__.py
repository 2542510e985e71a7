"""python -m pipeline.data add NAME --classification DIR [--sysu DIR] [--coco DIR] (pipeline/data/add.py)."""
import sys

from .add import main

sys.exit(main())
