"""What the tests share besides fixtures: one module per concern.

- `paths`: the project root and the read-only `../shared` folder (skips with one reason when it is missing).
- `images`: generated image files (decompression bombs, the bad-input kit).
- `runs`: the training settings of the small runs, and `trained_run` (create a run and train it to the end).
- `server`: waiting for a condition, free ports, and a local Streamlit server started and stopped.
"""
