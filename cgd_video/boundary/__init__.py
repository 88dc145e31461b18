"""The config boundary: the only package (with ``cgd_video/config``) that reads config nodes.

It turns a yacs config into plain keyword arguments and objects for the layers below it
(models, data, engine, inference), which never see a config node:

- :mod:`.model`: model keyword arguments, ``build_model``, the eval model of a checkpoint;
- :mod:`.training`: the training settings (``train(...)``'s plain arguments) and its datasets;
- :mod:`.evaluation`: test/inference settings and datasets.
"""
