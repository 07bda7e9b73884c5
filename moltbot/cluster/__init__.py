"""The cluster a tree runs on, as the CLI sees it: the head recorded on this machine (``Head``,
``run/ray.json``) and ``TreeControl``, the one interface through which every command starts,
inspects and stops the tree. Its implementation over Ray lives in ``actors/`` and is found
through the ``moltbot.tree_control`` entry point (pyproject), so nothing here imports it."""
