#!/usr/bin/env python3
"""Each role's README variable table from its meta/argument_specs.yml (music_devkit.role_docs)."""
import sys

from music_devkit.role_docs import main

sys.exit(main())
