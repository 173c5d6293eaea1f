"""tlcore: the UI-free core of Transfer Learning Studio.

Modules have one job each: `images` decodes, `data` scans data sets, `augment` builds augmentation
layers, `backbones` builds pretrained bases, `strategies` trains, `runs` keeps run folders, `predict`
serves a trained run, `charts` draws. Nothing here imports Streamlit.
"""

__version__ = "0.1.0"
