#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to the music.profiles collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Validate a device profile and render (and optionally write) its tup variant config."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: tup_profile
short_description: Validate a music device profile and write its tup variant config
description:
  - Checks every field of a device profile (codec, codec settings, cover art, names, playlists,
    extra files) and renders the C(tup.config) of the tup variant that builds the profile.
  - With O(dest), writes that file (atomically), reporting changed only when its content changes;
    supports check mode and diff.
  - Without O(dest), only validates and returns the rendered config, e.g. to store it in an SSM
    parameter before any instance is launched.
  - An invalid profile fails with a message naming the profile and the field at fault.
version_added: "1.0.0"
options:
  name:
    description:
      - Profile name. Also the variant directory name and the name of the output tree.
      - 1-32 characters of C(a-z), C(0-9), C(_) and C(-).
    type: str
    required: true
  profile:
    description:
      - The profile settings.
      - C(codec) (required) is one of C(flac), C(opus), C(mp3), C(vorbis), C(aac) (AAC-LC in C(.m4a), for
        Apple devices).
      - C(max_sample_rate) (a sample rate such as 44100 or 48000) and C(max_bit_depth) (16 or 24,
        lossless codecs) - sources above them are resampled or reduced with dither; sources at or
        under them pass unchanged.
      - The codec's encoder settings (such as C(compression_level), C(bitrate), C(quality)), their
        values and defaults are those of the codec table in C(plugins/module_utils/music_profile.py);
        the collection's README.md lists them (its profile reference is generated from the table).
      - C(art) (bool, default true), C(art_max_size) (pixels of the longest side, 0 keeps art as
        it is, else 16-8192), C(fat32_names) (bool, default false), C(playlists) (bool, default
        false), C(extra_files) (list of glob patterns of files copied beside the tracks),
        C(channels) (1 or 2, sources with more channels are downmixed; unset keeps each source's
        channels, MP3 downmixing to 2), C(replaygain) (C(keep), the default, or C(compute) - the
        ReplayGain 2.0 track and album gain and peak a source lacks, measured by loudgain),
        C(lossy) (C(copy), the default, C(transcode) or C(skip), what MP3, AAC, Opus and Vorbis
        sources become; skipped ones are listed in the report).
      - C(names) (C(exfat), the default, C(fat32) or C(posix) - the names the device takes;
        C(fat32_names=true) is C(names=fat32)), C(ascii_names) (bool, default false; names
        transliterated to ASCII), C(id3) (C("2.4"), the default, or C("2.3"), MP3 only),
        C(include) and C(exclude) (a subset, each a dict of C(paths) (globs of source paths) and/or
        C(tags) (tag name to values); a track is built when it matches C(include), if given, and
        not C(exclude)).
    type: dict
  config:
    description:
      - A C(tup.config) text rendered earlier by this module (for example read back from an
        SSM parameter). It is parsed and validated again, then rendered canonically.
    type: str
  dest:
    description:
      - Path of the C(tup.config) file to write. Parent directories are created.
      - When omitted, nothing is written.
    type: path
extends_documentation_fragment:
  - ansible.builtin.files
notes:
  - Supports check mode and diff mode.
author:
  - music.profiles contributors (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Write the phone profile's tup variant config
  music.profiles.tup_profile:
    name: phone
    profile:
      codec: opus
      bitrate: 96
      art_max_size: 500
    dest: /srv/music/builds/.music/tup/phone/tup.config
    mode: "0644"

- name: Validate every profile before launching anything
  music.profiles.tup_profile:
    name: "{{ item.key }}"
    profile: "{{ item.value }}"
  loop: "{{ music_profiles | dict2items }}"
  register: rendered

- name: Write a config read back from SSM
  music.profiles.tup_profile:
    name: car
    config: "{{ lookup('amazon.aws.ssm_parameter', '/music/profiles/car/config') }}"
    dest: /mnt/builds/.music/tup/car/tup.config
"""

RETURN = r"""
config:
  description: The rendered tup.config text.
  returned: always
  type: str
  sample: "CONFIG_PROFILE=phone\nCONFIG_CODEC=opus\nCONFIG_EXT=opus\nCONFIG_BITRATE=96\n..."
profile:
  description: The profile with every field present, defaults filled in.
  returned: always
  type: dict
  sample: {"codec": "opus", "bitrate": 96, "art": true, "art_max_size": 500,
           "fat32_names": false, "playlists": false, "extra_files": []}
dest:
  description: The file written, when O(dest) is set.
  returned: when dest is set
  type: str
"""

import os
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_bytes, to_native
from ansible_collections.music.profiles.plugins.module_utils.music_profile import ProfileError, parse_tup_config, render_tup_config


def read_existing(path):
    try:
        with open(path, "rb") as handle:
            return handle.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return None


def write_atomically(module, path, content):
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tup.config.", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(to_bytes(content))
        module.atomic_move(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def run_module():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            profile=dict(type="dict"),
            config=dict(type="str"),
            dest=dict(type="path"),
        ),
        mutually_exclusive=[("profile", "config")],
        required_one_of=[("profile", "config")],
        add_file_common_args=True,
        supports_check_mode=True,
    )
    name = module.params["name"]
    try:
        if module.params["config"] is not None:
            name, profile = parse_tup_config(module.params["config"], name)
        else:
            profile = module.params["profile"]
        config = render_tup_config(name, profile)
        normalized = parse_tup_config(config, name)[1]
    except ProfileError as exc:
        module.fail_json(msg=to_native(exc), profile_name=name, field=exc.field)

    result = dict(changed=False, config=config, profile=normalized)
    dest = module.params["dest"]
    if dest:
        result["dest"] = dest
        if os.path.isdir(dest):
            module.fail_json(msg=f"profile '{name}': dest {dest} is a directory, expected the tup.config file path")
        before = read_existing(dest)
        if before != config:
            result["changed"] = True
            if module._diff:
                result["diff"] = dict(before=before or "", after=config,
                                      before_header=dest if before is not None else "(absent)",
                                      after_header=dest)
            if not module.check_mode:
                write_atomically(module, dest, config)
        if not module.check_mode or os.path.exists(dest):
            file_args = module.load_file_common_arguments(module.params, path=dest)
            result["changed"] = module.set_fs_attributes_if_different(file_args, result["changed"])
    module.exit_json(**result)


def main():
    run_module()


if __name__ == "__main__":
    main()
