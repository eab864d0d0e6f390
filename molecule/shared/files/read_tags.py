"""Print the tags of every audio file under a directory as JSON: {relative path: {tag: value}}.

Used by the scenarios on the test host (mutagen from the project's .venv) to compare the tags
of compiled files with those of their sources.
"""
import json
import os
import sys

import mutagen

TAGS = ("artist", "album", "title", "tracknumber", "date")


def main(root: str) -> None:
    out = {}
    for top, _, files in os.walk(root):
        for name in files:
            if not name.endswith((".flac", ".opus", ".mp3", ".ogg")):
                continue
            path = os.path.join(top, name)
            audio = mutagen.File(path, easy=True)
            tags = {t: (audio.get(t) or [""])[0] for t in TAGS} if audio is not None else {}
            # "3/12" and "03" both mean track 3.
            tags["tracknumber"] = str(int(tags.get("tracknumber", "0").split("/")[0] or 0))
            tags["date"] = str(tags.get("date", ""))[:4]
            out[os.path.relpath(path, root)] = tags
    print(json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    main(sys.argv[1])
