"""The ``korpair`` command: parse options, call ``korpair.api``, print the result.

Errors a user can fix (``KorpairError``) are printed in one red paragraph, in the
flags of the command that is running (``korpair.cli.options.in_flags``), and exit
with status 2; nothing here does real work. ``train`` and ``config`` take one
option per config key, generated from ``TrainConfig``. The libraries under
korpair stay quiet unless ``korpair -v`` (``korpair.quiet``).

The commands live by what they do (``training``, ``predicting``, ``deploy``);
they are registered here, in the order ``korpair --help`` lists them.
"""

from __future__ import annotations

import sys

from korpair.cli.app import app
from korpair.cli.deploy import export, push, serve
from korpair.cli.options import ConfigCommand, with_config_options
from korpair.cli.predicting import evaluate, predict
from korpair.cli.training import CONFIG_HELP, corpora, show_config, train
from korpair.cli.tuning import tune

app.command(cls=ConfigCommand, epilog=CONFIG_HELP)(with_config_options(train))
app.command()(tune)
app.command()(evaluate)
app.command()(predict)
app.command()(serve)
app.command()(export)
app.command()(push)
app.command()(corpora)
app.command("config", cls=ConfigCommand, epilog=CONFIG_HELP)(with_config_options(show_config))

__all__ = ["app", "main"]


def main() -> None:
    app(prog_name="korpair")


if __name__ == "__main__":
    sys.exit(main())
