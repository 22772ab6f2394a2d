"""The ``tvfast`` command line.

Modules
-------
main    : ``tvfast`` itself: the parser and the subcommands' dispatch.
parser  : an argparse parser whose errors are one line, exit status 2.
denoise : ``tvfast denoise``: files and folders of images or volumes.
demo    : ``tvfast demo``: the bundled X-rays, best scalar λ against the learned Λ map.
bench   : ``tvfast bench``: the headline speed and memory rows.

``tvfast train`` and ``tvfast evaluate`` live in ``tvfast.training`` and are
found through the ``tvfast.commands`` entry points.
"""
