"""Jupyter server settings for every user of the course's JupyterHub (on JUPYTER_CONFIG_PATH, set by the hub)."""

from pathlib import Path

c = get_config()  # noqa: F821 (provided by traitlets when it loads this file)

# A terminal is an interactive bash that reads the user's ~/.bashrc and then puts the course's environment first
# on PATH (a login shell would reset PATH from /etc/profile, and `nbgrader` or `make autograde` would not be found).
c.ServerApp.terminado_settings = {"shell_command": ["/bin/bash", "--rcfile", str(Path(__file__).with_name("bashrc"))]}
