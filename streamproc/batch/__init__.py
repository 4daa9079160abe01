"""Batch captioning (`streamproc caption`): recordings and images to caption files and, given a
store, the caption store. `captioner.py` runs each file through the segmenter, the scene-change
gate and the describer (`BatchCaptioner`); `images.py` captions still images; `manifest.py` is
the resume record. The composition root for a run is `streamproc.app.batch`."""
