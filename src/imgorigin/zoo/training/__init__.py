"""Training of the zoo recipes, one module per family (``training/<family>.py`` beside ``zoo/<family>.py``).

Imported only by :func:`imgorigin.zoo.train` and ``imgorigin zoo train``: loading a zoo model never imports it.
Each module has ``train(config, out_dir, device, images, max_steps, log) -> stats`` writing the shipped layout.
"""
