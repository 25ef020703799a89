"""The shipped rule packs (the YAML files beside this one).

Installed, this folder is the package ``monitor.rule_packs`` (see pyproject.toml), so a config
without a ``rules`` key finds them through importlib.resources wherever the package lives.
"""
