"""The build program of a music library: sources -> scan -> tup -> encode -> outputs.

    scan.py      mirrors the sources into tup's tree as small, content-stable index files;
                 source.py reads one source (fingerprint, tags), art.py picks its cover
    Tupdefault.lua  tup's rules: one `music-encode` command per track and profile; tup.py runs tup
    encode.py    how one output is made (encode, re-tag or keep); tags.py, art.py, names.py its parts
    service.py   the encode service that runs those commands with the program loaded (wire.py)
    outputs.py   after tup: the record of outputs made, playlists, prune, each profile's report
    build.py     one build, in stages: check, scan, tup, outputs, report.json
    fsutil.py    atomic writes, readable names, one-line errors
    profile.py   the profile model and codec table, shared with the tup_profile module
    install.py   installs this package on a host from the archive the worker role ships

Importing the package loads nothing: `music-encode` imports `musicbuild.wire` with `-S`.
"""


def __getattr__(name):
    if name == "__version__":
        from .install import version

        return version()
    raise AttributeError(name)
