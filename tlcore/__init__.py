"""tlcore: the UI-free core of Transfer Learning Studio (it never imports Streamlit).

Grouped by area: `data` (the one decoder, scanning, pipelines), `models` (backbones, heads),
`training` (the trainer and its stages), `runs` (run folders, the worker, the monitor), `insight`
(evaluation, Grad-CAM, charts) and `serving` (predict, batch, export); `config` holds the settings and
`cli` the command line.
"""

__version__ = "0.2.0"
