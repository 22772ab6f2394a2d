"""The ``tvfast`` command line.

Modules
-------
main    : ``tvfast`` itself: the parser and the subcommands' dispatch.
parser  : an argparse parser whose errors are one line, exit status 2.
denoise : ``tvfast denoise``: files and folders of images or volumes.
demo    : ``tvfast demo``: the bundled X-rays, best scalar λ against the learned Λ map.
bench   : ``tvfast bench``: the headline speed rows against the reference loop.

``tvfast train`` and ``tvfast evaluate`` live in the training package
(``training/``), which this package never imports: they are found through the
``tvfast.commands`` entry points.
"""
