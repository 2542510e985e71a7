"""Writing FFCV .beton files deterministically, with a JSON sidecar that lets readers detect stale files.

Named `ffcv_io` (not `ffcv`) so it never shadows the ffcv package. Modules:
  encode    one image file -> the bytes a .beton stores (worker processes; imports neither torch nor ffcv)
  writer    the .beton layout, written by one process in sample order (byte-identical re-runs)
  sidecar   `<name>.beton.json` next to each file; `check_beton` turns missing/truncated/stale into errors
  datasets  which .beton files the `convert` stage writes from the validated manifests
"""
